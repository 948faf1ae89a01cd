"""Does temperature calibration help? ECE before and after, for every head, on GOP and tweet_sentiment_extraction.

One command (offline, about 5 minutes on 2 cores the first time, while the frozen MiniLM embeds the
tweets into the default cache; about a minute after that)::

    python bench/calibration.py [--quick] [--tse-train-rows N|all] [--out FILE]

For each data set the heads are fitted exactly as ``train-head --calibrate temperature`` fits them
(``select_and_fit``: hyperparameters and the temperature chosen on the same stratified 10% of the
training rows, the head refit on every row), once; the eval rows are then scored with the head's own
probabilities (``uncalibrated_proba``, what ``--calibrate none`` gives) and with the calibrated ones
(``predict_proba``), so before and after are the same fitted head, like for like. It checks that every
prediction is identical both ways and reports accuracy, ECE (15 equal-width bins of the top-class
probability), log-loss and multi-class Brier before and after, with the fitted temperature.

Data: GOP ``Sentiment.csv`` split 80/20 by the project's own ``split_file`` (seed 42; label column
``sentiment``); tweet_sentiment_extraction ``train.csv`` (the one empty text dropped; by default a
stratified sample of 8,000 rows, seed 42, to keep the run short on 2 cores; ``--tse-train-rows all``
for all 27,480) and its ``test.csv`` (3,534 rows). Both are read from ``$TWEETHEADS_DATA_DIR`` else
``../shared/data``. ``--quick``: 2,000 training rows of each, a smoke test.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HEADS = ("logistic", "lightgbm", "knn")


def data_dir() -> Path:
    """``$TWEETHEADS_DATA_DIR`` else ``../shared/data`` beside the repository."""
    env = os.environ.get("TWEETHEADS_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (root / "gop-debate" / "Sentiment.csv").exists():
        sys.exit(f"expected the GOP tweets at {root / 'gop-debate' / 'Sentiment.csv'}; set TWEETHEADS_DATA_DIR")
    return root


def gop(root: Path, work: Path, train_rows: int | None):
    """GOP train and eval (texts, labels), split 80/20 with seed 42 by ``embed.split.split_file``."""
    from embed.data import load_texts
    from embed.split import SplitConfig, split_file

    result = split_file(root / "gop-debate" / "Sentiment.csv", work / "gop", SplitConfig(eval_fraction=0.2, seed=42))
    train = load_texts(result.train_path, "text", "sentiment")
    test = load_texts(result.eval_path, "text", "sentiment")
    return _sample(train.texts, train.labels, train_rows), (test.texts, test.labels)


def tse(root: Path, train_rows: int | None):
    """tweet_sentiment_extraction train (empty texts dropped, optionally a stratified sample) and test."""
    import pyarrow.csv as pacsv

    def read(name):
        table = pacsv.read_csv(root / "tweet_sentiment_extraction" / name).to_pydict()
        rows = [(t, s) for t, s in zip(table["text"], table["sentiment"]) if isinstance(t, str) and t.strip()]
        return [t for t, _ in rows], [s for _, s in rows]

    return _sample(*read("train.csv"), train_rows), read("test.csv")


def _sample(texts, labels, rows):
    if rows is None or rows >= len(texts):
        return texts, labels
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(texts)), train_size=rows, stratify=labels, random_state=42)
    keep = np.sort(keep)
    return [texts[i] for i in keep], [labels[i] for i in keep]


def measure(name: str, train, test, embedder) -> list[dict]:
    """One row per head: before/after figures on the eval rows, and the fitted temperature."""
    from comparison.probability import brier, ece, log_loss
    from comparison.train_head import select_and_fit
    from heads import get_head

    X, _ = embedder.embed(train[0])
    X_eval, _ = embedder.embed(test[0])
    y, y_eval = np.asarray(train[1]), np.asarray(test[1])
    rows = []
    for head_name in HEADS:
        head = select_and_fit(get_head(head_name), X, y, "train", 42, calibrate="temperature")
        classes = [str(c) for c in head.classes_]
        raw, calibrated = head.uncalibrated_proba(X_eval), head.predict_proba(X_eval)
        same = bool(np.array_equal(raw.argmax(axis=1), calibrated.argmax(axis=1)))
        correct = head.classes_[raw.argmax(axis=1)] == y_eval
        t = head.calibration_
        rows.append({"data": name, "head": head_name, "train": len(y), "eval": len(y_eval),
                     "accuracy": float(correct.mean()), "same_predictions": same,
                     "temperature": t.temperature, "smoothing": t.smoothing, "holdout": t.rows,
                     "ece": (ece(raw, correct), ece(calibrated, correct)),
                     "log_loss": (log_loss(raw, y_eval, classes), log_loss(calibrated, y_eval, classes)),
                     "brier": (brier(raw, y_eval, classes), brier(calibrated, y_eval, classes))})
        print(f"{name} {head_name}: ECE {rows[-1]['ece'][0]:.4f} -> {rows[-1]['ece'][1]:.4f}", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    """The Markdown table, with the CPU it ran on."""
    from common import cpu_header  # bench/ is on sys.path when run as python bench/calibration.py

    lines = [cpu_header() + " Frozen `minilm` (CLS pooling, the packaged all-MiniLM-L6-v2), fp32 torch.", "",
             "| data (train / eval rows) | head | accuracy (both) | same predictions | T (smoothing) | "
             "ECE before | ECE after | log-loss before | after | Brier before | after |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['data']} ({r['train']:,} / {r['eval']:,}) | {r['head']} | {r['accuracy']:.4f} | "
                     f"{'yes' if r['same_predictions'] else 'NO'} | {r['temperature']:.3f} ({r['smoothing']:g}) | "
                     f"{r['ece'][0]:.4f} | {r['ece'][1]:.4f} | {r['log_loss'][0]:.4f} | {r['log_loss'][1]:.4f} | "
                     f"{r['brier'][0]:.4f} | {r['brier'][1]:.4f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 training rows of each data set (a smoke test)")
    parser.add_argument("--tse-train-rows", default="8000", help="tweet_sentiment_extraction training rows, or all")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    from embed.encoder import Embedder

    root = data_dir()
    tse_rows = None if args.tse_train_rows == "all" else int(args.tse_train_rows)
    gop_rows = 2000 if args.quick else None
    tse_rows = 2000 if args.quick else tse_rows
    embedder = Embedder("minilm")
    with tempfile.TemporaryDirectory(prefix="tweetheads-calibration-") as work:
        rows = measure("GOP", *gop(root, Path(work), gop_rows), embedder)
    rows += measure("tweet_sentiment_extraction", *tse(root, tse_rows), embedder)
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    if not all(r["same_predictions"] for r in rows):
        sys.exit("temperature changed a prediction: see the table")


if __name__ == "__main__":
    main()
