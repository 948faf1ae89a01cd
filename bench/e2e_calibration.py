"""Is a fine-tuned run's end-to-end model calibrated in-domain, and does a temperature fix it?

One command (offline; scores the eval file with the run's own classifier, about a minute on 2 cores)::

    python bench/e2e_calibration.py RUN_DIR EVAL.csv [--label-col sentiment] [--out FILE]

The run's end-to-end classifier (``Predictor.load(RUN_DIR, "e2e")``) scores every eval row once. A
run keeps no held-out rows of its training file (it trained on all of them), so the temperature
is **cross-fitted on the eval file**: the rows are split in two stratified halves (seed 42), a
temperature (``heads.calibration.fit_temperature``, the heads' own fit: log-loss, with its
smoothing grid) is fitted on one half and applied to the other, and the other way round; "after"
is the ECE of those out-of-fold probabilities, so no row is calibrated by a T fitted on itself.
ECE: 15 equal-width bins of the top-class probability (``comparison.probability.ece``). It checks
that every prediction is the same before and after (temperature keeps the argmax).
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("eval", type=Path)
    parser.add_argument("--label-col", default="sentiment")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from sklearn.model_selection import StratifiedKFold

    from comparison.probability import ece, log_loss
    from common import cpu_header  # bench/ is on sys.path when run as python bench/e2e_calibration.py
    from embed.data import load_texts
    from heads.calibration import fit_temperature
    from scoring.predictor import Predictor

    rows = load_texts(args.eval, "text", args.label_col)
    predictor = Predictor.load(str(args.run), "e2e")
    classes = [str(c) for c in predictor.classes_]
    proba = predictor.predict_proba(rows.texts)
    y = np.asarray(rows.labels)
    codes = np.array([classes.index(label) for label in y])
    after, temperatures = np.zeros_like(proba), []
    for fit, apply in StratifiedKFold(2, shuffle=True, random_state=42).split(proba, codes):
        calibration = fit_temperature(proba[fit], codes[fit])
        after[apply] = calibration.apply(proba[apply])
        temperatures.append({"temperature": calibration.temperature, "smoothing": calibration.smoothing,
                             "rows": calibration.rows})
    picked, picked_after = proba.argmax(axis=1), after.argmax(axis=1)
    correct = picked == codes
    result = {"header": cpu_header(), "run": str(args.run), "eval": str(args.eval), "rows": len(y),
              "accuracy": float(correct.mean()), "same_predictions": bool((picked == picked_after).all()),
              "mean_top_probability": float(proba.max(axis=1).mean()),
              "ece_before": ece(proba, correct), "ece_after": ece(after, picked_after == codes),
              "log_loss_before": log_loss(proba, y, classes), "log_loss_after": log_loss(after, y, classes),
              "temperatures": temperatures}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
