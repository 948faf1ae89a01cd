"""Does the file-level drift check fire across domains and stay quiet within one? And is there a per-row signal?

One command (offline; a few minutes on 2 cores the first time while frozen MiniLM embeds the tweets
into the default cache, which ``bench/calibration.py`` shares)::

    python bench/drift_check.py [--seeds 5] [--out bench/results/drift-check.json]

Data, as ``bench/calibration.py`` reads it: GOP ``Sentiment.csv`` split 80/20 by ``split_file`` (seed
42), tweet_sentiment_extraction ``train.csv`` (a stratified 8,000 rows, seed 42) and ``test.csv``.
Labels map by name (negative/neutral/positive in both, lower-cased).

For each (training side -> scored side) pair, in-domain (GOP -> GOP eval, TSE -> TSE test) and
cross-domain (TSE -> GOP eval, GOP -> TSE test), and each seed: the head's reference is
``reference_sample`` of the training vectors (1,000 rows, as ``train-head`` keeps), the scored side a
``VectorSample`` reservoir of the scored file in 4,096-row chunks (as ``score`` feeds it), and the check
is ``domain_auc`` (5-fold logistic domain classifier). Per row, for a logistic head fitted on the
training side: the AUROC with which the top probability, and the mean cosine to the 10 nearest
training vectors, tell the rows it gets wrong from the rows it gets right.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from calibration import data_dir, gop, tse


def _embed(texts):
    from embed.encoder import Embedder

    vectors, _ = Embedder("minilm", progress=False).embed(list(texts))
    return vectors


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from heads import get_head
    from scoring.drift import DriftConfig, VectorSample, domain_auc, reference_sample

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=common.REPO / "bench" / "results" / "drift-check.json")
    args = parser.parse_args()
    print("drift check: domain AUC in and across domains (frozen MiniLM)\n" + common.cpu_header())
    root = data_dir()
    with tempfile.TemporaryDirectory() as work:
        (gop_train, gop_eval) = gop(root, Path(work), None)
    tse_train, tse_test = tse(root, 8000)
    sides = {"GOP train": gop_train, "GOP eval": gop_eval, "TSE train": tse_train, "TSE test": tse_test}
    started = time.perf_counter()
    X = {name: _embed(texts) for name, (texts, _) in sides.items()}
    y = {name: np.array([str(label).lower() for label in labels]) for name, (_, labels) in sides.items()}
    print(f"embedded {sum(len(v) for v in X.values()):,} tweets in {time.perf_counter() - started:.0f} s")
    pairs = [("GOP train", "GOP eval", "in-domain"), ("TSE train", "TSE test", "in-domain"),
             ("TSE train", "GOP eval", "cross-domain"), ("GOP train", "TSE test", "cross-domain")]
    rows = []
    print("\n| trained on -> scored | kind | domain AUC over seeds (min-max) | fired | head accuracy | errors AUROC: top proba / kNN cosine |")
    print("|---|---|---|---|---|---|")
    for train, scored, kind in pairs:
        aucs = []
        for seed in range(args.seeds):
            config = DriftConfig(seed=seed)
            reference = reference_sample(X[train], seed=seed)
            sample = VectorSample(config.sample, seed=seed)
            for start in range(0, len(X[scored]), 4096):
                sample.add(X[scored][start:start + 4096])
            aucs.append(domain_auc(reference, sample.vectors(), config))
        head = get_head("logistic").fit(X[train], y[train])
        proba = head.predict_proba(X[scored])
        wrong = head.classes_[proba.argmax(1)] != y[scored]
        top = proba.max(1)
        A = X[train] / np.linalg.norm(X[train], axis=1, keepdims=True)
        Q = X[scored] / np.linalg.norm(X[scored], axis=1, keepdims=True)
        knn = np.concatenate([np.sort(Q[i:i + 1024] @ A.T, axis=1)[:, -10:].mean(1) for i in range(0, len(Q), 1024)])
        errors_top = float(roc_auc_score(wrong, -top)) if wrong.any() and not wrong.all() else None
        errors_knn = float(roc_auc_score(wrong, -knn)) if wrong.any() and not wrong.all() else None
        values = [r.auc for r in aucs]
        row = {"train": train, "scored": scored, "kind": kind, "auc": values, "fired": [r.fired for r in aucs],
               "threshold": aucs[0].threshold, "accuracy": float(1 - wrong.mean()),
               "errors_auroc_top_proba": errors_top, "errors_auroc_knn_cosine": errors_knn,
               "rows_train": len(X[train]), "rows_scored": len(X[scored])}
        rows.append(row)
        print(f"| {train} -> {scored} | {kind} | {np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f}) | "
              f"{sum(row['fired'])} of {args.seeds} | {row['accuracy']:.3f} | {errors_top:.3f} / {errors_knn:.3f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": common.cpu_summary(), "seeds": args.seeds, "rows": rows}, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
