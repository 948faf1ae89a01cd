"""Peak memory and speed of ``score`` on 10k, 100k and 1M tweet-like rows, cold and warm cache.

Synthetic tweets are assembled from a small vocabulary with a seeded RNG; each file draws its rows
from the same ``--unique`` distinct texts (5,000 by default), and the cache is warmed with them
first, so the 1M-row run measures reading, cache look-ups, the head and writing rather than the
encoder. A logistic head is trained on the warmed vectors (labels from the sentiment word each
text holds). Each file is then scored in a fresh subprocess that reports its own peak RSS
(``VmHWM``; ``resource.getrusage`` where there is no /proc) and rows/s, as a Markdown table.

    python bench/score_memory.py                          # the table bench/run.py writes (about 6 min)
    python bench/score_memory.py --rows 10000 --rows 100000 --format parquet --workdir /tmp/b   # warm only

``run()`` (what ``bench/run.py`` calls) scores each size twice: cold (an empty cache of its own, so
the file's distinct texts are encoded first) and warm (the warmed cache).

Everything (inputs, cache, head, outputs) lives under ``--workdir``; the user's cache is untouched.
Not a test: the 1M case takes minutes on a small CPU.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SENTIMENT = {"Positive": ["great", "love", "brilliant", "proud", "amazing", "fair", "strong"],
             "Negative": ["awful", "hate", "weak", "boring", "rude", "terrible", "dishonest"],
             "Neutral": ["watching", "noted", "scheduled", "listening", "reading", "waiting", "asked"]}
SUBJECTS = ["the debate", "the moderator", "tonight's panel", "the governor", "my feed", "the senator",
            "this interview", "the first question", "the crowd", "the closing statement", "the live stream"]
FILLERS = ["honestly", "so far", "again", "right now", "lol", "tbh", "at last", "as usual", "for real"]
TAGS = ["#debate", "#GOPDebate", "#politics", "#live", "#news", "#vote2016", ""]


def synthetic_texts(n_unique: int, seed: int) -> list[tuple[str, str]]:
    """``n_unique`` distinct (text, label) pairs."""
    rng = random.Random(seed)
    found: dict[str, str] = {}
    while len(found) < n_unique:
        label = rng.choice(sorted(SENTIMENT))
        words = [rng.choice(SUBJECTS), rng.choice(["is", "was", "looks", "sounds", "feels"]),
                 rng.choice(SENTIMENT[label]), rng.choice(FILLERS), rng.choice(TAGS)]
        if rng.random() < 0.3:
            words.insert(0, f"@user{rng.randrange(1000)}")
        if rng.random() < 0.2:
            words.append(f"https://t.co/{rng.randrange(10**6):06d}")
        found.setdefault(" ".join(w for w in words if w), label)
    return list(found.items())


def write_csv(path: Path, rows: int, texts: list[tuple[str, str]], seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "lang"])
        for i in range(rows):
            writer.writerow([i, texts[rng.randrange(len(texts))][0], "en"])
    return path


def prepare(workdir: Path, n_unique: int, seed: int, model: str) -> Path:
    """Warm the cache with every distinct text and train a head on them; returns the head folder."""
    from embed.encoder import Embedder
    from heads import get_head

    pairs = synthetic_texts(n_unique, seed)
    embedder = Embedder(model, cache_dir=workdir / "cache", progress=True)
    started = time.perf_counter()
    vectors, stats = embedder.embed([text for text, _ in pairs])
    print(f"warmed the cache: {stats.summary()} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    head = get_head("logistic", C=1.0).fit(vectors[:2000], [label for _, label in pairs[:2000]])
    encoder = embedder.load()
    return head.save(workdir / "head", fingerprint=encoder.fingerprint, model=encoder.description)


def child(args: dict) -> None:
    """Score one file in this fresh process; print one JSON line with peak RSS and speed."""
    from embed.encoder import Embedder
    from scoring.score import ScoreConfig, score_files

    embedder = Embedder(args["model"], cache_dir=args["cache"])
    started = time.perf_counter()
    summary = score_files([args["input"]], args["output"], embedder, args["head"], ScoreConfig())
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": summary.rows_read, "scored": summary.rows_scored, "seconds": seconds,
                      "rows_per_s": summary.rows_read / seconds, "peak_rss_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak RSS. Linux: VmHWM, because ru_maxrss keeps the parent's peak across
    fork/vfork + exec, so a child started by a big parent would report the parent's memory."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


def _score_in_child(model: str, cache: Path, head: Path, source: Path, output: Path) -> dict:
    spec = {"model": model, "cache": str(cache), "head": str(head), "input": str(source), "output": str(output)}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)], cwd=REPO,
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False):
    """Cold and warm ``score`` at 10k / 100k / 1M rows (2k / 20k with ``quick``) as a bench Table."""
    import tempfile

    from common import Table, ratio

    sizes = [2_000, 20_000] if quick else [10_000, 100_000, 1_000_000]
    n_unique, seed, model = (1_000 if quick else 5_000), 0, "minilm"
    workdir = Path(tempfile.mkdtemp(prefix="tweetheads-score-bench-"))
    try:
        head = prepare(workdir, n_unique, seed, model)
        texts = synthetic_texts(n_unique, seed)
        table = Table(
            title=f"`score` rows/s and peak RSS, {', '.join(f'{n:,}' for n in sizes)} rows, cold and warm cache",
            compared=(f"Synthetic tweet-like rows drawn from {n_unique:,} distinct texts (GOP-debate vocabulary, "
                      "seeded), MiniLM fp32 and a logistic head, CSV in and out, each run in a fresh subprocess "
                      "(peak RSS = its `VmHWM`). Cold: an empty cache, so every distinct text in the file is "
                      "encoded first; warm: a cache already holding them. Ratio = warm rows/s over cold."),
            columns=["rows", "input MiB", "cache", "texts encoded", "seconds", "rows/s", "warm vs cold",
                     "peak RSS MiB"])
        peaks = {}
        for rows in sizes:
            source = write_csv(workdir / f"tweets-{rows}.csv", rows, texts, seed + rows)
            with open(source, newline="") as handle:
                reader = csv.reader(handle)
                next(reader)  # the header
                distinct = len({row[1] for row in reader})
            cold = _score_in_child(model, workdir / f"cold-{rows}", head, source, workdir / f"cold-{rows}.csv")
            warm = _score_in_child(model, workdir / "cache", head, source, workdir / f"warm-{rows}.csv")
            mib = source.stat().st_size / 2**20
            table.add(rows, mib, "cold", distinct, cold["seconds"], cold["rows_per_s"], "1.00x",
                      cold["peak_rss_mib"])
            table.add(rows, mib, "warm", 0, warm["seconds"], warm["rows_per_s"],
                      ratio(warm["rows_per_s"], cold["rows_per_s"]), warm["peak_rss_mib"])
            peaks[rows] = (cold["peak_rss_mib"], warm["peak_rss_mib"])
        small, big = sizes[0], sizes[-1]
        table.notes.append(
            f"Peak RSS at {big:,} rows against {small:,} rows: cold {peaks[big][0] / peaks[small][0] - 1:+.1%}, "
            f"warm {peaks[big][1] / peaks[small][1] - 1:+.1%} (goal: within 20%): memory does not grow with "
            "the file, which is read and written in chunks.")
        table.notes.append("Texts encoded (cold): the file's distinct texts before tweet normalization "
                           "(which can merge a few more).")
        return [table]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append",
                        help="rows per file (repeat): warm-cache runs only, one Markdown table")
    parser.add_argument("--unique", type=int, default=5000, help="distinct texts [5000]")
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv", help="output format [csv]")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/tweetheads-bench"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="the run() table at small sizes")
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if not args.rows:  # the table bench/run.py writes: 10k / 100k / 1M rows, cold and warm
        for table in run(quick=args.quick):
            print(table.markdown())
        return
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args.workdir.mkdir(parents=True, exist_ok=True)
    head = prepare(args.workdir, args.unique, args.seed, args.model)
    texts = synthetic_texts(args.unique, args.seed)
    lines = ["| rows | input MiB | output | seconds | rows/s | peak RSS MiB |", "|---:|---:|---|---:|---:|---:|"]
    for rows in args.rows:
        source = write_csv(args.workdir / f"tweets-{rows}.csv", rows, texts, args.seed + rows)
        result = _score_in_child(args.model, args.workdir / "cache", head, source,
                                 args.workdir / f"scored-{rows}.{args.format}")
        lines.append(f"| {rows:,} | {source.stat().st_size / 2**20:,.1f} | {args.format} | {result['seconds']:,.1f} "
                     f"| {result['rows_per_s']:,.0f} | {result['peak_rss_mib']:,.0f} |")
        print(lines[-1], file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
