"""Accuracy of a ``score`` run against a gold label column, counted chunk by chunk in bounded memory.

When the scored files carry the label the head was trained on (``--label-col``, or the column name
recorded when the head or run was trained), every scored row is compared with it. Only a confusion
matrix and two counters are kept, so memory does not grow with the input, and the tally travels in
the progress file, so a resumed run reports the same figures as an uninterrupted one.

Gold cells are read as the training data is (``str(value).strip()``). A row whose gold cell is
empty is counted as *missing*, one whose label the head does not know as *unknown*; both are
reported, neither is dropped from the output, and neither enters accuracy or macro-F1.
Macro-F1 follows scikit-learn's ``f1_score(average="macro")``: the mean over the labels that occur
in the gold or the predicted column, F1 0 where precision or recall is undefined.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EXAMPLES = 5  # distinct unknown labels named in the summary


@dataclass
class GoldTally:
    """Confusion counts (gold row, predicted column, in ``classes`` order) plus missing and unknown rows."""

    column: str
    classes: list[str]
    confusion: np.ndarray = field(default=None)  # type: ignore[assignment]
    missing: int = 0
    unknown: int = 0
    unknown_labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        if self.confusion is None:
            self.confusion = np.zeros((len(self.classes), len(self.classes)), dtype=np.int64)
        self._index = {name: i for i, name in enumerate(self.classes)}

    def add(self, gold: list, predicted: np.ndarray) -> None:
        """Count one chunk: ``gold`` cells (None when the file has no such column) against predicted class indexes."""
        for value, guess in zip(gold, predicted.tolist()):
            text = "" if value is None else str(value).strip()
            if not text:
                self.missing += 1
                continue
            at = self._index.get(text)
            if at is None:
                self.unknown += 1
                if text not in self.unknown_labels and len(self.unknown_labels) < _EXAMPLES:
                    self.unknown_labels.append(text)
                continue
            self.confusion[at, guess] += 1

    def merge(self, other: GoldTally) -> None:
        """Add another tally of the same column and classes (chunks counted apart, e.g. by Ray workers)."""
        self.confusion += other.confusion
        self.missing += other.missing
        self.unknown += other.unknown
        for label in other.unknown_labels:
            if label not in self.unknown_labels and len(self.unknown_labels) < _EXAMPLES:
                self.unknown_labels.append(label)

    @property
    def labelled(self) -> int:
        """Rows counted: those with a gold label the head knows."""
        return int(self.confusion.sum())

    def accuracy(self) -> float | None:
        """Accuracy on the counted rows, or None before any."""
        return float(np.trace(self.confusion) / self.labelled) if self.labelled else None

    def macro_f1(self) -> float | None:
        """Macro-F1 over the classes that occur as gold or prediction, or None before any counted row."""
        if not self.labelled:
            return None
        hits = np.diag(self.confusion).astype(float)
        gold, guessed = self.confusion.sum(axis=1), self.confusion.sum(axis=0)
        present = (gold + guessed) > 0
        f1 = np.divide(2 * hits, gold + guessed, out=np.zeros_like(hits), where=present)
        return float(f1[present].mean())

    def line(self) -> str:
        """One line for the summary: accuracy and macro-F1 against the gold column, and the rows not counted."""
        if not self.labelled:
            text = f"against {self.column!r}: no row has a known gold label"
        else:
            text = (f"against {self.column!r}: accuracy {self.accuracy():.4f}, macro-F1 {self.macro_f1():.4f} "
                    f"on {self.labelled:,} labelled rows")
        extra = []
        if self.missing:
            extra.append(f"{self.missing:,} without a gold label")
        if self.unknown:
            names = ", ".join(map(repr, self.unknown_labels)) + (", ..." if len(self.unknown_labels) == _EXAMPLES else "")
            extra.append(f"{self.unknown:,} with a label the head does not know ({names})")
        return text + (f" ({'; '.join(extra)}; scored, not counted)" if extra else "")

    def state(self) -> dict:
        """The counts as JSON values, for the progress file (``from_state`` reads them back)."""
        return {"column": self.column, "confusion": self.confusion.tolist(), "missing": self.missing,
                "unknown": self.unknown, "unknown_labels": list(self.unknown_labels)}

    @classmethod
    def from_state(cls, state: dict, classes: list[str]) -> GoldTally:
        """A tally continued from ``state`` (a resumed run)."""
        return cls(state["column"], classes, np.asarray(state["confusion"], dtype=np.int64), int(state["missing"]),
                   int(state["unknown"]), list(state["unknown_labels"]))
