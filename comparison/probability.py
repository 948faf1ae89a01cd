"""How far a method's probabilities can be trusted: calibration error, proper scores, selective accuracy.

Definitions (stated in ``report.md`` too):

- **ECE**, expected calibration error: the top-class probability (the confidence) of each row is put
  in one of ``BINS`` = 15 equal-width bins over [0, 1] (bin b holds confidences in (b/15, (b+1)/15],
  the first one 0 too); ECE = sum over bins of (rows in bin / rows) * |accuracy in bin - mean
  confidence in bin| (Guo et al., 2017; Naeini et al., 2015). 0 is perfect.
- **Brier score**, multi-class: the squared distance between the probability row and the one-hot
  true label, summed over classes and averaged over rows (Brier's original form, 0 best, 2 worst;
  sklearn's binary ``brier_score_loss`` is half of it for two classes).
- **log-loss**: ``sklearn.metrics.log_loss`` with the report's class list given (a probability of 0
  for the true class is clipped to the float epsilon by scikit-learn, so it is large, not infinite).
- **selective accuracy at coverage c**: rows sorted by confidence, most confident first (ties kept
  in file order), accuracy on the first ceil(c * rows); at 100% it is the accuracy.

Every function takes ``proba`` with columns in the order of ``classes``; ``aligned`` puts a
classifier's own columns in that order (0 for a class it does not know).

``cross_fitted`` calibrates rows by a temperature none of them was fitted on (K folds, each by the T of
the others): how ``compare`` scores a run's end-to-end probabilities on the very file the run's
temperature was fitted on.
"""
from __future__ import annotations

import math

import numpy as np

BINS = 15
COVERAGES = (0.5, 0.8, 0.9, 1.0)
FOLDS = 5  # cross_fitted's default: each fold's T fitted on the other 80% of the rows


def aligned(proba: np.ndarray, own: list, classes: list[str]) -> np.ndarray:
    """``proba`` (columns in ``own`` order) with columns in ``classes`` order; a class ``own`` lacks gets 0."""
    proba = np.asarray(proba, dtype=np.float64)
    out = np.zeros((len(proba), len(classes)))
    where = {str(c): i for i, c in enumerate(own)}
    for j, c in enumerate(classes):
        if c in where:
            out[:, j] = proba[:, where[c]]
    return out


def prior_proba(train_labels: list, classes: list[str], rows: int) -> np.ndarray:
    """The training file's class shares as every row's probabilities: the majority baseline's honest probabilities."""
    labels = [str(label) for label in train_labels]
    shares = np.array([labels.count(c) for c in classes], dtype=np.float64) / max(len(labels), 1)
    return np.tile(shares, (rows, 1))


def reliability(proba: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin: its edges, row count, mean confidence and accuracy (None for an empty bin)."""
    confidence = proba.max(axis=1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        out.append({"low": b / bins, "high": (b + 1) / bins, "rows": n,
                    "confidence": float(confidence[inside].mean()) if n else None,
                    "accuracy": float(correct[inside].mean()) if n else None})
    return out


def ece(proba: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over ``bins`` equal-width bins of the top-class probability."""
    total = len(correct)
    if total == 0:
        return float("nan")
    return float(sum(b["rows"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(proba, correct, bins) if b["rows"]))


def brier(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> float:
    """Multi-class Brier score: sum over classes of (p - onehot)^2, mean over rows (0 best, 2 worst)."""
    onehot = (np.asarray(y).astype(str)[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def log_loss(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> float:
    """``sklearn.metrics.log_loss`` with ``labels=classes`` (rows renormalized as scikit-learn expects)."""
    from sklearn.metrics import log_loss as sk_log_loss

    return float(sk_log_loss(np.asarray(y).astype(str), proba, labels=classes))


def selective_order(proba: np.ndarray) -> np.ndarray:
    """Row indexes, most confident first; equal confidences keep file order."""
    return np.argsort(-proba.max(axis=1), kind="stable")


def selective_accuracy(proba: np.ndarray, correct: np.ndarray, coverages=COVERAGES) -> dict[str, float]:
    """``{"0.5": accuracy on the most confident half, ...}`` (keys: the coverage as a string).

    A coverage keeps ceil(c * rows) rows, at least one.
    """
    ordered = correct[selective_order(proba)]
    return {f"{c:g}": float(ordered[:max(1, math.ceil(c * len(ordered)))].mean()) for c in coverages}


def coverage_curve(proba: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy) at every row count, most confident first: the coverage-accuracy curve."""
    ordered = correct[selective_order(proba)].astype(np.float64)
    n = np.arange(1, len(ordered) + 1)
    return n / len(ordered), np.cumsum(ordered) / n


def probability_metrics(proba: np.ndarray, y: np.ndarray, classes: list[str], correct: np.ndarray) -> dict:
    """ECE, Brier, log-loss, mean confidence, selective accuracy and the reliability bins of one subset.

    ``correct``: whether the method's prediction (its argmax) is right, row by row.
    """
    if len(y) == 0:
        return {}
    correct = np.asarray(correct, dtype=bool)
    return {"ece": ece(proba, correct), "brier": brier(proba, y, classes), "log_loss": log_loss(proba, y, classes),
            "mean_confidence": float(proba.max(axis=1).mean()),
            "selective_accuracy": selective_accuracy(proba, correct),
            "reliability": reliability(proba, correct)}


def cross_fitted(proba: np.ndarray, codes: np.ndarray, folds: int = FOLDS, seed: int = 42) -> tuple[np.ndarray, list]:
    """Out-of-fold temperature calibration: ``proba``'s rows in ``folds`` shuffled folds (stratified by ``codes``
    where every code has ``folds`` rows), each fold's probabilities mapped by the ``heads.calibration.Temperature``
    fitted (``fit_temperature``) on the other folds' rows. ``codes``: class indexes into ``proba``'s columns, -1
    for a row to calibrate but not fit on. Returns the calibrated probabilities and the fitted temperatures.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    from heads.calibration import fit_temperature

    proba, codes = np.asarray(proba, dtype=np.float64), np.asarray(codes)
    out = proba.copy()
    if len(codes) < folds:
        return out, []
    stratified = np.unique(codes, return_counts=True)[1].min() >= folds
    splitter = (StratifiedKFold if stratified else KFold)(folds, shuffle=True, random_state=seed)
    fitted = []
    for fit, apply in splitter.split(proba, codes):
        fit = fit[codes[fit] >= 0]
        temperature = fit_temperature(proba[fit], codes[fit])
        out[apply] = temperature.apply(proba[apply])
        fitted.append(temperature)
    return out, fitted
