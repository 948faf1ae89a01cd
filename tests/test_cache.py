"""The embedding store: content keys, round trips, atomic commits under kill -9, concurrent writers, damage."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from cache import CacheError, EmbeddingStore, NullStore, clear_store, list_stores, text_key

REPO = Path(__file__).resolve().parents[1]
DIM = 16


def vector_for(text: str) -> np.ndarray:
    """A deterministic vector per text, so any stored row can be checked against a fresh computation."""
    seed = int.from_bytes(text_key("check", text)[:4], "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def test_key_depends_on_model_and_text():
    assert text_key("model-a", "hello") == text_key("model-a", "hello")
    assert text_key("model-a", "hello") != text_key("model-b", "hello")
    assert text_key("model-a", "hello") != text_key("model-a", "hello!")
    assert len(text_key("m", "x")) == 16


def test_round_trip_dedup_and_reopen(tmp_path):
    store = EmbeddingStore(tmp_path, "f" * 64, DIM, {"model": "toy"})
    texts = [f"t{i}" for i in range(100)]
    keys = [text_key(store.fingerprint, t) for t in texts]
    vectors = np.stack([vector_for(t) for t in texts])
    assert store.put_many(keys, vectors) == 100
    assert store.put_many(keys[:10], vectors[:10]) == 0  # already there: stored once
    store.close()
    again = EmbeddingStore(tmp_path, "f" * 64, DIM)
    found, got = again.get_many(keys[::-1] + [text_key(again.fingerprint, "new")])
    assert found.tolist() == [True] * 100 + [False]
    np.testing.assert_array_equal(got[:100], vectors[::-1])
    assert len(again) == 100
    info = list_stores(tmp_path)
    assert [(i.count, i.description["model"]) for i in info] == [(100, "toy")]
    assert clear_store(tmp_path, "fff") and not list_stores(tmp_path)
    with pytest.raises(CacheError, match="no cache store"):
        clear_store(tmp_path, "fff")


def test_cache_switched_off_stores_nothing_and_encodes_every_time(tmp_path, minilm_path, monkeypatch):
    from embed.encoder import Embedder

    monkeypatch.setenv("TWEETHEADS_CACHE_DIR", str(tmp_path / "default-cache"))
    texts = ["first tweet", "second tweet", "first tweet"]
    embedder = Embedder("minilm", cache_dir=None)
    once, first = embedder.embed(texts)
    twice, second = embedder.embed(texts)
    assert (first.hits, first.encoded) == (second.hits, second.encoded) == (0, 2)  # duplicates still encoded once
    np.testing.assert_array_equal(once, twice)
    assert isinstance(embedder.open_store(), NullStore) and not (tmp_path / "default-cache").exists()
    assert not any(tmp_path.rglob("index.sqlite"))


def test_wrong_shape_and_dim_mismatch_are_refused(tmp_path):
    store = EmbeddingStore(tmp_path, "a" * 64, DIM)
    with pytest.raises(CacheError, match="expected 2 vectors of dim 16"):
        store.put_many([b"1", b"2"], np.zeros((2, 8), np.float32))
    store.close()
    with pytest.raises(CacheError, match="cache clear"):
        EmbeddingStore(tmp_path, "a" * 64, 32)


def _closed_store(root: Path, fingerprint: str, n: int) -> tuple[list[str], list[bytes], Path]:
    """Texts t0..t{n-1} written with their ``vector_for`` rows; returns texts, keys and the shard file."""
    store = EmbeddingStore(root, fingerprint, DIM)
    texts = [f"t{i}" for i in range(n)]
    keys = [text_key(store.fingerprint, t) for t in texts]
    store.put_many(keys, np.stack([vector_for(t) for t in texts]))
    store.close()
    return texts, keys, next((root / fingerprint[:20] / "shards").glob("*.f32"))


def test_damaged_rows_are_dropped_and_reported(tmp_path):
    texts, keys, shard = _closed_store(tmp_path, "d" * 64, 20)
    data = bytearray(shard.read_bytes())
    data[5 * DIM * 4 + 3] ^= 0xFF  # flip a byte in row 5
    shard.write_bytes(bytes(data[: 18 * DIM * 4]))  # and lose the last two rows
    again = EmbeddingStore(tmp_path, "d" * 64, DIM)
    found, got = again.get_many(keys)
    assert found.sum() == 17 and not found[5] and not found[18] and not found[19]
    assert again.dropped == 3 and len(again) == 17  # damaged entries left the index: they re-encode
    for i in np.flatnonzero(found):
        np.testing.assert_array_equal(got[i], vector_for(texts[i]))


@pytest.mark.parametrize("asked", ["few", "most"])
def test_both_index_lookups_agree_on_hits_misses_repeats_and_damage(tmp_path, asked):
    """A few keys go through ``key IN (...)``; most of the store goes through one index scan."""
    texts, keys, shard = _closed_store(tmp_path, "e" * 64, 60)
    data = bytearray(shard.read_bytes())
    data[7 * DIM * 4] ^= 0x01  # one flipped bit in row 7
    shard.write_bytes(bytes(data))
    picked = [3, 7, 11] if asked == "few" else list(range(50))
    missing = text_key("e" * 64, "never stored")
    query = [keys[i] for i in picked] + [keys[3], missing, keys[7]]  # a repeat, a miss, a damaged repeat
    again = EmbeddingStore(tmp_path, "e" * 64, DIM)
    found, got = again.get_many(query)
    expect_found = [i != 7 for i in picked] + [True, False, False]
    assert found.tolist() == expect_found
    for j, ok in enumerate(expect_found):
        if ok:
            source = picked[j] if j < len(picked) else 3
            np.testing.assert_array_equal(got[j], vector_for(texts[source]))
        else:
            assert not got[j].any()
    assert again.dropped == 1 and len(again) == 59


def test_len_stays_exact_across_own_and_other_writers(tmp_path):
    """``len`` (and get_many's choice of lookup) counts once, then follows this object's writes and
    recounts when another connection has committed."""
    a = EmbeddingStore(tmp_path, "c" * 64, DIM)
    b = EmbeddingStore(tmp_path, "c" * 64, DIM)
    texts = [f"n{i}" for i in range(30)]
    keys = [text_key(a.fingerprint, t) for t in texts]
    vectors = np.stack([vector_for(t) for t in texts])
    assert len(a) == 0
    assert a.put_many(keys[:10], vectors[:10]) == 10 and len(a) == 10
    assert a.put_many(keys[:12], vectors[:12]) == 2 and len(a) == 12  # only the new rows count
    assert b.put_many(keys[5:25], vectors[5:25]) == 13
    assert len(a) == 25 and len(b) == 25
    found, _ = a.get_many(keys)
    assert found.sum() == 25
    a.close(), b.close()


def test_failing_writer_keeps_earlier_vectors(tmp_path, monkeypatch):
    store = EmbeddingStore(tmp_path, "e" * 64, DIM)
    first = [text_key(store.fingerprint, "a")]
    store.put_many(first, vector_for("a")[None])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(CacheError, match="No space left on device.*committed earlier are kept"):
        store.put_many([text_key(store.fingerprint, "b")], vector_for("b")[None])
    monkeypatch.undo()
    found, got = store.get_many(first + [text_key(store.fingerprint, "b")])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(got[0], vector_for("a"))


WRITER = textwrap.dedent("""
    import sys, numpy as np
    sys.path.insert(0, {repo!r})
    from cache import EmbeddingStore, text_key
    from tests.test_cache import vector_for, DIM
    root, start, count, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    store = EmbeddingStore(root, "k" * 64, DIM)
    for lo in range(start, start + count, batch):
        texts = [f"text-{{i}}" for i in range(lo, min(lo + batch, start + count))]
        store.put_many([text_key(store.fingerprint, t) for t in texts], np.stack([vector_for(t) for t in texts]))
        print(lo, flush=True)
""")


def _writer(tmp_path, start, count, batch):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(repo=str(REPO)))
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(start), str(count), str(batch)],
                            stdout=subprocess.PIPE, cwd=REPO)


def _check_store(root: Path, upto: int) -> int:
    store = EmbeddingStore(root, "k" * 64, DIM)
    texts = [f"text-{i}" for i in range(upto)]
    found, got = store.get_many([text_key(store.fingerprint, t) for t in texts])
    for i in np.flatnonzero(found):
        np.testing.assert_allclose(got[i], vector_for(texts[i]), atol=1e-6)
    assert store.dropped == 0
    count = len(store)
    store.close()
    return count


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_mid_write_leaves_a_readable_store(tmp_path, seed):
    rng = np.random.default_rng(seed)
    proc = _writer(tmp_path, 0, 200_000, 500)
    for _ in range(int(rng.integers(2, 8))):  # let a few batches commit, then kill at a random moment
        proc.stdout.readline()
    time.sleep(float(rng.uniform(0, 0.05)))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = _check_store(tmp_path / "store", 200_000)
    assert committed >= 1000  # every batch that printed was committed and is readable
    # a resumed writer finishes the job; the store holds each text once
    rerun = _writer(tmp_path, 0, 6000, 500)
    rerun.communicate()
    assert _check_store(tmp_path / "store", 6000) >= 6000


def test_switching_a_busy_index_to_wal_waits_for_the_other_connection(tmp_path):
    """Several processes opening a new store at once: switching the file to WAL needs an exclusive lock, and
    SQLite can answer "database is locked" instead of waiting; the store retries until the other connection
    lets go (here after 0.5 s, with SQLite's own wait cut to 0.05 s), and gives up after its wait."""
    import sqlite3
    import threading

    from cache.store import _use_wal

    def held(path):
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("CREATE TABLE t (x)")
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM t").fetchall()  # a read transaction: a shared lock on the rollback journal
        return holder

    holder = held(tmp_path / "a.sqlite")
    timer = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    timer.start()
    db = sqlite3.connect(tmp_path / "a.sqlite", timeout=0.05, isolation_level=None)
    _use_wal(db, wait=30)
    timer.join()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    _use_wal(db, wait=0)  # already WAL: nothing to switch, no lock needed
    held_on = held(tmp_path / "b.sqlite")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _use_wal(sqlite3.connect(tmp_path / "b.sqlite", timeout=0.05, isolation_level=None), wait=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    held_on.close()


def test_concurrent_writers_with_overlapping_texts(tmp_path):
    procs = [_writer(tmp_path, start, 3000, 250) for start in (0, 1000, 2000, 0)]
    for proc in procs:
        proc.communicate()
        assert proc.returncode == 0
    assert _check_store(tmp_path / "store", 5000) == 5000
