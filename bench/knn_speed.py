"""kNN: the FAISS head against scikit-learn's brute-force cosine kNN, and approximate indexes.

Stored vectors are synthetic 384-d float32: 1,000 random cluster centres plus Gaussian noise
(structure like real embeddings have; pure noise would make every approximate index look bad),
label = cluster mod 3. Queries are 1,000 fresh points from the same mixture.

1. Exact: ``get_head("knn", k=10)`` (FAISS ``IndexFlatIP`` on normalized vectors, softmax
   votes) against ``KNeighborsClassifier(n_neighbors=10, algorithm="brute", metric="cosine",
   weights="distance")``, at 10k, 100k and 1M stored vectors (1M skipped with --quick); also the
   head with ``n_threads=1`` and with FAISS's BLAS search path forced (``_BlasPath``). Fit and
   ``predict_proba`` are timed in rotating order, best of 3 rounds (1 round at 1M). Agreement =
   share of queries where both predict the same class (the vote weights differ by design).
2. Approximate: ``index="hnsw"`` (M 32, efSearch 64) and ``index="ivf"`` (nprobe 16) at 100k and
   1M: build seconds, queries/s (best of 3) and ``recall_against_exact`` at k=10. At 1M the IVF
   index uses ``nlist=1024`` instead of the default 4*sqrt(n) = 4,000 lists, and HNSW is not
   built: both defaults take many minutes to build on 2 cores (see the table's notes).
3. FAISS vs BLAS search (issue #34 item 5): the fitted head (k=15, flat) with ``search="faiss"``
   against ``search="blas"`` (a matrix product per block of queries + argpartition, heads/exact.py),
   set on the same fitted head, at 1k, 11,096 (the GOP train split's size, 384-d like MiniLM) and
   100k stored vectors and 1, 10, 100, 300, 1,000 and 2,775 (GOP eval) queries per ``predict_proba`` call;
   rotating order, best of the rounds; each round repeats a call until 0.2 s have passed. Prints
   predictions/s, the ratio, where the two agree and the crossover; ``search="auto"`` follows
   ``heads.exact.prefer_blas``. ``python bench/knn_speed.py --search-only`` runs just this table
   (``--quick``: 1k and 11k stored, at most 100 queries).
"""
from __future__ import annotations

import time

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/knn_speed.py` or from bench/run.py
from common import Table, log, ratio

DIM = 384


def clustered(n: int, seed: int, centres: np.ndarray, noise: float = 0.7, block: int = 100_000):
    """``n`` float32 rows around random ``centres`` and their labels (cluster mod 3)."""
    rng = np.random.default_rng(seed)
    X = np.empty((n, centres.shape[1]), dtype=np.float32)
    cluster = rng.integers(0, len(centres), n)
    for s in range(0, n, block):
        e = min(s + block, n)
        X[s:e] = rng.standard_normal((e - s, centres.shape[1]), dtype=np.float32)
        X[s:e] *= np.float32(noise)
        X[s:e] += centres[cluster[s:e]]
    return X, cluster % 3


class _BlasPath:
    """A head whose searches run with ``faiss.cvar.distance_compute_blas_threshold = 20``.

    FAISS computes exact inner products with BLAS matrix products only when a search has at least
    that many queries; this faiss sets the threshold to 128,000 (older ones used 20), so a flat
    search of 1,000 queries takes its per-query SIMD path. The setting is process-wide: restored
    after each call.
    """

    def __init__(self, head):
        self.head = head

    def _call(self, method, *args):
        import faiss

        before = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = 20
        try:
            return getattr(self.head, method)(*args)
        finally:
            faiss.cvar.distance_compute_blas_threshold = before

    def fit(self, X, y):
        self._call("fit", X, y)
        return self

    def predict_proba(self, X):
        return self._call("predict_proba", X)


def bench_exact(X, y, Q, sizes: list[int]) -> Table:
    import faiss
    from sklearn.neighbors import KNeighborsClassifier

    from heads import get_head

    default_threads = faiss.omp_get_max_threads()
    makers = {
        "ours (FAISS flat)": lambda: get_head("knn", k=10),
        "ours, n_threads=1": lambda: get_head("knn", k=10, n_threads=1),
        "ours, FAISS BLAS path": lambda: _BlasPath(get_head("knn", k=10)),
        "scikit-learn brute cosine": lambda: KNeighborsClassifier(n_neighbors=10, algorithm="brute",
                                                                  metric="cosine", weights="distance"),
    }
    table = Table(
        title=f"Exact kNN, k=10, {len(Q):,} queries, 384-d: FAISS head vs scikit-learn brute cosine",
        compared=("`get_head(\"knn\", k=10)` (flat index; FAISS's default "
                  f"{default_threads} OpenMP threads; `n_threads=1`; and FAISS's BLAS search path, "
                  "`faiss.cvar.distance_compute_blas_threshold = 20`, instead of this faiss's default "
                  f"{__import__('faiss').cvar.distance_compute_blas_threshold:,}) against "
                  "`KNeighborsClassifier(n_neighbors=10, algorithm=\"brute\", metric=\"cosine\", "
                  "weights=\"distance\")`, same stored vectors and queries, fit + `predict_proba` timed "
                  "in rotating order, best of the rounds. Ratio = queries/s over scikit-learn's."),
        columns=["stored", "rounds", "variant", "fit s", "queries/s", "vs scikit-learn",
                 "same prediction as scikit-learn"])
    names = list(makers)
    for n in sizes:
        Xn, yn = X[:n], y[:n]
        rounds = 1 if n >= 1_000_000 else 3
        fits = {name: [] for name in names}
        queries = {name: [] for name in names}
        proba = {}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                model = makers[name]()
                try:
                    start = time.perf_counter()
                    model.fit(Xn, yn)
                    fits[name].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    proba[name] = model.predict_proba(Q)
                    queries[name].append(time.perf_counter() - start)
                finally:
                    faiss.omp_set_num_threads(default_threads)  # n_threads=1 is process-wide in FAISS
                log(f"knn exact {n:,} {name}: fit {fits[name][-1]:.2f} s, query {queries[name][-1]:.2f} s")
                del model
        base = len(Q) / min(queries[names[-1]])
        for name in names:
            qps = len(Q) / min(queries[name])
            same = float(np.mean(proba[name].argmax(1) == proba[names[-1]].argmax(1)))
            table.add(n, rounds, name, min(fits[name]), qps, ratio(qps, base), f"{same:.3f}")
    table.notes.append("Same prediction: share of queries where the predicted class equals scikit-learn's "
                       "(the vote weights differ by design: softmax of similarity vs 1/distance).")
    return table


def bench_ann(X, y, Q, sizes: list[int]) -> Table:
    from heads import get_head

    table = Table(
        title=f"Approximate kNN (k=10, {len(Q):,} queries, 384-d): build, queries/s, recall",
        compared=("`get_head(\"knn\", k=10, index=...)` with default parameters unless stated; recall = "
                  "`recall_against_exact(queries, k=10)`. Ratio = queries/s over the flat (exact) index's "
                  "on the same stored vectors, measured in the same round."),
        columns=["stored", "index", "build s", "queries/s", "vs flat", "recall@10"])
    for n in sizes:
        Xn, yn = X[:n], y[:n]
        configs = [("flat", {})]
        if n >= 1_000_000:
            configs.append(("ivf", {"nlist": 1024}))
        else:
            configs += [("hnsw", {}), ("ivf", {})]
        heads, builds = {}, {}
        for index, params in configs:
            head = get_head("knn", k=10, index=index, **params)
            start = time.perf_counter()
            head.fit(Xn, yn)
            builds[index] = time.perf_counter() - start
            heads[index] = head
            log(f"knn ann {n:,} {index}: build {builds[index]:.1f} s")
        times = common.interleave({name: (lambda h=h: h.predict_proba(Q)) for name, h in heads.items()}, 3,
                                  f"knn ann {n:,}")
        flat_qps = len(Q) / min(times["flat"])
        for index, params in configs:
            qps = len(Q) / min(times[index])
            label = index + "".join(f" ({k}={v})" for k, v in params.items())
            recall = heads[index].recall_against_exact(Q, k=10)
            table.add(n, label, builds[index], qps, ratio(qps, flat_qps), f"{recall:.3f}")
        heads.clear()
        if n >= 1_000_000:
            table.notes.append(
                "At 1M, HNSW (M 32) was not built and IVF used nlist=1024: on this 2-core machine the "
                "100k builds above already take the time shown, HNSW build time grows a little faster "
                "than linearly with n, and the default IVF nlist at 1M (4,000) trains k-means on up to "
                "1,024,000 points against 4,000 centroids, about 16x the work of nlist=1024.")
    return table


def bench_search(X, y, Q, sizes: list[int], query_counts: list[int]) -> Table:
    from heads import get_head
    from heads import exact
    from heads.exact import prefer_blas

    table = Table(
        title=f"FAISS vs BLAS exact search, k=15, {DIM}-d: predictions/s by stored vectors and queries per call",
        compared=(f"{common.cpu_header()} One fitted `get_head(\"knn\", k=15)` (flat index) per size; "
                  "`set_params(search=\"faiss\")` (FAISS `IndexFlatIP.search`, its default OpenMP threads) "
                  "against `search=\"blas\"` (numpy/OpenBLAS fp32 `queries @ vectors.T` in blocks of 32 MiB of "
                  "similarities, then `argpartition`), same vectors and queries, each `predict_proba` call "
                  "repeated until 0.2 s, variants in rotating order, best of 3 rounds. Both include the head's "
                  "input checks and the vote. Ratio = BLAS predictions/s over FAISS's."),
        columns=["stored", "queries per call", "FAISS pred/s", "BLAS pred/s", "BLAS vs FAISS",
                 "same predictions", "max |proba diff|", "auto uses"])
    crossover = {}
    for n in sizes:
        head = get_head("knn", k=15).fit(X[:n], y[:n])
        for m in query_counts:
            queries = Q[:m]

            def calls(search, queries=queries):
                head.set_params(search=search)
                done, start = 0, time.perf_counter()
                while time.perf_counter() - start < 0.2:
                    head.predict_proba(queries)
                    done += 1
                return (time.perf_counter() - start) / done

            best = {}
            for r in range(3):
                for search in (("faiss", "blas") if r % 2 == 0 else ("blas", "faiss")):
                    best[search] = min(best.get(search, np.inf), calls(search))
            proba = {search: head.set_params(search=search).predict_proba(queries) for search in ("faiss", "blas")}
            faiss_qps, blas_qps = m / best["faiss"], m / best["blas"]
            same = float(np.mean(proba["faiss"].argmax(1) == proba["blas"].argmax(1)))
            diff = float(np.abs(proba["faiss"] - proba["blas"]).max())
            table.add(n, m, faiss_qps, blas_qps, ratio(blas_qps, faiss_qps), f"{same:.4f}", diff,
                      "blas" if prefer_blas(n, m) else "faiss")
            log(f"knn search {n:,} x {m:,}: faiss {faiss_qps:,.0f}/s, blas {blas_qps:,.0f}/s")
            if blas_qps > faiss_qps:
                crossover.setdefault(n, []).append(m)
    table.notes.append("Where BLAS was faster (queries per call, of those measured): " + "; ".join(
        f"{n:,} stored: {', '.join(f'{m:,}' for m in crossover[n]) if n in crossover else 'none'}" for n in sizes)
        + f". `search=\"auto\"` rule (`heads.exact.prefer_blas`): BLAS for calls of at most "
        f"{exact.MAX_QUERIES:,} queries against at least {exact.MIN_STORED:,} stored vectors, FAISS otherwise.")
    table.notes.append("Stored vectors are the synthetic clustered 384-d mixture above (not MiniLM vectors: "
                       "search time depends on the shapes only); same predictions = share of queries whose "
                       "predicted class agrees, max |proba diff| = float32 rounding of the similarities (the two "
                       "kernels sum in different orders; tests/test_knn_search.py checks neighbours and ties).")
    return table


def run(quick: bool = False, search_only: bool = False) -> list[Table]:
    search_sizes = [1_000, 11_096] if quick else [1_000, 11_096, 100_000]
    search_queries = [1, 10, 100] if quick else [1, 10, 100, 300, 1_000, 2_775]
    if search_only:
        rng = np.random.default_rng(common.SEED)
        centres = rng.standard_normal((1000, DIM), dtype=np.float32)
        X, y = clustered(max(search_sizes), 1, centres)
        Q, _ = clustered(max(search_queries), 2, centres)
        return [bench_search(X, y, Q, search_sizes, search_queries)]
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    ann_sizes = [20_000] if quick else [100_000, 1_000_000]
    n_queries = 1000
    rng = np.random.default_rng(common.SEED)
    centres = rng.standard_normal((1000, DIM), dtype=np.float32)
    start = time.perf_counter()
    X, y = clustered(max(sizes + ann_sizes), 1, centres)
    Q, _ = clustered(n_queries, 2, centres)
    log(f"knn: generated {len(X):,} vectors in {time.perf_counter() - start:.1f} s")
    Q_search, _ = clustered(max(search_queries), 3, centres)
    tables = [bench_exact(X, y, Q, sizes), bench_ann(X, y, Q, ann_sizes),
              bench_search(X, y, Q_search, search_sizes, search_queries)]
    tables[0].notes.append(f"Peak RSS of the benchmark process so far: {common.peak_rss_mb():,.0f} MB "
                           f"({len(X):,} x {DIM} float32 = {X.nbytes / 2**20:,.0f} MB stored).")
    return tables


if __name__ == "__main__":
    import sys

    if "--search-only" in sys.argv:  # only the FAISS vs BLAS table (issue #34 item 5)
        for table in run(quick="--quick" in sys.argv, search_only=True):
            print(table.markdown())
    else:
        common.main(run)
