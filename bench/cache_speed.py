"""Cache: cold against warm ``Embedder.embed``, and lookups per second from the store itself.

1. ``Embedder("minilm" folder, precision="fp32")`` embeds every GOP tweet (13,871; 2,000 with
   ``--quick``) into an empty temporary cache (cold: normalize, deduplicate, encode, write), then
   the same texts again (warm: every text a hit; best of 3).
2. ``EmbeddingStore.get_many`` straight from the store: the 13,871 tweets' keys (best of 3, with
   the store already open, and once more including opening the store), then 200,000 synthetic
   16-byte keys with random 384-d float32 vectors, written with ``put_many`` in batches of 2,048
   (as ``embed`` commits) and read back in one ``get_many`` call (best of 3). Goal: > 200,000
   vectors/s. The page cache is warm in every read (the shards were just written or read).
"""
from __future__ import annotations

import time

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/cache_speed.py` or from bench/run.py
from common import Table, best_seconds, log, ratio


def bench_embed(tmp, n: int | None) -> tuple[Table, object, list[str]]:
    from embed.encoder import Embedder

    texts = common.gop_tweets(n)[0]
    emb = Embedder(common.minilm_path(), precision="fp32", cache_dir=tmp / "cache")
    emb.encode_new(["warm-up"])  # load weights and tokenizer, hash the weights: untimed
    log(f"cache: cold embed of {len(texts):,} tweets")
    _, cold = emb.embed(texts)
    warm_stats = []
    for _ in range(3):
        warm_stats.append(emb.embed(texts)[1])
    warm = min(warm_stats, key=lambda s: s.seconds)
    table = Table(
        title=f"Cold vs warm `Embedder.embed`, MiniLM fp32, {len(texts):,} GOP tweets",
        compared=("The same texts embedded into an empty temporary cache (cold), then again from it "
                  "(warm, best of 3). Ratio = warm texts/s over cold texts/s."),
        columns=["run", "texts", "unique", "cache hits", "encoded", "seconds", "texts/s", "vs cold"])
    table.add("cold", cold.texts, cold.unique, cold.hits, cold.encoded, cold.seconds, cold.per_second, "1.00x")
    table.add("warm", warm.texts, warm.unique, warm.hits, warm.encoded, warm.seconds, warm.per_second,
              ratio(warm.per_second, cold.per_second))
    table.notes.append("Cold includes tweet normalization, deduplication (retweets), tokenization, "
                       "encoding, and the fsynced shard writes and SQLite commits every 2,048 texts.")
    return table, emb, texts


def bench_store(tmp, emb, texts: list[str], n_synthetic: int) -> Table:
    from cache import EmbeddingStore, text_key
    from embed.normalize import normalize_tweet

    table = Table(
        title="`EmbeddingStore.get_many` lookups per second",
        compared=("Vectors returned per second by `get_many` (SQLite index lookup: `key IN (...)` for "
                  "a few keys, one pass over the index for many; the shard rows through a memory map; CRC32 check "
                  "of every row). Goal: > 200,000 vectors/s."),
        columns=["keys", "dim", "what", "seconds", "vectors/s", "vs goal 200,000/s"])
    enc = emb.load()
    keys = list({text_key(enc.fingerprint, normalize_tweet(t)): None for t in texts})
    store = emb.open_store()
    found, _ = store.get_many(keys)
    if not found.all():
        raise RuntimeError(f"{(~found).sum()} of the tweets' keys are missing from the warm cache")
    secs = best_seconds(lambda: store.get_many(keys), 3)
    store.close()
    table.add(len(keys), enc.dim, "GOP tweets (unique), store open, best of 3", secs, len(keys) / secs,
              ratio(len(keys) / secs, 200_000))

    def open_and_read():
        s = emb.open_store()
        s.get_many(keys)
        s.close()

    secs = best_seconds(open_and_read, 3)
    table.add(len(keys), enc.dim, "GOP tweets (unique), opening the store included, best of 3", secs,
              len(keys) / secs, ratio(len(keys) / secs, 200_000))

    dim = 384
    rng = np.random.default_rng(common.SEED)
    synth_keys = [bytes(k) for k in rng.integers(0, 256, size=(n_synthetic, 16), dtype=np.uint8)]
    vectors = rng.standard_normal((n_synthetic, dim), dtype=np.float32)
    store = EmbeddingStore(tmp / "synthetic", "bench-synthetic-fingerprint", dim, {"what": "benchmark"})
    start = time.perf_counter()
    for s in range(0, n_synthetic, 2048):
        store.put_many(synth_keys[s:s + 2048], vectors[s:s + 2048])
    write = time.perf_counter() - start
    log(f"cache: wrote {n_synthetic:,} synthetic vectors in {write:.1f} s")
    found, back = store.get_many(synth_keys)
    if not (found.all() and np.array_equal(back, vectors)):
        raise RuntimeError("synthetic vectors did not come back unchanged")
    secs = best_seconds(lambda: store.get_many(synth_keys), 3)
    phases = _phases(store, synth_keys)
    chunked = best_seconds(lambda: [store.get_many(synth_keys[s:s + 8192]) for s in range(0, n_synthetic, 8192)], 3)
    store.close()
    table.add(n_synthetic, dim, "synthetic, store open, best of 3", secs, n_synthetic / secs,
              ratio(n_synthetic / secs, 200_000))
    gather = best_seconds(lambda: vectors[np.random.default_rng(0).permutation(n_synthetic)], 3)
    table.add(n_synthetic, dim, "synthetic, 8,192 keys per call, best of 3", chunked, n_synthetic / chunked,
              ratio(n_synthetic / chunked, 200_000))
    table.notes.append(
        "Where one `get_many` of all the synthetic keys spends its time, measured by replaying its steps "
        f"(bench-only, through the store's private fields): the index pass {phases['index']:.2f} s, the "
        f"memory-mapped row gather {phases['gather']:.2f} s, the per-row `zlib.crc32` "
        f"{phases['crc']:.2f} s, of {phases['total']:.2f} s for the real call in the same moment. Writing "
        f"{n_synthetic:,} fresh rows of output memory for the first time took {phases['touch']:.2f} s on its "
        f"own. The other {phases['total'] - phases['index'] - phases['gather'] - phases['crc'] - phases['touch']:.2f} s "
        f"of the real call are outside these replayed steps: its Python passes over the {n_synthetic:,} index "
        f"rows (key to output position, validity, output order) and its allocations. 8,192 keys per call works on "
        f"smaller arrays but looks its keys up with `key IN (...)` (2 to 4 us a key) instead of one pass over "
        f"the index. For scale, "
        f"a NumPy fancy-index gather of the same rows in shuffled order from an in-memory array takes "
        f"{gather:.3f} s ({n_synthetic / gather:,.0f} rows/s).")
    table.notes.append(f"Writing the {n_synthetic:,} synthetic vectors with `put_many` (2,048 per call, each "
                       f"fsynced and committed) took {write:.1f} s: {n_synthetic / write:,.0f} vectors/s.")
    return table


def _phases(store, keys: list[bytes]) -> dict[str, float]:
    """Replay ``EmbeddingStore.get_many``'s steps one at a time and time each (bench-only)."""
    import zlib

    total = best_seconds(lambda: store.get_many(keys), 1)
    position = {key: i for i, key in enumerate(keys)}
    start = time.perf_counter()
    rows = list(store.index_rows(position))
    index = time.perf_counter() - start
    shard = rows[0][1]
    sel = np.asarray([r[2] for r in rows], dtype=np.int64)
    start = time.perf_counter()
    block = store.shard(shard)[sel]
    gather = time.perf_counter() - start
    start = time.perf_counter()
    sums = np.fromiter(map(zlib.crc32, block), np.int64, len(block))
    crc = time.perf_counter() - start
    if not np.array_equal(sums, np.asarray([r[3] for r in rows], dtype=np.int64)):
        raise RuntimeError("rows failed their checksum while profiling")
    start = time.perf_counter()
    fresh = np.ones((len(keys), store.dim), dtype=np.float32)  # first touch of new memory, as `out` is
    touch = time.perf_counter() - start
    del fresh
    return {"total": total, "index": index, "gather": gather, "crc": crc, "touch": touch}


def run(quick: bool = False) -> list[Table]:
    with common.temp_dir() as tmp:
        embed_table, emb, texts = bench_embed(tmp, 2000 if quick else None)
        store_table = bench_store(tmp, emb, texts, 20_000 if quick else 200_000)
    return [embed_table, store_table]


if __name__ == "__main__":
    common.main(run)
