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
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the project's packages import through its editable install
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


def measure(unique: int, n_rows: int) -> dict:
    """Time bare encode() and score (cold) on the same texts, then score n_rows cold and warm."""
    import shutil

    import numpy as np
    from sentence_transformers import SentenceTransformer

    from embed.encoder import Embedder
    from embed.models import resolve_model
    from heads import get_head
    from scoring.score import ScoreConfig, score_files

    texts = gop_texts(unique)
    tmp = Path(tempfile.mkdtemp(prefix="score-bench-"))
    try:
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
        big_csv = write_csv(tmp / "big.csv", texts, n_rows)
        runs = [("score, cold cache", unique_csv, "cold-a"), (f"score {n_rows:,} rows, cold cache", big_csv, "cold-b"),
                (f"score {n_rows:,} rows, warm cache", big_csv, "cold-b")]
        for label, source, cache in runs:
            embedder = Embedder("minilm", cache_dir=tmp / cache)
            out = tmp / f"{label.replace(' ', '_').replace(',', '')}.csv"
            summary = score_files([source], out, embedder, tmp / "head", ScoreConfig())
            rows.append((label, summary.rows_read, summary.seconds, summary.rows_read / summary.seconds))
        return {"texts": len(texts), "encode_s": encode_s, "runs": rows}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False, unique: int | None = None, n_rows: int | None = None):
    from common import Table, ratio

    unique = unique or (500 if quick else 2_000)
    n_rows = n_rows or (20_000 if quick else 100_000)
    m = measure(unique, n_rows)
    encode_s, n = m["encode_s"], m["texts"]
    table = Table(
        title=f"`score` against bare `encode()` on {n:,} GOP tweets, and {n_rows:,} rows cold and warm",
        compared=(f"MiniLM, a logistic head. `SentenceTransformer.encode(texts, batch_size=64)` and the cold `score` "
                  f"of a CSV of the same {n:,} distinct GOP tweets, back to back in one process; then a "
                  f"{n_rows:,}-row CSV that repeats them, with an empty cache (cold) and again (warm). Ratio = "
                  "rows/s over `encode()`'s texts/s."),
        columns=["run", "rows", "seconds", "rows/s", "vs encode()"])
    table.add("SentenceTransformer.encode(), batch 64", n, encode_s, n / encode_s, "1.00x")
    for label, rows, seconds, rate in m["runs"]:
        table.add(label, rows, seconds, rate, ratio(rate, n / encode_s))
    overhead = m["runs"][0][2] / encode_s - 1
    table.notes.append(
        f"Overhead of the whole `score` pipeline (read, normalize, hash, cache writes, head, CSV writer) over "
        f"bare `encode()` on the same texts: {overhead:+.1%} (goal: under +10%; negative means `score` was "
        "faster: it sorts by token length, pads per batch, skips the pooling/normalize modules and encodes "
        "each distinct normalized text once).")
    return [table]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unique", type=int, default=None, help="distinct GOP tweets [2000; 500 with --quick]")
    parser.add_argument("--rows", type=int, default=None, help="rows of the big file [100000; 20000 with --quick]")
    parser.add_argument("--quick", action="store_true", help="500 texts, 20,000 rows")
    args = parser.parse_args()
    for table in run(args.quick, args.unique, args.rows):
        print(table.markdown())


if __name__ == "__main__":
    main()
