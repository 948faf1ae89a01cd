"""scoring.memo: a repeated text's probabilities are reused only where they are the chunk's own bits."""
from __future__ import annotations

import numpy as np
import pytest

from heads import get_head, load_head
from scoring.memo import VectorMemo, row_stable
from tests.conftest import sample_heads


@pytest.fixture(scope="module")
def shared(tmp_path_factory, minilm_path):
    return sample_heads(tmp_path_factory.mktemp("memo"))


class BatchSized:
    """A classifier whose probabilities depend, in their last bits, on how many rows it is given."""

    def __init__(self, head):
        self.head, self.classes_ = head, head.classes_

    def predict_proba(self, X):
        proba = self.head.predict_proba(X)
        return proba * (1 + len(X) * np.finfo(float).eps)


def _chunks(rows, seed=0):
    rng = np.random.default_rng(seed)
    texts = [row["text"] for row in rows]
    return [[texts[i] for i in rng.integers(0, len(texts), size)] for size in (300, 1, 2, 57, 1, 300)]


@pytest.mark.parametrize("kind", ["logistic", "batch-sized", "knn"])
def test_memo_gives_each_chunk_its_own_probabilities_bit_for_bit(shared, kind):
    head = load_head(shared["head"])
    if kind == "batch-sized":
        classifier = BatchSized(head)
    elif kind == "knn":
        vectors, _ = shared["embedder"].embed([row["text"] for row in shared["rows"]])
        classifier = get_head("knn", k=5).fit(vectors, [row["label"] for row in shared["rows"]])
    else:
        classifier = head
    memo = VectorMemo(shared["embedder"], classifier)
    for texts in _chunks(shared["rows"]):
        proba, _, _ = memo(texts)
        vectors, _ = shared["embedder"].embed(texts)
        expected = np.asarray(classifier.predict_proba(vectors))  # what predict_texts gives the chunk
        assert proba.dtype == expected.dtype and proba.tobytes() == expected.tobytes()
    assert memo.stable is (kind != "batch-sized")  # reused only where the check found the bits alike


def test_row_stable_refuses_what_depends_on_the_batch(shared):
    head = load_head(shared["head"])
    vectors, _ = shared["embedder"].embed([row["text"] for row in shared["rows"]])
    assert row_stable(head, vectors)[0]
    assert not row_stable(BatchSized(head), vectors)[0]
    assert not row_stable(head, vectors[:3])[0]  # too few rows to tell
