"""Check what ``scripts/demo.sh`` promises, after it ran: CI calls this on the demo's folder and its log.

Usage: python scripts/check_demo.py OUT_DIR DEMO_LOG

Checks: the comparison report (report.md naming every method, results.json), its PNG plots (real
PNG files; the learning curve drawn from at least 20 logged training-loss points), the scored file
(one output row per input row of the eval split, counting rejects, in input order, the gold column
kept beside pred_label), and the closing block that names each of them. Exits 1 with one line per
broken promise.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("confusion_matrices.png", "accuracy.png", "learning_curve.png")


def problems(out: Path, log: str) -> list[str]:
    found: list[str] = []
    report = out / "report"
    text = (report / "report.md").read_text() if (report / "report.md").is_file() else ""
    if not text:
        found.append(f"{report / 'report.md'}: missing or empty")
    for method in ("end-to-end", "logistic", "lightgbm", "knn", "majority class"):
        if text and method not in text:
            found.append(f"{report / 'report.md'}: no row for {method!r}")
    try:
        json.loads((report / "results.json").read_text())
    except (OSError, ValueError) as exc:
        found.append(f"{report / 'results.json'}: not readable JSON ({exc})")
    for name in PLOTS:
        path = report / name
        if not path.is_file() or path.read_bytes()[:8] != PNG:
            found.append(f"{path}: missing or not a PNG file")
    try:
        points = len(json.loads((out / "run" / "metrics.json").read_text())["training_log"])
    except (OSError, ValueError, KeyError) as exc:
        found.append(f"{out / 'run' / 'metrics.json'}: no training_log ({exc})")
    else:
        if points < 20:
            found.append(f"{out / 'run' / 'metrics.json'}: {points} training-loss points; the curve needs 20 or more")

    def rows(path: Path) -> list[dict]:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    try:
        inputs, scored, rejects = (rows(out / name) for name in ("split/eval.csv", "scored.csv", "scored.rejects.csv"))
    except OSError as exc:
        found.append(f"cannot read the scored, rejects or eval file: {exc}")
    else:
        if len(scored) + len(rejects) != len(inputs):
            found.append(f"{out / 'scored.csv'}: {len(scored)} scored + {len(rejects)} rejected rows, but the input "
                         f"{out / 'split/eval.csv'} has {len(inputs)}")
        kept = [{k: r[k] for k in inputs[0]} for r in scored] if inputs and scored else []
        if not rejects and kept != inputs:
            found.append(f"{out / 'scored.csv'}: the input columns are not kept unchanged and in input order")
        if scored and not {"pred_label", *inputs[0]} <= set(scored[0]):
            found.append(f"{out / 'scored.csv'}: columns {list(scored[0])} lack pred_label or an input column")
    if not any(l.startswith("against '") and "': accuracy " in l for l in log.splitlines()):
        found.append("the score step printed no accuracy against the gold column")
    for what in ("comparison report:", "plots:", "scored file:", "rejects file:"):
        line = next((l for l in log.splitlines() if l.strip().startswith(what)), None)
        if line is None:
            found.append(f"the closing block does not name the {what.rstrip(':')}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    out, log = Path(argv[0]), Path(argv[1]).read_text(errors="replace")
    found = problems(out, log)
    for line in found:
        print(f"demo check: {line}", file=sys.stderr)
    if not found:
        print(f"demo check: every promise of scripts/demo.sh holds in {out}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
