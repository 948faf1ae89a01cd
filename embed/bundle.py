"""The folder ``tweetheads export`` writes: a model and a head that travel together, checked as a whole.

Layout of ``BUNDLE``::

    tweetheads_bundle.json  format, what the bundle holds (model, head, embedding settings, OpenVINO key)
                            and ``files``: the sha256 of every other file in the folder
    README.md               the bundle's card (Hub metadata: base model, labels, the head's eval results)
    run/                    the fine-tuned run it came from: a run folder (tweetheads_run.json, encoder/,
                            classifier.safetensors, labels.json, metrics.json, its card), no checkpoint;
      or encoder/           the sentence-transformers model, for a head trained on a plain model
    head/                   the head folder (head.json, its safe files, probe, card, train_report.json)
    openvino/openvino-KEY/  the encoder's OpenVINO export with the head's pooling (model.xml, model.bin),
                            where the exporting machine made one; KEY includes the OpenVINO version

``--model BUNDLE`` resolves like a run folder (``embed.models.resolve_model``) once
``verify_bundle`` has checked every recorded digest and found no file the manifest does not list
(the Hub's ``.gitattributes`` excepted), so one changed byte anywhere refuses the whole bundle by
name. ``Predictor.load(BUNDLE)`` uses the bundle's head; ``Embedder`` computes with the shipped
OpenVINO export when its key matches this machine's OpenVINO (``shipped_export``), else as for
any model (converted once into the cache, or torch). Writing bundles is ``sharing.export``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from fileio import hub_link_ok, sha256_file

from .errors import ModelError

BUNDLE_MARKER = "tweetheads_bundle.json"
BUNDLE_FORMAT = "tweetheads-bundle/1"
RUN_PART, ENCODER_PART, HEAD_PART, OPENVINO_PART = "run", "encoder", "head", "openvino"
_UNLISTED_OK = (".gitattributes",)  # the Hub adds it to every repo it stores
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_REDO = "export the bundle again from its run and head (`tweetheads export`), or download it again"


def is_bundle(folder: str | Path) -> bool:
    """Whether ``folder`` is a bundle written by ``tweetheads export`` (it holds the bundle manifest)."""
    return (Path(folder) / BUNDLE_MARKER).is_file()


def read_manifest(folder: str | Path) -> dict:
    """The bundle manifest of ``folder`` as a dict (not yet checked against the files: ``verify_bundle``).

    Raises ModelError where it is unreadable, of another format or version, or lacks its ``files``,
    ``model`` or ``head`` object.
    """
    path = Path(folder) / BUNDLE_MARKER
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{path}: not a readable bundle manifest ({exc}); {_REDO}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelError(f"{path}: format {found!r}, expected {BUNDLE_FORMAT!r}; it was written by another program "
                         f"or version: {_REDO}")
    for key in ("files", "model", "head"):
        if not isinstance(manifest.get(key), dict):
            raise ModelError(f"{path}: field {key!r} should be an object; the bundle is damaged: {_REDO}")
    return manifest


def verify_bundle(folder: str | Path) -> dict:
    """The manifest, after checking every file's sha256 and that no unlisted file sits in the folder.

    Files may be symlinks only where the Hugging Face cache made them (a downloaded snapshot).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    marker = folder / BUNDLE_MARKER
    files = manifest["files"]
    for name, digest in files.items():
        path = folder / name
        if (not isinstance(digest, str) or not _SHA256.match(digest) or Path(name).is_absolute()
                or ".." in Path(name).parts or name == BUNDLE_MARKER):
            raise ModelError(f"{marker}: entry {name!r}: {digest!r} is not a file inside the bundle with its sha256; "
                             f"the bundle is damaged: {_REDO}")
        if not path.is_file() or (path.is_symlink() and not hub_link_ok(path)):
            raise ModelError(f"{path}: missing or not a regular file (listed in {BUNDLE_MARKER}); the bundle is "
                             f"incomplete: {_REDO}")
        found = sha256_file(path)
        if found != digest:
            raise ModelError(f"{path}: sha256 {found[:12]} does not match {digest[:12]} recorded in {BUNDLE_MARKER}; "
                             f"the file is damaged or was modified: {_REDO}")
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".cache/") or rel == ".cache" or path.is_dir() and not path.is_symlink():
            continue  # .cache/huggingface: what snapshot_download(local_dir=...) keeps beside the files
        if rel not in files and rel != BUNDLE_MARKER and rel not in _UNLISTED_OK:
            raise ModelError(f"{path}: not listed in {BUNDLE_MARKER}; a bundle holds only the files it records "
                             f"(remove it, or {_REDO})")
    return manifest


def bundle_parts(folder: Path, manifest: dict) -> tuple[Path, Path | None]:
    """``(encoder folder, run folder or None)`` of a verified bundle."""
    if (folder / RUN_PART / "tweetheads_run.json").is_file():
        return folder / RUN_PART / "encoder", folder / RUN_PART
    if (folder / ENCODER_PART).is_dir():
        return folder / ENCODER_PART, None
    raise ModelError(f"{folder}: the bundle holds neither {RUN_PART}/ (a run) nor {ENCODER_PART}/ (a model); {_REDO}")


def shipped_export(bundle_dir: Path | None, key: str) -> Path | None:
    """The bundle's OpenVINO export for ``key`` (this machine's weights, pooling and OpenVINO version), if it has it."""
    if bundle_dir is None:
        return None
    folder = Path(bundle_dir) / OPENVINO_PART / f"openvino-{key}"
    return folder if (folder / "model.xml").is_file() and (folder / "model.bin").is_file() else None
