"""Warm ``score`` at 1,000,000 rows against the code before and a pandas script, side by side.

    python bench/score_warm.py --baseline TREE [--rows 1000000] [--rounds 3] [--cold-texts 10000] [--workdir DIR]

``TREE`` is another checkout (``git worktree add /tmp/before REV``) whose ``cli.py score`` is timed
beside this tree's. Three shapes of ``--rows`` rows (columns ``id,text,lang``), warm cache:

- ``repeated``: drawn from 5,000 distinct synthetic tweets (``bench/score_memory.py``'s), CSV;
- ``distinct``: every row's text distinct (a repeated tweet plus `` #<row>``), CSV; the cache is
  filled first by writing each text's vector straight into the store under MiniLM's fingerprint
  (the vector of the tweet it repeats: encoding 10^6 texts here takes about 50 minutes, and a warm
  run never encodes);
- ``distinct-parquet``: the same rows as Parquet.

Variants: this tree's ``cli.py score``, the baseline's, and ``bench/pandas_score.py`` (``read_csv``, the
rows' vectors from a saved ``.npy``, the same head's ``predict_proba``, ``to_csv``). Each runs as a
whole process under ``/usr/bin/time`` (wall seconds, peak RSS), rounds interleaved in rotating order;
medians are reported. For the two ``score`` runs the summary's own rows/s (after start-up) is
reported as well, and their outputs are compared byte for byte. ``--cold-texts N``: ``cli.py embed``
against ``cli.py score`` on N distinct texts with empty caches, texts/s (the encoder is the cost).
Not part of ``bench/run.py``: tables on stdout, pasted into BENCHMARKS.md's Scoring section.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, Table, cpu_header, log, ratio
from score_memory import prepare, synthetic_texts

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SUMMARY = re.compile(r"([\d,]+) rows/s")


def write_shapes(work: Path, rows: int, texts: list[str], seed: int = 0) -> dict[str, Path]:
    """The three inputs, and ``picks``: which of the distinct texts each row repeats."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    picks = np.array([rng.randrange(len(texts)) for _ in range(rows)], dtype=np.int64)
    ids = pa.array([str(i) for i in range(rows)])
    lang = pa.array(["en"] * rows)
    base = pa.array(texts).take(pa.array(picks))
    repeated = pa.table({"id": ids, "text": base, "lang": lang})
    distinct = pa.table({"id": ids, "text": pa.array([f"{t} #{i}" for i, t in enumerate(base.to_pylist())]),
                         "lang": lang})
    paths = {"repeated": work / "repeated.csv", "distinct": work / "distinct.csv",
             "distinct-parquet": work / "distinct.parquet"}
    options = pcsv.WriteOptions(quoting_style="needed")
    pcsv.write_csv(repeated, paths["repeated"], options)
    pcsv.write_csv(distinct, paths["distinct"], options)
    pq.write_table(distinct, paths["distinct-parquet"])
    np.save(work / "picks.npy", picks)
    return paths


def fill_cache(work: Path, paths: dict[str, Path], texts: list[str]) -> Path:
    """Write every distinct row text's vector (its repeated tweet's) into the cache; the .npy of row vectors."""
    import pyarrow.csv as pcsv

    from cache.store import EmbeddingStore, text_key
    from embed.encoder import Embedder
    from embed.normalize import normalize_tweet

    embedder = Embedder("minilm", cache_dir=work / "cache")
    base, _ = embedder.embed(texts)  # warm since prepare()
    encoder = embedder.load()
    picks = np.load(work / "picks.npy")
    distinct = pcsv.read_csv(paths["distinct"]).column("text").to_pylist()
    store = EmbeddingStore(work / "cache", encoder.fingerprint, encoder.dim, encoder.description)
    step = 100_000
    for start in range(0, len(distinct), step):
        keys = [text_key(encoder.fingerprint, normalize_tweet(t)) for t in distinct[start:start + step]]
        store.put_many(keys, base[picks[start:start + step]])
        log(f"cache: {start + len(keys):,} of {len(distinct):,} distinct texts written")
    store.close()
    vectors = work / "vectors.npy"
    np.save(vectors, base[picks])  # row i's vector: the pandas script's input
    return vectors


def timed(command: list[str], cwd: Path) -> dict:
    """Run ``command`` under /usr/bin/time: wall seconds, peak RSS MiB, and score's own rows/s if printed."""
    done = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *command], cwd=cwd, env=ENV, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    wall, rss = done.stderr.strip().splitlines()[-1].split()[1:3]
    found = SUMMARY.findall(done.stdout + done.stderr)
    return {"wall": float(wall), "rss": int(rss) / 1024,
            "rows_per_s": float(found[-1].replace(",", "")) if found else None}


def clean(output: Path) -> None:
    for path in output.parent.glob(output.name + "*"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    rejects = output.with_name(output.name.split(".")[0] + ".rejects.csv")
    rejects.unlink(missing_ok=True)


def run(args) -> list[Table]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tweetheads-score-warm-"))
    work.mkdir(parents=True, exist_ok=True)
    head = prepare(work, 5000, 0, "minilm")
    texts = [t for t, _ in synthetic_texts(5000, 0)]
    paths = write_shapes(work, args.rows, texts)
    vectors = fill_cache(work, paths, texts)
    python = sys.executable
    trees = {"this tree": REPO, "before": Path(args.baseline).resolve()}
    table = Table(
        title=f"Warm `score` of {args.rows:,} rows: this tree, the code before, a pandas script",
        compared=(f"{cpu_header()} MiniLM (fp32 vectors from the cache) and a logistic head, CSV output. "
                  "Whole process under `/usr/bin/time` (wall, peak RSS), medians of "
                  f"{args.rounds} interleaved rounds; `score rows/s` is the summary line's (after start-up). "
                  "The pandas script reads the rows' vectors from a saved `.npy` by row (no normalization, "
                  "hashing or cache look-up, no checks, no resume) and applies the same head."),
        columns=["shape", "input MiB", "variant", "wall s", "rows/s (whole process)", "score rows/s",
                 "vs before", "vs pandas", "peak RSS MiB"])
    for shape, source in paths.items():
        outputs = {name: work / "out" / shape / name.replace(" ", "-") / "scored.csv" for name in trees}
        outputs["pandas"] = work / "out" / shape / "pandas" / "scored.csv"
        runs: dict[str, list[dict]] = {name: [] for name in outputs}
        for r in range(args.rounds):
            names = list(outputs)
            for name in names[r % 3:] + names[:r % 3]:
                output = outputs[name]
                output.parent.mkdir(parents=True, exist_ok=True)
                clean(output)
                if name == "pandas":
                    command = [python, str(REPO / "bench" / "pandas_score.py"), str(source), str(vectors),
                               str(head), str(output)]
                    cwd = REPO
                else:
                    command = [python, "cli.py", "score", str(source), "-o", str(output), "--model", "minilm",
                               "--head", str(head), "--cache-dir", str(work / "cache")]
                    cwd = trees[name]
                runs[name].append(timed(command, cwd))
                log(f"{shape} round {r + 1} {name}: {runs[name][-1]}")
        same = outputs["this tree"].read_bytes() == outputs["before"].read_bytes()
        medians = {name: {key: statistics.median(x[key] for x in found) if found[0][key] is not None else None
                          for key in found[0]} for name, found in runs.items()}
        mib = source.stat().st_size / 2**20
        for name, m in medians.items():
            table.add(shape, mib, name, m["wall"], args.rows / m["wall"], m["rows_per_s"],
                      ratio(medians["before"]["wall"], m["wall"]), ratio(medians["pandas"]["wall"], m["wall"]),
                      m["rss"])
        table.notes.append(f"{shape}: this tree's output is {'byte for byte' if same else 'NOT'} the code "
                           "before's output.")
    tables = [table]
    if args.cold_texts:
        tables.append(cold(work, texts, args.cold_texts, args.rounds))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return tables


def cold(work: Path, texts: list[str], n: int, rounds: int) -> Table:
    """``cli.py embed`` against ``cli.py score`` on ``n`` distinct texts, each with an empty cache."""
    import csv

    source = work / f"cold-{n}.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(n):
            writer.writerow([i, f"{texts[i % len(texts)]} cold {i}"])
    found: dict[str, list[float]] = {"embed": [], "score": []}
    for r in range(rounds):
        for name in (["embed", "score"] if r % 2 == 0 else ["score", "embed"]):
            cache = work / f"cold-cache-{name}-{r}"
            command = [sys.executable, "cli.py", name, str(source), "--model", "minilm", "--cache-dir", str(cache)]
            if name == "score":
                command += ["-o", str(work / f"cold-{r}.csv"), "--head", str(work / "head")]
            found[name].append(timed(command, REPO)["wall"])
            shutil.rmtree(cache, ignore_errors=True)
            log(f"cold round {r + 1} {name}: {found[name][-1]:.1f} s")
    table = Table(title=f"Cold `score` against `embed`, {n:,} distinct texts, empty caches",
                  compared=f"{cpu_header()} Whole process, medians of {rounds} rounds; the encoder is the cost.",
                  columns=["command", "wall s", "texts/s", "vs embed"])
    base = statistics.median(found["embed"])
    for name, walls in found.items():
        table.add(f"`cli.py {name}`", statistics.median(walls), n / statistics.median(walls),
                  ratio(base, statistics.median(walls)))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="another checkout's folder (git worktree add DIR REV)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-texts", type=int, default=0, help="also time cold score vs embed on N texts")
    parser.add_argument("--workdir", help="keep everything here (default: a temporary folder, deleted)")
    args = parser.parse_args()
    started = time.perf_counter()
    for table in run(args):
        print(table.markdown())
    log(f"done in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
