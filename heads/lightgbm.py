"""Gradient-boosted trees head: LightGBM on the raw embedding dimensions.

Defaults suit dense 384/768-d sentence embeddings: small trees (`num_leaves` 7, at least 20
rows per leaf), each tree sees 15% of the dimensions and 80% of the rows, histograms of 63 bins,
an L2 penalty on leaf values and a learning rate of 0.1. A tree's cost grows with the
dimensions it sees; on real GOP embeddings this head fits, selection included, 3x to 4x faster
than it did with 15 leaves, 30% of the dimensions, 255 bins and a rate of 0.05, within 0.3 points
of that accuracy (BENCHMARKS.md, "Heads on real GOP embeddings").

With an evaluation set, training runs up to `n_estimators` rounds and stops
`early_stopping_rounds` after the best multi_logloss on (X_eval, y_eval). `select_metric`
(accuracy, macro-F1 or macro-recall, computed on (X_eval, y_eval) after every round) then picks
the round, `best_iteration_`: rounds within one standard error of the best score are ties, and
the lowest log-loss among them wins. Without one, it trains exactly
`default_rounds` rounds: a fixed budget keeps every training row for learning and behaves
the same on tiny and huge sets (an internal holdout would not). Two classes use the binary
objective, more use multiclass. Training is deterministic for a given `random_state` and
`n_threads` (deterministic=True, force_col_wise=True, explicit seeds); `n_threads` None lets
LightGBM use every core. `class_weight="balanced"` gives each row the weight of its class
(n_samples / (n_classes * n_in_class)), in training and in the evaluation set's loss.

The booster is saved as LightGBM's own text model (`model.txt`, truncated at
`best_iteration_`) and loaded from the verified bytes, so predictions match exactly.

Left out: categorical features, GPU training and the DART/GOSS boosters.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from sklearn.utils.validation import check_is_fitted

from heads.base import BaseHead, HeadError, class_weights, damaged, register, selection_score


@register("lightgbm")
class LightGBMHead(BaseHead):
    """LightGBM gradient-boosted trees on the raw embedding dimensions.

    Parameters
    ----------
    n_estimators : int, default=1000
        Most rounds with an evaluation set (early stopping usually ends sooner).
    default_rounds : int, default=300
        Rounds without an evaluation set; ``selected_params`` sets it to the chosen round.
    early_stopping_rounds : int, default=50
        Rounds without a better evaluation loss before training stops.
    learning_rate, num_leaves, min_data_in_leaf, feature_fraction, bagging_fraction, lambda_l2
        LightGBM's own parameters (defaults suited to dense 384/768-d embeddings).
    max_bin : int, default=63
        Histogram bins per dimension (LightGBM's default is 255; embeddings need far fewer).
    random_state : int, default=0
        Seed of LightGBM's bagging and feature sampling.
    n_threads : int or None, default=None
        LightGBM threads; None uses every core.
    class_weight : None, "balanced" or dict, default=None
        Per-class row weights.
    select_metric : {"accuracy", "macro_f1", "macro_recall"}, default="accuracy"
        What picks the round on the evaluation set.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The labels, in the order of ``predict_proba``'s columns.
    n_features_in_ : int
        The embedding dimension seen in fit.
    best_iteration_ : int
        Rounds kept. ``booster_``: the LightGBM booster (saved as ``model.txt``).
    calibration_ : heads.calibration.Temperature or None
        The temperature ``predict_proba`` applies (``calibrate``; None: LightGBM's probabilities as fitted).

    Examples
    --------
    >>> import numpy as np
    >>> from heads import LightGBMHead
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(90, 8)), np.repeat(["neg", "neu", "pos"], 30)
    >>> head = LightGBMHead(default_rounds=20, n_threads=1).fit(X, y)
    >>> head.classes_.tolist(), head.n_features_in_
    (['neg', 'neu', 'pos'], 8)
    >>> head.predict_proba(X[:1]).shape
    (1, 3)
    """

    _files = ("model.txt",)
    _state_attrs = ("best_iteration_",)

    def __init__(self, *, n_estimators=1000, default_rounds=300, early_stopping_rounds=50,
                 learning_rate=0.1, num_leaves=7, min_data_in_leaf=20,
                 feature_fraction=0.15, bagging_fraction=0.8, lambda_l2=1.0, max_bin=63,
                 random_state=0, n_threads=None, class_weight=None, select_metric="accuracy"):
        self.n_estimators = n_estimators
        self.default_rounds = default_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.max_bin = max_bin
        self.random_state = random_state
        self.n_threads = n_threads
        self.class_weight = class_weight
        self.select_metric = select_metric

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("n_estimators", "default_rounds", "early_stopping_rounds"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise HeadError(f"{name} must be a positive integer, found {value!r}")
        if self.n_threads is not None and not (isinstance(self.n_threads, int)
                                               and self.n_threads >= 1):
            raise HeadError(f"n_threads must be a positive integer or None (LightGBM's "
                            f"default), found {self.n_threads!r}")

    def _params(self) -> dict:
        binary = len(self.classes_) == 2
        return {
            "objective": "binary" if binary else "multiclass",
            **({} if binary else {"num_class": len(self.classes_)}),
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "max_bin": self.max_bin,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,  # dense embeddings: column-wise histograms, 1.25x faster here
            "num_threads": self.n_threads or 0,
            "verbose": -1,
        }

    def _fit(self, X, y, X_eval, y_eval) -> None:
        weights = class_weights(y, self.class_weight, self.classes_)
        row_weights = None if self.class_weight is None else weights[y]
        train = lgb.Dataset(X, label=y, weight=row_weights, free_raw_data=True)
        if X_eval is None:
            booster = lgb.train(self._params(), train, num_boost_round=self.default_rounds)
            self.best_iteration_ = booster.current_iteration()
        else:
            valid = lgb.Dataset(X_eval, label=y_eval, reference=train,
                                weight=None if self.class_weight is None else weights[y_eval])
            scores: list[float] = []

            def record(preds, _data):  # the selection metric after every round, from LightGBM's own scores
                guess = (preds > 0.5).astype(int) if preds.ndim == 1 else np.argmax(preds, axis=1)  # binary: P(class 1)
                scores.append(selection_score(self.select_metric, y_eval, guess))
                return self.select_metric, scores[-1], True

            metric = "binary_logloss" if len(self.classes_) == 2 else "multi_logloss"
            history: dict = {}
            stop = lgb.early_stopping(self.early_stopping_rounds, first_metric_only=True, verbose=False)
            booster = lgb.train({**self._params(), "metric": metric}, train, num_boost_round=self.n_estimators,
                                valid_sets=[valid], feval=record, keep_training_booster=True,
                                callbacks=[stop, lgb.record_evaluation(history)])
            # keep_training_booster: otherwise LightGBM cuts the model at the best log-loss round,
            # and a later round picked by select_metric would silently predict with fewer trees
            self.best_iteration_ = _best_round(scores, history["valid_0"][metric], len(y_eval))
            # the kept rounds only, as a plain model: frees the training data, predicts as a loaded head does
            booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration_))
        self.booster_ = booster

    def selected_params(self) -> dict:
        """``{"default_rounds": best_iteration_}``: the round chosen, so a refit trains exactly that many."""
        check_is_fitted(self)
        return {"default_rounds": int(self.best_iteration_)}

    def _predict_proba(self, X) -> np.ndarray:
        proba = self.booster_.predict(X, num_iteration=self.best_iteration_)
        if proba.ndim == 1:  # binary objective: probability of the second class
            return np.column_stack([1.0 - proba, proba])
        return proba

    def _dump(self) -> dict[str, bytes]:
        text = self.booster_.model_to_string(num_iteration=self.best_iteration_)
        return {"model.txt": text.encode("utf-8")}

    def _restore(self, files: dict[str, bytes]) -> None:
        try:
            booster = lgb.Booster(model_str=files["model.txt"].decode("utf-8"))
        except (lgb.basic.LightGBMError, UnicodeDecodeError) as error:
            raise damaged("model.txt", f"is not a LightGBM model ({error})") from None
        if (booster.num_feature() != self.n_features_in_
                or booster.current_iteration() < self.best_iteration_):
            raise damaged("model.txt", f"does not match head.json ({booster.num_feature()} "
                          f"features, {booster.current_iteration()} rounds)")
        self.booster_ = booster



def _best_round(scores: list[float], losses: list[float], n_eval: int) -> int:
    """The round (1-based) to keep: the lowest eval loss among rounds scoring within one standard error of the best.

    A holdout of ~1,000 rows moves its accuracy by a row or two from round to round, so the
    single best round is mostly noise (Breiman's one-standard-error rule: scores within
    sqrt(s(1-s)/n) of the best s count as ties); among those ties the log-loss, the smooth
    proper score, picks the round.
    """
    values = np.asarray(scores, dtype=float)
    best = values.max()
    tied = values >= best - np.sqrt(max(best * (1 - best), 0.0) / max(n_eval, 1)) - 1e-12
    return int(np.flatnonzero(tied)[np.argmin(np.asarray(losses, dtype=float)[tied])]) + 1
