"""Scoring throughput at 100k rows (cold and warm cache) and the pipeline's overhead over encode().

    python bench/score_overhead.py [--unique 2000] [--rows 100000]

Texts: the first ``--unique`` distinct GOP tweets (read from the shared data folder, never copied
into the repository). Bare ``SentenceTransformer.encode(texts, batch_size=64)`` and ``score`` on a
CSV of exactly those texts, with an empty cache, are timed back to back in one process (MiniLM,
a logistic head fitted beforehand through a separate cache): overhead = score seconds / encode
seconds - 1, so reading, normalization, hashing, cache writes, the head and the CSV writer are all
counted. Then ``--rows`` rows made of those texts repeated, with a cold cache and again warm.
Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def gop_texts(n: int) -> list[str]:
    data = Path(os.environ.get("TWEETHEADS_DATA_DIR", REPO.parent / "shared" / "data"))
    with open(data / "gop-debate" / "Sentiment.csv", newline="", encoding="utf-8") as handle:
        return list(dict.fromkeys(row["text"] for row in csv.DictReader(handle)))[:n]


def write_csv(path: Path, texts: list[str], rows: int) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)]])
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unique", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from embed.encoder import Embedder
    from embed.models import resolve_model
    from heads import get_head
    from scoring.score import ScoreConfig, score_files

    texts = gop_texts(args.unique)
    tmp = Path(tempfile.mkdtemp(prefix="score-bench-"))
    fitter = Embedder("minilm", cache_dir=tmp / "fit-cache")
    X, _ = fitter.embed(texts[:300])
    head = get_head("logistic", C=1.0).fit(X, np.arange(300) % 3)
    enc = fitter.load()
    head.set_model(enc.fingerprint, enc.description).save(tmp / "head")

    model = SentenceTransformer(str(resolve_model("minilm").path))
    model.encode(texts[:64], batch_size=64)  # warm-up: first-call costs out of both timings
    started = time.perf_counter()
    model.encode(texts, batch_size=64)
    encode_s = time.perf_counter() - started

    rows = []
    unique_csv = write_csv(tmp / "unique.csv", texts, len(texts))
    big_csv = write_csv(tmp / "big.csv", texts, args.rows)
    runs = [("score, cold cache", unique_csv, "cold-a"), (f"score {args.rows:,} rows, cold cache", big_csv, "cold-b"),
            (f"score {args.rows:,} rows, warm cache", big_csv, "cold-b")]
    for label, source, cache in runs:
        embedder = Embedder("minilm", cache_dir=tmp / cache)
        out = tmp / f"{label.replace(' ', '_').replace(',', '')}.csv"
        summary = score_files([source], out, embedder, tmp / "head", ScoreConfig())
        rows.append((label, summary.rows_read, summary.seconds, summary.rows_read / summary.seconds))
    score_s = rows[0][2]
    print(f"| run | rows | seconds | rows/s |\n|---|---:|---:|---:|")
    print(f"| SentenceTransformer.encode(), batch 64 | {len(texts):,} | {encode_s:.1f} | {len(texts) / encode_s:,.0f} |")
    for label, n, seconds, rate in rows:
        print(f"| {label} | {n:,} | {seconds:.1f} | {rate:,.0f} |")
    print(f"\noverhead of `score` (cold cache) over bare encode() on the same {len(texts):,} texts: "
          f"{score_s / encode_s - 1:+.1%}")


if __name__ == "__main__":
    main()
