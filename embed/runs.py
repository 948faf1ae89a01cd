"""The run folder that ``finetune`` writes, and the end-to-end classifier read back from it.

Layout of ``RUN_DIR``::

    tweetheads_run.json     config, label names, data files and sha256, status, ``calibration`` (the
                            temperature fitted on the eval file, or why none was) and ``files``:
                            the sha256 of every artifact below (encoder/, classifier, labels)
    encoder/                sentence-transformers model saved by sentence-transformers, with the run's pooling
                            (CLS unless --pooling mean), its config and card
    classifier.safetensors  pre_classifier + classifier weights (DistilBertForSequenceClassification shape)
    labels.json             label names in id order
    metrics.json            per-epoch training loss, validation loss and accuracy
    README.md               model card (Hub metadata through huggingface_hub; the recipe table as the
                            reference card has it), see model_card.py
    checkpoint/             last resumable training state (``--resume``)

The end-to-end classifier is the encoder's pooled vector (CLS, or the token mean for a run trained
with ``--pooling mean``) through the classifier head, so it can score cached embeddings directly:
the comparison with the heads is on exactly the same vectors. ``check_vectors`` refuses vectors
pooled, cut or normalized otherwise than the classifier was trained on.

The end-to-end probabilities are the classifier's softmax, calibrated by the temperature ``finetune``
fitted on the final model's probabilities of the eval file's rows (``finetune --calibrate temperature``,
the default; ``heads.calibration``, as the heads are): ``calibration`` in ``tweetheads_run.json`` is
``{"method": "temperature", "temperature": T, "smoothing": s, "rows": n, "nll_before": ..., "nll_after":
..., "fitted_on": {"path", "sha256", "rows"}}`` (the eval file), or ``{"method": "none", "why": ...}`` (no
eval file, ``--calibrate none``, an interrupted run). A run written before calibration has no entry and
gives the softmax as it always did. The temperature keeps each row's most probable class, so
``predict`` and every accuracy are the same with and without it.

``verify_run`` checks the recorded sha256 of every artifact before a run folder is used (by
``EndToEndClassifier`` and by ``resolve_model``), so a truncated or modified file is refused by name
instead of being loaded. Run folders written before ``files`` existed load without the check.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from fileio import hub_link_ok, sha256_file

from .data import LabelMap
from .errors import ModelError

RUN_MARKER = "tweetheads_run.json"  # marks a run folder; embed.models resolves --model through it

ENCODER_DIR = "encoder"
CLASSIFIER_FILE = "classifier.safetensors"
LABELS_FILE = "labels.json"
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_RECOVER = ("rerun the same `finetune` command with --resume (it rewrites the run from its checkpoint), "
            "or finetune again")


def save_encoder(model, tokenizer, folder: Path, max_length: int, pooling: str = "cls", *,
                 base_model: str | None = None, name: str | None = None) -> None:
    """Write ``folder`` with sentence-transformers' own ``save``: the transformer, a Pooling module with
    ``pooling`` (cls or mean), ``config_sentence_transformers.json`` and its card (naming ``base_model``,
    a hub id, when known), so ``SentenceTransformer(folder)`` loads it and pools as the run trained.

    The transformer goes through a temporary ``save_pretrained`` folder beside ``folder`` (the
    sentence-transformers module is built from files), and the finished folder replaces ``folder``
    whole: no file of an earlier layout is left behind to change its digests.
    """
    import os
    import shutil
    import tempfile

    from sentence_transformers import SentenceTransformer, SentenceTransformerModelCardData

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers 5
        from sentence_transformers.models import Pooling, Transformer

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(str(work / "hf"), safe_serialization=True)
        tokenizer.save_pretrained(str(work / "hf"))
        transformer = Transformer(str(work / "hf"), max_seq_length=int(max_length))
        pooled = Pooling(int(model.config.hidden_size), pooling_mode=pooling)
        card = SentenceTransformerModelCardData(language="en", model_name=name, local_files_only=True,
                                                tags=["tweetheads", "tweet-sentiment"])
        st = SentenceTransformer(modules=[transformer, pooled], model_card_data=card, device="cpu")
        if base_model:
            st.model_card_data.base_model = base_model  # set_base_model would ask the Hub; it is known here
        st.save(str(work / "st"), create_model_card=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work / "st", folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read_run_info(run_dir: str | Path) -> dict:
    """The run folder's ``tweetheads_run.json`` as a dict; raises ModelError where it is missing or unreadable."""
    path = Path(run_dir) / RUN_MARKER
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise ModelError(f"{path}: not a readable run folder ({exc}); pass a folder written by `finetune`") from exc
    if not isinstance(info, dict):
        raise ModelError(f"{path}: expected a JSON object, found {type(info).__name__}; pass a folder written by "
                         "`finetune`")
    return info


def artifact_digests(run_dir: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` for the files a run is loaded from: encoder/, classifier, labels."""
    run_dir = Path(run_dir)
    paths = sorted(p for p in (run_dir / ENCODER_DIR).rglob("*") if p.is_file())
    paths += [run_dir / CLASSIFIER_FILE, run_dir / LABELS_FILE]
    return {p.relative_to(run_dir).as_posix(): sha256_file(p) for p in paths}


def verify_run(run_dir: str | Path, info: dict | None = None) -> None:
    """Raise ModelError naming the first artifact whose sha256 differs from the one recorded at write time."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir) if info is None else info
    files = info.get("files")
    if files is None:
        return  # written before checksums were recorded
    marker = run_dir / RUN_MARKER
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) and _SHA256.match(v)
                                              for k, v in files.items()):
        raise ModelError(f"{marker}: 'files' should map relative paths to sha256 digests; the run folder "
                         f"is damaged: {_RECOVER}")
    root = run_dir.resolve()
    for name, digest in files.items():
        path = run_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(root):
            raise ModelError(f"{marker}: refusing file {name!r}, which is outside the run folder; {_RECOVER}")
        if (path.is_symlink() and not hub_link_ok(path)) or not path.is_file():  # the Hub cache's links only
            raise ModelError(f"{path}: missing (listed in {RUN_MARKER}); the run folder is incomplete: {_RECOVER}")
        found = sha256_file(path)
        if found != digest:
            raise ModelError(f"{path}: sha256 {found[:12]} does not match {digest[:12]} recorded in "
                             f"{RUN_MARKER}; the file is damaged or was modified: {_RECOVER}")


def run_pooling(info: dict) -> str:
    """The pooling a run (its ``tweetheads_run.json``) trained on; CLS for runs written before the choice."""
    return (info.get("config") or {}).get("pooling", "cls")


def run_calibration(info: dict, where: str | Path):
    """The ``heads.calibration.Temperature`` a run's ``tweetheads_run.json`` records (``info``), or None: none
    fitted (``method`` none) or a run written before calibration. ModelError naming ``where`` if malformed."""
    entry = info.get("calibration")
    if entry is None or (isinstance(entry, dict) and entry.get("method") == "none"):
        return None
    from heads.calibration import Temperature  # here: importing heads (scikit-learn) costs every command's start-up
    from heads.registry import HeadError

    try:
        if isinstance(entry, dict):
            return Temperature.from_json({k: v for k, v in entry.items() if k not in ("fitted_on", "why")}, str(where))
    except HeadError:
        pass
    raise ModelError(f"{where}: field 'calibration' should be {{'method': 'temperature', 'temperature': a number "
                     f"in 0.05-20, 'smoothing', 'rows', ..., 'fitted_on': the eval file}} or {{'method': 'none', "
                     f"'why': ...}}, found {entry!r}; {_RECOVER}")


_FLAGS = {"pooling": "--pooling", "max_length": "--max-length", "normalization": "--normalize/--no-normalize"}


class EndToEndClassifier:
    """The fine-tuned model's own classifier, applied to pooled vectors (numpy, no torch needed).

    Behaves like a fitted head: ``classes_``, ``predict_proba`` (calibrated by ``calibration_``, the run's
    temperature, when it has one), ``uncalibrated_proba``, ``predict``.
    """

    def __init__(self, run_dir: str | Path):
        from safetensors.numpy import load_file

        self.run_dir = Path(run_dir)
        info = read_run_info(self.run_dir)
        verify_run(self.run_dir, info)
        self.info = info
        self.classes_ = np.array(LabelMap.load(self.run_dir / LABELS_FILE).names)
        path = self.run_dir / CLASSIFIER_FILE
        try:
            weights = load_file(str(path))
            self._w1, self._b1 = weights["pre_classifier.weight"], weights["pre_classifier.bias"]
            self._w2, self._b2 = weights["classifier.weight"], weights["classifier.bias"]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read the classifier weights ({exc}); rerun `finetune --resume` "
                             "or finetune again") from exc
        if self._w2.shape[0] != len(self.classes_):
            raise ModelError(f"{path}: {self._w2.shape[0]} outputs but labels.json names {len(self.classes_)} labels")
        self.n_features_in_ = int(self._w1.shape[1])
        self.pooling = run_pooling(info)
        self.calibration_ = run_calibration(info, self.run_dir / RUN_MARKER)

    def check_vectors(self, description: dict) -> None:
        """Refuse vectors (an Embedder's ``description``) pooled, cut or normalized otherwise than trained on."""
        trained = {"pooling": self.pooling, "max_length": self.info.get("max_length"),
                   "normalization": self.info.get("normalization")}
        differ = [key for key, value in trained.items() if value is not None and value != description.get(key)]
        if differ:
            raise ModelError(
                f"{self.run_dir}: the end-to-end classifier was fine-tuned on "
                f"{', '.join(f'{k} {trained[k]!r}' for k in differ)} but the vectors given it have "
                f"{', '.join(f'{k} {description.get(k)!r}' for k in differ)}; drop "
                f"{' / '.join(_FLAGS[k] for k in differ)} so the run's own settings are used")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` for pooled vectors ``X``: the classifier's softmax, calibrated by
        the run's temperature when it has one (same argmax)."""
        proba = self.uncalibrated_proba(X)
        return proba if self.calibration_ is None else self.calibration_.apply(proba)

    def uncalibrated_proba(self, X: np.ndarray) -> np.ndarray:
        """The softmax of the run's classifier on pooled vectors ``X``, before any temperature."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ModelError(f"expected {self.pooling} vectors of width {self.n_features_in_}, got shape {X.shape}")
        hidden = np.maximum(X @ self._w1.T + self._b1, 0)
        logits = hidden @ self._w2.T + self._b2
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable label of each row of ``X``, from ``classes_``."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
