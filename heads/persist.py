"""A head on disk: a folder of safe files plus ``head.json``, every file's sha256 recorded and checked.

``save_folder(head, folder)`` writes what ``BaseHead.save`` asks for: the head's own files (its
``_dump``: npz arrays, LightGBM text, a faiss index), the probe vectors (``probe.npy``) and
``head.json`` (format, head name, parameters, classes and their dtype, feature count, embedding-model
fingerprint and description, fitted numbers, calibration, file digests). ``load_head(folder)``
checks head.json field by field, refuses pickle/joblib files and paths leaving the folder, verifies
every digest, then rebuilds the head through its ``_restore``. ``dump_arrays``/``load_arrays`` are
the npz helpers the heads use (never ``allow_pickle``); ``damaged`` is the error for a folder whose
files do not agree with head.json.

Nothing is ever pickled. A head.json written before calibration existed has no ``calibration``
field and loads uncalibrated.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fileio import hub_link_ok, write_atomic
from heads.calibration import Temperature
from heads.registry import HeadError, head_class, head_names

FORMAT = "tweetheads-head/1"
CONFIG_NAME = "head.json"
REPORT_FILE = "train_report.json"  # how a head was trained (files, columns, timings), beside head.json
DRIFT_FILE = "drift_reference.npy"  # some training vectors (float16) for score's drift check, see scoring/drift.py
PROBE_FILE = "probe.npy"  # the probe texts' vectors (their texts are in head.json), see BaseHead.check_fingerprint
# Where a head's probe texts came from: "shipped", the fixed set shipped with tweetheads (the default,
# no training text in the head); "train", its first training texts (train-head --probe-from-train, and
# every head saved before the shipped set existed).
PROBE_SOURCES = ("shipped", "train")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_DAMAGED = "the head is damaged or was modified: retrain it or restore it from a backup"


def save_folder(head, folder: Path) -> Path:
    """Write a fitted head that knows its embedding model (``BaseHead.save`` checks both) to ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _refuse_pickles(folder)
    digests = {}
    for name, data in head._dump().items():
        _check_file_name(name, folder)
        write_atomic(folder / name, data, unique=True)
        digests[name] = hashlib.sha256(data).hexdigest()
    calibration = getattr(head, "calibration_", None)
    config = {
        "format": FORMAT,
        "head": head.name,
        "params": {k: _jsonable(v) for k, v in head.get_params(deep=False).items()},
        "classes": head.classes_.tolist(),
        "classes_dtype": _classes_dtype(head.classes_),
        "n_features": int(head.n_features_in_),
        "fingerprint": head.fingerprint_,
        "model": head.model_,
        "state": {attr: _jsonable(getattr(head, attr)) for attr in head._state_attrs},
        "calibration": None if calibration is None else calibration.to_json(),
        "files": digests,
    }
    probe = getattr(head, "probe_", None)
    if probe is not None:
        config["probe"] = {"texts": probe[0], "sha256": _write_array(folder / PROBE_FILE, probe[1]),
                           "source": getattr(head, "probe_source_", None) or "train"}
    elif (folder / PROBE_FILE).exists():
        (folder / PROBE_FILE).unlink()  # an earlier head's probe is not this one's
    reference = getattr(head, "drift_reference_", None)
    if reference is not None:
        config["drift_reference"] = {"rows": int(len(reference)),
                                     "sha256": _write_array(folder / DRIFT_FILE, np.asarray(reference, np.float16))}
    elif (folder / DRIFT_FILE).exists():
        (folder / DRIFT_FILE).unlink()  # an earlier head's reference is not this one's
    write_atomic(folder / CONFIG_NAME, json.dumps(config, indent=2), unique=True)
    return folder


def _write_array(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as .npy (no pickle) to ``path``; its sha256 for head.json."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_atomic(path, buffer.getvalue(), unique=True)
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _read_array(folder: Path, name: str, digest: str, shape: tuple[int, int], dtype) -> np.ndarray:
    """A listed .npy file of the head (digest checked, no pickle), which must have ``shape`` and ``dtype``."""
    path = folder / name
    data = _read_listed(folder, name, digest)
    try:
        vectors = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as error:
        raise HeadError(f"{path} could not be read as an array ({error}); {_DAMAGED}") from None
    if vectors.shape != shape or vectors.dtype != dtype:
        raise HeadError(f"{path}: expected {np.dtype(dtype).name} {shape[0]} x {shape[1]}, found {vectors.dtype} "
                        f"{vectors.shape}; {_DAMAGED}")
    return vectors


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


def load_head(folder):
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
    head.calibration_ = Temperature.from_json(config.get("calibration"), str(config_path))
    head._restore(files)
    if config.get("probe") is not None:
        head.probe_ = _load_probe(folder, config["probe"], head.n_features_in_)
        head.probe_source_ = config["probe"].get("source", "train")  # heads saved before the shipped set: train
    head.drift_reference_ = None  # heads saved before the drift check have none
    if config.get("drift_reference") is not None:
        head.drift_reference_ = _load_drift_reference(folder, config["drift_reference"], head.n_features_in_)
    return head


def _load_drift_reference(folder: Path, entry: Any, n_features: int) -> np.ndarray:
    """The drift reference vectors (drift_reference.npy, digest checked): float16 rows x n_features."""
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("rows"), int):
        raise HeadError(f"{folder / CONFIG_NAME}: field 'drift_reference' should be {{'rows': N, 'sha256': ...}}; "
                        f"{_DAMAGED}")
    return _read_array(folder, DRIFT_FILE, entry["sha256"], (entry["rows"], n_features), np.float16)


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
    """The probe texts (from head.json) and their vectors (probe.npy, digest checked)."""
    if not isinstance(probe, dict) or not isinstance(probe.get("texts"), list) or not all(
            isinstance(t, str) for t in probe["texts"]) or not isinstance(probe.get("sha256"), str) or (
            probe.get("source", "train") not in PROBE_SOURCES):
        raise HeadError(f"{folder / CONFIG_NAME}: field 'probe' should be {{'texts': [...], 'sha256': ..., 'source': "
                        f"{' or '.join(PROBE_SOURCES)}}}; {_DAMAGED}")
    vectors = _read_array(folder, PROBE_FILE, probe["sha256"], (len(probe["texts"]), n_features), np.float32)
    return list(probe["texts"]), vectors


def _parse_config(config: Any, path: Path) -> tuple[type, dict]:
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
    """HeadError unless ``name`` is a plain file name inside the folder."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise HeadError(f"refusing file name {name!r} in {folder / CONFIG_NAME}: a head's files "
                        "must be plain names inside its folder (no paths, no '..'); "
                        f"{_DAMAGED}")


def _refuse_pickles(folder: Path) -> None:
    """HeadError if the folder holds any pickle/joblib file."""
    found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
    if found:
        raise HeadError(f"refusing {folder}: it contains {', '.join(found)}. Saved heads never "
                        "use pickle/joblib files, which can run code when loaded; remove them "
                        "or use a clean folder")



def _classes_dtype(classes: np.ndarray) -> str:
    """How head.json records the labels' dtype: a numpy dtype string for numbers, "str" for strings."""
    if classes.dtype.kind in "biuf":
        return classes.dtype.str
    if all(isinstance(c, str) for c in classes.tolist()):
        return "str"
    raise HeadError(f"cannot save labels of dtype {classes.dtype}: use strings or numbers")


def _jsonable(value: Any) -> Any:
    """A parameter or state value as JSON: numpy scalars to Python, tuples to lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
