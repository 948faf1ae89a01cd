"""Cross-domain: heads trained on one tweet set, scored on their own eval set and on the other one.

One command (offline; with the default cache already filled by ``bench/calibration.py`` for these
exact texts it encodes almost nothing and takes a few minutes on 2 cores, mostly fitting)::

    python bench/cross_domain.py [--quick] [--out bench/results/cross-domain.json]

Data, as ``bench/calibration.py`` reads it (its ``data_dir``, ``gop``, ``tse``): GOP ``Sentiment.csv``
split 80/20 by ``split_file`` (seed 42; label column ``sentiment``); tweet_sentiment_extraction (TSE)
``train.csv``, a stratified 8,000 rows (seed 42), and all of ``test.csv``. Labels map by name,
lower-cased: GOP Negative/Neutral/Positive -> negative/neutral/positive, as TSE spells them (the
classes sort the same either way, so the fitted heads are calibration.py's). ``--quick``: 2,000
training rows per side and a stratified 500 rows of each eval set (seed 42), a smoke test.

Measured, for frozen ``minilm`` (the packaged all-MiniLM-L6-v2, fp32): each head (logistic, LightGBM,
kNN) is fitted once per training side as ``train-head --calibrate temperature`` fits it
(``select_and_fit``: hyperparameters and temperature chosen on the same stratified 10% of the training
rows, then refit on every row) and scores both eval sets, in-domain beside cross-domain: accuracy,
macro-recall (``recall_score(average="macro")``), ECE (15 equal-width bins, ``comparison.probability.ece``)
of the head's own probabilities (``uncalibrated_proba``, i.e. ``--calibrate none``) and of the calibrated
ones (``predict_proba``); temperature leaves every prediction unchanged, so accuracy and recall hold for
both. Per (training side, eval set) the drift check of ``scoring.drift``: ``reference_sample`` of the
training vectors (seed 0, 1,000 rows, as ``train-head`` keeps) against the eval vectors, through
``domain_auc`` with ``DriftConfig()``, and whether it fired; it is the same for every head.

Remaining differences: ``score`` feeds the check a reservoir sample of the scored file; here
``domain_auc`` draws its own 1,000 rows of the eval vectors (the same for a file this size, one seed;
``bench/drift_check.py`` does 5 seeds and the reservoir). The two sides differ in more than topic:
8,000 TSE training rows against 11,096 GOP ones, and other class shares (GOP eval is 62% negative).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

import common
from calibration import HEADS, _sample, data_dir, gop, tse


def main() -> None:
    from sklearn.metrics import recall_score

    from comparison.probability import ece
    from comparison.train_head import select_and_fit
    from embed.encoder import Embedder
    from heads import get_head
    from scoring.drift import DriftConfig, domain_auc, reference_sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 training rows per side, 500 eval rows (smoke)")
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "cross-domain.json")
    args = parser.parse_args()
    train_rows, eval_rows = (2000, 500) if args.quick else (None, None)
    root = data_dir()
    with tempfile.TemporaryDirectory(prefix="tweetheads-cross-") as work:
        gop_train, gop_eval = gop(root, Path(work), train_rows)
    tse_train, tse_test = tse(root, 2000 if args.quick else 8000)
    trains = {"GOP train": gop_train, "TSE train": tse_train}
    evals = {"GOP eval": _sample(*gop_eval, eval_rows), "TSE test": _sample(*tse_test, eval_rows)}
    home = {"GOP train": "GOP eval", "TSE train": "TSE test"}

    embedder = Embedder("minilm", progress=False)
    X, y, encoded = {}, {}, 0
    for name, (texts, labels) in {**trains, **evals}.items():
        X[name], stats = embedder.embed(list(texts))
        y[name] = np.array([str(label).lower() for label in labels])
        encoded += stats.encoded
    print(f"vectors: {sum(len(v) for v in X.values()):,} rows, {encoded:,} encoded (the rest cached)", file=sys.stderr)

    rows = []
    for train in trains:
        reference = reference_sample(X[train], seed=0)
        drift = {scored: domain_auc(reference, X[scored], DriftConfig()) for scored in evals}
        for head_name in HEADS:
            head = select_and_fit(get_head(head_name), X[train], y[train], "train", 42, calibrate="temperature")
            for scored in evals:
                raw, calibrated = head.uncalibrated_proba(X[scored]), head.predict_proba(X[scored])
                predicted = head.classes_[raw.argmax(axis=1)]
                correct = predicted == y[scored]
                rows.append({"train": train, "head": head_name, "eval": scored,
                             "kind": "in-domain" if home[train] == scored else "cross-domain",
                             "rows_train": len(y[train]), "rows_eval": len(y[scored]),
                             "accuracy": float(correct.mean()),
                             "macro_recall": float(recall_score(y[scored], predicted, average="macro")),
                             "same_predictions": bool(np.array_equal(raw.argmax(1), calibrated.argmax(1))),
                             "temperature": head.calibration_.temperature,
                             "ece": (ece(raw, correct), ece(calibrated, correct)),
                             "mean_confidence": (float(raw.max(1).mean()), float(calibrated.max(1).mean())),
                             "drift": drift[scored].as_dict()})
                print(f"{train} {head_name} -> {scored}: acc {rows[-1]['accuracy']:.3f}", file=sys.stderr)

    lines = [common.cpu_header() + " Frozen `minilm` (the packaged all-MiniLM-L6-v2), fp32; heads fitted as "
             "`train-head --calibrate temperature`; labels mapped by name, lower-cased"
             + (" (--quick: not for comparison)." if args.quick else "."), "",
             "| trained on (rows) | head | scored on (rows) | kind | accuracy | macro-recall | T | ECE before | "
             "ECE after | mean top proba before / after | domain AUC | drift fired |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['train']} ({r['rows_train']:,}) | {r['head']} | {r['eval']} ({r['rows_eval']:,}) | "
                     f"{r['kind']} | {r['accuracy']:.3f} | {r['macro_recall']:.3f} | {r['temperature']:.2f} | "
                     f"{r['ece'][0]:.3f} | {r['ece'][1]:.3f} | {r['mean_confidence'][0]:.3f} / "
                     f"{r['mean_confidence'][1]:.3f} | {r['drift']['auc']:.3f} | "
                     f"{'yes' if r['drift']['fired'] else 'no'} |")
    majority = {e: max(zip(*np.unique(y[e], return_counts=True)), key=lambda c: c[1]) for e in evals}
    lines += ["", "Majority class: " + ", ".join(f"{e} {c} {n / len(y[e]):.3f}" for e, (c, n) in majority.items())
              + f". Drift check fires at domain AUC {DriftConfig().auc_threshold:g}."]
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": common.cpu_summary(), "quick": args.quick, "encoded": encoded,
                                    "majority": {e: [str(c), n / len(y[e])] for e, (c, n) in majority.items()},
                                    "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    if not all(r["same_predictions"] for r in rows):
        sys.exit("temperature changed a prediction: see the JSON")


if __name__ == "__main__":
    main()
