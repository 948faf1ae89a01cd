"""A file-level check that the tweets being scored look like the tweets the head was trained on.

A head's accuracy on its eval split says nothing about tweets from another topic: a logistic head
on frozen MiniLM trained on tweet_sentiment_extraction scores the GOP eval split below the majority
class while its probabilities look as confident as ever. Per row this is hard to see (the distance
to the nearest training vectors separates its errors barely better than chance), but a file as a
whole is easy to tell apart: a **domain classifier** (logistic regression, scikit-learn) that tries
to tell a sample of the scored file's vectors from the head's reference sample of its training
vectors. Its cross-validated ROC AUC is about 0.5 when the two are alike and near 1.0 when they
are not; the check fires at ``DriftConfig.auc_threshold``.

Why a domain classifier and not MMD: it needs no kernel bandwidth, its AUC reads the same at any
dimension and sample size, and scikit-learn's logistic regression is already a dependency; the
AUC's spread between same-domain samples is measured in BENCHMARKS.md ("Drift check").

The scored file's side is a reservoir sample (:class:`VectorSample`), so the check costs the same
for a file of any size and is seeded, so a rerun reports the same number.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embed.errors import DataError

REFERENCE_FILE = "drift_reference.npy"  # in a head folder: float16 rows of its training vectors


@dataclass(frozen=True)
class DriftConfig:
    """How the check runs: rows per side, folds, the AUC at which it fires, and the seed."""

    sample: int = 1000  # rows of the scored file (reservoir) and of the reference, at most
    min_rows: int = 100  # fewer scored rows than this: no verdict (the AUC would be noise)
    folds: int = 5
    auc_threshold: float = 0.75
    seed: int = 0

    def __post_init__(self):
        if self.sample < self.min_rows or self.min_rows < 2 * self.folds:
            raise DataError(f"drift check: sample ({self.sample}) must be at least min_rows ({self.min_rows}), and "
                            f"min_rows at least twice the folds ({self.folds})")
        if not 0.5 < self.auc_threshold <= 1.0:
            raise DataError(f"drift check: auc_threshold must be above 0.5 and at most 1, got {self.auc_threshold}")


@dataclass(frozen=True)
class DriftResult:
    """The check's verdict: the domain AUC (None: too few rows), the rows on each side, and whether it fired."""

    auc: float | None
    rows_scored: int
    rows_reference: int
    threshold: float
    skipped: str | None = None  # why no check ran at all (no reference, another engine)

    @property
    def fired(self) -> bool:
        """Whether the scored tweets differ from the training tweets by the threshold."""
        return self.auc is not None and self.auc >= self.threshold

    def line(self) -> str:
        """One line for the summary."""
        if self.skipped:
            return f"drift check: not run ({self.skipped})"
        if self.auc is None:
            return (f"drift check: too few rows for a verdict ({self.rows_scored:,} scored, {self.rows_reference:,} "
                    "in the head's reference)")
        if self.fired:
            return (f"drift check: these tweets differ from the head's training tweets (domain AUC {self.auc:.2f}, "
                    f"fires at {self.threshold:g}): expect lower accuracy than the head's eval, and probabilities "
                    "that overstate it")
        return (f"drift check: these tweets look like the head's training tweets (domain AUC {self.auc:.2f}, "
                f"fires at {self.threshold:g})")

    def as_dict(self) -> dict:
        """The result as plain JSON values."""
        return {"auc": self.auc, "fired": self.fired, "threshold": self.threshold, "rows_scored": self.rows_scored,
                "rows_reference": self.rows_reference, "skipped": self.skipped}


class Reservoir:
    """A uniform sample of at most ``size`` items from batches seen one after another (algorithm R), seeded."""

    def __init__(self, size: int, seed: int = 0):
        self.size, self.seen = size, 0
        self.kept: list = []
        self._rng = np.random.default_rng(seed)

    def add(self, items) -> None:
        """Offer ``items`` (a sequence, or an Arrow array: only the items kept become Python objects);
        each item seen so far stays in the sample with probability size/seen."""
        n = len(items)
        first = min(max(self.size - len(self.kept), 0), n)
        if first:
            self.kept.extend(_at(items, np.arange(first)))
            self.seen += first
        if first == n:
            return
        # item i of the stream (0-based) replaces a random slot with probability size/(i+1)
        index = self.seen + np.arange(n - first)
        slots = (self._rng.random(n - first) * (index + 1)).astype(np.int64)
        hits = np.flatnonzero(slots < self.size)
        for item, slot in zip(_at(items, first + hits), slots[hits]):  # later items overwrite earlier ones
            self.kept[slot] = item
        self.seen += n - first


def _at(items, positions: np.ndarray) -> list:
    """``items[i] for i in positions`` as a list; of an Arrow array, taken by Arrow."""
    if hasattr(items, "to_pylist"):
        return items.take(positions).to_pylist()
    return [items[i] for i in positions]


class VectorSample(Reservoir):
    """A :class:`Reservoir` of vector rows."""

    def add(self, X) -> None:
        """Offer the rows of ``X``."""
        super().add(list(np.asarray(X, dtype=np.float32)))

    def vectors(self) -> np.ndarray:
        """The sampled rows (fewer than ``size`` when fewer were seen)."""
        return np.stack(self.kept) if self.kept else np.empty((0, 0), dtype=np.float32)


class KeyedSample:
    """A uniform sample of ``size`` rows over chunks scored anywhere, in any order: ``score --engine ray``'s.

    Every row of chunk ``(file, chunk)`` gets a random key from a generator seeded by ``(seed, file,
    chunk)``; the sample is the ``size`` rows with the smallest keys over all chunks, which is a
    uniform draw without replacement, and the same whichever actor scored a chunk and whichever
    chunk finished first. A worker sends its chunk's :func:`keyed_part` (the chunk's own ``size``
    smallest keys: no fewer can be sure to hold its share); the driver ``add``s them.
    """

    def __init__(self, size: int = DriftConfig.sample):
        self.size = size
        self.keys = np.empty(0)
        self.where = np.empty((0, 3), dtype=np.int64)  # (file, chunk, row in the chunk) of each kept row
        self.rows: np.ndarray | None = None

    def add(self, file: int, chunk: int, part: dict) -> None:
        """Merge one chunk's part (see :func:`keyed_part`), keeping the ``size`` smallest keys."""
        keys = np.frombuffer(part["drift_keys"], dtype=np.float64)
        if not len(keys):
            return
        rows = np.frombuffer(part["drift_rows"], dtype=np.int64)
        vectors = np.frombuffer(part["drift_vectors"], dtype=np.float16).reshape(len(keys), -1)
        where = np.column_stack([np.full(len(keys), file), np.full(len(keys), chunk), rows])
        self.keys = np.concatenate([self.keys, keys])
        self.where = np.concatenate([self.where, where])
        self.rows = vectors.copy() if self.rows is None else np.concatenate([self.rows, vectors])
        keep = np.argsort(self.keys, kind="stable")[:self.size]
        self.keys, self.where, self.rows = self.keys[keep], self.where[keep], self.rows[keep]

    def vectors(self) -> np.ndarray:
        """The kept rows in input order (file, chunk, row): a file of at most ``size`` rows gives all its rows
        in the order the local engine's reservoir keeps them, so both engines check the same rows."""
        if self.rows is None:
            return np.empty((0, 0), dtype=np.float32)
        order = np.lexsort(self.where.T[::-1])
        return self.rows[order].astype(np.float32)


def keyed_part(vectors: np.ndarray, file: int, chunk: int, size: int = DriftConfig.sample,
               seed: int = DriftConfig.seed) -> dict:
    """A chunk's share of a :class:`KeyedSample`: its ``size`` rows with the smallest keys, as bytes (float16 vectors)."""
    vectors = np.asarray(vectors)
    keys = np.random.default_rng([seed, file, chunk]).random(len(vectors))
    rows = np.sort(np.argsort(keys, kind="stable")[:size])
    return {"drift_keys": keys[rows].tobytes(), "drift_rows": rows.astype(np.int64).tobytes(),
            "drift_vectors": vectors[rows].astype(np.float16).tobytes()}


NO_PART = {"drift_keys": b"", "drift_rows": b"", "drift_vectors": b""}  # a chunk that sends no sample


def not_run(why: str) -> DriftResult:
    """A result that says why no check ran (printed as the summary's drift line)."""
    return DriftResult(None, 0, 0, DriftConfig.auc_threshold, why)


def missing_reference(classifier, end_to_end: bool) -> str | None:
    """Why ``classifier`` cannot be drift-checked (it keeps no reference vectors), or None when it can."""
    if getattr(classifier, "drift_reference_", None) is not None:
        return None
    if end_to_end:
        return "the end-to-end model keeps no drift reference; score with a head for it"
    return ("the head keeps no drift reference: it was saved before tweetheads kept one, or with "
            "--no-drift-reference; train it again for the check")


def reference_sample(X: np.ndarray, size: int = DriftConfig.sample, seed: int = 0) -> np.ndarray:
    """A head's reference: at most ``size`` of its training vectors, drawn without replacement, as float16."""
    X = np.asarray(X)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(X), size=min(size, len(X)), replace=False) if len(X) > size else np.arange(len(X))
    return X[np.sort(rows)].astype(np.float16)


def domain_auc(reference: np.ndarray, scored: np.ndarray, config: DriftConfig = DriftConfig()) -> DriftResult:
    """Cross-validated ROC AUC of a logistic classifier telling ``scored`` rows from ``reference`` rows.

    Both sides are cut to the same number of rows (at most ``config.sample``), so the AUC does not
    depend on which side is larger.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    reference, scored = np.asarray(reference, dtype=np.float32), np.asarray(scored, dtype=np.float32)
    if reference.ndim != 2 or scored.ndim != 2 or (len(scored) and reference.shape[1] != scored.shape[1]):
        raise DataError(f"drift check: the reference vectors ({reference.shape}) and the scored vectors "
                        f"({scored.shape}) must be 2-d with the same width; the head's reference comes from "
                        "another model: retrain the head")
    n = min(len(reference), len(scored), config.sample)
    if n < config.min_rows:
        return DriftResult(None, len(scored), len(reference), config.auc_threshold)
    rng = np.random.default_rng(config.seed)
    a = reference[rng.choice(len(reference), n, replace=False)]
    b = scored[rng.choice(len(scored), n, replace=False)]
    X = np.concatenate([a, b])
    y = np.r_[np.zeros(n), np.ones(n)]
    folds = StratifiedKFold(config.folds, shuffle=True, random_state=config.seed)
    # one BLAS thread: these are small matrices, and on busy cores OpenBLAS's threads spin-wait on each other
    # (1,000 + 1,000 MiniLM GOP rows: 0.6-0.8 s with one thread, 37-38 s with OpenBLAS's two, same AUC, measured
    # alternately on 2 cores shared with other work, load ~9; a quiet machine was not measured)
    with threadpool_limits(limits=1, user_api="blas"):
        proba = cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), X, y, cv=folds,
                                  method="predict_proba")[:, 1]
    return DriftResult(float(roc_auc_score(y, proba)), len(scored), len(reference), config.auc_threshold)
