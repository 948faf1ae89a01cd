"""Training precision on the CPU: fp32 against bf16 autocast, whole fine-tunes, several seeds.

For each seed and precision, one ``python cli.py finetune`` (the quick recipe by default:
``--model minilm --lr 2e-5 --epochs 2`` on the GOP 80/20 split of ``cli.py split --seed 42``), then
a logistic head on the run's cached CLS vectors and ``cli.py compare`` on the eval rows. Every
vector is computed in fp32 (``--precision fp32``), so the rows differ by the training precision
alone. Each step is a separate process and a finished step is skipped on a rerun, so the work
folder can be filled across sessions (a fine-tune that was stopped continues with ``--resume``).

Reported per run: examples/s inside training steps (the run's ``metrics.json``), the run's own eval
accuracy, and the end-to-end model and the logistic head on all and on novel eval rows (text not in
train) with 95% intervals; then, per precision, the mean and the seed-to-seed spread, and the
bf16 - fp32 difference seed by seed. Run it alone: the examples/s are only comparable between runs
that had the cores to themselves.

    python bench/train_precision.py --work runs/precision [--seeds 42,7] [--precisions bf16,fp32]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import common  # bench/ is on sys.path: run as `python bench/train_precision.py`

REPO = common.REPO


def _run(args: list[str], log: Path | None = None) -> None:
    command = [sys.executable, str(REPO / "cli.py"), *args]
    print("+ " + " ".join(command[1:]), file=sys.stderr, flush=True)
    if log is None:
        subprocess.run(command, check=True, cwd=REPO)
        return
    with open(log, "a") as handle:
        subprocess.run(command, check=True, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)


def _finished(run: Path) -> bool:
    marker = run / "tweetheads_run.json"
    return marker.exists() and json.loads(marker.read_text()).get("interrupted") is False


def one_run(work: Path, split: Path, model: str, seed: int, precision: str, lr: float, epochs: float) -> Path:
    run = work / f"{model}-{precision}-s{seed}"
    if not _finished(run):
        resume = ["--resume"] if (run / "checkpoint").exists() else []
        _run(["finetune", "--model", model, "--train", str(split / "train.csv"), "--eval", str(split / "eval.csv"),
              "--label-col", "sentiment", "--lr", str(lr), "--epochs", str(epochs), "--seed", str(seed),
              "--precision", precision, "--out", str(run), "--save-every", "500", *resume], log=work / f"{run.name}.log")
    head, report = run / "head-logistic-fp32", run / "report-fp32"
    if not (head / "head.json").exists():
        _run(["train-head", "--head", "logistic", "--model", str(run), "--train", str(split / "train.csv"),
              "--label-col", "sentiment", "--precision", "fp32", "--out", str(head)])
    if not (report / "results.json").exists():
        _run(["compare", "--model", str(run), "--test", str(split / "eval.csv"), "--train", str(split / "train.csv"),
              "--label-col", "sentiment", "--precision", "fp32", "--report-dir", str(report), str(head)])
    return run


def summarize(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "tweetheads_run.json").read_text())
    results = json.loads((run / "report-fp32" / "results.json").read_text())
    e2e = next(m for m in results["methods"] if m["kind"] == "e2e")
    head = next(m for m in results["methods"] if m["kind"] == "head")
    return {"run": str(run), "seed": info["config"]["seed"], "asked": info["config"]["precision"],
            "trained_precision": info["trained_precision"], "steps": metrics["steps"],
            "examples_per_second": metrics["examples_per_second"], "train_seconds": metrics["train_seconds"],
            "run_eval_accuracy": metrics["final"]["accuracy"],
            "e2e": {k: e2e[k]["accuracy"] for k in ("all", "novel")},
            "e2e_ci": {k: e2e[k]["accuracy_ci95"] for k in ("all", "novel")},
            "logistic": {k: head[k]["accuracy"] for k in ("all", "novel")},
            "rows": results["rows"], "novel_rows": results["novel_rows"]}


def _ci(pair) -> str:
    return f"{pair[0]:.3f}-{pair[1]:.3f}"


def markdown(rows: list[dict]) -> str:
    out = ["| precision | seed | examples/s (steps) | minutes of steps | run's eval accuracy | end to end, all (95% CI) "
           "| end to end, novel | logistic head, all | logistic head, novel |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["trained_precision"], r["seed"])):
        out.append(f"| {r['trained_precision']} | {r['seed']} | {r['examples_per_second']:.1f} | "
                   f"{r['train_seconds'] / 60:.1f} | {r['run_eval_accuracy']:.4f} | {r['e2e']['all']:.4f} "
                   f"({_ci(r['e2e_ci']['all'])}) | {r['e2e']['novel']:.4f} | {r['logistic']['all']:.4f} | "
                   f"{r['logistic']['novel']:.4f} |")
    by = {}
    for r in rows:
        by.setdefault(r["trained_precision"], {})[r["seed"]] = r
    out.append("")
    for precision, runs in sorted(by.items()):
        def span(get, digits=4):
            values = [get(r) for r in runs.values()]
            return f"{sum(values) / len(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
        out.append(f"- {precision}, {len(runs)} seeds, mean (min-max): end to end {span(lambda r: r['e2e']['all'])} "
                   f"all, {span(lambda r: r['e2e']['novel'])} novel; logistic {span(lambda r: r['logistic']['all'])} "
                   f"all, {span(lambda r: r['logistic']['novel'])} novel; "
                   f"{span(lambda r: r['examples_per_second'], 1)} examples/s.")
    if {"fp32", "bf16"} <= set(by):
        seeds = sorted(set(by["fp32"]) & set(by["bf16"]))
        for seed in seeds:
            a, b = by["bf16"][seed], by["fp32"][seed]
            out.append(f"- seed {seed}, bf16 - fp32 (points): end to end {100 * (a['e2e']['all'] - b['e2e']['all']):+.2f} "
                       f"all, {100 * (a['e2e']['novel'] - b['e2e']['novel']):+.2f} novel; logistic "
                       f"{100 * (a['logistic']['all'] - b['logistic']['all']):+.2f} all, "
                       f"{100 * (a['logistic']['novel'] - b['logistic']['novel']):+.2f} novel; speed "
                       f"{a['examples_per_second'] / b['examples_per_second']:.2f}x.")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the runs go (kept; a rerun skips what is done)")
    parser.add_argument("--seeds", default="42,7")
    parser.add_argument("--precisions", default="bf16,fp32")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--split", type=Path, help="a folder holding train.csv and eval.csv of `cli.py split` "
                        "[default: WORK/gop-split, made from the GOP tweets with --seed 42]")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    split = args.split or args.work / "gop-split"
    if not (split / "eval.csv").exists():
        _run(["split", str(common.gop_csv()), "--eval-fraction", "0.2", "--seed", "42", "--out-dir", str(split)])
    rows = [summarize(one_run(args.work, split, args.model, int(seed), precision, args.lr, args.epochs))
            for seed in args.seeds.split(",") for precision in args.precisions.split(",")]
    from run import cpu_summary  # bench/run.py: the CPU and its flags, as every section header names them

    print(f"_{cpu_summary()}_\n")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
