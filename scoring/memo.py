"""Vectors remembered per distinct raw text for the length of one scoring run.

A file that repeats its texts (retweets, a campaign's slogans, the 5,000-distinct benchmark) would
otherwise pay, in every chunk, the tweet normalization, the content hash and the cache look-up of
every row. :class:`VectorMemo` keeps the vector (and the truncation verdict) of each distinct raw
text it has seen, up to ``max_bytes`` of vectors (then it starts afresh), and asks the embedder only
for texts it does not hold. The head still classifies each chunk's rows as one matrix in row order,
exactly as :func:`scoring.predict.predict_texts` does, so the probabilities are the same numbers,
bit for bit (a BLAS product's last bits can depend on how many rows it is given).
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
                grown = np.empty((size, self.dim), dtype=np.float32)
                grown[:start] = self.vectors[:start]
                cut = np.zeros(size, dtype=bool)
                cut[:start] = self.cut[:start]
                self.vectors, self.cut = grown, cut
            self.vectors[start:start + len(new)] = vectors
            self.cut[start:start + len(new)] = self.truncation(new)
            self.slots.update(zip(new, range(start, start + len(new))))
            slots[missing] = np.arange(start, start + len(new))
        rows = slots[codes]
        return np.asarray(self.classifier.predict_proba(self.vectors[rows])), self.cut[rows], encoded
