"""Logistic regression head: standardise each dimension, then multinomial logistic regression.

The strength of the L2 penalty, `C`, is either given or chosen from the small grid `Cs`:
by accuracy on (X_eval, y_eval) when an evaluation set is passed to fit, otherwise by
stratified `cv`-fold cross-validation on the training set (scaler refitted inside each
fold). Ties go to the smaller C (stronger regularisation). When some class has fewer than
two examples, cross-validation is impossible and C=1.0 is used. The chosen value is `C_`;
`n_iter_` counts the lbfgs iterations of the final fit.

Prediction is computed here from the saved arrays (mean, scale, coef, intercept), not by a
stored sklearn object, so `weights.npz` restores `predict_proba` bit for bit.

Left out: L1/elastic-net penalties, class weights and probability calibration (wrap the
head in `CalibratedClassifierCV` if needed).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import expit, softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from heads.base import BaseHead, HeadError, damaged, dump_arrays, load_arrays, register


@register("logistic")
class LogisticHead(BaseHead):
    _files = ("weights.npz",)
    _state_attrs = ("C_", "n_iter_")

    def __init__(self, *, C=None, Cs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0), cv=3, max_iter=1000,
                 tol=1e-4):
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.tol = tol

    def _check_params(self) -> None:
        if self.C is not None and not (isinstance(self.C, (int, float)) and self.C > 0):
            raise HeadError(f"C must be a positive number or None (choose from Cs), "
                            f"found {self.C!r}")
        if self.C is None and (len(self.Cs) == 0 or min(self.Cs) <= 0):
            raise HeadError(f"Cs must be a non-empty list of positive numbers, found {self.Cs!r}")
        if not (isinstance(self.cv, int) and self.cv >= 2):
            raise HeadError(f"cv must be an integer >= 2, found {self.cv!r}")

    def _logreg(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, solver="lbfgs", max_iter=self.max_iter, tol=self.tol)

    def _fit(self, X, y, X_eval, y_eval) -> None:
        X = X.astype(np.float64, copy=False)
        scaler = StandardScaler().fit(X)
        self.mean_, self.scale_ = scaler.mean_, scaler.scale_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # grid points only
            self.C_ = float(self.C if self.C is not None else self._choose_C(X, y, X_eval, y_eval))
        model = self._logreg(self.C_).fit(scaler.transform(X), y)
        self.coef_, self.intercept_ = model.coef_, model.intercept_
        self.n_iter_ = int(model.n_iter_.max())

    def _choose_C(self, X, y, X_eval, y_eval) -> float:
        grid = sorted(float(c) for c in self.Cs)
        if X_eval is not None:
            Xs = (X - self.mean_) / self.scale_
            Xe = (X_eval.astype(np.float64) - self.mean_) / self.scale_
            scores = [self._logreg(C).fit(Xs, y).score(Xe, y_eval) for C in grid]
        else:
            n_splits = min(self.cv, int(np.bincount(y).min()))
            if n_splits < 2:
                return 1.0
            folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
            scores = [cross_val_score(make_pipeline(StandardScaler(), self._logreg(C)),
                                      X, y, cv=folds).mean() for C in grid]
        return grid[int(np.argmax(scores))]

    def selected_params(self) -> dict:
        check_is_fitted(self)
        return {"C": float(self.C_)}

    def _predict_proba(self, X) -> np.ndarray:
        scores = ((X.astype(np.float64) - self.mean_) / self.scale_) @ self.coef_.T
        scores += self.intercept_
        if self.coef_.shape[0] == 1:  # binary: sklearn keeps one row for the second class
            p = expit(scores[:, 0])
            return np.column_stack([1.0 - p, p])
        return softmax(scores, axis=1)

    def _dump(self) -> dict[str, bytes]:
        return {"weights.npz": dump_arrays(mean=self.mean_, scale=self.scale_, coef=self.coef_,
                                           intercept=self.intercept_)}

    def _restore(self, files: dict[str, bytes]) -> None:
        mean, scale, coef, intercept = load_arrays(files["weights.npz"], "weights.npz",
                                                   ("mean", "scale", "coef", "intercept"))
        rows = 1 if len(self.classes_) == 2 else len(self.classes_)
        if (mean.shape != (self.n_features_in_,) or scale.shape != mean.shape
                or coef.shape != (rows, self.n_features_in_) or intercept.shape != (rows,)
                or any(a.dtype != np.float64 for a in (mean, scale, coef, intercept))):
            raise damaged("weights.npz", f"does not hold float64 arrays for "
                          f"{len(self.classes_)} classes x {self.n_features_in_} features")
        self.mean_, self.scale_, self.coef_, self.intercept_ = mean, scale, coef, intercept
