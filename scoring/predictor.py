"""Texts in, labels out, in one object: ``Predictor.load(model, head).predict(["what a debate"])``.

A ``Predictor`` is an embedding model plus a classifier over its vectors (a saved head, or a
fine-tuned run's own end-to-end classifier) that have been checked to belong together. It is the
one place a head is loaded and checked against a model: ``score`` (both engines), ``predict``,
``serve`` and ``compare`` all come through :func:`load_checked`, so a head trained on another
model's vectors is refused everywhere with the same message, before any text is classified.

The checks (made by ``load``): the head's recorded model fingerprint equals the embedder's, or
the same weights computed another way (another backend or precision) pass the head's probe (see
``heads.base.BaseHead.check_fingerprint``); ``head="e2e"`` needs a run folder written by
``finetune`` and vectors pooled, cut and normalized as the run was trained.

Texts are embedded through the cache (``Embedder``): a text seen before costs a lookup, not an
encoding. An empty or whitespace-only text is refused with its position (``score`` writes such
rows to its rejects file instead). Left out: batching of concurrent callers (``serve`` does that
on top of ``predict_proba``) and anything about files (``score``).

Examples
--------
>>> p = Predictor.load("minilm", "heads/logistic")        # doctest: +SKIP
>>> p(["what a debate", "worst night ever"])             # doctest: +SKIP
array(['Positive', 'Negative'], dtype='<U8')
>>> p.predict_proba("what a debate").round(2)            # doctest: +SKIP
array([0.11, 0.07, 0.82])
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from embed.errors import DataError, ModelError

from .predict import E2E, Classifier, Truncation, predict_texts

if TYPE_CHECKING:
    from embed.encoder import Embedder

_SETTINGS = {"pooling": "--pooling", "max_length": "--max-length", "precision": "--precision", "backend": "--backend",
             "normalization": None}


@dataclass(frozen=True)
class CheckedHead:
    """A classifier that was checked against an embedder, and how to name and reload it."""

    classifier: Classifier
    spec: tuple[str, str]  # ("e2e", run folder) or ("head", folder): how a Ray actor reloads it
    head_id: str  # e2e@RUN or NAME@FOLDER, written into pred_head
    digest: str  # sha256 over the classifier's files: part of a scoring run's identity


def load_checked(head: str | Path | None, embedder: Embedder, *, quiet: bool = False) -> CheckedHead:
    """Load ``head`` (a head folder, a hub id, or ``"e2e"``) and check it belongs to ``embedder``'s vectors.

    ``None``: the model's own head (``default_head``: a bundle's, a run's end-to-end classifier).
    Raises ``HeadError`` (a head trained on another model's vectors, with the flags to change when
    only a setting differs) or ``ModelError`` (``e2e`` without a run folder, or vectors pooled
    otherwise than the run was trained). A head accepted through its probe says so on stderr
    unless ``quiet``.
    """
    if head is None:
        head = default_head(embedder)
    if str(head) == E2E:
        return _end_to_end(embedder)
    from heads import HeadError, load_head
    from heads.base import CONFIG_NAME, warn_accepted

    encoder = embedder.load()
    folder = resolve_head(head)
    classifier = load_head(folder)
    try:
        measured = classifier.check_fingerprint(encoder.fingerprint, encoder.description,
                                                embed=lambda texts: embedder.embed(texts)[0])
    except HeadError as exc:
        raise HeadError(f"{folder}: {exc}{_settings_hint(classifier.model_, encoder.description)}") from None
    if measured and not quiet:
        warn_accepted(folder, measured)
    digest = hashlib.sha256((folder / CONFIG_NAME).read_bytes()).hexdigest()  # it holds every file's sha256
    return CheckedHead(classifier, ("head", str(folder.resolve())), f"{classifier.name}@{head}", digest)


def default_head(embedder: Embedder) -> str:
    """The head used when none is named: a bundle's own (``export``), else a run's end-to-end classifier."""
    source = embedder.load().source
    if source.bundle_dir is not None:
        from embed.bundle import HEAD_PART

        return str(source.bundle_dir / HEAD_PART)
    if source.kind == "run":
        return E2E
    raise ModelError(f"{embedder.model!r} is an embedding model with no classifier of its own; pass a head folder "
                     "(train one with `tweetheads train-head`), a run folder written by `finetune`, or a bundle "
                     "written by `export`")


def resolve_head(head: str | Path) -> Path:
    """A head folder: a local path as given, else a hub id (``user/head``) through the Hugging Face cache
    (``embed.models.hub_snapshot``); a bundle (local or hub) gives its own head, after its digests are checked."""
    from embed.bundle import HEAD_PART, is_bundle, verify_bundle
    from embed.models import hub_snapshot, looks_like_hub_id

    folder = Path(head).expanduser()
    if not folder.exists() and looks_like_hub_id(str(head)):
        folder = hub_snapshot(str(head), what="head")
    if is_bundle(folder):
        verify_bundle(folder)
        folder = folder / HEAD_PART
    return folder


def _settings_hint(trained: dict | None, now: dict) -> str:
    from heads.base import backend_of

    trained = dict(trained or {})
    if trained:
        trained["backend"] = backend_of(trained)
    differ = [key for key in _SETTINGS if key in trained and trained[key] != now.get(key)]
    if not differ:
        return ""
    said = ", ".join(f"{key} {trained[key]!r} (this run: {now.get(key)!r})" for key in differ)
    fixes = " ".join(f"{_SETTINGS[key]} {trained[key]}" for key in differ if _SETTINGS[key])
    return f" The head was trained with {said}" + (f"; rerun with {fixes}." if fixes else ".")


def _end_to_end(embedder: Embedder) -> CheckedHead:
    from embed.runs import CLASSIFIER_FILE, EndToEndClassifier

    encoder = embedder.load()
    if encoder.source.kind != "run":
        raise ModelError(
            f"--head e2e scores with a fine-tuned run's own classifier, so --model must be a run folder "
            f"written by `finetune`; {embedder.model!r} is not one (it is {encoder.source.path}). Pass "
            "--model RUN_DIR, or --head HEAD_DIR for a trained head")
    run_dir = encoder.source.run_dir
    classifier = EndToEndClassifier(run_dir)
    classifier.check_vectors(encoder.description)
    digest = hashlib.sha256()
    for name in (CLASSIFIER_FILE, "labels.json"):
        digest.update((run_dir / name).read_bytes())
    if classifier.calibration_ is not None:  # a new temperature is a new classifier (none: the softmax, as before)
        digest.update(json.dumps([classifier.calibration_.temperature, classifier.calibration_.smoothing]).encode())
    return CheckedHead(classifier, (E2E, str(Path(run_dir).resolve())), f"e2e@{run_dir}", digest.hexdigest())


class Predictor:
    """An embedding model and a classifier checked to belong together; texts in, labels out.

    Build it with :meth:`load`. ``predict(texts)`` gives labels, ``predict_proba(texts)`` an array
    whose columns follow ``classes_``, and calling the object is ``predict`` (as in SetFit). A single
    string gives a single label (a 1-D probability row); a list gives one per text, in order.

    Attributes
    ----------
    embedder : Embedder
        Computes the vectors, through the embedding cache.
    classifier : object
        The head or end-to-end classifier (``classes_``, ``predict_proba`` over vectors).
    classes_ : numpy.ndarray
        The labels, in the order of ``predict_proba``'s columns.
    head_id, model_id : str
        ``NAME@FOLDER`` (or ``e2e@RUN``) and ``MODEL@FINGERPRINT[:12]``, as ``score`` writes them.
    """

    def __init__(self, embedder: Embedder, head: CheckedHead):
        self.embedder = embedder
        self.head = head
        self.classifier = head.classifier
        self.classes_ = np.asarray(head.classifier.classes_)
        encoder = embedder.load()
        self.model_id = f"{encoder.description.get('model')}@{encoder.fingerprint[:12]}"
        self.head_id = head.head_id
        self._truncation: Truncation | None = None

    @classmethod
    def load(cls, model, head: str | Path | None = None, *, pooling: str = "auto", max_length: int | None = None,
             batch_size: int = 64, device: str = "auto", precision: str = "auto", backend: str = "auto",
             cache_dir: str | Path | None = "default", quiet: bool = False) -> Predictor:
        """Resolve ``model`` (alias, hub id, folder, run folder, or an ``Embedder``) and check ``head`` against it.

        ``head``: a head folder, a hub id, or ``"e2e"`` for a run's own classifier; left out, a bundle
        (written by ``export``) uses its own head, a run folder its end-to-end classifier, and any other
        model is refused (it has no classifier).
        The embedding options are ``Embedder``'s; a head must be used with the settings it was
        trained with (the error names the flags to change).
        """
        from embed.encoder import Embedder

        embedder = model if isinstance(model, Embedder) else Embedder(
            str(model), pooling=pooling, max_length=max_length, batch_size=batch_size, device=device,
            precision=precision, backend=backend, cache_dir=cache_dir)
        return cls(embedder, load_checked(head, embedder, quiet=quiet))

    # -- prediction ----------------------------------------------------------------------------
    def predict_proba(self, texts: str | Sequence[str]) -> np.ndarray:
        """Class probabilities: shape ``(len(texts), len(classes_))``, or ``(len(classes_),)`` for one string."""
        single = isinstance(texts, str)
        proba, _ = self.predict_details([texts] if single else texts)
        return proba[0] if single else proba

    def predict(self, texts: str | Sequence[str]):
        """Labels (``classes_[argmax(predict_proba)]``): one per text, or one label for one string."""
        proba = self.predict_proba(texts)
        picked = np.argmax(proba, axis=-1)
        return self.classes_[picked]

    __call__ = predict

    def predict_details(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, truncated)``: which texts the encoder cut (more tokens than its max length)."""
        proba, truncated, _ = self.predict_counted(check_texts(texts))
        return proba, truncated

    def predict_counted(self, texts: list[str], on_vectors=None) -> tuple[np.ndarray, np.ndarray, int]:
        """``(probabilities, truncated, encoded)`` for texts already checked (``score``'s reader rejects
        empty ones): ``encoded`` counts the distinct texts that missed the cache. ``on_vectors(vectors)``
        sees the texts' vectors (the drift checks of ``serve`` and ``score --engine ray``)."""
        if self._truncation is None:
            self._truncation = Truncation(self.embedder)
        return predict_texts(self.embedder, self.classifier, self._truncation, texts, on_vectors)

    def info(self) -> dict:
        """What ``serve``'s ``/info`` and ``predict --json`` report: model, head, classes, fingerprint, backend."""
        encoder = self.embedder.load()
        d = encoder.description
        return {"model": d.get("model"), "model_id": self.model_id, "fingerprint": encoder.fingerprint,
                "head": self.head_id, "head_kind": self.head.spec[0], "classes": self.classes_.tolist(),
                "pooling": d.get("pooling"), "max_length": d.get("max_length"), "dim": d.get("dim"),
                "backend": d.get("backend"), "precision": d.get("precision")}

    def __repr__(self) -> str:
        return f"Predictor(model={self.model_id!r}, head={self.head_id!r}, classes={self.classes_.tolist()!r})"


def check_texts(texts) -> list[str]:
    """``texts`` as a list of strings; DataError naming the first one that is not a string or is empty."""
    if isinstance(texts, str):
        raise DataError("expected a list of texts, got one string; pass [text] (or call predict(text) for one)")
    try:
        texts = list(texts)
    except TypeError:
        raise DataError(f"expected a list of texts, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"text {i} is {type(text).__name__}, not a string; pass every text as a string")
        if not text.strip():
            raise DataError(f"text {i} is empty{' (only whitespace)' if text else ''}: there is nothing to "
                            "classify; leave it out or give it a text")
    return texts
