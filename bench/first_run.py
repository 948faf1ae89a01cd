"""A model's first run: ``embed`` with no flags against ``SentenceTransformer.encode()``, whole process.

Each variant is a new process on the same CSV of N raw GOP tweets (default 3,000, seeded sample),
timed from outside (wall seconds), in rotating order, several rounds:

- ``encode()``: a script that loads ``SentenceTransformer`` (the packaged MiniLM) and calls
  ``encode(texts, batch_size=64)`` with no other flag (torch fp32, its own mean pooling);
- ``embed, first run``: ``python cli.py embed --model minilm`` into an empty cache folder, so the
  OpenVINO graph is made inside the command (for MiniLM, a plain BERT, written from its safetensors
  without torch: ``embed/ov_graph.py``);
- ``embed, second run``: the same with the export already on disk (the store emptied each time);
- with ``--baseline TREE`` (a checkout of the code to compare against, e.g. ``git worktree add
  /tmp/before HEAD``): that tree's ``cli.py embed`` first run, the same way.

The table gives each variant's median seconds and the median of its per-round ratios to
``encode()`` (encode()'s seconds over the variant's, from the same round: above 1 is faster), and
the same for the processes' CPU seconds (user + system), which other work on the cores moves less.
Goal (#34 item 4): the first run at 3x ``encode()`` or more.

    python bench/first_run.py [--n 3000] [--rounds 3] [--baseline TREE] [--quick]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import common  # noqa: F401  bench/ is on sys.path: run as `python bench/first_run.py`
from common import REPO, Table, cpu_header, gop_tweets, interleave, log, minilm_path, temp_dir, write_tweets  # noqa: E402

ENCODE = """
import csv, sys
from sentence_transformers import SentenceTransformer
csv.field_size_limit(1 << 24)
with open(sys.argv[2], newline="", encoding="utf-8") as handle:
    texts = [row["text"] for row in csv.DictReader(handle)]
SentenceTransformer(sys.argv[1], device="cpu").encode(texts, batch_size=64)
"""


def run(n: int, rounds: int, baseline: Path | None) -> Table:
    from embed.encoder import pick_precision

    precision = pick_precision("auto", "cpu")  # what `embed` with no flags computes in on this CPU
    with temp_dir() as tmp:
        texts, labels = gop_tweets(n, seed=11)
        data = write_tweets(tmp / "tweets.csv", texts, labels)
        script = tmp / "encode.py"
        script.write_text(ENCODE)
        counter = iter(range(10**6))

        def embed(tree: Path, keep: Path | None = None, flags: tuple[str, ...] = ()):
            def fn():
                cache = keep or tmp / f"cold-{next(counter)}"
                if keep is not None and cache.exists():  # the export stays, the store goes
                    for child in cache.iterdir():
                        if child.name != "exports":
                            shutil.rmtree(child)
                subprocess.run([sys.executable, str(tree / "cli.py"), "embed", "--model", "minilm", "--input",
                                str(data), "--output", str(tmp / "out.npy"), "--cache-dir", str(cache), *flags],
                               check=True, capture_output=True)
                if keep is None:
                    shutil.rmtree(cache, ignore_errors=True)
            return fn

        def encode():
            subprocess.run([sys.executable, str(script), minilm_path(), str(data)], check=True, capture_output=True)

        kept = tmp / "kept"
        embed(REPO, kept)()  # writes the export that the second-run variant reads
        variants = {"SentenceTransformer.encode(), no flags": encode,
                    "embed, no flags, first run (export made in the command)": embed(REPO),
                    "embed, no flags, second run (export on disk, empty store)": embed(REPO, kept)}
        if precision != "fp32":  # encode()'s precision, for a like-for-like row
            variants["embed --precision fp32, first run"] = embed(REPO, flags=("--precision", "fp32"))
        if baseline is not None:
            variants[f"baseline `{baseline}`: embed, first run"] = embed(baseline)
        cpu: dict[str, list[float]] = {name: [] for name in variants}

        def with_cpu(name, fn):
            def timed():
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                fn()
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            return timed

        times = interleave({name: with_cpu(name, fn) for name, fn in variants.items()}, rounds, "first run")
    base_name = next(iter(times))
    table = Table(
        title=f"A model's first run: `embed` against `encode()`, whole process ({n:,} GOP tweets, MiniLM)",
        compared=(f"{cpu_header()} Each row a new process on the same CSV of {n:,} raw GOP tweets ({rounds} "
                  "rounds, rotating order, wall seconds): start-up, model load, reading, and for `embed` "
                  "normalization, deduplication, the cache writes and the `.npy` output. Ratio: median over the "
                  "rounds of encode()'s seconds over the row's in the same round (above 1: faster)."),
        columns=["variant", "median s", "min-max s", "texts/s", "vs encode()", "CPU s (median)", "vs encode(), CPU s"])
    for name, secs in times.items():
        ratios = [b / s for b, s in zip(times[base_name], secs)]
        cpu_ratios = [b / s for b, s in zip(cpu[base_name], cpu[name])]
        median = statistics.median(secs)
        table.add(name, f"{median:.2f}", f"{min(secs):.2f}-{max(secs):.2f}", f"{n / median:,.0f}",
                  f"{statistics.median(ratios):.2f}x", f"{statistics.median(cpu[name]):.1f}",
                  f"{statistics.median(cpu_ratios):.2f}x")
    table.notes.append("`encode()` gets the raw texts and its own (mean) pooling; `embed` normalizes, encodes each "
                       "distinct text once (retweets repeat) and writes CLS vectors (OpenVINO "
                       + (f"{precision} with no flags, this CPU having bf16 units; encode() computes in fp32, "
                          "as the `--precision fp32` row does)." if precision != "fp32"
                          else "fp32 on a CPU without bf16 units)."))
    table.notes.append("CPU s: user + system seconds of the process and its children (`RUSAGE_CHILDREN`), "
                       "a check on the wall ratios when other work shares the cores.")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="GOP tweets (default 3,000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout whose cli.py embed first run is timed too")
    parser.add_argument("--quick", action="store_true", help="300 tweets, 1 round: a smoke test")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "cli.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no cli.py there; give a checkout of this repository")
    log(cpu_header())
    print(run(300 if args.quick else args.n, 1 if args.quick else args.rounds, args.baseline).markdown())
