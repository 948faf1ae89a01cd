"""Vectors remembered per distinct raw text for the length of one scoring run.

A file that repeats its texts (retweets, a campaign's slogans, the 5,000-distinct benchmark) would
otherwise pay, in every chunk, the tweet normalization, the content hash and the cache look-up of
every row. :class:`VectorMemo` keeps the vector (and the truncation verdict) of each distinct raw
text it has seen, up to ``max_bytes`` of vectors (then it starts afresh), and asks the embedder only
for texts it does not hold.

It remembers each text's probabilities as well, so a repeated text is classified once, where the
classifier gives a row the same bits whatever batch it comes in: checked on the run's first batch of
new texts (:func:`row_stable`: the batch whole against it cut into uneven pieces and reversed). A
classifier that fails the check (a BLAS product's last bits can depend on how many rows it is given)
classifies each chunk's rows as one matrix in row order, exactly as
:func:`scoring.predict.predict_texts` does; either way the probabilities are the numbers that
``predict_texts`` gives the chunk, bit for bit.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .predict import Classifier, Truncation

if TYPE_CHECKING:
    from embed.encoder import Embedder

MEMO_BYTES = 32 << 20  # vectors held: 21,845 texts of 384-d, 10,922 of 768-d


class VectorMemo:
    """``memo(texts) -> (probabilities, truncated, encoded)``, as ``Predictor.predict_counted`` answers."""

    def __init__(self, embedder: Embedder, classifier: Classifier, max_bytes: int = MEMO_BYTES):
        self.embedder, self.classifier = embedder, classifier
        self.dim = embedder.load().dim
        self.capacity = max(4096, max_bytes // (4 * self.dim))
        self.truncation = Truncation(embedder)
        self.slots: dict[str, int] = {}
        self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self.cut = np.zeros(0, dtype=bool)
        self.stable: bool | None = None  # rows classified alike in any batch (None: not checked yet)
        self.proba: np.ndarray | None = None  # each slot's probabilities, once stable (the classifier's dtype)

    def __call__(self, texts, unique: list[str] | None = None, codes: np.ndarray | None = None):
        """Probabilities for ``texts`` (a list, or pass ``unique`` and ``codes``: texts = unique[codes])."""
        if unique is None:
            index: dict[str, int] = {}
            codes = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
            unique = list(index)
        n_classes = len(self.classifier.classes_)
        if len(codes) == 0:
            return np.zeros((0, n_classes)), np.zeros(0, dtype=bool), 0
        get = self.slots.get
        slots = np.fromiter((get(t, -1) for t in unique), np.int64, len(unique))
        missing = np.flatnonzero(slots < 0)
        encoded = 0
        if len(missing):
            if len(self.slots) + len(missing) > self.capacity:  # start afresh: every text of this chunk is asked for
                self.slots.clear()
                missing = np.arange(len(unique))
            new = [unique[i] for i in missing]
            vectors, stats = self.embedder.embed(new)
            encoded = stats.encoded
            start = len(self.slots)
            if start + len(new) > len(self.vectors):  # allocated once (pages count only once written)
                size = max(start + len(new), self.capacity)
                self.vectors, self.cut = _grown(self.vectors, start, size), _grown(self.cut, start, size)
                if self.proba is not None:
                    self.proba = _grown(self.proba, start, size)
            self.vectors[start:start + len(new)] = vectors
            self.cut[start:start + len(new)] = self.truncation(new)
            end = start + len(new)
            if self.stable is None and end >= 4:  # decided once, on every vector held so far
                self.stable, proba = row_stable(self.classifier, self.vectors[:end])
                if self.stable:
                    self.proba = np.zeros((len(self.vectors), proba.shape[1]), dtype=proba.dtype)
                    self.proba[:end] = proba
            elif self.stable:
                self.proba[start:end] = _classified(self.classifier, vectors)
            self.slots.update(zip(new, range(start, start + len(new))))
            slots[missing] = np.arange(start, start + len(new))
        rows = slots[codes]
        if self.stable and len(rows) > 1:  # one row alone: the classifier's own answer for one row, as before
            return self.proba[rows], self.cut[rows], encoded
        return np.asarray(self.classifier.predict_proba(self.vectors[rows])), self.cut[rows], encoded


def _grown(array: np.ndarray, kept: int, size: int) -> np.ndarray:
    """``array``'s first ``kept`` rows in a new zeroed array of ``size`` rows."""
    grown = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
    grown[:kept] = array[:kept]
    return grown


def _classified(classifier: Classifier, vectors: np.ndarray) -> np.ndarray:
    """``classifier.predict_proba(vectors)``, a lone row given as two (a one-row product is a BLAS
    matrix-vector product, whose last bits can differ from the matrix product's)."""
    if len(vectors) == 1:
        return np.asarray(classifier.predict_proba(np.repeat(vectors, 2, axis=0)))[:1]
    return np.asarray(classifier.predict_proba(vectors))


def row_stable(classifier: Classifier, vectors: np.ndarray) -> tuple[bool, np.ndarray]:
    """Whether ``classifier`` gives each row of ``vectors`` (4 or more) the same probabilities, bit for
    bit, in uneven pieces of 2 rows or more and in reverse order as in the whole batch (then a row's
    probabilities can be kept and reused in any chunk of 2 rows or more), and the whole batch's."""
    whole = np.asarray(classifier.predict_proba(vectors))
    if not getattr(classifier, "batch_invariant", True) or len(vectors) < 4:
        return False, whole
    cuts = sorted({0, 2, min(9, len(vectors) - 2), len(vectors) // 2 + 1, len(vectors)})
    pieces = [_classified(classifier, vectors[a:b]) for a, b in zip(cuts, cuts[1:])]
    pieces.append(_classified(classifier, vectors[:1]))  # a lone new text is classified as two rows
    backwards = np.asarray(classifier.predict_proba(vectors[::-1]))[::-1]
    same = all(p.dtype == whole.dtype for p in [*pieces, backwards]) and (
        np.concatenate(pieces[:-1]).tobytes() == whole.tobytes() == np.ascontiguousarray(backwards).tobytes()
        and pieces[-1].tobytes() == whole[:1].tobytes())
    return same, whole
