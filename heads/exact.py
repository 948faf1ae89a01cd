"""Exact top-k inner-product search through the BLAS: a matrix product per block of queries, then a partial sort.

``top_k(queries, matrix, k)`` returns ``(similarities, ids)`` shaped like FAISS's
``IndexFlatIP.search``: float32 similarities, each row highest first. Queries go in blocks sized so
one block of similarities stays near ``BLOCK_BYTES`` whatever the sizes (memory is bounded, not
``n_query x n_train``). Only fp32: a bf16 product would change neighbours.

Ties: FAISS's flat search gives a tie for the k-th place to the lowest training ids (faiss 1.15: its
heap keeps the lowest ids of equal similarities; its per-query kernel computes a duplicated training
vector's similarity bit for bit the same). sgemm does not: blocking gives two copies of one vector
similarities one float32 ulp apart. So here similarities within ``TIE`` (1e-6, about 8 ulps at 1.0)
of the k-th one are a tie, and its places go to the lowest training ids, as in FAISS. The two
searches agree on the neighbour set of every query except where two different training vectors'
similarities lie within ``TIE`` of each other around the k-th place (a near-tie: FAISS then ranks
them by its own rounding). Similarities themselves differ by float32 rounding (up to about 2e-7:
the two kernels sum in different orders); each row is listed highest first, a tie by lower id.

``prefer_blas(n_train, n_query)`` is the measured rule of the kNN head's ``search="auto"``
(bench/knn_speed.py, "FAISS vs BLAS exact search", 2-core AMD EPYC, AVX2/FMA, OpenBLAS): the BLAS
search wins on calls of up to about 1,000 queries against thousands of stored vectors or more
(11,096 and 100,000 stored: 1.5x to 4.2x at 1 to 300 queries, about 1.0x at 1,000). On large calls
both are compute-bound at the same flops and the BLAS search pays the extra partial sort (2,775
queries: 0.73x to 0.86x), and on 1,000 stored vectors a call's fixed cost dominates: FAISS there.

``reranked(queries, matrix, ids, k)`` is what the kNN head votes with on an exact CPU index: each
query's candidates (k + ``MARGIN`` from either search) scored again one pair at a time (the products
of one query and one stored vector summed along the vector in one fixed order), so a query's
similarities, neighbours and probabilities are the same bits in a batch of any size, whichever search
found the candidates (FAISS and the BLAS then agree exactly; a near-tie goes to the higher similarity
so computed, an exact tie to the lowest id of all the stored copies). That is what lets ``score``
classify a repeated text once. ``duplicate_groups`` finds the stored vectors that are exact copies
(a retweet stored once per copy), found once per loaded head.

Left out: a GPU path (FAISS's GPU index is used there), bf16/int8 products, metrics other than
inner product.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TIE = 1e-6  # similarities closer than this around the k-th place are a tie (lowest ids win)
BLOCK_BYTES = 32 * 2**20  # one block of similarities, float32: 32 MiB
# search="auto" uses the BLAS for calls of at most MAX_QUERIES queries against at least MIN_STORED
# stored vectors: the crossover measured in bench/knn_speed.py (BENCHMARKS.md, kNN search) on a quiet
# AMD EPYC: BLAS 1.6-5.2x FAISS up to 300 queries a call, FAISS 1.7-2x ahead from 400 queries on
MIN_STORED = 4_096
MAX_QUERIES = 300
MARGIN = 8  # candidates beyond k that reranked() scores again: a near-tie of up to 8 at the k-th place
RERANK_ROWS = 64  # queries per block in reranked(): 64 x (k + 8) x d float32 values at a time


def prefer_blas(n_train: int, n_query: int) -> bool:
    """Whether the BLAS search is the faster exact search for these sizes (the measured crossover)."""
    return n_train >= MIN_STORED and n_query <= MAX_QUERIES


def top_k(queries: np.ndarray, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest ``queries @ matrix.T`` per row and their row ids of ``matrix``, highest first.

    Like FAISS, asking for more than ``len(matrix)`` pads with id -1 and the lowest float32.
    """
    n = len(matrix)
    found = min(k, n)
    sims = np.full((len(queries), k), -np.finfo(np.float32).max, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    if found == 0:
        return sims, ids
    rows = max(1, BLOCK_BYTES // (4 * n))
    for start in range(0, len(queries), rows):
        block = queries[start:start + rows] @ matrix.T
        sims[start:start + rows, :found], ids[start:start + rows, :found] = _block_top_k(block, found)
    return sims, ids


def _block_top_k(block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = block.shape[1]
    if k == n:
        top = np.broadcast_to(np.arange(n), block.shape).copy()
    else:  # the k + 1 largest: column 0 is the (k+1)-th, the rest the top k in no order
        part = np.argpartition(block, n - k - 1, axis=1)[:, n - k - 1:]
        values = np.take_along_axis(block, part, axis=1)
        top = part[:, 1:]
        kth = values[:, 1:].min(axis=1)
        for row in np.flatnonzero(values[:, 0] >= kth - TIE):  # a tie at the k-th place
            top[row] = _lowest_ids_of_tie(block[row], kth[row], k)
    sims = np.take_along_axis(block, top, axis=1)
    order = np.lexsort((top, -sims), axis=1)  # highest first, a tie by lower id
    return np.take_along_axis(sims, order, axis=1), np.take_along_axis(top, order, axis=1)


def _lowest_ids_of_tie(row: np.ndarray, kth: np.float32, k: int) -> np.ndarray:
    """The k ids: every one above the tie, then the lowest ids within TIE of the k-th similarity."""
    above = np.flatnonzero(row > kth + TIE)
    return np.concatenate([above, np.flatnonzero(np.abs(row - kth) <= TIE)[:k - len(above)]])


class Copies(NamedTuple):
    """Which stored vectors are exact copies of each other: vector i is in group ``group[i]``, of
    ``sizes[g]`` vectors whose ids (ascending) are ``members[starts[g]:starts[g] + sizes[g]]``."""

    group: np.ndarray
    members: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray


def duplicate_groups(matrix: np.ndarray) -> Copies:
    """The stored vectors' exact copies (a retweet's, stored once per copy), as :class:`Copies`."""
    rows = np.ascontiguousarray(matrix).view(np.dtype((np.void, matrix.shape[1] * matrix.itemsize))).ravel()
    _, group, sizes = np.unique(rows, return_inverse=True, return_counts=True)
    members = np.argsort(group, kind="stable")
    return Copies(group.ravel(), members, np.cumsum(sizes) - sizes, sizes)


def reranked(queries: np.ndarray, matrix: np.ndarray, ids: np.ndarray, k: int,
             copies: Copies) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's candidate ``ids`` by a similarity computed one pair at a time.

    Each similarity is the elementwise float32 product of one query and one stored vector summed
    along the vector (numpy's pairwise sum over one contiguous row): the same bits whatever the other
    rows of the batch, unlike a matrix product, whose kernel and blocking depend on its sizes. Ranked
    highest first, an exact tie by lower id. Where the k-th neighbour has exact copies among the
    stored vectors (``copies``: :func:`duplicate_groups`), all of them join the query's candidates, so
    the tie goes to the lowest ids of all the copies, whichever of them the search handed over.
    Returns float32 similarities and int64 ids shaped ``(len(queries), k)``.
    """
    group, members, starts, sizes = copies
    sims = np.empty((len(queries), k), dtype=np.float32)
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), RERANK_ROWS):
        block, rows = ids[start:start + RERANK_ROWS], queries[start:start + RERANK_ROWS]
        pairs = matrix[block]  # (rows, candidates, d): every id is found in a flat index with k <= its size
        pairs *= rows[:, None, :]
        exact = pairs.sum(axis=2)
        order = np.lexsort((block, -exact), axis=1)
        exact, block = np.take_along_axis(exact, order, axis=1), np.take_along_axis(block, order, axis=1)
        kth = group[block[:, k - 1]]
        for row in np.flatnonzero(sizes[kth] > 1):  # the k-th place's tie may hold copies not handed over
            g = kth[row]
            band = np.union1d(block[row], members[starts[g]:starts[g] + sizes[g]])
            if len(band) > block.shape[1]:
                scored = (matrix[band] * rows[row]).sum(axis=1)
                top = np.lexsort((band, -scored))[:k]
                exact[row, :k], block[row, :k] = scored[top], band[top]
        sims[start:start + RERANK_ROWS], out[start:start + RERANK_ROWS] = exact[:, :k], block[:, :k]
    return sims, out
