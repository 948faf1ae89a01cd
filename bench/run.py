"""Run the benchmarks and rewrite their tables in BENCHMARKS.md.

    python bench/run.py                      # everything, ~25 minutes on a 2-core CPU
    python bench/run.py --quick              # smaller sizes, a few minutes: smoke test
    python bench/run.py --only embed_speed   # one benchmark (repeatable; "embed" works too)

Each benchmark is its own file here with ``run(quick) -> list[Table]`` and can also be run alone
(``python bench/cache_speed.py`` prints its tables). This script rewrites the header (machine,
versions, date, command) and the section of every benchmark it ran, between the
``<!-- bench:NAME:start -->`` / ``<!-- bench:NAME:end -->`` markers, and leaves every other part
of BENCHMARKS.md as it is. ``card_report`` and ``gpu_report`` measure nothing: they render the
saved results of runs that need hours or a GPU (``bench/results/``). Every benchmark uses its own
temporary cache folder.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import sys
import time
import traceback

import common  # bench/ is on sys.path (run as `python bench/run.py`); sets HF_HUB_OFFLINE=1
from common import FLAGS, _cpu, cpu_summary

BENCHMARKS = {  # module -> section title, in run order
    "embed_speed": "Embedding",
    "cache_speed": "Cache",
    "heads_speed": "Heads",
    "heads_real": "Heads on real embeddings",
    "knn_speed": "kNN search",
    "finetune_speed": "Fine-tuning",
    "score_memory": "Scoring",
    "score_overhead": "Scoring: overhead over encode()",
    "score_ray": "Scoring on Ray",
    "card_report": "The card, reproduced",
    "gpu_report": "GPU",
}
REPORTS = {"card_report", "gpu_report"}  # render saved results; they measure nothing on this machine
OUTPUT = common.REPO / "BENCHMARKS.md"
TEMPLATE = """# Benchmarks

Every number here was measured by `python bench/run.py` (or by the command named in its section)
on the machine in the header. The machine is shared with other jobs, so absolute times move from
run to run; each comparison was timed side by side in one process (variants in rotating order)
and the ratios are what to read. Regenerate with `python bench/run.py` (about 25 minutes on
2 cores; `--quick` for a smoke test, `--only NAME` for one section).

<!-- bench:header:start -->
<!-- bench:header:end -->

## Embedding

<!-- bench:embed_speed:start -->
Not measured yet: `python bench/run.py --only embed_speed`.
<!-- bench:embed_speed:end -->

## Cache

<!-- bench:cache_speed:start -->
Not measured yet: `python bench/run.py --only cache_speed`.
<!-- bench:cache_speed:end -->

## Heads

<!-- bench:heads_speed:start -->
Not measured yet: `python bench/run.py --only heads_speed`.
<!-- bench:heads_speed:end -->

<!-- bench:heads_real:start -->
Not measured yet: `python bench/run.py --only heads_real`.
<!-- bench:heads_real:end -->

## kNN search

<!-- bench:knn_speed:start -->
Not measured yet: `python bench/run.py --only knn_speed`.
<!-- bench:knn_speed:end -->

## Fine-tuning

<!-- bench:finetune_speed:start -->
Not measured yet: `python bench/run.py --only finetune_speed`.
<!-- bench:finetune_speed:end -->

## Scoring

<!-- bench:score_memory:start -->
Not measured yet: `python bench/run.py --only score_memory`.
<!-- bench:score_memory:end -->

<!-- bench:score_overhead:start -->
Not measured yet: `python bench/run.py --only score_overhead`.
<!-- bench:score_overhead:end -->

<!-- bench:score_ray:start -->
Not measured yet: `python bench/run.py --only score_ray`.
<!-- bench:score_ray:end -->

## The card, reproduced

<!-- bench:card_report:start -->
Not written yet: `python bench/run.py --only card_report`.
<!-- bench:card_report:end -->

## GPU

<!-- bench:gpu_report:start -->
Not written yet: `python bench/run.py --only gpu_report`.
<!-- bench:gpu_report:end -->
"""


def _marker(name: str, end: bool = False) -> str:
    return f"<!-- bench:{name}:{'end' if end else 'start'} -->"


def replace_section(document: str, name: str, body: str) -> str:
    start, end = _marker(name), _marker(name, end=True)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(document):
        document = document.rstrip("\n") + f"\n\n{start}\n{end}\n"
    return pattern.sub(lambda _: f"{start}\n{body.rstrip()}\n{end}", document, count=1)


def current_document() -> str:
    if not OUTPUT.exists():
        return TEMPLATE
    document = OUTPUT.read_text()
    for name in ["header", *BENCHMARKS]:  # restore any section someone removed
        if _marker(name) not in document:
            block = re.search(re.escape(_marker(name)) + r".*?" + re.escape(_marker(name, True)), TEMPLATE,
                              re.DOTALL).group(0)
            document = document.rstrip("\n") + "\n\n" + block + "\n"
    return document


def write_section(name: str, body: str) -> None:
    document = replace_section(current_document(), name, body)
    tmp = OUTPUT.with_name(OUTPUT.name + ".tmp")
    tmp.write_text(document)
    os.replace(tmp, OUTPUT)


def header(command: str, quick: bool, started: str, load: tuple) -> str:
    import psutil

    model, flags = _cpu()
    present = [f for f in FLAGS if f in flags]
    absent = [f for f in FLAGS if f not in flags]
    versions = []
    for module, label in (("torch", "torch"), ("transformers", "transformers"),
                          ("sentence_transformers", "sentence-transformers"), ("faiss", "faiss"),
                          ("lightgbm", "lightgbm"), ("sklearn", "scikit-learn"), ("numpy", "numpy"),
                          ("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("openvino", "openvino"), ("nncf", "nncf")):
        try:
            versions.append(f"{label} {importlib.import_module(module).__version__}")
        except ImportError:
            versions.append(f"{label} (not installed)")
    import torch

    return "\n".join([
        f"Last run: {started} UTC, `{command}`{' (quick sizes: smoke test, not for comparison)' if quick else ''}.",
        "",
        f"- CPU: {model}, {os.cpu_count()} logical cores; flags of interest present: {', '.join(present) or 'none'}; "
        f"absent: {', '.join(absent) or 'none'}. torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} torch threads by default; no GPU.",
        f"- RAM: {psutil.virtual_memory().total / 2**30:.1f} GiB. Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}.",
        f"- Versions: {', '.join(versions)}.",
        f"- Load average (1/5/15 min) when the run started: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
        "each section's first line gives the load when it started (near 0: the benchmark had the machine to "
        "itself; near the core count or above: other jobs shared it, and only the side-by-side ratios hold).",
    ])


def resolve(names: list[str]) -> list[str]:
    chosen = []
    for name in names:
        module = name if name in BENCHMARKS else f"{name}_speed"
        if module not in BENCHMARKS:
            raise SystemExit(f"--only {name}: unknown benchmark; choose from {', '.join(BENCHMARKS)}")
        chosen.append(module)
    return chosen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks and rewrite BENCHMARKS.md.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for smoke testing (~3 minutes)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    chosen = resolve(args.only) if args.only else list(BENCHMARKS)
    command = "python bench/run.py" + (" --quick" if args.quick else "") + \
        "".join(f" --only {name}" for name in (args.only or []))
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    if not set(chosen) <= REPORTS:  # the header describes the last run that measured something
        write_section("header", header(command, args.quick, started, os.getloadavg()))
    failed = []
    for name in chosen:
        common.log(f"=== {name} ===")
        begin, load = time.perf_counter(), os.getloadavg()
        try:
            tables = importlib.import_module(name).run(quick=args.quick)
            body = "\n".join(t.markdown() for t in tables)
        except Exception:  # noqa: BLE001 - record the failure in the file and go on with the others
            failed.append(name)
            body = f"Failed in this run:\n\n```\n{traceback.format_exc()}```\n"
            traceback.print_exc()
        seconds = time.perf_counter() - begin
        if name in REPORTS:  # nothing measured here: the tables say where their runs ran
            stamp = (f"_Rendered {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC by `{command}` from the saved "
                     f"results in `bench/results/`. Alone: `python bench/{name}.py`._\n\n")
        else:
            stamp = (f"_Measured {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC by `{command}`"
                     f"{' (quick sizes)' if args.quick else ''} in {seconds / 60:.1f} min on {cpu_summary()}; load "
                     f"average at start {load[0]:.2f}. "
                     f"Alone: `python bench/{name}.py{' --quick' if args.quick else ''}`._\n\n")
        write_section(name, stamp + body)
        common.log(f"=== {name}: {seconds:.0f} s ===")
    if failed:
        print(f"failed: {', '.join(failed)} (see BENCHMARKS.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
