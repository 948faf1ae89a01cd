"""Heads: fit seconds and predictions per second for every head, at 384 and 768 dimensions.

Data: synthetic float32 Gaussian-mixture "embeddings" the size of the GOP split (11,096 train /
2,775 eval rows): 12 clusters with random centres, 4 per class, 3 classes, unit Gaussian noise;
the centre scale shrinks with the width so both widths are about as hard (a logistic head gets
roughly 0.7-0.75). Each head (``get_head(name)`` with default parameters) is fitted once without
an evaluation set (logistic: 3-fold CV over its C grid; LightGBM: 300 rounds; kNN: k by
leave-one-out) and once with the 2,775 eval rows as ``X_eval``/``y_eval`` (C and k chosen on it;
LightGBM early stopping), and once more without one on a single thread. Prediction =
``predict_proba`` of the 2,775 eval rows, best of 3.
``--quick`` uses 2,000 / 500 rows.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/heads_speed.py` or from bench/run.py
from common import Table, log, ratio


@contextlib.contextmanager
def _one_thread(enabled: bool):
    """Cap OpenBLAS and OpenMP pools at one thread (and restore FAISS's thread count after)."""
    if not enabled:
        yield
        return
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def gaussian_mixture(n: int, dim: int, seed: int = 0, clusters: int = 12, classes: int = 3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32) * np.float32(0.15 * np.sqrt(384 / dim))
    cluster = rng.integers(0, clusters, n)
    X = centres[cluster] + rng.standard_normal((n, dim), dtype=np.float32)
    return X, cluster % classes


def run(quick: bool = False) -> list[Table]:
    from heads import get_head

    n_train, n_eval = (2000, 500) if quick else (11_096, 2_775)
    table = Table(
        title=f"Head fit and predict times, {n_train:,} x 384 and x 768 float32 (synthetic, 3 classes)",
        compared=(f"Each head with its default parameters, fitted on {n_train:,} rows without and with an "
                  f"evaluation set ({n_eval:,} rows); predict = `predict_proba` on the {n_eval:,} eval "
                  "rows (best of 3). One fit per row, so fit times carry the machine's noise."),
        columns=["dim", "head", "eval set", "threads", "fit s", "1 thread vs default (fit)", "chose",
                 "predict rows/s", "eval accuracy"])
    for dim in (384, 768):
        X, y = gaussian_mixture(n_train + n_eval, dim)
        Xt, yt, Xe, ye = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
        for name in ("logistic", "lightgbm", "knn"):  # warm-up: imports, first-call set-up; untimed
            get_head(name).fit(Xt[:300], yt[:300]).predict_proba(Xe[:10])
        for name in ("logistic", "lightgbm", "knn"):
            default_fit = None
            for with_eval, one_thread in ((False, False), (True, False), (False, True)):
                params = {"n_threads": 1} if one_thread and name != "logistic" else {}
                head = get_head(name, **params)
                with _one_thread(one_thread):
                    start = time.perf_counter()
                    if with_eval:
                        head.fit(Xt, yt, X_eval=Xe, y_eval=ye)
                    else:
                        head.fit(Xt, yt)
                    fit = time.perf_counter() - start
                    best = float("inf")
                    for _ in range(3):
                        start = time.perf_counter()
                        proba = head.predict_proba(Xe)
                        best = min(best, time.perf_counter() - start)
                accuracy = float(np.mean(head.classes_[proba.argmax(1)] == ye))
                chose = ", ".join(f"{k}={v:g}" for k, v in head.selected_params().items())
                log(f"heads {dim} {name} eval={with_eval} one_thread={one_thread}: fit {fit:.1f} s")
                if not with_eval and not one_thread:
                    default_fit = fit
                table.add(dim, name, "yes" if with_eval else "no", "1" if one_thread else "default (all)", fit,
                          ratio(default_fit, fit) if one_thread else "-", chose, n_eval / best,
                          f"{accuracy:.3f}")
    table.notes += [
        "LightGBM's `default_rounds` shows the rounds trained (early-stopped with an eval set).",
        "Threads: default = each head's default: LightGBM and FAISS use all cores; the logistic head fits "
        "with one BLAS thread of its own accord (`n_threads=1`: its thin matrix products do not gain from "
        "two), so its two rows match. "
        "The `1` rows pass `n_threads=1` (LightGBM, kNN) and cap OpenBLAS/OpenMP at 1 thread with "
        "threadpoolctl; the ratio is the default fit time over the 1-thread fit time (above 1: one thread "
        "was faster). On a machine whose cores are busy with other work, OpenMP threads wait on each other "
        "at every barrier; this shows what that costs here.",
    ]
    return [table]


if __name__ == "__main__":
    common.main(run)
