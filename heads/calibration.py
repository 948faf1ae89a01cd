"""Temperature calibration of a head's probabilities, fitted on held-out rows and kept as plain numbers.

A fitted head's probabilities ``p`` (rows summing to 1) become ``softmax(log(p + smoothing) / T)``.
``T`` > 1 softens over-confident probabilities, ``T`` < 1 sharpens timid ones. ``smoothing`` (additive,
chosen from ``SMOOTHING`` with ``T``, for every head) exists for heads whose probabilities can be exactly
0: a kNN head's vote shares are 0 for every class none of the k neighbours belongs to, and no
temperature moves a 0 (``0 ** (1 / T)`` is 0), so the log-loss of a wrong, certain row stays infinite;
the holdout may happen to hold no such row while later rows do, so the grid is tried whatever the
holdout shows. With ``smoothing`` 0 the map is pure temperature scaling on log-probabilities (Guo et
al., 2017, on a classifier's logits up to a per-row constant); a smoothing above 0 mixes in a little of
the uniform distribution before the temperature, which the fit also picked for the logistic head on GOP
(bench/calibration.py).

Both steps are increasing in ``p`` within a row, so the most probable class, hence ``predict`` and
accuracy, is unchanged (floating point aside: two probabilities within one ulp of each other can tie).

``fit_temperature`` chooses ``smoothing`` from the grid and ``T`` (bounded to ``T_RANGE``, on log T) by
the mean negative log-likelihood of the true classes; fewer than ``MIN_ROWS`` rows leave the head
uncalibrated (``Temperature.identity``) rather than fitting noise. Saved in head.json as
``{"method": "temperature", "temperature": T, "smoothing": s, "rows": n, "nll_before": ..., "nll_after": ...}``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from heads.registry import HeadError

METHODS = ("temperature", "none")
SMOOTHING = (0.0, 1e-3, 1e-2, 3e-2, 0.1)
T_RANGE = (0.05, 20.0)
MIN_ROWS = 50  # holdout rows below which no temperature is fitted


@dataclass(frozen=True)
class Temperature:
    """``softmax(log(p + smoothing) / temperature)``: a monotone map of each row's probabilities.

    Attributes
    ----------
    temperature, smoothing : float
        The fitted numbers (1.0 and 0.0 change nothing).
    rows : int
        Held-out rows the fit used (0: not fitted).
    nll_before, nll_after : float or None
        Mean negative log-likelihood on those rows before and after.
    """

    temperature: float = 1.0
    smoothing: float = 0.0
    rows: int = 0
    nll_before: float | None = None
    nll_after: float | None = None

    @classmethod
    def identity(cls, rows: int = 0) -> Temperature:
        """The map that changes nothing (used when too few rows were held out to fit one)."""
        return cls(1.0, 0.0, rows)

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """The calibrated probabilities of ``proba`` (n_samples, n_classes); rows sum to 1."""
        if self.temperature == 1.0 and self.smoothing == 0.0:
            return proba
        return _scaled(np.asarray(proba, dtype=np.float64), self.temperature, self.smoothing)

    def to_json(self) -> dict:
        """What head.json keeps: the method name and plain numbers."""
        return {"method": "temperature", **asdict(self)}

    @classmethod
    def from_json(cls, value: Any, where: str) -> Temperature | None:
        """Read head.json's ``calibration`` field (None or absent: uncalibrated); HeadError naming ``where`` if malformed."""
        if value is None:
            return None

        def number(v, low, high, optional=False):
            if v is None and optional:
                return True
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high

        if not (isinstance(value, dict) and value.get("method") == "temperature"
                and set(value) <= {"method", "temperature", "smoothing", "rows", "nll_before", "nll_after"}
                and number(value.get("temperature"), *T_RANGE) and number(value.get("smoothing", 0.0), 0.0, 1.0)
                and isinstance(value.get("rows", 0), int) and value.get("rows", 0) >= 0
                and number(value.get("nll_before"), 0, math.inf, True) and number(value.get("nll_after"), 0, math.inf, True)):
            raise HeadError(f"{where}: field 'calibration' should be null or {{'method': 'temperature', 'temperature': "
                            f"a number in {T_RANGE[0]}-{T_RANGE[1]}, 'smoothing': a number in 0-1, 'rows': ...}}, found "
                            f"{value!r}; the head is damaged or was modified: retrain it or restore it from a backup")
        return cls(float(value["temperature"]), float(value.get("smoothing", 0.0)), int(value.get("rows", 0)),
                   value.get("nll_before"), value.get("nll_after"))


def _scaled(proba: np.ndarray, temperature: float, smoothing: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        logits = np.log(proba + smoothing) / temperature  # log 0 = -inf: that class stays at 0
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def _nll(proba: np.ndarray, y: np.ndarray) -> float:
    picked = proba[np.arange(len(y)), y]
    with np.errstate(divide="ignore"):
        return float(-np.mean(np.log(np.maximum(picked, 0.0))))


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> Temperature:
    """The ``Temperature`` that minimizes the mean NLL of ``y`` (encoded class indexes) under ``proba``.

    ``proba`` must be held-out probabilities (rows the head did not train on). Fewer than
    ``MIN_ROWS`` rows: the identity (recorded with its row count).
    """
    from scipy.optimize import minimize_scalar

    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if len(y) < MIN_ROWS:
        return Temperature.identity(len(y))
    before = _nll(proba, y)
    best = (math.inf, 1.0, 0.0)
    low, high = (math.log(t) for t in T_RANGE)
    for smoothing in SMOOTHING:
        found = minimize_scalar(lambda log_t: _nll(_scaled(proba, math.exp(log_t), smoothing), y),
                                bounds=(low, high), method="bounded", options={"xatol": 1e-4})
        if math.isfinite(found.fun) and found.fun < best[0] - 1e-9:
            best = (float(found.fun), float(math.exp(found.x)), smoothing)
    nll, temperature, smoothing = best
    if not math.isfinite(nll) or nll >= before:  # nothing helps: keep the head's own probabilities
        return Temperature(1.0, 0.0, len(y), before if math.isfinite(before) else None,
                           before if math.isfinite(before) else None)
    return Temperature(temperature, smoothing, len(y), before if math.isfinite(before) else None, nll)
