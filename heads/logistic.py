"""Logistic regression head: standardise each dimension, then multinomial logistic regression.

The strength of the L2 penalty, `C`, is either given or chosen from the grid `Cs` by
`select_metric` on (X_eval, y_eval) when an evaluation set is passed to fit, otherwise by
stratified `cv`-fold cross-validation on the training set (scaler refitted inside each
fold). The grid is walked as a regularisation path, strongest penalty first, each fit
warm-started from the previous one's coefficients; with an evaluation set the walk stops once
`patience` larger Cs in a row have not beaten the best score (the score of real embeddings
peaks once and then falls as the penalty weakens, and the weak-penalty fits are the slow ones).
Ties go to the smaller C. When some class has fewer than two examples, cross-validation is
impossible and C=1.0 is used. The chosen value is `C_`; `n_iter_` counts the lbfgs iterations
of the final fit. `class_weight="balanced"` weights each class's loss by
n_samples / (n_classes * n_in_class).

Prediction is computed here from the saved arrays (mean, scale, coef, intercept), not by a
stored sklearn object, so `weights.npz` restores `predict_proba` bit for bit.

Probabilities can be calibrated by a temperature fitted on held-out rows (`BaseHead.calibrate`,
`train-head --calibrate temperature`), applied by `predict_proba` on top of the softmax here.

Left out: L1/elastic-net penalties.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from scipy.special import expit, softmax
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from heads.base import (BaseHead, HeadError, class_weights, damaged, dump_arrays, load_arrays, register,
                        selection_score)


@register("logistic")
class LogisticHead(BaseHead):
    """Standardized embeddings into multinomial logistic regression (scikit-learn, lbfgs).

    Parameters
    ----------
    C : float or None, default=None
        Inverse L2 penalty strength. None chooses it from ``Cs``.
    Cs : tuple of float, default=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
        The grid searched when ``C`` is None, walked from the strongest penalty up.
    cv : int, default=3
        Folds of the cross-validation used when no evaluation set is given.
    patience : int, default=2
        With an evaluation set, stop the walk after this many larger Cs without a better score.
    max_iter : int, default=1000
        lbfgs iterations per fit.
    tol : float, default=1e-3
        lbfgs tolerance. scikit-learn's 1e-4 takes twice the iterations on real sentence
        embeddings for the same eval accuracy (within 0.1 point on GOP, BENCHMARKS.md).
    n_threads : int or None, default=1
        BLAS threads while fitting (threadpoolctl); None keeps the library's default. Each lbfgs
        step multiplies the data by a 3-column matrix, too thin to share: one thread fits 1.8x
        faster than two on the 2-core machine of BENCHMARKS.md.
    class_weight : None, "balanced" or dict, default=None
        Per-class loss weights; "balanced" counters a skewed label distribution.
    select_metric : {"accuracy", "macro_f1", "macro_recall"}, default="accuracy"
        What chooses ``C``.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The labels, in the order of ``predict_proba``'s columns.
    n_features_in_ : int
        The embedding dimension seen in fit.
    C_ : float
        The penalty used. ``n_iter_``: lbfgs iterations of the final fit. ``mean_``, ``scale_``,
        ``coef_``, ``intercept_``: the fitted arrays (saved in ``weights.npz``).
    calibration_ : heads.calibration.Temperature or None
        The temperature ``predict_proba`` applies (``calibrate``; None: the softmax as fitted).

    Examples
    --------
    >>> import numpy as np
    >>> from heads import LogisticHead
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(90, 8)), np.repeat(["neg", "neu", "pos"], 30)
    >>> head = LogisticHead(C=1.0).fit(X, y)
    >>> head.classes_.tolist(), head.n_features_in_
    (['neg', 'neu', 'pos'], 8)
    >>> head.predict_proba(X[:1]).shape
    (1, 3)
    """

    _files = ("weights.npz",)
    _state_attrs = ("C_", "n_iter_")

    def __init__(self, *, C=None, Cs=(0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), cv=3, patience=2,
                 max_iter=1000, tol=1e-3, n_threads=1, class_weight=None, select_metric="accuracy"):
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.patience = patience
        self.max_iter = max_iter
        self.tol = tol
        self.n_threads = n_threads
        self.class_weight = class_weight
        self.select_metric = select_metric

    def _check_params(self) -> None:
        super()._check_params()
        if self.C is not None and not (isinstance(self.C, (int, float)) and self.C > 0):
            raise HeadError(f"C must be a positive number or None (choose from Cs), "
                            f"found {self.C!r}")
        if self.C is None and (len(self.Cs) == 0 or min(self.Cs) <= 0):
            raise HeadError(f"Cs must be a non-empty list of positive numbers, found {self.Cs!r}")
        if not (isinstance(self.cv, int) and self.cv >= 2):
            raise HeadError(f"cv must be an integer >= 2, found {self.cv!r}")
        if not (isinstance(self.patience, int) and self.patience >= 1):
            raise HeadError(f"patience must be an integer >= 1, found {self.patience!r}")
        if self.n_threads is not None and not (isinstance(self.n_threads, int) and self.n_threads >= 1):
            raise HeadError(f"n_threads must be a positive integer or None, found {self.n_threads!r}")

    def _logreg(self, C: float, warm_start: bool = False) -> LogisticRegression:
        return LogisticRegression(C=C, solver="lbfgs", max_iter=self.max_iter, tol=self.tol,
                                  class_weight=self._weights, warm_start=warm_start)

    def refit(self, X, y) -> LogisticHead:
        """Refit with the chosen C on (X, y), starting lbfgs from this head's own coefficients."""
        check_is_fitted(self)
        head = clone(self).set_params(**self.selected_params())
        head._start = (self.coef_, self.intercept_)  # read once by _fit; not a parameter
        return head.fit(X, y)

    def _fit(self, X, y, X_eval, y_eval) -> None:
        with threadpool_limits(limits=self.n_threads) if self.n_threads else contextlib.nullcontext():
            self._fit_path(X, y, X_eval, y_eval)

    def _fit_path(self, X, y, X_eval, y_eval) -> None:
        # float32: lbfgs here is bound by reading X once per loss evaluation, so half the bytes
        # is about 1.3x the speed; the saved arrays stay float64
        X = X.astype(np.float32, copy=False)
        scaler = StandardScaler().fit(X)
        self.mean_, self.scale_ = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)
        Xs = scaler.transform(X)
        start = self.__dict__.pop("_start", None)
        self._weights = (None if self.class_weight is None
                         else dict(enumerate(class_weights(y, self.class_weight, self.classes_))))
        model = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # grid points only
            if self.C is not None:
                self.C_ = float(self.C)
            elif X_eval is not None:
                Xe = scaler.transform(X_eval.astype(np.float32))
                self.C_, model = self._walk(Xs, y, Xe, y_eval)
            else:
                self.C_ = self._choose_by_cv(X, y)
        if model is None:
            model = self._logreg(self.C_, warm_start=start is not None)
            if start is not None and start[0].shape == (1 if len(self.classes_) == 2 else len(self.classes_),
                                                         X.shape[1]):
                model.coef_, model.intercept_ = (a.astype(np.float32) for a in start)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(Xs, y)
        self.coef_, self.intercept_ = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
        self.n_iter_ = int(model.n_iter_.max())

    def _walk(self, Xs, y, Xe, y_eval):
        """Warm-started path over the grid; ``(best C, its fitted model)``, scored on (Xe, y_eval)."""
        model = self._logreg(0.0, warm_start=True)
        best = (-np.inf, None, None)
        since = 0
        for C in sorted(float(c) for c in self.Cs):
            model.set_params(C=C).fit(Xs, y)
            score = selection_score(self.select_metric, y_eval, model.predict(Xe))
            if score > best[0]:
                best, since = (score, C, (model.coef_.copy(), model.intercept_.copy(), model.n_iter_.copy())), 0
            else:
                since += 1
                if since >= self.patience:
                    break
        _, C, (coef, intercept, n_iter) = best
        model.coef_, model.intercept_, model.n_iter_ = coef, intercept, n_iter
        return C, model

    def _choose_by_cv(self, X, y) -> float:
        grid = sorted(float(c) for c in self.Cs)
        n_splits = min(self.cv, int(np.bincount(y).min()))
        if n_splits < 2:
            return 1.0
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=0)
        scores = np.zeros(len(grid))
        for fit_rows, test_rows in folds.split(X, y):
            scaler = StandardScaler().fit(X[fit_rows])
            model = self._logreg(0.0, warm_start=True)
            Xf, Xt = scaler.transform(X[fit_rows]), scaler.transform(X[test_rows])
            for i, C in enumerate(grid):
                model.set_params(C=C).fit(Xf, y[fit_rows])
                scores[i] += selection_score(self.select_metric, y[test_rows], model.predict(Xt))
        return grid[int(np.argmax(scores))]

    def selected_params(self) -> dict:
        """``{"C": C_}``: the penalty the search chose, as a constructor parameter."""
        check_is_fitted(self)
        return {"C": float(self.C_)}

    def _predict_proba(self, X) -> np.ndarray:
        Z = np.subtract(X, self.mean_, dtype=np.float64)  # the numbers of (X - mean) / scale, with fewer copies
        Z /= self.scale_
        scores = Z @ self.coef_.T
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
