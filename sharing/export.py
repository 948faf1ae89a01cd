"""``export``: a run (or a plain model) and one of its heads as one self-contained, checked folder.

``export_bundle(model, head, out)`` loads the pair as ``Predictor.load`` does (so a head that does
not belong to the model is refused before anything is written), then writes, into a temporary
folder beside ``out`` renamed into place at the end: the run folder (no checkpoint) or the model's
folder, the head (saved again: exactly its listed files), the OpenVINO export of the encoder where
this machine has one (in the cache, or converted by the load), a labels file, the cards and the
manifest with the sha256 of every file (layout: ``embed/bundle.py``). Records are rewritten without
local paths (``portable.py``), and a head whose probe holds training texts gets the shipped probe
instead where this machine reproduces the head's exact vectors (same fingerprint); otherwise it
keeps them and the report says so. Before the rename the bundle is loaded from its own folder and
must predict the shipped probe texts as the source pair does.

Left out: bundling several heads (export one bundle per head; the encoder is the same bytes) and
heads on vectors computed with settings a bundle cannot carry (another ``--max-length`` than the
model's own, or ``--no-normalize``): those are refused with the way out.
"""
from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embed.bundle import (BUNDLE_FORMAT, BUNDLE_MARKER, ENCODER_PART, HEAD_PART, OPENVINO_PART, RUN_PART,
                          verify_bundle)
from embed.data import LabelMap
from embed.errors import ModelError
from embed.model_card import (LIMITS, TAGS, encoder_record, fixed, head_card, head_record, make_card,
                              write_model_card)
from embed.models import base_model_id, max_seq_length
from embed.normalize import NORMALIZATION_VERSION
from embed.runs import CLASSIFIER_FILE, ENCODER_DIR, LABELS_FILE, RUN_MARKER, read_run_info, verify_run
from fileio import sha256_file

from . import portable

_RUN_FILES = (CLASSIFIER_FILE, LABELS_FILE, "metrics.json")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")


@dataclass
class ExportReport:
    """What ``export_bundle`` wrote: the folder, model kind, head, file count and bytes, the OpenVINO export key
    (None: not included), where the probe came from, seconds, and notes for the user.
    """

    out: str
    model_kind: str  # "run" or "model"
    head: str
    files: int
    bytes: int
    openvino: str | None  # the export's key, None where this machine has none
    probe: str  # "shipped" or "train" (training texts still in the head)
    seconds: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The report for a person: one line, then each note on a line of its own."""
        text = (f"wrote {self.out}: {self.model_kind} + {self.head} head, {self.files} files, "
                f"{self.bytes / 2**20:.1f} MiB, OpenVINO export {'included' if self.openvino else 'not included'}, "
                f"in {self.seconds:.1f} s")
        return "\n".join([text, *self.notes])


def export_bundle(model: str, head: str, out: str | Path, *, cache_dir: str | Path | None = "default") -> ExportReport:
    """Write the bundle of ``model`` (a run folder, or any model spec) and ``head`` (a head folder or hub id) to ``out``."""
    from embed.encoder import Embedder
    from heads import load_head
    from scoring.predictor import Predictor, resolve_head

    started = time.perf_counter()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out} already exists; export writes a new folder: pick another OUT or remove it first")
    head_dir = resolve_head(head)
    saved = load_head(head_dir)  # digests checked; its recorded settings decide the bundle's
    trained = dict(saved.model_ or {})
    embedder = Embedder(str(model), pooling=trained.get("pooling", "auto"), cache_dir=cache_dir)
    source = embedder.load().source
    if source.bundle_dir is not None:
        raise ModelError(f"{model}: already a bundle; copy the folder instead (it is self-contained)")
    _check_settings(model, head, trained, max_seq_length(source.path))
    predictor = Predictor.load(embedder, str(head_dir), quiet=True)
    encoder = predictor.embedder.load()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    notes = []
    try:
        if source.kind == "run":
            kind, encoder_dir = "run", _copy_run(source.run_dir, work / RUN_PART)
        else:
            kind, encoder_dir = "model", work / ENCODER_PART
            _copy_tree(source.path, encoder_dir)
        probe = _write_head(saved, head_dir, work / HEAD_PART, trained, encoder, embedder, notes)
        LabelMap(tuple(str(c) for c in saved.classes_)).save(work / LABELS_FILE)
        key = _copy_openvino(encoder, work / OPENVINO_PART)
        manifest = {
            "format": BUNDLE_FORMAT,
            "written_by": f"tweetheads {_version()}",
            "model": {"kind": kind, "name": portable.name_of(model), "base_model": base_model_id(source),
                      "fingerprint": encoder.description["model_fingerprint"], "pooling": encoder.pooling,
                      "max_length": encoder.max_length, "normalization": encoder.description["normalization"],
                      "dim": encoder.dim},
            "head": {"name": saved.name, "classes": [str(c) for c in saved.classes_], "fingerprint": saved.fingerprint_,
                     "probe": probe},
            "openvino": {"key": key, "version": _openvino_version()} if key else None,
        }
        _bundle_card(work, manifest, kind, out.name)
        manifest["files"] = {p.relative_to(work).as_posix(): sha256_file(p)
                             for p in sorted(work.rglob("*")) if p.is_file()}
        (work / BUNDLE_MARKER).write_text(json.dumps(manifest, indent=2) + "\n")
        _check_bundle(work, predictor, cache_dir)
        if out.exists():
            out.rmdir()  # empty, checked above
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = [p for p in out.rglob("*") if p.is_file()]
    return ExportReport(str(out), kind, saved.name, len(files), sum(p.stat().st_size for p in files), key, probe,
                        time.perf_counter() - started, notes)


def _check_settings(model, head, trained: dict, own_length: int) -> None:
    """Refuse a head embedded with settings the bundle's model would not reproduce by default."""
    length = trained.get("max_length")
    if length is not None and int(length) != int(own_length):
        raise ModelError(f"{head} was trained on vectors cut at {length} tokens, but {model}'s own max length is "
                         f"{own_length} and a bundle uses its model's own settings; retrain the head without "
                         "--max-length (or fine-tune the run with that --max-length)")
    if trained.get("normalization", NORMALIZATION_VERSION) != NORMALIZATION_VERSION:
        raise ModelError(f"{head} was trained on texts with normalization {trained.get('normalization')!r}; a "
                         f"bundle normalizes as the default ({NORMALIZATION_VERSION}): retrain the head without "
                         "--no-normalize")


def _copy_tree(src: Path, dest: Path) -> None:
    """Every file of a model folder, links followed (a hub snapshot's), pickles and dot files left out."""
    for path in sorted(Path(src).rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts) or path.suffix in _PICKLE_SUFFIXES:
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)


def _copy_run(run_dir: Path, dest: Path) -> Path:
    """The run's encoder, classifier, labels and metrics, its record without paths and a fresh card."""
    info = read_run_info(run_dir)
    if info.get("interrupted"):
        raise ModelError(f"{run_dir}: the run was interrupted; finish it with `finetune ... --resume` before exporting it")
    _copy_tree(run_dir / ENCODER_DIR, dest / ENCODER_DIR)
    for name in _RUN_FILES:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, dest / name)
    clean = portable.run_info(info)
    portable.write_json(dest / RUN_MARKER, clean)
    verify_run(dest, clean)  # the copies are the bytes the run recorded
    metrics = json.loads((dest / "metrics.json").read_text()) if (dest / "metrics.json").is_file() else {}
    write_model_card(dest, {**clean, "run_dir": run_dir.name}, metrics)
    return dest / ENCODER_DIR


def _write_head(saved, head_dir: Path, dest: Path, trained: dict, encoder, embedder, notes: list) -> str:
    """Save the head again into ``dest`` (its listed files only), with the shipped probe where possible;
    its records without paths and its card. Returns the probe's source."""
    from embed.probe import shipped_probe
    from heads.base import CONFIG_NAME, REPORT_FILE

    if saved.probe_source_ != "shipped" and saved.probe_ is not None:
        if encoder.fingerprint == saved.fingerprint_:  # this machine computes the head's own vectors
            texts = shipped_probe()
            saved.set_probe(texts, embedder.embed(texts)[0], source="shipped")
        else:
            notes.append(f"note: the head's probe holds {len(saved.probe_[0])} of its training texts, and this machine "
                         f"computes {encoder.backend}/{encoder.precision} vectors, not the head's own, so they stay: "
                         "retrain the head with the default probe to leave them out")
    saved.save(dest)
    portable.write_json(dest / CONFIG_NAME, portable.head_config(json.loads((dest / CONFIG_NAME).read_text())))
    report_path = head_dir / REPORT_FILE
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report = portable.train_report(report)
    if report:
        portable.write_json(dest / REPORT_FILE, report)
    head_card(head_record(saved, report, head_dir.name, encoder=None if report.get("encoder") else
                          encoder_record(encoder))).save(dest / "README.md")
    return saved.probe_source_ or "none"


def _copy_openvino(encoder, dest: Path) -> str | None:
    """The encoder's OpenVINO export (model.xml, model.bin) into ``dest/openvino-KEY``, where this machine has one."""
    from embed.backends import exported

    if encoder.backend != "openvino" or not exported(encoder.export_dir):
        return None
    target = dest / f"openvino-{encoder.export_key}"
    target.mkdir(parents=True)
    for name in ("model.xml", "model.bin"):
        shutil.copyfile(encoder.export_dir / name, target / name)
    return encoder.export_key


def _bundle_card(work: Path, manifest: dict, kind: str, name: str) -> None:
    """The bundle's README.md: the head's classes and eval results on the model, and how to use the folder."""
    from huggingface_hub import ModelCardData, metadata_load

    head_meta = metadata_load(work / HEAD_PART / "README.md") or {}
    from huggingface_hub.repocard_data import model_index_to_eval_results

    results = model_index_to_eval_results(head_meta["model-index"])[1] if head_meta.get("model-index") else None
    model, head = manifest["model"], manifest["head"]
    data = ModelCardData(base_model=model["base_model"], library_name="tweetheads", pipeline_tag="text-classification",
                         language="en", model_name=name, tags=TAGS + ["bundle", head["name"]], labels=head["classes"],
                         eval_results=results, metrics=["accuracy", "f1"] if results else None)
    part = f"`{RUN_PART}/`, the fine-tuned run" if kind == "run" else f"`{ENCODER_PART}/`, the encoder"
    scores = [f"- {r.metric_name or r.metric_type}: {fixed(r.metric_value)} on `{r.dataset_type}`" for r in results or []]
    lines = [f"# {name}", "",
             f"A tweetheads bundle: {part} (from {model['base_model'] or 'a local model'}), and a `{head['name']}` "
             f"head over its {model['dim']}-d {model['pooling']} vectors, predicting {', '.join(head['classes'])}. "
             "One folder that predicts: every file's sha256 is in `tweetheads_bundle.json` and checked on load.", "",
             *(["The head's results:", *scores, ""] if scores else []),
             "## How to use", "", "```python", "from scoring.predictor import Predictor", "",
             f'predictor = Predictor.load("{name}")  # this folder (or its hub id): the model and its head',
             'predictor.predict(["What a debate tonight", "Worst answer of the night"])', "```", "",
             "```bash", f'tweetheads predict --model {name} "What a debate tonight"',
             f"tweetheads score --model {name} tweets.csv -o scored.csv", "```", "",
             LIMITS, "", "## Files", "",
             f"- {part}" + (" with its card (`run/README.md`) and end-to-end classifier (`--head e2e`)"
                             if kind == "run" else ""),
             "- `head/`: the head, its card (`head/README.md`) and its probe",
             f"- `{OPENVINO_PART}/`: the encoder's OpenVINO export, used where this machine's OpenVINO version "
             "matches (else the encoder is converted once or run with torch)" if manifest["openvino"] else
             "- no OpenVINO export (the machine that exported it had none): the encoder is converted once on first use",
             "- `labels.json`: the head's classes; `tweetheads_bundle.json`: the manifest"]
    make_card(data, "\n".join(lines)).save(work / "README.md")


def _check_bundle(work: Path, source_predictor, cache_dir) -> None:
    """Load the written bundle from its own folder; it must predict the shipped probe as the source pair does."""
    from embed.probe import shipped_probe
    from scoring.predictor import Predictor

    verify_bundle(work)
    bundle = Predictor.load(str(work), cache_dir=cache_dir, quiet=True)
    texts = shipped_probe()
    if not np.array_equal(bundle.predict(texts), source_predictor.predict(texts)):
        raise ModelError(f"{work}: the bundle predicts the probe texts otherwise than the model and head it came "
                         "from; nothing was written (please report this)")


def _version() -> str:
    try:
        return importlib.metadata.version("tweetheads")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _openvino_version() -> str | None:
    try:
        return importlib.metadata.version("openvino")
    except importlib.metadata.PackageNotFoundError:
        return None
