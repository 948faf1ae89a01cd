"""Is a fine-tuned run's end-to-end model calibrated in-domain, and does the run's own temperature fix it?

One command (offline; scores the eval file with each run's own classifier, about a minute a run on 2 cores)::

    python bench/e2e_calibration.py RUN_DIR [RUN_DIR ...] EVAL.csv [--label-col sentiment] [--out FILE]

Each run's end-to-end classifier (``Predictor.load(RUN_DIR, "e2e")``) scores every eval row once.
``finetune`` fitted a temperature on the final model's probabilities of its ``--eval`` file (the
run's ``calibration`` in ``tweetheads_run.json``); when EVAL.csv is that file, applying that T to it
scores the rows it was fitted on ("in-sample", optimistic). So "after" is what ``compare`` reports
there: the temperature **cross-fitted over the eval rows** (``comparison.probability.cross_fitted``:
5 folds, seed 42, each fold calibrated by the T fitted on the other four with the heads' own
``fit_temperature``: log-loss, with its smoothing grid), so no row is calibrated by a T fitted on it.
On another file, "after" is the run's T as it is.

ECE: 15 equal-width bins of the top-class probability (``comparison.probability.ece``). The ECE
change comes with a 95% paired bootstrap interval (1,000 resamples of the rows, seed 42: before
and after on the same resample), so a change inside it is noise. It checks that every prediction
is the same before and after (temperature keeps the argmax).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESAMPLES = 1000


def one_run(run: Path, eval_path: Path, texts: list[str], y: np.ndarray) -> dict:
    """The figures of one run on the eval rows (see the module docstring)."""
    from comparison.probability import FOLDS, cross_fitted, ece, log_loss
    from fileio import sha256_file
    from scoring.predictor import Predictor

    predictor = Predictor.load(str(run), "e2e")
    e2e = predictor.classifier
    classes = [str(c) for c in e2e.classes_]
    X, _ = predictor.embedder.embed(texts)
    proba = np.asarray(e2e.uncalibrated_proba(X), dtype=np.float64)
    codes = np.array([classes.index(label) for label in y])
    entry = e2e.info.get("calibration") or {}
    fit = e2e.calibration_
    same_file = (entry.get("fitted_on") or {}).get("sha256") == sha256_file(eval_path)
    in_sample = proba if fit is None else fit.apply(proba)
    if same_file:
        after, folds = cross_fitted(proba, codes, FOLDS, 42)
    else:
        after, folds = in_sample, []
    picked = proba.argmax(axis=1)
    correct = picked == codes
    rng = np.random.default_rng(42)
    deltas, befores = [], []
    for _ in range(RESAMPLES):
        rows = rng.integers(0, len(y), len(y))
        b = ece(proba[rows], correct[rows])
        befores.append(b)
        deltas.append(ece(after[rows], correct[rows]) - b)
    return {
        "run": str(run), "rows": len(y), "accuracy": float(correct.mean()),
        "run_calibration": entry or None, "eval_is_the_fit_file": same_file,
        "after_is": "cross-fitted, 5 folds" if same_file else "the run's temperature",
        "same_predictions": bool((picked == after.argmax(axis=1)).all() and (picked == in_sample.argmax(axis=1)).all()),
        "mean_top_probability": float(proba.max(axis=1).mean()),
        "mean_top_probability_after": float(after.max(axis=1).mean()),
        "ece_before": ece(proba, correct), "ece_before_ci95": [float(v) for v in np.percentile(befores, [2.5, 97.5])],
        "ece_in_sample": ece(in_sample, correct), "ece_after": ece(after, correct),
        "ece_change_ci95": [float(v) for v in np.percentile(deltas, [2.5, 97.5])],
        "log_loss_before": log_loss(proba, y, classes), "log_loss_in_sample": log_loss(in_sample, y, classes),
        "log_loss_after": log_loss(after, y, classes),
        "fold_temperatures": [[t.temperature, t.smoothing] for t in folds],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("eval", type=Path, metavar="EVAL")
    parser.add_argument("--label-col", default="sentiment")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from common import cpu_header  # bench/ is on sys.path when run as python bench/e2e_calibration.py
    from embed.data import load_texts

    rows = load_texts(args.eval, "text", args.label_col)
    y = np.asarray([str(label) for label in rows.labels])
    result = {"header": cpu_header(), "eval": str(args.eval), "bootstrap_resamples": RESAMPLES,
              "runs": [one_run(run, args.eval, rows.texts, y) for run in args.runs]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
