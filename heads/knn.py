"""k-nearest-neighbours head: cosine similarity search with FAISS, similarity-weighted votes.

Vectors are L2-normalised float32, so inner product is cosine similarity. `index` is "flat"
(exact IndexFlatIP, the default), "hnsw" (IndexHNSWFlat, `hnsw_m` links, `ef_search`) or
"ivf" (IndexIVFFlat, `nlist` = 4*sqrt(n) capped at n/39 for k-means, `nprobe` lists); the
approximate ones are for millions of vectors, and `recall_against_exact` measures what they
miss. The k neighbours vote with softmax weights exp(similarity / `temperature`), so near
ones outweigh far ones and the votes are already probabilities.

`k` is given (capped at the training size) or chosen from the grid `ks` by `select_metric`
(accuracy, macro-F1 or macro-recall) on (X_eval, y_eval), or else leave-one-out on (at most
5000 rows of) the training set: query k+1 neighbours and drop the row itself. Ties go to the
smaller k; the choice is `k_`. `class_weight="balanced"` multiplies each neighbour's vote by
its class's weight (n_samples / (n_classes * n_in_class)), so a minority class is not
outvoted by sheer numbers.

`device` "auto" uses a GPU when faiss has one (flat and ivf; faiss has no GPU HNSW). The
index is copied to the CPU for saving; a device="gpu" head loads CPU-only with a warning.
`n_threads` sets faiss.omp_set_num_threads (process-wide), so only when given; the BLAS search
then runs under threadpoolctl's limit of as many BLAS threads.

`search` picks how an exact (flat, CPU) index is searched: "faiss" (its own search), "blas" (a
matrix product per block of queries and a partial sort, heads/exact.py: the same neighbours, a tie
going to the lower training index as in FAISS) or "auto" (the default, and what a head.json saved
before this parameter loads as): the BLAS when `heads.exact.prefer_blas` says it is faster for the
call's sizes, the rule measured in bench/knn_speed.py. hnsw/ivf and GPU indexes always use FAISS.
On an exact CPU index the head votes with ``heads.exact.reranked``: k + 8 candidates from either search
scored again one pair at a time, so a row's probabilities are the same bits in any batch
and from either search (``batch_invariant``: ``score`` then classifies a repeated text once).

Left out: other metrics (L2, raw dot product), product quantisation (IVFPQ), adding vectors
after fit, and pickling a GPU-resident head (save() it; faiss pickles CPU indexes itself).
"""

from __future__ import annotations

import functools
import warnings

import faiss
import numpy as np
from sklearn.utils.validation import check_is_fitted

from heads.base import BaseHead, HeadError, class_weights, damaged, dump_arrays, load_arrays, register, selection_score
from heads.exact import MARGIN, duplicate_groups, prefer_blas, reranked, top_k


@register("knn")
class KNNHead(BaseHead):
    """Cosine k-nearest neighbours through FAISS, with similarity-weighted votes.

    Parameters
    ----------
    k : int or None, default=None
        Neighbours that vote. None chooses it from ``ks``.
    ks : tuple of int, default=(1, 3, 5, 10, 15, 20, 30, 50)
        The grid searched when ``k`` is None.
    temperature : float, default=0.1
        Vote weight exp(similarity / temperature): smaller favours the nearest neighbours.
    index : {"flat", "hnsw", "ivf"}, default="flat"
        Exact search, or an approximate index for millions of vectors.
    hnsw_m, ef_search : int, default=32, 64
        HNSW links per node and search breadth.
    nlist, nprobe : int, default=None, 16
        IVF lists (None: 4 * sqrt(n), at most n / 39) and lists searched.
    device : {"auto", "cpu", "gpu"}, default="auto"
        Where the index lives (a GPU when faiss-gpu sees one).
    n_threads : int or None, default=None
        FAISS threads (process-wide), only when given.
    class_weight : None, "balanced" or dict, default=None
        Per-class vote weights.
    select_metric : {"accuracy", "macro_f1", "macro_recall"}, default="accuracy"
        What chooses ``k``.
    search : {"auto", "faiss", "blas"}, default="auto"
        How a flat CPU index is searched: FAISS, a BLAS matrix product, or whichever the measured
        rule (``heads.exact.prefer_blas``) says is faster for the sizes of each call.

    Attributes
    ----------
    k_ : int
        Neighbours used. ``index_``: the FAISS index; ``labels_``: the stored rows' classes.
    """

    _files = ("index.faiss", "labels.npz")
    _state_attrs = ("k_",)

    @property
    def batch_invariant(self) -> bool:
        """Whether a row's probabilities are the same bits in any batch: an exact index on the CPU
        (its candidates scored again one pair at a time); hnsw, ivf and GPU indexes are not."""
        return self._reranks()

    def __init__(self, *, k=None, ks=(1, 3, 5, 10, 15, 20, 30, 50), temperature=0.1,
                 index="flat", hnsw_m=32, ef_search=64, nlist=None, nprobe=16,
                 device="auto", n_threads=None, class_weight=None, select_metric="accuracy",
                 search="auto"):
        self.k = k
        self.ks = ks
        self.temperature = temperature
        self.index = index
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.device = device
        self.n_threads = n_threads
        self.class_weight = class_weight
        self.select_metric = select_metric
        self.search = search

    def _check_params(self) -> None:
        super()._check_params()
        if self.index not in ("flat", "hnsw", "ivf") or self.device not in ("auto", "cpu", "gpu"):
            raise HeadError(f"index must be 'flat', 'hnsw' or 'ivf' and device 'auto', 'cpu' or "
                            f"'gpu'; found index={self.index!r}, device={self.device!r}")
        if self.device == "gpu" and self.index == "hnsw":
            raise HeadError("faiss has no GPU HNSW index; use index='flat'/'ivf' or device='cpu'")
        if self.search not in ("auto", "faiss", "blas") or (self.search == "blas" and self.index != "flat"):
            raise HeadError(f"search must be 'auto', 'faiss' or 'blas' (exact search, index='flat' only); "
                            f"found search={self.search!r}, index={self.index!r}: use search='auto'")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise HeadError(f"temperature must be a positive number, found {self.temperature!r}")
        ks = list(self.ks) if self.k is None else [self.k]
        if not ks or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in ks):
            raise HeadError(f"k must be a positive integer, or None to choose it from ks (a list"
                            f" of positive integers); found k={self.k!r}, ks={self.ks!r}")

    def _fit(self, X, y, X_eval, y_eval) -> None:
        if self.device == "gpu" and not _gpu_available():
            raise HeadError("device='gpu' but this faiss has no GPU support or sees no GPU; "
                            "install faiss-gpu or use device='auto'/'cpu'")
        self._set_threads()
        vectors = _normalize(X)
        n, dim = vectors.shape
        if self.index == "hnsw":
            index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        elif self.index == "ivf":
            nlist = self.nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, min(nlist, n),
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        self.labels_ = y.astype(np.int64)
        self.vote_weights_ = class_weights(self.labels_, self.class_weight, self.classes_)
        self.index_ = self._to_device(index)
        if self.k is not None:
            self.k_ = min(self.k, n)
        elif X_eval is not None:
            self.k_ = self._choose_k(_normalize(X_eval), y_eval, cap=n)
        else:
            rows = np.sort(np.random.default_rng(0).permutation(n)[:5000])
            self.k_ = self._choose_k(vectors[rows], y[rows], cap=n - 1, rows=rows)

    def _choose_k(self, queries, y_true, *, cap, rows=None) -> int:
        """Best k of the grid by `select_metric`; `rows` are the queries' own ids (leave-one-out)."""
        grid = sorted({min(int(k), cap) for k in self.ks})
        if grid[-1] < 1:  # one training row per class: nothing to leave out
            return 1
        sims, ids = self._neighbours(queries, grid[-1] + (rows is not None))
        if rows is not None:  # drop each row's own hit (or the last one if ties hid it)
            own = ids == rows[:, None]
            own[~own.any(axis=1), -1] = True
            sims, ids = (a[~own].reshape(len(queries), -1) for a in (sims, ids))
        scores = [selection_score(self.select_metric, y_true, np.argmax(self._vote(sims[:, :k], ids[:, :k]), axis=1))
                  for k in grid]
        return grid[int(np.argmax(scores))]

    def _set_threads(self) -> None:
        if self.n_threads is not None:
            faiss.omp_set_num_threads(self.n_threads)

    def _search(self, queries, k):
        if self._use_blas(len(queries)):
            return self._blas_search(queries, k)
        if self.index == "hnsw":
            self.index_.hnsw.efSearch = max(self.ef_search, k)
        elif self.index == "ivf":
            self.index_.nprobe = self.nprobe
        return self.index_.search(queries, k)

    def _neighbours(self, queries, k):
        """The k neighbours the head votes with: the search's, or on an exact CPU index its k + MARGIN
        candidates scored again (``heads.exact.reranked``: the same bits in any batch)."""
        if not self._reranks():
            return self._search(queries, k)
        _, candidates = self._search(queries, min(self.index_.ntotal, k + MARGIN))
        return reranked(queries, self._stored(), candidates, k, self._copies())

    def _copies(self):
        """The stored vectors' exact-copy groups (``heads.exact.duplicate_groups``), found once per index."""
        found = getattr(self, "_copies_of", None)
        if found is None or found[0] is not self.index_:
            self._copies_of = (self.index_, duplicate_groups(self._stored()))
        return self._copies_of[1]

    def _reranks(self) -> bool:
        return self.index == "flat" and hasattr(self, "index_") and not _on_gpu(self.index_)

    def _stored(self) -> np.ndarray:
        """The stored vectors: a CPU flat index's own storage (no copy), else copied from the index."""
        index = self.index_
        if not _on_gpu(index):
            return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
        return index.reconstruct_n(0, index.ntotal)  # search="blas" on a GPU index: copied to the CPU

    def _vote(self, sims, ids) -> np.ndarray:
        found = ids >= 0  # approximate indexes return -1 when they find fewer than k
        sims = sims.astype(np.float64)
        top = np.where(found, sims, -np.inf).max(axis=1, keepdims=True)
        weights = np.where(found, np.exp((sims - top) / self.temperature), 0.0)
        neighbour = self.labels_[np.maximum(ids, 0)]
        votes = np.stack([np.where(neighbour == c, weights, 0.0).sum(axis=1) * self.vote_weights_[c]
                          for c in range(len(self.classes_))], axis=1)
        total = votes.sum(axis=1, keepdims=True)
        prior = np.bincount(self.labels_, minlength=len(self.classes_)) / len(self.labels_)
        return np.where(total > 0, votes / np.where(total > 0, total, 1.0), prior)

    def _use_blas(self, n_query: int) -> bool:
        if self.index != "flat" or self.search == "faiss":
            return False
        return self.search == "blas" or (not _on_gpu(self.index_)
                                         and prefer_blas(self.index_.ntotal, n_query))

    def _blas_search(self, queries, k):
        matrix = self._stored()
        if self.n_threads is None:
            return top_k(queries, matrix, k)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.n_threads, user_api="blas"):
            return top_k(queries, matrix, k)

    def selected_params(self) -> dict:
        """The hyperparameters fit chose, as constructor parameters: ``{"k": k_}``.

        ``clone(head).set_params(**head.selected_params()).fit(X, y)`` refits with the same k and no
        search over ``ks`` (what ``refit`` does). Raises NotFittedError before fit.

        Examples
        --------
        >>> head = KNNHead(ks=(1, 3)).fit(X, y)  # doctest: +SKIP
        >>> head.selected_params()  # doctest: +SKIP
        {'k': 3}
        """
        check_is_fitted(self)
        return {"k": int(self.k_)}

    def _predict_proba(self, X) -> np.ndarray:
        self._set_threads()
        return self._vote(*self._neighbours(_normalize(X), self.k_))

    def recall_against_exact(self, X, k=None) -> float:
        """Fraction of the exact top-k neighbours of X that the index finds (flat: 1.0)."""
        queries = _normalize(self._check_X(X))
        k = min(k or self.k_, len(self.labels_))
        if self.index == "flat":
            return 1.0
        self._set_threads()
        cpu = _to_cpu(self.index_)
        if self.index == "ivf":  # brute force on reconstructed vectors needs a direct map
            cpu = faiss.clone_index(cpu) if cpu is self.index_ else cpu
            cpu.make_direct_map()
        _, want = faiss.knn(queries, cpu.reconstruct_n(0, cpu.ntotal), k,
                            metric=faiss.METRIC_INNER_PRODUCT)
        _, got = self._search(queries, k)
        return float(sum(len(set(w) & set(g)) for w, g in zip(want, got)) / want.size)

    def _to_device(self, index):
        if self.device == "cpu" or self.index == "hnsw" or not _gpu_available():
            if self.device == "gpu":  # fit refuses this; a loaded head falls back to the CPU
                warnings.warn("device='gpu' but no GPU is usable here; searching on the CPU",
                              RuntimeWarning, stacklevel=3)
            return index
        return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)

    def _dump(self) -> dict[str, bytes]:
        index = faiss.serialize_index(_to_cpu(self.index_)).tobytes()
        return {"index.faiss": index, "labels.npz": dump_arrays(labels=self.labels_)}

    def _restore(self, files: dict[str, bytes]) -> None:
        (labels,) = load_arrays(files["labels.npz"], "labels.npz", ("labels",))
        try:
            index = faiss.deserialize_index(np.frombuffer(files["index.faiss"], dtype=np.uint8))
        except RuntimeError as error:
            raise damaged("index.faiss", f"is not a faiss index ({error})") from None
        if (index.d != self.n_features_in_ or labels.shape != (index.ntotal,)
                or labels.dtype.kind != "i" or not 0 <= labels.min() <= labels.max()
                < len(self.classes_)):
            raise damaged("index.faiss/labels.npz", "do not match head.json")
        self.labels_ = labels.astype(np.int64)
        self.vote_weights_ = class_weights(self.labels_, self.class_weight, self.classes_)
        self.index_ = self._to_device(index)


def _normalize(X) -> np.ndarray:
    X = np.ascontiguousarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


@functools.cache
def _gpu_resources():  # one per process: each instance reserves scratch GPU memory
    return faiss.StandardGpuResources()


def _gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _on_gpu(index) -> bool:
    return type(index).__name__.startswith("Gpu")


def _to_cpu(index):
    return faiss.index_gpu_to_cpu(index) if _on_gpu(index) else index
