"""``tweetheads predict`` on one tweet, whole process, against the script a user would write.

The anchor loads ``SentenceTransformer`` (the same packaged MiniLM) and a scikit-learn
``LogisticRegression`` (coefficients from an ``.npz``, as fitted on the same sample) and predicts one
text: what classifying a tweet costs without this project. Ours runs ``python cli.py predict --model
minilm --head HEAD "text"`` in three states: the OpenVINO export already on disk and the text new
to the cache (the everyday case), the text already cached, and a model's first run (an empty cache
folder: the export is converted inside the command). Every process is timed from outside
(``subprocess``, wall seconds), the variants in rotating order, several rounds; the table gives the
median and the median of the pair-by-pair ratios to the anchor. A second table breaks our warm
start-up into its parts, measured inside one process.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  bench/ is on sys.path: run as `python bench/predict_startup.py` or from bench/run.py
from common import REPO, Table, cpu_header, log, main, minilm_path, temp_dir  # noqa: E402

ANCHOR = """
import sys, numpy as np
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression
model = SentenceTransformer(sys.argv[1], device="cpu")
saved = np.load(sys.argv[2])
head = LogisticRegression()
head.coef_, head.intercept_, head.classes_ = saved["coef"], saved["intercept"], saved["classes"]
print(head.predict(model.encode([sys.argv[3]]))[0])
"""

BREAKDOWN = """
import time, sys
t0 = time.perf_counter()
import cli  # the command line's own imports
t1 = time.perf_counter()
from scoring.predictor import Predictor
p = Predictor.load("minilm", sys.argv[1])
t2 = time.perf_counter()
import sklearn, heads.logistic  # imported by now: their share, measured in a fresh process below
p.predict([sys.argv[2]])
t3 = time.perf_counter()
print({"imports": t1 - t0, "load and check": t2 - t1, "first predict (compile + encode)": t3 - t2})
"""


def _timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]}... failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def _setup(work: Path) -> tuple[Path, Path]:
    """A logistic head on the shipped sample (ours) and the anchor's LogisticRegression on the same rows."""
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    from embed.data import load_texts

    env = _env(work / "cache")
    sample = REPO / "embed" / "samples" / "tweets.csv"
    subprocess.run([sys.executable, "cli.py", "train-head", "--head", "logistic", "--model", "minilm", "--train",
                    str(sample), "--out", str(work / "head")], cwd=REPO, env=env, check=True, capture_output=True)
    table = load_texts(sample, "text", "label")
    vectors = SentenceTransformer(minilm_path(), device="cpu").encode(table.texts)
    head = LogisticRegression(max_iter=1000).fit(vectors, table.labels)
    np.savez(work / "anchor.npz", coef=head.coef_, intercept=head.intercept_, classes=head.classes_)
    return work / "head", work / "anchor.npz"


def _env(cache: Path) -> dict:
    import os

    return {**os.environ, "TWEETHEADS_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run(quick: bool = False) -> list[Table]:
    rounds = 3 if quick else 7
    with temp_dir() as work:
        head, anchor = _setup(work)
        warm = _env(work / "cache")
        cli = [sys.executable, "cli.py", "predict", "--model", "minilm", "--head", str(head)]
        subprocess.run(cli + ["seen before: a cached tweet"], cwd=REPO, env=warm, check=True, capture_output=True)
        counter = iter(range(10**6))
        variants = {
            "anchor: SentenceTransformer + LogisticRegression script": lambda: _timed(
                [sys.executable, "-c", ANCHOR, minilm_path(), str(anchor), f"a new tweet {next(counter)}"]),
            "predict, export on disk, new text": lambda: _timed(cli + [f"a new tweet {next(counter)}"], warm),
            "predict, export on disk, cached text": lambda: _timed(cli + ["seen before: a cached tweet"], warm),
            "predict, model's first run (converts)": lambda: _timed(
                cli + ["a first run"], _env(work / f"cold-{next(counter)}")),
        }
        seconds = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                seconds[name].append(variants[name]())
                log(f"predict_startup round {r + 1}/{rounds} {name}: {seconds[name][-1]:.2f} s")
        anchor_name = names[0]
        table = Table("predict one tweet, whole process", cpu_header() + f" Median of {rounds} runs each, in rotating "
                      "order; ratio: median of the pair-by-pair ratios to the anchor (below 1: faster).",
                      ["variant", "median s", "min s", "max s", "ratio to anchor"])
        for name in names:
            ratios = [a / b for a, b in zip(seconds[name], seconds[anchor_name])]
            table.add(name, statistics.median(seconds[name]), min(seconds[name]), max(seconds[name]),
                      f"{statistics.median(ratios):.2f}x")
        table.notes += [
            "Same packaged MiniLM in both. Remaining differences: the anchor pools by the token mean and normalizes "
            "(the stock sentence-transformers model), ours takes CLS (the card's pooling); the anchor runs torch "
            "fp32, ours OpenVINO at `--precision auto` (fp32 on a CPU without bf16 units); ours also checks the "
            "head's fingerprint and the embedding cache.",
        ]
        parts = json.loads(subprocess.run([sys.executable, "-c", BREAKDOWN, str(head), "another new tweet"], cwd=REPO,
                                          env=warm, capture_output=True, text=True, check=True).stdout
                           .strip().replace("'", '"'))
        sk = _import_seconds("sklearn.base")
        breakdown = Table("where a warm predict's time goes (one process)", "Seconds inside one process; the sklearn "
                          "line is the import of sklearn.base alone in a fresh interpreter.", ["part", "seconds"])
        for part, value in parts.items():
            breakdown.add(part, value)
        breakdown.add("of the imports: scikit-learn (sklearn.base)", sk)
        return [table, breakdown]


def _import_seconds(module: str) -> float:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True)
    last = [line for line in done.stderr.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
    return int(last.split("|")[1]) / 1e6


if __name__ == "__main__":
    main(run)
