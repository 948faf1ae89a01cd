"""Gradient-boosted trees head: LightGBM on the raw embedding dimensions.

Defaults suit dense 384/768-d sentence embeddings: small trees (`num_leaves` 15, at least 20
rows per leaf), each tree sees 30% of the dimensions and 80% of the rows, an L2 penalty on
leaf values and a learning rate of 0.05. With an evaluation set, training runs up to
`n_estimators` rounds and stops `early_stopping_rounds` after the best multi_logloss on
(X_eval, y_eval); the best round is `best_iteration_`. Without one, it trains exactly
`default_rounds` rounds: a fixed budget keeps every training row for learning and behaves
the same on tiny and huge sets (an internal holdout would not). Two classes use the binary
objective, more use multiclass. Training is deterministic for a given `random_state` and
`n_threads` (deterministic=True, force_row_wise=True, explicit seeds); `n_threads` None lets
LightGBM use every core.

The booster is saved as LightGBM's own text model (`model.txt`, truncated at
`best_iteration_`) and loaded from the verified bytes, so predictions match exactly.

Left out: categorical features, class weights, GPU training and the DART/GOSS boosters.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from sklearn.utils.validation import check_is_fitted

from heads.base import BaseHead, HeadError, damaged, register


@register("lightgbm")
class LightGBMHead(BaseHead):
    _files = ("model.txt",)
    _state_attrs = ("best_iteration_",)

    def __init__(self, *, n_estimators=1000, default_rounds=300, early_stopping_rounds=50,
                 learning_rate=0.05, num_leaves=15, min_data_in_leaf=20,
                 feature_fraction=0.3, bagging_fraction=0.8, lambda_l2=1.0,
                 random_state=0, n_threads=None):
        self.n_estimators = n_estimators
        self.default_rounds = default_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_data_in_leaf = min_data_in_leaf
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.random_state = random_state
        self.n_threads = n_threads

    def _check_params(self) -> None:
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
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.n_threads or 0,
            "verbose": -1,
        }

    def _fit(self, X, y, X_eval, y_eval) -> None:
        train = lgb.Dataset(X, label=y, free_raw_data=True)
        if X_eval is None:
            booster = lgb.train(self._params(), train, num_boost_round=self.default_rounds)
            self.best_iteration_ = booster.current_iteration()
        else:
            valid = lgb.Dataset(X_eval, label=y_eval, reference=train)
            stop = lgb.early_stopping(self.early_stopping_rounds, verbose=False)
            booster = lgb.train(self._params(), train, num_boost_round=self.n_estimators,
                                valid_sets=[valid], callbacks=[stop])
            self.best_iteration_ = booster.best_iteration or booster.current_iteration()
        self.booster_ = booster

    def selected_params(self) -> dict:
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
