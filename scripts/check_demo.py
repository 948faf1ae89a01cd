"""Check what ``scripts/demo.sh`` promises, after it ran: CI calls this on the demo's folder and its log.

Usage: python scripts/check_demo.py OUT_DIR DEMO_LOG

Checks: the comparison report (report.md naming every method once, by its head name, "knn" not
"knn (knn)"; results.json; McNemar against the run's end-to-end model; the reference card's quoted
0.7146 drawn exactly when the logged compare command passed ``--reference card``, as the demo does
on GOP data only), its PNG plots (real PNG files; the learning curve drawn from at least 20 logged
training-loss points), the scored file
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
HEADS = ("logistic", "lightgbm", "knn")
CARD_ROW = "| reference card (quoted) | 0.7146 |"


def _references(results: dict, text: str, log: str, report: Path) -> list[str]:
    """The card is drawn exactly when the compare command (as ``set -x`` logged it) asked for it."""
    commands = [l for l in log.splitlines() if l.startswith("+") and "cli.py compare" in l]
    if not commands:
        return ["the log shows no `cli.py compare` command (set -x): cannot tell which references it asked for"]
    asked = "--reference card" in commands[-1]
    drawn = [r.get("name") for r in results.get("references", [])]
    found = []
    if drawn != (["reference card (quoted)"] if asked else []):
        found.append(f"{report / 'results.json'}: references {drawn}, but compare was run "
                     f"{'with' if asked else 'without'} --reference card")
    if (CARD_ROW in text) != asked:
        found.append(f"{report / 'report.md'}: the card's 0.7146 row is {'missing' if asked else 'drawn'}, but compare "
                     f"was run {'with' if asked else 'without'} --reference card")
    return found


def problems(out: Path, log: str) -> list[str]:
    found: list[str] = []
    report = out / "report"
    text = (report / "report.md").read_text() if (report / "report.md").is_file() else ""
    if not text:
        found.append(f"{report / 'report.md'}: missing or empty")
    for method in ("end-to-end", *HEADS, "majority class"):
        if text and method not in text:
            found.append(f"{report / 'report.md'}: no row for {method!r}")
    for head in HEADS:
        if text and f"| {head} |" not in text:
            found.append(f"{report / 'report.md'}: no row named plainly {head!r} (a doubled name such as "
                         f"'{head} ({head})'?)")
    try:
        results = json.loads((report / "results.json").read_text())
    except (OSError, ValueError) as exc:
        found.append(f"{report / 'results.json'}: not readable JSON ({exc})")
    else:
        if results.get("mcnemar_reference", {}).get("kind") != "e2e":
            found.append(f"{report / 'results.json'}: McNemar is not against the run's end-to-end model "
                         f"({results.get('mcnemar_reference')})")
        found += _references(results, text, log, report)
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
