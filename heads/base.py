"""The estimator base class every head shares, and the helpers the heads use while fitting.

A head is a scikit-learn classifier over fixed embedding vectors. It sees arrays and labels
only; it never imports the embedding model or the cache, so the same head works on any
vectors. A subclass implements four hooks: `_fit`, `_predict_proba`, `_dump` (fitted state
as named safe files) and `_restore` (the reverse). Everything else lives here: input
validation, label encoding, the evaluation set, `predict`, the embedding-model fingerprint and
its probe check, and the optional temperature calibration (`calibrate`, `heads.calibration`) that
`predict_proba` applies. The folder format is `heads.persist` (`save` calls it, `load_head` is
re-exported here) and the registry `heads.registry` (`register`, `get_head`, `HeadError`, re-exported).

Two choices every head shares, checked here: `class_weight` (None; "balanced": each class
weighted n_samples / (n_classes * n_in_class), as scikit-learn computes it; or a dict of label
-> weight, as in scikit-learn; see `class_weights`)
and `select_metric`, the metric a head's hyperparameter search maximizes on its evaluation set
("accuracy", "macro_f1" or "macro_recall"; see `selection_score`).

Left out: per-row sample weights, `partial_fit`, sparse input, multi-output targets and training on
a single class (HeadError: there is nothing to classify). Nothing is ever pickled: a saved
head is a folder of safe files (npz, LightGBM text, faiss index) whose sha256 digests are
recorded in `head.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y, validate_data

from heads.calibration import METHODS as CALIBRATIONS
from heads.calibration import Temperature, fit_temperature
# persistence and the registry live in their own modules; their names stay importable from here
from heads.persist import (CONFIG_NAME, FORMAT, PROBE_FILE, PROBE_SOURCES, REPORT_FILE, damaged, dump_arrays,
                           load_arrays, load_head, save_folder)
from heads.registry import BUILTIN_HEADS, HEADS, HeadError, get_head, head_class, head_names, register

# The lowest probe cosine accepted between vectors of one model computed two ways. Measured on GOP
# tweets (BENCHMARKS.md, Embedding): OpenVINO fp32 against torch fp32 0.99999+; int8 fell to 0.911
# (torch dynamic), 0.944 (ONNX Runtime) and 0.991 to 0.995 (NNCF static), so those are refused. bf16
# against fp32 on the Intel Xeon with AMX: 0.99997 (MiniLM, OpenVINO), 0.99992 (MiniLM, torch) and 0.998
# (MPNet, both; OpenVINO was 0.992 before its export traced MPNet's position buckets exactly), so a head
# moves between bf16 and fp32 vectors of one encoder in either direction.
PROBE_MIN_COSINE = 0.995
PROBE_MIN_AGREEMENT = 0.98  # share of the probe on which the head predicts the same label (64 texts: one may flip)
PROBE_TEXTS = 64  # probe texts a trained head keeps (the shipped set has exactly this many)
FLOAT_DTYPES = (np.float64, np.float32)

SELECT_METRICS = ("accuracy", "macro_f1", "macro_recall")
CLASS_WEIGHTS = (None, "balanced")


class BaseHead(ClassifierMixin, BaseEstimator):
    """scikit-learn classifier over embedding vectors; subclasses add one model each.

    Attributes (after fit)
    ----------------------
    classes_ : numpy.ndarray
        The labels, in the order of ``predict_proba``'s columns.
    n_features_in_ : int
        The embedding dimension the head was fitted on.
    calibration_ : heads.calibration.Temperature or None
        The temperature ``predict_proba`` applies (None: the head's own probabilities); set by
        ``calibrate``, reset by ``fit``.
    fingerprint_, model_ : str, dict or None
        The embedding model the training vectors came from (``set_model``).

    Examples
    --------
    >>> import numpy as np
    >>> from heads import get_head
    >>> X, y = np.random.default_rng(0).normal(size=(60, 8)), np.repeat(["neg", "pos"], 30)
    >>> head = get_head("logistic").fit(X, y)
    >>> head.classes_.tolist(), head.n_features_in_
    (['neg', 'pos'], 8)
    >>> head.predict_proba(X[:2]).shape
    (2, 2)
    """

    name: ClassVar[str] = ""  # set by @register
    _files: ClassVar[tuple[str, ...]] = ()  # file names written by _dump
    _state_attrs: ClassVar[tuple[str, ...]] = ()  # fitted numbers kept in head.json
    # False where a row's probabilities depend on the other rows of its batch by design (kNN: the batch
    # size picks the search); scoring then never reuses a row's probabilities across batches
    batch_invariant: ClassVar[bool] = True

    # -- hooks for subclasses ------------------------------------------------------------
    def _check_params(self) -> None:
        """Raise HeadError for a bad parameter value; called by fit and load_head (call super())."""
        weight = getattr(self, "class_weight", None)
        if not (weight in CLASS_WEIGHTS or isinstance(weight, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in weight.values())):
            raise HeadError(f"class_weight must be None, 'balanced' or a dict of label -> weight (>= 0), "
                            f"found {weight!r}")
        if getattr(self, "select_metric", "accuracy") not in SELECT_METRICS:
            raise HeadError(f"select_metric must be one of {', '.join(SELECT_METRICS)}, "
                            f"found {self.select_metric!r}")

    def _fit(self, X, y, X_eval, y_eval) -> None:
        raise NotImplementedError

    def _predict_proba(self, X) -> np.ndarray:
        raise NotImplementedError

    def _dump(self) -> dict[str, bytes]:
        raise NotImplementedError

    def _restore(self, files: dict[str, bytes]) -> None:
        raise NotImplementedError

    # -- estimator protocol --------------------------------------------------------------
    def fit(self, X, y, *, X_eval=None, y_eval=None):
        """Fit on embeddings X and labels y; (X_eval, y_eval) is used for model selection."""
        X, y = validate_data(self, X, y, dtype=FLOAT_DTYPES)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        if len(encoder.classes_) < 2:
            raise HeadError(f"expected at least 2 classes in y, found 1 class "
                            f"({encoder.classes_[0]!r}); give the head examples of every "
                            "label it should predict")
        self._check_params()
        X_eval, y_eval = self._check_eval(X_eval, y_eval, encoder)
        self.classes_ = encoder.classes_
        self.fingerprint_ = None  # refitting forgets the embedding model; see set_model
        self.probe_ = None
        self.probe_source_ = None
        self.model_ = None
        self.calibration_ = None  # refitting forgets the calibration; see calibrate
        self._fit(X, encoder.transform(y), X_eval, y_eval)
        return self

    def _check_eval(self, X_eval, y_eval, encoder):
        """(X_eval, y_eval) checked against the training set, labels encoded; (None, None) when not given."""
        if X_eval is None and y_eval is None:
            return None, None
        if X_eval is None or y_eval is None:
            raise HeadError("got only one of X_eval and y_eval; pass both (an evaluation "
                            "set for model selection) or neither")
        X_eval, y_eval = check_X_y(X_eval, y_eval, dtype=FLOAT_DTYPES)
        if X_eval.shape[1] != self.n_features_in_:
            raise HeadError(f"X_eval has {X_eval.shape[1]} features but X has "
                            f"{self.n_features_in_}; embed the evaluation texts with the "
                            "same model as the training texts")
        unseen = ~np.isin(y_eval, encoder.classes_)
        if unseen.any():
            raise HeadError(f"y_eval contains label(s) {sorted(set(y_eval[unseen].tolist()))} "
                            f"that are not in y (classes {encoder.classes_.tolist()}); "
                            "drop those rows or add training examples for them")
        return X_eval, encoder.transform(y_eval)

    def __sklearn_is_fitted__(self) -> bool:
        """Fitted once ``classes_`` is set (by fit or load_head)."""
        return hasattr(self, "classes_")

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in `classes_` order.

        Calibrated by ``calibration_`` when the head has one (same argmax as the head's own).
        """
        proba = self.uncalibrated_proba(X)
        calibration = getattr(self, "calibration_", None)
        return proba if calibration is None else calibration.apply(proba)

    def uncalibrated_proba(self, X) -> np.ndarray:
        """The head's own probabilities, before any calibration (what ``calibrate`` fits on)."""
        return self._predict_proba(self._check_X(X))

    def calibrate(self, X, y, method: str = "temperature") -> BaseHead:
        """Fit a temperature on held-out (X, y), rows the head did not train on; ``"none"`` removes it.

        Sets ``calibration_`` (see ``heads.calibration``); ``predict`` is unchanged by it. Fewer than
        ``heads.calibration.MIN_ROWS`` rows give the identity, with their count recorded.
        """
        check_is_fitted(self)
        if method not in CALIBRATIONS:
            raise HeadError(f"calibration method must be one of {', '.join(CALIBRATIONS)}, found {method!r}")
        if method == "none":
            self.calibration_ = None
            return self
        X = self._check_X(X)
        y = np.asarray(y)
        if len(y) != len(X):
            raise HeadError(f"calibrate: X has {len(X)} rows but y has {len(y)}; pass one label per row")
        unseen = ~np.isin(y, self.classes_)
        if unseen.any():
            raise HeadError(f"calibrate: y contains label(s) {sorted(set(y[unseen].tolist()))} that the head does "
                            f"not know (classes {self.classes_.tolist()}); drop those rows")
        codes = np.searchsorted(self.classes_, y)
        self.calibration_ = fit_temperature(self._predict_proba(X), codes)
        return self

    def set_calibration(self, calibration: Temperature | None) -> BaseHead:
        """Use an already fitted ``Temperature`` (e.g. fitted on a sibling head's holdout); None removes it."""
        check_is_fitted(self)
        if calibration is not None and not isinstance(calibration, Temperature):
            raise HeadError(f"calibration must be a heads.calibration.Temperature or None, found "
                            f"{type(calibration).__name__}")
        self.calibration_ = calibration
        return self

    def _check_X(self, X) -> np.ndarray:
        """Validate X for a fitted head: finite floats with the training feature count."""
        check_is_fitted(self)
        X_array = check_array(X, dtype=FLOAT_DTYPES)
        if X_array.shape[1] != self.n_features_in_:
            raise HeadError(
                f"X has {X_array.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input: the head was trained on "
                f"{self.n_features_in_}-dimensional embeddings. Embed with the model the "
                "head was trained on, or retrain the head on these embeddings.")
        return validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)  # + feature names

    def predict(self, X) -> np.ndarray:
        """The most probable label per row: ``classes_[argmax(predict_proba(X))]``."""
        proba = self.predict_proba(X)  # first: an unfitted head has no classes_
        return self.classes_[np.argmax(proba, axis=1)]

    def selected_params(self) -> dict:
        """Hyperparameters chosen during fit, as constructor params: refitting with them set skips the search."""
        return {}

    def refit(self, X, y) -> BaseHead:
        """A new head fitted on (X, y) with the hyperparameters this one chose (no search).

        ``select_and_fit`` picks them on a holdout, then calls this on every row; a head that can
        start from its own solution (logistic) overrides it to warm-start.
        """
        from sklearn.base import clone

        check_is_fitted(self)
        return clone(self).set_params(**self.selected_params()).fit(X, y)

    # -- embedding model -----------------------------------------------------------------
    def set_model(self, fingerprint: str, model: dict) -> BaseHead:
        """Record which embedding model produced the training vectors (call after fit)."""
        check_is_fitted(self)
        if not isinstance(fingerprint, str) or not fingerprint:
            raise HeadError(f"fingerprint must be a non-empty string, found {fingerprint!r}")
        if not isinstance(model, dict):
            raise HeadError(f"model must be a dict describing the embedding model "
                            f"(e.g. {{'model': 'minilm'}}), found {type(model).__name__}")
        try:
            json.dumps(model)
        except (TypeError, ValueError) as error:
            raise HeadError(f"model description must be JSON-serialisable: {error}") from None
        self.fingerprint_ = fingerprint
        self.model_ = dict(model)
        return self

    def check_fingerprint(self, fingerprint: str, model: dict | None = None, embed=None) -> dict | None:
        """Raise HeadError unless `fingerprint` is the embedding model this head was trained on.

        The portability policy: vectors from the same weights computed another way (another
        precision or backend: bf16 on a CPU with bf16 units, fp32 on one without; OpenVINO or
        torch) are accepted when they agree with the training vectors. ``embed(texts) -> vectors``
        computes the head's probe texts (kept in its folder, with their training vectors) the new
        way; the head is accepted when every probe's cosine to its training vector is at least
        ``PROBE_MIN_COSINE`` and the head predicts the same label from both on at least
        ``PROBE_MIN_AGREEMENT`` of them, and refused, with what was measured, when not. (Cosine alone
        is too lenient: noise that kept every cosine above 0.9995 changed 69% of the predictions of
        the small logistic head in tests/test_backends.py.) Returns the measurement
        (None when the fingerprints are equal).
        """
        check_is_fitted(self)
        if self.fingerprint_ is None:
            raise HeadError("this head does not know which embedding model it was trained on; "
                            "call head.set_model(fingerprint, model) right after fit")
        if fingerprint == self.fingerprint_:
            return None
        mine, theirs = (self.model_ or {}), (model or {})
        same_weights = mine.get("model_fingerprint") and mine.get("model_fingerprint") == theirs.get("model_fingerprint")
        probe = getattr(self, "probe_", None)
        if same_weights and probe is not None and embed is not None:
            texts, trained = probe
            now = np.asarray(embed(list(texts)), dtype=np.float32)
            cosine = (now * trained).sum(1) / np.maximum(
                np.linalg.norm(now, axis=1) * np.linalg.norm(trained, axis=1), 1e-12)
            agree = float(np.mean(self.predict(now) == self.predict(trained)))
            measured = {"probe_texts": len(texts), "min_cosine": float(cosine.min()),
                        "mean_cosine": float(cosine.mean()), "same_predictions": agree,
                        "trained_with": _variant(mine), "used_with": _variant(theirs)}
            if measured["min_cosine"] >= PROBE_MIN_COSINE and agree >= PROBE_MIN_AGREEMENT:
                return measured
            raise HeadError(
                f"this head was trained on {_variant(mine)} vectors of {_describe(mine, self.fingerprint_)}; "
                f"these are {_variant(theirs)} vectors of the same weights, and they differ: on the head's "
                f"{len(texts)} probe texts the lowest cosine to the training vectors is {cosine.min():.5f} "
                f"(accepted: at least {PROBE_MIN_COSINE}) and {agree:.0%} of the head's predictions agree "
                f"(accepted: at least {PROBE_MIN_AGREEMENT:.0%}). Embed with {_variant_flags(mine)}, or retrain "
                "the head on these embeddings.")
        raise HeadError(
            f"this head was trained on embeddings from {_describe(self.model_, self.fingerprint_)}"
            f" but the embeddings given come from {_describe(model, fingerprint)}; vectors "
            "from different models are not comparable. Embed with the head's model, or "
            "retrain the head on these embeddings.")

    def set_probe(self, texts, vectors, *, source: str = "train") -> BaseHead:
        """Keep a few texts and their vectors from the training model, to check vectors computed another way later.

        The check needs texts, not training texts: ``source="shipped"`` marks the fixed probe set
        shipped with tweetheads (what ``train-head`` uses by default, so a saved head holds none of
        its training data); ``"train"`` marks training texts, which a saved head then carries verbatim.
        """
        if source not in PROBE_SOURCES:
            raise HeadError(f"probe source must be one of {', '.join(PROBE_SOURCES)}, found {source!r}")
        texts = [str(t) for t in texts]
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(texts), self.n_features_in_):
            raise HeadError(f"probe vectors should be {len(texts)} x {self.n_features_in_}, found {vectors.shape}")
        self.probe_ = (texts, vectors)
        self.probe_source_ = source
        return self

    def set_drift_reference(self, vectors) -> BaseHead:
        """Keep some training vectors (float16) for the drift check that ``score`` runs on every file.

        Vectors, not texts: the saved head still holds no training tweet. ``None`` removes them.
        """
        if vectors is None:
            self.drift_reference_ = None
            return self
        vectors = np.asarray(vectors, dtype=np.float16)
        if vectors.ndim != 2 or vectors.shape[1] != self.n_features_in_ or not len(vectors):
            raise HeadError(f"drift reference should be rows x {self.n_features_in_} vectors, found {vectors.shape}")
        self.drift_reference_ = vectors
        return self

    # -- persistence (heads.persist) -------------------------------------------------------
    def save(self, folder, *, fingerprint: str | None = None, model: dict | None = None) -> Path:
        """Write the head to `folder` as safe files plus head.json; returns the folder.

        `fingerprint` and `model` identify the embedding model the head was trained on;
        they may be left out if `set_model` was called after fit.
        """
        check_is_fitted(self)
        if (fingerprint is None) != (model is None):
            raise HeadError("pass both fingerprint= and model= to save(), or neither "
                            "(after calling set_model)")
        if fingerprint is not None:
            self.set_model(fingerprint, model)
        if self.fingerprint_ is None:
            raise HeadError("cannot save a head without its embedding model: pass "
                            "fingerprint= and model= to save(), or call set_model() after fit")
        return save_folder(self, Path(folder))


def class_weights(y: np.ndarray, class_weight, classes: np.ndarray) -> np.ndarray:
    """Weight per encoded class: ones for None, scikit-learn's "balanced" formula, or a dict's values.

    A dict maps labels to weights (labels missing from it weigh 1); after a save and load its
    keys are JSON strings, so a label also matches its ``str``.
    """
    if class_weight is None:
        return np.ones(len(classes))
    if isinstance(class_weight, dict):
        return np.array([float(class_weight.get(c, class_weight.get(str(c), 1.0))) for c in np.asarray(classes).tolist()])
    from sklearn.utils.class_weight import compute_class_weight

    return compute_class_weight(class_weight, classes=np.arange(len(classes)), y=y)


def selection_score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The hyperparameter-search score: accuracy, macro-F1 or macro-recall (scikit-learn's)."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    if metric == "accuracy":
        return float(accuracy_score(y_true, y_pred))
    if metric == "macro_f1":
        return float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return float(recall_score(y_true, y_pred, average="macro", zero_division=0))


def warn_accepted(folder, measured: dict) -> None:
    """Say on stderr that a head is used with vectors computed another way, and what was measured."""
    import sys

    print(f"note: {folder} was trained on {measured['trained_with']} vectors and is used with "
          f"{measured['used_with']} vectors of the same weights; on its {measured['probe_texts']} probe texts "
          f"the lowest cosine is {measured['min_cosine']:.5f} (>= {PROBE_MIN_COSINE}) and "
          f"{measured['same_predictions']:.0%} of the predictions agree", file=sys.stderr)


def backend_of(description: dict | None) -> str:
    """The backend a head's (or an embedding store's) model description names: those written before
    backends existed name none, and they were all torch."""
    return (description or {}).get("backend", "torch")


def _variant(model: dict) -> str:
    """``backend/precision`` of a model description, e.g. ``torch/fp32``."""
    return f"{backend_of(model)}/{model.get('precision', '?')}"


def _variant_flags(model: dict) -> str:
    """The embed flags that reproduce a model description's backend and precision."""
    return f"--backend {backend_of(model)} --precision {model.get('precision', 'fp32')}"


def _describe(model: dict | None, fingerprint: str) -> str:
    """A model for an error message: its name and the start of its fingerprint."""
    name = (model or {}).get("model", "unknown")
    return f"model {name!r} (fingerprint {fingerprint[:12]})"
