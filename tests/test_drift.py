"""The file-level drift check (scoring/drift.py) on real MiniLM vectors of GOP and tweet_sentiment_extraction."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from embed.errors import DataError
from scoring.drift import DriftConfig, VectorSample, domain_auc, reference_sample

from .conftest import data_dir

ROWS = 600


def _texts(path, n, seed):
    with open(path, newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle) if (row.get("text") or "").strip()]
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), n, replace=False)]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    root = data_dir()
    tse = None if root is None else root / "tweet_sentiment_extraction" / "train.csv"
    if root is None or not tse.is_file():
        pytest.skip("needs ../shared/data/gop-debate and tweet_sentiment_extraction (or TWEETHEADS_DATA_DIR)")
    from embed.encoder import Embedder

    embedder = Embedder("minilm", cache_dir=tmp_path_factory.mktemp("drift-cache"), progress=False)
    gop = embedder.embed(_texts(root / "gop-debate" / "Sentiment.csv", 2 * ROWS, 0))[0]
    return {"gop a": gop[:ROWS], "gop b": gop[ROWS:], "tse": embedder.embed(_texts(tse, ROWS, 0))[0]}


SMALL = DriftConfig(sample=ROWS, min_rows=100)


def test_it_fires_across_domains_both_ways_and_stays_quiet_within_one(vectors):
    for seed in range(3):
        config = DriftConfig(sample=ROWS, min_rows=100, seed=seed)
        across = domain_auc(vectors["tse"], vectors["gop a"], config), domain_auc(vectors["gop a"], vectors["tse"], config)
        within = domain_auc(vectors["gop a"], vectors["gop b"], config)
        assert all(r.fired and r.auc > 0.95 for r in across), across
        assert not within.fired and abs(within.auc - 0.5) < 0.1, within
        assert "differ from the head's training tweets" in across[0].line()
        assert "look like the head's training tweets" in within.line()


def test_too_few_rows_give_no_verdict_and_a_width_mismatch_is_refused(vectors):
    result = domain_auc(vectors["tse"], vectors["gop a"][:50], SMALL)
    assert result.auc is None and not result.fired and "too few rows" in result.line()
    with pytest.raises(DataError, match="same width"):
        domain_auc(vectors["tse"], vectors["gop a"][:, :100], SMALL)


def test_the_reservoir_is_uniform_over_a_stream_of_batches():
    stream = np.arange(10_000, dtype=np.float32)[:, None]
    counts = np.zeros(10, dtype=int)
    for seed in range(200):
        sample = VectorSample(100, seed=seed)
        for start in range(0, len(stream), 4096):
            sample.add(stream[start:start + 4096])
        rows = sample.vectors()[:, 0]
        assert len(rows) == 100 and len(set(rows.tolist())) == 100
        counts += np.bincount((rows // 1000).astype(int), minlength=10)
    # each tenth of the stream holds 10% of the sample (200 x 100 draws: 2,000 expected, sd ~42)
    assert counts.min() > 1800 and counts.max() < 2200, counts


def test_the_reservoir_keeps_algorithm_rs_items_from_lists_and_arrow_arrays_alike():
    import pyarrow as pa

    from scoring.drift import Reservoir

    texts = [f"tweet {i}" for i in range(10_000)]
    rng = np.random.default_rng(7)  # algorithm R one item at a time, drawing as Reservoir does per batch
    serial: list[str] = []
    for start in range(0, len(texts), 4096):
        batch = texts[start:start + 4096]
        free = min(max(100 - len(serial), 0), len(batch))
        serial.extend(batch[:free])
        draws = rng.random(len(batch) - free)
        for offset, (item, u) in enumerate(zip(batch[free:], draws)):
            slot = int(u * (start + free + offset + 1))
            if slot < 100:
                serial[slot] = item
    listed, arrow = Reservoir(100, seed=7), Reservoir(100, seed=7)
    for start in range(0, len(texts), 4096):
        listed.add(texts[start:start + 4096])
        arrow.add(pa.array(texts[start:start + 4096]))
    assert listed.kept == serial and arrow.kept == serial and listed.seen == arrow.seen == 10_000


def test_the_ray_engines_keyed_sample_is_uniform_and_the_same_in_any_chunk_order():
    from scoring.drift import KeyedSample, keyed_part

    stream = np.arange(20_000, dtype=np.float32)[:, None]  # row i's vector is [i]: exact in float16 up to 2048
    chunks = [(f, c, stream[start:start + 500]) for f, start0 in ((0, 0), (1, 10_000))
              for c, start in enumerate(range(start0, start0 + 10_000, 500))]
    parts = [(f, c, keyed_part(X, f, c, size=100)) for f, c, X in chunks]
    one, other = KeyedSample(100), KeyedSample(100)
    for f, c, part in parts:
        one.add(f, c, part)
    for i in np.random.default_rng(0).permutation(len(chunks)):  # scored again (a retry), finishing in another order
        f, c, X = chunks[i]
        other.add(f, c, keyed_part(X, f, c, size=100))
    assert np.array_equal(one.vectors(), other.vectors()) and one.vectors().shape == (100, 1)
    counts, inside = np.zeros(10, dtype=int), np.zeros(5, dtype=int)
    for seed in range(100):
        sample = KeyedSample(100)
        for f, c, X in chunks:
            sample.add(f, c, keyed_part(X, f, c, size=100, seed=seed))
        where = sample.where[:, 0] * 10_000 + sample.where[:, 1] * 500 + sample.where[:, 2]
        assert len(set(where.tolist())) == 100
        counts += np.bincount(where // 2000, minlength=10)
        inside += np.bincount(sample.where[:, 2] // 100, minlength=5)  # where in its chunk
    assert counts.min() > 850 and counts.max() < 1150, counts  # 1,000 expected per tenth, sd ~30
    assert inside.min() > 1800 and inside.max() < 2200, inside  # 2,000 expected per fifth of a chunk, sd ~40
    small = KeyedSample(100)  # fewer rows than the sample: all of them, in input order
    for c in (1, 0):
        small.add(0, c, keyed_part(stream[c * 30:(c + 1) * 30], 0, c, size=100))
    assert small.vectors()[:, 0].tolist() == list(range(60))


def test_a_reference_is_a_float16_subset_of_the_training_rows():
    X = np.random.default_rng(0).normal(size=(5000, 8)).astype(np.float32)
    ref = reference_sample(X, size=1000, seed=3)
    assert ref.dtype == np.float16 and ref.shape == (1000, 8)
    assert np.array_equal(reference_sample(X, 1000, seed=3), ref)
    assert reference_sample(X[:10], 1000).shape == (10, 8)


def _write(path, texts, labels):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = data_dir()
    if root is None or not (root / "tweet_sentiment_extraction" / "test.csv").is_file():
        pytest.skip("needs ../shared/data/gop-debate and tweet_sentiment_extraction (or TWEETHEADS_DATA_DIR)")
    folder = tmp_path_factory.mktemp("drift-files")
    with open(root / "gop-debate" / "Sentiment.csv", newline="", encoding="utf-8") as handle:
        gop = [(r["text"], r["sentiment"]) for r in csv.DictReader(handle)]
    with open(root / "tweet_sentiment_extraction" / "test.csv", newline="", encoding="utf-8") as handle:
        tse = [(r["text"], r["sentiment"].capitalize()) for r in csv.DictReader(handle) if r["text"].strip()]
    order = np.random.default_rng(1).permutation(len(gop))
    pick = lambda rows, ids: ([rows[i][0] for i in ids], [rows[i][1] for i in ids])
    return {"train": _write(folder / "train.csv", *pick(gop, order[:800])),
            "gop": _write(folder / "gop.csv", *pick(gop, order[800:1100])),
            "tse": _write(folder / "tse.csv", *pick(tse, range(300))), "cache": folder / "cache"}


def _score(files, name, head, tmp_path, *extra):
    import json

    from .conftest import invoke_cli

    result = invoke_cli("score", files[name], "--model", "minilm", "--head", head, "-o", tmp_path / f"{name}.csv",
                        "--cache-dir", files["cache"], "--json", *extra)
    return json.loads(result.output)


def test_score_says_when_a_file_differs_from_the_heads_training_tweets(files, tmp_path):
    from heads import load_head

    from .conftest import invoke_cli

    head = tmp_path / "head"
    invoke_cli("train-head", "--head", "logistic", "--model", "minilm", "--train", files["train"], "-o", head,
               "--cache-dir", files["cache"], "-q")
    reference = load_head(head).drift_reference_
    assert reference.dtype == np.float16 and reference.shape == (800, 384)
    same, other = _score(files, "gop", head, tmp_path), _score(files, "tse", head, tmp_path)
    assert not same["drift"]["fired"] and same["drift"]["auc"] < 0.65, same["drift"]
    assert other["drift"]["fired"] and other["drift"]["auc"] > 0.95, other["drift"]
    assert other["gold"]["accuracy"] < same["gold"]["accuracy"]  # what the line warns of
    assert "drift" not in _score(files, "tse", head, tmp_path, "--no-drift-check")

    # one changed byte of the reference refuses the head, as any listed file does
    path = head / "drift_reference.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    from heads import HeadError

    with pytest.raises(HeadError, match="drift_reference.npy: sha256"):
        load_head(head)


def test_a_head_without_a_reference_says_the_check_did_not_run(files, tmp_path):
    from .conftest import invoke_cli

    head = tmp_path / "bare"
    invoke_cli("train-head", "--head", "logistic", "--model", "minilm", "--train", files["train"], "-o", head,
               "--cache-dir", files["cache"], "--no-drift-reference", "-q")
    assert not (head / "drift_reference.npy").exists()
    drift = _score(files, "tse", head, tmp_path)["drift"]
    assert drift["auc"] is None and "keeps no drift reference" in drift["skipped"]
