"""Shared pieces of every head: the estimator base class, safe persistence and the registry.

A head is a scikit-learn classifier over fixed embedding vectors. It sees arrays and labels
only; it never imports the embedding model or the cache, so the same head works on any
vectors. A subclass implements four hooks: `_fit`, `_predict_proba`, `_dump` (fitted state
as named safe files) and `_restore` (the reverse). Everything else lives here: input
validation, label encoding, the evaluation set, `predict`, the embedding-model fingerprint
and the `head.json` folder format.

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

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y, validate_data

from errors import TweetheadsError
from fileio import hub_link_ok, write_atomic

FORMAT = "tweetheads-head/1"
CONFIG_NAME = "head.json"
REPORT_FILE = "train_report.json"  # how a head was trained (files, columns, timings), beside head.json
PROBE_FILE = "probe.npy"  # the probe texts' vectors (their texts are in head.json), see check_fingerprint
# Where a head's probe texts came from: "shipped", the fixed set shipped with tweetheads (the default,
# no training text in the head); "train", its first training texts (train-head --probe-from-train, and
# every head saved before the shipped set existed).
PROBE_SOURCES = ("shipped", "train")
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
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_DAMAGED = "the head is damaged or was modified: retrain it or restore it from a backup"

HEADS: dict[str, type[BaseHead]] = {}
# The shipped heads by module: each is imported when a head of its name is first built or loaded, so
# loading a logistic head imports neither faiss nor LightGBM (part of `predict`'s start-up).
BUILTIN_HEADS = {"logistic": "heads.logistic", "lightgbm": "heads.lightgbm", "knn": "heads.knn"}
SELECT_METRICS = ("accuracy", "macro_f1", "macro_recall")
CLASS_WEIGHTS = (None, "balanced")


class HeadError(TweetheadsError, ValueError):
    """A problem the user can fix: wrong input, a different embedding model, a damaged head."""


def register(name: str):
    """Class decorator: make a head available as `get_head(name)` and to `load_head`."""

    def decorator(cls: type[BaseHead]) -> type[BaseHead]:
        known = HEADS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise HeadError(f"head name {name!r} is already taken by {known.__qualname__}; "
                            f"register {cls.__qualname__} under another name")
        cls.name = name
        HEADS[name] = cls
        return cls

    return decorator


def head_names() -> list[str]:
    """Every head name `get_head` knows: the shipped ones and any registered since."""
    return sorted(set(HEADS) | set(BUILTIN_HEADS))


def head_class(name: Any) -> type[BaseHead] | None:
    """The class registered as `name`, importing its shipped module on first use; None if unknown."""
    if isinstance(name, str) and name not in HEADS and name in BUILTIN_HEADS:
        import importlib

        importlib.import_module(BUILTIN_HEADS[name])  # its @register fills HEADS
    return HEADS.get(name) if isinstance(name, str) else None


def get_head(name: str, **params: Any) -> BaseHead:
    """Build an unfitted head by registry name, e.g. `get_head("knn", k=10)`."""
    cls = head_class(name)
    if cls is None:
        raise HeadError(f"unknown head {name!r}; expected one of: {', '.join(head_names())}")
    unknown = sorted(set(params) - set(cls._get_param_names()))
    if unknown:
        raise HeadError(f"head {name!r} has no parameter(s) {', '.join(unknown)}; "
                        f"its parameters are: {', '.join(cls._get_param_names())}")
    return cls(**params)


class BaseHead(ClassifierMixin, BaseEstimator):
    """scikit-learn classifier over embedding vectors; subclasses add one model each."""

    name: ClassVar[str] = ""  # set by @register
    _files: ClassVar[tuple[str, ...]] = ()  # file names written by _dump
    _state_attrs: ClassVar[tuple[str, ...]] = ()  # fitted numbers kept in head.json

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
        self._fit(X, encoder.transform(y), X_eval, y_eval)
        return self

    def _check_eval(self, X_eval, y_eval, encoder):
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
        return hasattr(self, "classes_")

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in `classes_` order."""
        return self._predict_proba(self._check_X(X))

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

    # -- persistence ---------------------------------------------------------------------
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
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _refuse_pickles(folder)
        digests = {}
        for name, data in self._dump().items():
            _check_file_name(name, folder)
            write_atomic(folder / name, data, unique=True)
            digests[name] = hashlib.sha256(data).hexdigest()
        config = {
            "format": FORMAT,
            "head": self.name,
            "params": {k: _jsonable(v) for k, v in self.get_params(deep=False).items()},
            "classes": self.classes_.tolist(),
            "classes_dtype": _classes_dtype(self.classes_),
            "n_features": int(self.n_features_in_),
            "fingerprint": self.fingerprint_,
            "model": self.model_,
            "state": {attr: _jsonable(getattr(self, attr)) for attr in self._state_attrs},
            "files": digests,
        }
        probe = getattr(self, "probe_", None)
        if probe is not None:
            buffer = io.BytesIO()
            np.save(buffer, probe[1], allow_pickle=False)
            write_atomic(folder / PROBE_FILE, buffer.getvalue(), unique=True)
            config["probe"] = {"texts": probe[0], "sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                               "source": getattr(self, "probe_source_", None) or "train"}
        elif (folder / PROBE_FILE).exists():
            (folder / PROBE_FILE).unlink()  # an earlier head's probe is not this one's
        write_atomic(folder / CONFIG_NAME, json.dumps(config, indent=2), unique=True)
        return folder


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


def damaged(file_name: str, problem: str) -> HeadError:
    """The error for a saved head whose files are unreadable or inconsistent."""
    return HeadError(f"{file_name} {problem}; {_DAMAGED}")


def dump_arrays(**arrays: np.ndarray) -> bytes:
    """Arrays as the bytes of an .npz file (no pickled objects)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def load_arrays(data: bytes, file_name: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """Read `names` from .npz bytes with allow_pickle=False; HeadError if any is missing."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return [npz[name] for name in names]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise damaged(file_name, f"could not be read as arrays {list(names)} ({error})") from None


def load_head(folder) -> BaseHead:
    """Load a head written by `BaseHead.save`, verifying every file's sha256 first."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise HeadError(f"{config_path} not found: expected a folder written by head.save()")
    _refuse_pickles(folder)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:  # RecursionError: nested too deep
        raise HeadError(f"{config_path} is not valid JSON ({error}); {_DAMAGED}") from None
    cls, config = _parse_config(config, config_path)
    files = {name: _read_listed(folder, name, digest) for name, digest in config["files"].items()}
    head = cls(**config["params"])
    head._check_params()
    head.classes_ = config["classes"]
    head.n_features_in_ = config["n_features"]
    for attr, value in config["state"].items():
        setattr(head, attr, value)
    head.fingerprint_ = config["fingerprint"]
    head.model_ = config["model"]
    head._restore(files)
    if config.get("probe") is not None:
        head.probe_ = _load_probe(folder, config["probe"], head.n_features_in_)
        head.probe_source_ = config["probe"].get("source", "train")  # heads saved before the shipped set: train
    return head


def _read_listed(folder: Path, name: str, digest: str) -> bytes:
    """The bytes of a file head.json lists, after checking its name and its sha256."""
    _check_file_name(name, folder)
    path = folder / name
    if (path.is_symlink() and not hub_link_ok(path)) or not path.is_file():  # the Hub cache's links only
        raise HeadError(f"{path} is listed in {CONFIG_NAME} but is missing or not a "
                        f"regular file; {_DAMAGED}")
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != digest:
        raise HeadError(f"{path}: sha256 {found[:12]}… does not match {digest[:12]}… "
                        f"recorded in {CONFIG_NAME}; {_DAMAGED}")
    return data


def _load_probe(folder: Path, probe: Any, n_features: int) -> tuple[list[str], np.ndarray]:
    path = folder / PROBE_FILE
    if not isinstance(probe, dict) or not isinstance(probe.get("texts"), list) or not all(
            isinstance(t, str) for t in probe["texts"]) or not isinstance(probe.get("sha256"), str) or (
            probe.get("source", "train") not in PROBE_SOURCES):
        raise HeadError(f"{folder / CONFIG_NAME}: field 'probe' should be {{'texts': [...], 'sha256': ..., 'source': "
                        f"{' or '.join(PROBE_SOURCES)}}}; {_DAMAGED}")
    data = _read_listed(folder, PROBE_FILE, probe["sha256"])
    try:
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as error:
        raise HeadError(f"{path} could not be read as an array ({error}); {_DAMAGED}") from None
    if vectors.shape != (len(probe["texts"]), n_features) or vectors.dtype != np.float32:
        raise HeadError(f"{path}: expected float32 {len(probe['texts'])} x {n_features}, found "
                        f"{vectors.dtype} {vectors.shape}; {_DAMAGED}")
    return list(probe["texts"]), vectors


def _parse_config(config: Any, path: Path) -> tuple[type[BaseHead], dict]:
    """Check head.json field by field; return the head class and the cleaned config."""

    def bad(field: str, expected: str, found: Any) -> HeadError:
        return HeadError(f"{path}: field {field!r} should be {expected}, found {found!r}; "
                         f"{_DAMAGED}")

    if not isinstance(config, dict):
        raise bad("(top level)", "a JSON object", type(config).__name__)
    if config.get("format") != FORMAT:
        raise HeadError(f"{path}: format {config.get('format')!r} is not {FORMAT!r}; it was "
                        "written by another program or version: retrain the head")
    name = config.get("head")
    cls = head_class(name)
    if cls is None:
        raise HeadError(f"{path}: unknown head {name!r}; known heads: {', '.join(head_names())}")
    params, state, files = config.get("params"), config.get("state"), config.get("files")
    if not isinstance(params, dict) or not set(params) <= set(cls._get_param_names()):
        raise bad("params", f"an object with keys among {cls._get_param_names()}", params)
    defaults = cls().get_params(deep=False)
    params = {k: tuple(v) if isinstance(defaults[k], tuple) and isinstance(v, list) else v
              for k, v in params.items()}
    if not isinstance(state, dict) or set(state) != set(cls._state_attrs) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in state.values()):
        raise bad("state", f"numbers for exactly {list(cls._state_attrs)}", state)
    classes = _parse_classes(config.get("classes"), config.get("classes_dtype"))
    if classes is None:
        raise bad("classes", "at least 2 sorted distinct labels matching classes_dtype ('str' "
                  f"or a numeric numpy dtype, found {config.get('classes_dtype')!r})",
                  config.get("classes"))
    n_features = config.get("n_features")
    if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 1:
        raise bad("n_features", "a positive integer", n_features)
    if not isinstance(config.get("fingerprint"), str) or not config["fingerprint"]:
        raise bad("fingerprint", "a non-empty string", config.get("fingerprint"))
    if not isinstance(config.get("model"), dict):
        raise bad("model", "an object describing the embedding model", config.get("model"))
    if not isinstance(files, dict) or set(files) != set(cls._files) or not all(
            isinstance(d, str) and re.fullmatch(r"[0-9a-f]{64}", d) for d in files.values()):
        for file_name in files if isinstance(files, dict) else ():
            _check_file_name(file_name, path.parent)
        raise bad("files", f"sha256 digests for exactly {list(cls._files)}", files)
    return cls, {**config, "params": params, "classes": classes, "n_features": n_features}


def _parse_classes(values: Any, dtype: Any) -> np.ndarray | None:
    """Rebuild classes_ from JSON, keeping its dtype kind (ints stay ints); None if malformed."""
    if not isinstance(values, list) or not isinstance(dtype, str) or not all(
            isinstance(v, (str, int, float)) for v in values):
        return None
    try:
        kind = "U" if dtype == "str" else np.dtype(dtype).kind
        classes = np.array(values, dtype=str if kind == "U" else dtype)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a number too large for the dtype
        return None
    if (kind not in "biufU" or len(classes) < 2 or classes.tolist() != values
            or not np.all(classes[:-1] < classes[1:])):
        return None
    return classes


def _check_file_name(name: Any, folder: Path) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise HeadError(f"refusing file name {name!r} in {folder / CONFIG_NAME}: a head's files "
                        "must be plain names inside its folder (no paths, no '..'); "
                        f"{_DAMAGED}")


def _refuse_pickles(folder: Path) -> None:
    found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
    if found:
        raise HeadError(f"refusing {folder}: it contains {', '.join(found)}. Saved heads never "
                        "use pickle/joblib files, which can run code when loaded; remove them "
                        "or use a clean folder")


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
    return f"{backend_of(model)}/{model.get('precision', '?')}"


def _variant_flags(model: dict) -> str:
    return f"--backend {backend_of(model)} --precision {model.get('precision', 'fp32')}"


def _describe(model: dict | None, fingerprint: str) -> str:
    name = (model or {}).get("model", "unknown")
    return f"model {name!r} (fingerprint {fingerprint[:12]})"


def _classes_dtype(classes: np.ndarray) -> str:
    if classes.dtype.kind in "biuf":
        return classes.dtype.str
    if all(isinstance(c, str) for c in classes.tolist()):
        return "str"
    raise HeadError(f"cannot save labels of dtype {classes.dtype}: use strings or numbers")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
