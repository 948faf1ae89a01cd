"""The kNN head's BLAS search (heads/exact.py) against FAISS's flat search, on real MiniLM vectors and on ties.

"Same up to ties", as checked here. A query has a tie at the k-th place when, in float64 arithmetic
on the stored float32 vectors, its k-th and (k+1)-th largest similarities are less than ``NEAR``
apart (exact duplicates: 0 apart). Then:
- no tie: both searches return the same set of k neighbours, the same prediction, and
  probabilities equal to ``PROBA`` (they differ only by float32 rounding of the similarities: FAISS's
  SIMD kernel and sgemm sum in different orders);
- every query: the k similarities, highest first, agree to ``SIM`` between the two searches, and
  every neighbour clearly above the tie (more than ``NEAR`` above the k-th) is in both;
- a tie: the BLAS search gives the tied places to the lowest training ids (the float64 reference
  says which), whatever the query block size. FAISS's own choice among a tie depends on its scan
  order (seen here: sometimes the highest ids, sometimes neither), so it is not compared.
"""
from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.base import clone

from heads import HeadError, get_head, load_head
from heads import exact
from tests.conftest import SAMPLE, data_dir

NEAR = 1e-5  # a gap smaller than this at the k-th place is a tie (float32 rounding is about 2e-7)
SIM = 1e-6
PROBA = 1e-5  # similarity-weighted votes: the two searches' float32 products differ in the last bits (1.1e-6 seen)


def _normalized(X):
    X = np.asarray(X, dtype=np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _reference(queries, matrix, k):
    """Float64 similarities, whether each query has a tie at the k-th place, and the lowest-ids rule's ids."""
    S = _normalized(queries).astype(np.float64) @ _normalized(matrix).astype(np.float64).T
    ordered = -np.sort(-S, axis=1)
    kth = ordered[:, k - 1]
    tied = (kth - ordered[:, k]) < NEAR if k < S.shape[1] else np.zeros(len(S), bool)
    lowest = []
    for row, value in zip(S, kth):
        above = np.flatnonzero(row > value + exact.TIE)
        band = np.flatnonzero(np.abs(row - value) <= exact.TIE)
        lowest.append(set(np.concatenate([above, band[:k - len(above)]]).tolist()))
    return S, tied, lowest


def _both(head, queries, k):
    found = {}
    for search in ("faiss", "blas"):
        head.set_params(search=search)
        sims, ids = head._search(_normalized(queries), k)
        found[search] = (sims, ids, head.predict(queries), head.predict_proba(queries))
    head.set_params(search="auto")
    return found


def _check_same_up_to_ties(head, train, queries, k):
    S, tied, lowest = _reference(queries, train, k)
    found = _both(head, queries, k)
    (f_sims, f_ids, f_pred, f_proba), (b_sims, b_ids, b_pred, b_proba) = found["faiss"], found["blas"]
    assert np.all(np.diff(b_sims, axis=1) <= 0), "BLAS neighbours are not listed highest first"
    np.testing.assert_allclose(b_sims, f_sims, atol=SIM, rtol=0)
    for q in range(len(queries)):
        clear = set(np.flatnonzero(S[q] > np.sort(S[q])[-k] + NEAR).tolist())
        assert clear <= set(f_ids[q].tolist()) and clear <= set(b_ids[q].tolist()), q
        if tied[q]:
            assert set(b_ids[q].tolist()) == lowest[q], f"query {q}: a tie not given to the lowest ids"
        else:
            assert set(b_ids[q].tolist()) == set(f_ids[q].tolist()), f"query {q}: other neighbours"
    free = ~tied
    assert (f_pred[free] == b_pred[free]).all()
    np.testing.assert_allclose(b_proba[free], f_proba[free], atol=PROBA, rtol=0)
    return tied


def _real_tweets(n):
    """Up to n tweets: the GOP debate set when it is there (it has retweets: exact duplicate vectors), else the sample."""
    found = data_dir()
    path = found / "gop-debate" / "Sentiment.csv" if found else SAMPLE
    text, label = ("text", "sentiment") if found else ("text", "label")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [(r[text], r[label]) for r, _ in zip(csv.DictReader(handle), range(n))]
    return [t for t, _ in rows], np.array([y for _, y in rows])


def test_same_neighbours_as_faiss_on_real_minilm_vectors(minilm_path, tmp_path):
    from embed.encoder import Embedder

    texts, labels = _real_tweets(500)
    vectors, _ = Embedder("minilm", cache_dir=tmp_path / "cache").embed(texts)
    vectors = np.asarray(vectors, dtype=np.float32)
    cut = len(texts) * 4 // 5
    train, y = vectors[:cut], labels[:cut]
    queries = np.concatenate([vectors[cut:], train[:20]])  # the last 20: each finds itself (and its retweets)
    for k in (1, 5, 15):
        head = get_head("knn", k=k).fit(train, y)
        tied = _check_same_up_to_ties(head, train, queries, k)
        assert tied.mean() < 0.5, f"k={k}: {tied.sum()} of {len(tied)} queries tied, the check says little"


def test_duplicated_training_vectors_tie_to_the_lowest_ids(monkeypatch):
    rng = np.random.default_rng(0)
    base = _normalized(rng.standard_normal((300, 64)))
    order = rng.permutation(1200)
    train = np.concatenate([base] * 4)[order]  # each vector 4 times, at scattered ids
    y = rng.integers(0, 3, 1200)  # copies of one vector carry different labels: the tie decides the vote
    queries = np.concatenate([base[:60], _normalized(rng.standard_normal((200, 64)))])
    for k in (1, 3, 5, 15):
        head = get_head("knn", k=k).fit(train, y)
        tied = _check_same_up_to_ties(head, train, queries, k)
        assert tied[:60].all() if k < 4 else tied.sum() >= 1  # the copies of a query's own vector tie
        head.set_params(search="blas")
        whole = head._search(_normalized(queries), k)[1]
        monkeypatch.setattr(exact, "BLOCK_BYTES", 4 * 1200 * 7)  # blocks of 7 queries
        blocked = head._search(_normalized(queries), k)[1]
        monkeypatch.undo()
        assert [set(r) for r in whole.tolist()] == [set(r) for r in blocked.tolist()]


def test_top_k_pads_like_faiss_when_k_exceeds_the_stored_vectors():
    rng = np.random.default_rng(1)
    matrix, queries = _normalized(rng.standard_normal((5, 8))), _normalized(rng.standard_normal((3, 8)))
    sims, ids = exact.top_k(queries, matrix, 7)
    assert (ids[:, 5:] == -1).all() and (sims[:, 5:] == -np.finfo(np.float32).max).all()
    assert [sorted(r) for r in ids[:, :5].tolist()] == [list(range(5))] * 3
    head = get_head("knn", k=7, search="blas").fit(matrix, [0, 1, 0, 1, 0])
    assert head.k_ == 5 and head.predict_proba(queries).shape == (3, 2)


def test_search_is_a_saved_parameter_and_old_heads_load_as_auto(tmp_path):
    import json

    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((60, 8)), np.repeat(["a", "b", "c"], 20)
    assert get_head("knn").get_params()["search"] == "auto"
    head = get_head("knn", search="blas").fit(X, y)
    assert clone(head).search == "blas"
    folder = head.save(tmp_path / "h", fingerprint="f" * 64, model={"model": "test"})
    config = json.loads((folder / "head.json").read_text())
    assert config["params"]["search"] == "blas"
    assert load_head(folder).search == "blas"
    del config["params"]["search"]  # a head.json written before the parameter existed
    (folder / "head.json").write_text(json.dumps(config))
    old = load_head(folder)
    assert old.search == "auto" and (old.predict(X) == head.predict(X)).all()
    for bad in ({"search": "gpu"}, {"search": "blas", "index": "hnsw"}):
        with pytest.raises(HeadError, match="search must be"):
            get_head("knn", **bad).fit(X, y)


def test_auto_follows_the_measured_rule(monkeypatch):
    import heads.knn

    calls = []
    real = heads.knn.top_k
    monkeypatch.setattr(heads.knn, "top_k", lambda *a: calls.append(len(a[0])) or real(*a))
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((exact.MIN_STORED, 8)), rng.integers(0, 2, exact.MIN_STORED)
    head = get_head("knn", k=3).fit(X, y)
    for n, expected in ((1, [1]), (exact.MAX_QUERIES, [exact.MAX_QUERIES]), (exact.MAX_QUERIES + 1, [])):
        calls.clear()
        head.predict_proba(X[:n])
        assert calls == expected, n
    small = get_head("knn", k=3).fit(X[:exact.MIN_STORED - 1], y[:exact.MIN_STORED - 1])
    hnsw = get_head("knn", k=3, index="hnsw").fit(X, y)
    calls.clear()
    small.predict_proba(X[:5]), hnsw.predict_proba(X[:5])
    assert calls == []
    assert exact.prefer_blas(11_096, 100) and not exact.prefer_blas(11_096, 2_775) and not exact.prefer_blas(1_000, 10)


def test_a_rows_probabilities_are_the_same_bits_in_any_batch_and_from_either_search():
    """What lets ``score`` classify a repeated text once: the vote's similarities are scored again one
    pair at a time, so neither the batch size (which picks BLAS or FAISS under search="auto", and the
    kernel inside each) nor the search changes a bit; near-ties and exact duplicates included."""
    rng = np.random.default_rng(4)
    base = _normalized(rng.standard_normal((exact.MIN_STORED, 48)))
    train = np.concatenate([base, base[:300], np.repeat(base[300:302], 40, axis=0)])  # exact ties: 300 stored
    y = rng.integers(0, 3, len(train))  # twice, 2 stored 41 times (a retweet: far more copies than MARGIN)
    near = base[:50] + 1e-7 * rng.standard_normal((50, 48)).astype(np.float32)  # within float32 noise of stored ones
    queries = np.concatenate([base[:100], near, base[300:302], _normalized(rng.standard_normal((500, 48)))])
    for k in (1, 5, 15):
        head = get_head("knn", k=k).fit(train, y)
        assert head.batch_invariant
        whole = head.predict_proba(queries)  # 652 queries: FAISS under auto
        assert not exact.prefer_blas(len(train), len(queries))
        for size in (1, 2, 7, exact.MAX_QUERIES):  # the BLAS under auto, and FAISS's small-batch kernel
            pieces = np.concatenate([head.predict_proba(queries[i:i + size]) for i in range(0, len(queries), size)])
            assert pieces.tobytes() == whole.tobytes(), (k, size)
        for search in ("faiss", "blas"):
            head.set_params(search=search)
            assert head.predict_proba(queries).tobytes() == whole.tobytes(), (k, search)
    assert not get_head("knn", k=3, index="hnsw").fit(train, y).batch_invariant


def test_a_tie_longer_than_the_candidates_goes_to_the_lowest_ids_whichever_candidates_came():
    """A tweet stored 41 times: two searches may hand over different copies as the k + MARGIN
    candidates (FAISS's choice among exact ties follows its kernel's rounding); the vote must not see it."""
    rng = np.random.default_rng(5)
    matrix = _normalized(rng.standard_normal((500, 64)))
    copies = np.sort(rng.choice(500, 41, replace=False))
    matrix[copies] = matrix[copies[0]]
    query = matrix[copies[:1]].copy()
    k = 15
    low, high = copies[:k + exact.MARGIN], copies[-(k + exact.MARGIN):]
    for candidates in (low, high, rng.permutation(high)):
        sims, ids = exact.reranked(query, matrix, candidates[None, :], k, exact.duplicate_groups(matrix))
        assert ids[0].tolist() == copies[:k].tolist()
        assert len(set(sims[0].tolist())) == 1  # every copy scored to the same bits
