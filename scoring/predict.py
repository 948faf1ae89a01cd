"""Texts to class probabilities: the piece that both scoring engines run, in the driver or in a Ray actor.

``load_classifier`` rebuilds a head or a run's end-to-end classifier from its spec (``("head",
folder)`` or ``("e2e", run folder)``), ``predict_texts`` embeds texts through the cache and
classifies them, and ``Truncation`` tells which texts the encoder cut. :mod:`scoring.score` and
:mod:`scoring.ray_engine` both import this module, and it imports neither.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from embed.normalize import normalizer

if TYPE_CHECKING:
    from embed.encoder import Embedder

E2E = "e2e"


class Classifier(Protocol):
    """What scoring needs of a head or a run's end-to-end classifier: its classes and probabilities."""

    classes_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, len(classes_))`` for vectors ``X`` ``(n, dim)``."""


def predict_texts(embedder: Embedder, classifier: Classifier, truncation: Truncation, texts: list[str],
                  on_vectors: Callable[[np.ndarray], None] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Class probabilities (rows in ``texts`` order), which texts the encoder truncated, and how many
    distinct texts had to be encoded (the rest came from the cache). ``on_vectors(vectors)``, if
    given, sees the texts' vectors (rows in ``texts`` order): the drift check's sample of them."""
    if not texts:
        return np.zeros((0, len(classifier.classes_))), np.zeros(0, dtype=bool), 0
    vectors, stats = embedder.embed(texts)
    if on_vectors is not None:
        on_vectors(vectors)
    return np.asarray(classifier.predict_proba(vectors)), truncation(texts), stats.encoded


class Truncation:
    """Which texts the encoder cuts: more tokens (special tokens included) than its max length.

    Only texts whose UTF-8 length could exceed the limit are tokenized (a token covers at least
    half a byte for WordPiece, BPE and SentencePiece vocabularies), and verdicts are memoized. The
    length is first bounded on the raw text (normalization only shortens a tweet, except that a
    mention becomes ``@user``: at most 3 bytes longer each), so a short tweet is not normalized here.
    """

    def __init__(self, embedder: Embedder, memo_size: int = 50_000):
        self.encoder = embedder.load()
        self.normalize, _ = normalizer(embedder.normalize)
        self.memo: dict[str, bool] = {}
        self.memo_size = memo_size

    def __call__(self, texts: list[str]) -> np.ndarray:
        limit = self.encoder.max_length
        # 2 * (bytes + 3 per "@") + 4 bounds what the normalized text can need; under the limit, it is not cut
        maybe = [i for i, text in enumerate(texts)
                 if 2 * (len(text.encode("utf-8", "surrogatepass")) + 3 * text.count("@")) + 4 > limit]
        if not maybe:
            return np.zeros(len(texts), dtype=bool)
        normalized = [self.normalize(texts[i]) for i in maybe]
        risky = [text for text in normalized if 2 * len(text.encode("utf-8", "surrogatepass")) + 4 > limit]
        new = list(dict.fromkeys(text for text in risky if text not in self.memo))
        if new:
            if len(self.memo) + len(new) > self.memo_size:
                self.memo.clear()
            ids = self.encoder.ensure_tokenizer()(new, add_special_tokens=True, truncation=True,
                                                  max_length=limit + 1)["input_ids"]
            self.memo.update((text, len(row) > limit) for text, row in zip(new, ids))
        cut = np.zeros(len(texts), dtype=bool)
        if risky:
            cut[maybe] = [self.memo.get(text, False) for text in normalized]
        return cut


def load_classifier(spec: tuple[str, str]) -> Classifier:
    """The classifier named by ``Plan.head_spec`` (no checks: ``prepare`` made them)."""
    kind, folder = spec
    if kind == E2E:
        from embed.runs import EndToEndClassifier

        return EndToEndClassifier(folder)
    from heads import load_head

    return load_head(folder)
