"""CLS (or mean) embeddings through the cache: no text is ever encoded twice by the same model.

``Embedder`` is a scikit-learn transformer (``transform(texts) -> array``) that loads its model
lazily on first use, so ``make_pipeline(Embedder("minilm"), KNNHead())`` works. ``embed`` returns
the vectors plus counts (hits, encoded, seconds). Texts are normalized, deduplicated, looked up in
the cache, and only the misses are tokenized once, sorted by length and encoded in batches with
no padding waste; every batch group is committed to the cache as it finishes, so an interrupted
run keeps its work. CLS is the first token of the last hidden state, before any normalization.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from cache import EmbeddingStore, NullStore, default_cache_dir, text_key

from .backends import (EXPORTS, POOLINGS, conversion_failed, export_key, exported, failure_marker, pick_backend, pool,
                       record_failure)
from .bundle import shipped_export
from .errors import ModelError
from .models import (PRECISIONS, ModelSource, fingerprint, hidden_size, load_encoder, load_tokenizer, max_seq_length,
                     resolve_model, trained_pooling, transformer_dir, weights_digest)
from .normalize import normalizer

if TYPE_CHECKING:  # annotations only: neither is imported until a model is used
    import torch
    from transformers import PreTrainedTokenizerBase

# Embedder(pooling="auto"): a run folder's own (what `finetune` trained its classifier on), else CLS
POOLING_CHOICES = ("auto",) + POOLINGS
COMMIT_EVERY = 2048  # default of Embedder(commit_every=...): texts encoded between cache commits


def _cpu_only_torch() -> bool:
    """Whether the installed torch is a CPU-only build (its version ends in ``+cpu``): no GPU to look
    for, so resolving ``auto`` need not import torch (seconds a command on cached vectors never needs)."""
    try:
        return importlib.metadata.version("torch").endswith("+cpu")
    except importlib.metadata.PackageNotFoundError:
        return False


def pick_device(device: str = "auto") -> str:
    """``auto``: cuda where torch sees a GPU, else cpu; an explicit ``cuda...`` without a GPU raises ModelError."""
    if device == "cpu" or (device == "auto" and "torch" not in sys.modules and _cpu_only_torch()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} asked for, but torch sees no GPU; use --device cpu")
    return device


def _torch():
    import torch

    return torch


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX-BF16), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False  # not Linux, or no flags line: fp32, the safe choice


def pick_precision(precision: str, device: str) -> str:
    """``auto``: fp16 on a GPU; on a CPU bf16 where it has bf16 units (OpenVINO bf16 on AMX: about 3x
    fp32 and 4x ``encode()`` for MiniLM, a logistic head within 0.1 point of fp32, BENCHMARKS.md), else fp32."""
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.startswith("cuda"):
            return "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


@dataclass
class EmbedStats:
    """What one ``Embedder.embed`` call did: texts given, distinct texts, cache hits, texts encoded, texts truncated
    (of those encoded), damaged cache rows dropped, seconds.
    """

    texts: int = 0
    unique: int = 0
    hits: int = 0
    encoded: int = 0
    truncated: int = 0  # among the texts encoded in this call (cache hits are not re-tokenized)
    damaged: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Texts per second over the whole call (infinite for a call that took no time)."""
        return self.texts / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One line for a person: texts, cache hits, encoded, seconds, texts/s."""
        return (f"{self.texts} texts, {self.hits} cache hits, {self.encoded} encoded, "
                f"{self.seconds:.1f} s, {self.per_second:,.0f} texts/s")


@dataclass
class LoadedEncoder:
    """What decides a vector (fingerprint) plus the tokenizer; the weights load only when encoding."""

    source: ModelSource
    device: str
    precision: str
    max_length: int
    dim: int
    fingerprint: str
    description: dict = field(default_factory=dict)
    backend: str = "torch"
    pooling: str = "cls"
    export_dir: Path | None = None  # OpenVINO: where the converted graph is kept (None: in memory only)
    export_key: str | None = None  # OpenVINO: weights, tokenizer, pooling and OpenVINO version
    model: torch.nn.Module | None = None  # loaded by ensure_model
    tokenizer: PreTrainedTokenizerBase | None = None  # loaded by ensure_tokenizer
    compiled: object | None = None  # OpenVINO: the compiled encoder, see ensure_compiled

    def ensure_tokenizer(self):
        """The tokenizer ``embed`` calls: on the OpenVINO path read from tokenizer.json without importing
        transformers where the folder allows it (``load_tokenizer``), else transformers' own."""
        if self.tokenizer is None:
            self.tokenizer = load_tokenizer(self.source, light=self.backend == "openvino")
        return self.tokenizer

    def ensure_model(self):
        """The torch encoder on its device and in its precision, loaded on first use."""
        if self.model is None:
            import torch

            model, _ = load_encoder(self.source, tokenizer=False)
            self.device = pick_device(self.device)
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
            self.model = model.to(device=self.device, dtype=dtype).eval()
        return self.model

    def ensure_converted(self):
        """OpenVINO: the pooled graph, read from ``export_dir`` or converted (and kept there) first;
        converted once per process and model (tests open many cache folders), read from disk after.
        A plain BERT is written as a graph from its safetensors without torch; others are traced."""
        from .backends import load_or_export

        def load_fp32():
            return load_encoder(self.source, tokenizer=False)[0].eval()

        try:
            ov_model = load_or_export(load_fp32, lambda: load_tokenizer(self.source, light=False), self.pooling,
                                      self.export_dir,
                                      converted=_IN_MEMORY.get(self.export_key),
                                      model_dir=transformer_dir(self.source.path))
        except (ModelError, MemoryError):
            raise
        except Exception as exc:  # the converter's errors have no common type
            raise ConversionError(self.description.get("model"), f"{type(exc).__name__}: {exc}") from exc
        _IN_MEMORY.pop(self.export_key, None)
        _IN_MEMORY[self.export_key] = ov_model
        while len(_IN_MEMORY) > 2:
            _IN_MEMORY.pop(next(iter(_IN_MEMORY)))
        return ov_model

    def ensure_compiled(self):
        """OpenVINO: the compiled encoder (converted or read by ``ensure_converted``), made on first use."""
        if self.compiled is None:
            from .backends import OpenVinoEncoder

            self.compiled = OpenVinoEncoder(self.ensure_converted(), self.precision)
        return self.compiled


_IN_MEMORY: dict = {}


class ConversionError(ModelError):
    """OpenVINO's converter failed on this model (``auto`` then uses torch for it)."""

    def __init__(self, model, reason: str):
        self.model, self.reason = model, reason
        super().__init__(f"OpenVINO could not convert {model!r} ({reason}); use --backend torch")


class Embedder(TransformerMixin, BaseEstimator):
    """Texts in, float32 vectors out, through the embedding cache.

    Parameters are stored only; the model loads on first ``transform``/``embed``.
    ``pooling="auto"`` pools as a run folder's classifier was trained (``finetune --pooling``), and
    takes the CLS token (the target model's pooling) for every other model.
    ``cache_dir="default"`` uses ``$TWEETHEADS_CACHE_DIR`` or ``~/.cache/tweetheads``; ``None``
    switches the cache off. ``commit_every`` texts are encoded between two cache commits: a
    process killed mid-run loses at most that many encodings.
    """

    def __init__(self, model: str = "minilm", *, pooling: str = "auto", max_length: int | None = None,
                 batch_size: int = 64, device: str = "auto", precision: str = "auto", backend: str = "auto",
                 normalize: bool = True, cache_dir: str | Path | None = "default", progress: bool = False,
                 commit_every: int = COMMIT_EVERY):
        self.model = model
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.backend = backend
        self.normalize = normalize
        self.cache_dir = cache_dir
        self.progress = progress
        self.commit_every = commit_every

    # -- loading -----------------------------------------------------------------------------
    def _cache_root(self) -> Path | None:
        if self.cache_dir is None:
            return None
        return default_cache_dir() if self.cache_dir == "default" else Path(self.cache_dir)

    def load(self) -> LoadedEncoder:
        """Resolve the model, load its tokenizer and compute the fingerprint; weights stay on disk
        (except the once per model that ``auto`` converts it for OpenVINO: ``_converted_or_torch``)."""
        if getattr(self, "encoder_", None) is not None:
            return self.encoder_
        if self.pooling not in POOLING_CHOICES:
            raise ModelError(f"pooling must be one of {', '.join(POOLING_CHOICES)}, got {self.pooling!r}")
        source = resolve_model(self.model, self._cache_root())
        pooling = trained_pooling(source) if self.pooling == "auto" else self.pooling
        dim = hidden_size(source.path)
        resolve = self.precision == "auto" or self.backend != "torch"
        device = pick_device(self.device) if resolve else self.device  # torch imports only when needed
        precision = pick_precision(self.precision, device)
        backend = pick_backend(self.backend, device, precision, cpu_has_bf16())
        max_length = int(self.max_length or max_seq_length(source.path))
        _, norm_version = normalizer(self.normalize)
        export_dir = key = None
        root = self._cache_root()
        if backend == "openvino":
            key = export_key(weights_digest(source), pooling)
            export_dir = root / EXPORTS / f"openvino-{key}" if root is not None else None
            export_dir = shipped_export(source.bundle_dir, key) or export_dir  # a bundle's own, made for this key
            if self.backend == "auto" and conversion_failed(key, export_dir):
                backend, export_dir, key = "torch", None, None  # it did not convert before: _converted_or_torch
        fp = fingerprint(source, pooling, max_length, norm_version, precision, backend)
        description = {"model": self.model, "path": str(source.path), "pooling": pooling,
                       "max_length": max_length, "normalization": norm_version, "precision": precision,
                       "backend": backend, "dim": dim,
                       "model_fingerprint": fingerprint(source, pooling, max_length, norm_version, "any")}
        self.encoder_ = LoadedEncoder(source, device, precision, max_length, dim, fp, description,
                                      backend=backend, pooling=pooling, export_dir=export_dir, export_key=key)
        return self._converted_or_torch(self.encoder_)

    def _converted_or_torch(self, enc: LoadedEncoder) -> LoadedEncoder:
        """``auto`` picked OpenVINO: convert now, before anything depends on the fingerprint (a head's
        check, a store), unless it was converted before (the export on disk, or in this process). Where
        the model will not convert, say why and resolve to torch instead; the failure is kept
        (``record_failure``) so the next run does not try again."""
        if enc.backend != "openvino" or self.backend != "auto":
            return enc
        if enc.export_key in _IN_MEMORY or exported(enc.export_dir):
            return enc  # converted before: reading it is left to the first batch
        try:
            enc.ensure_converted()
            return enc
        except ConversionError as exc:
            record_failure(enc.export_key, enc.export_dir, exc.reason)
            where = f"; remembered in {failure_marker(enc.export_dir)}" if enc.export_dir is not None else ""
            print(f"note: OpenVINO could not convert {exc.model!r} ({exc.reason}), so it is encoded with torch "
                  f"{enc.precision} instead{where}", file=sys.stderr)
            self.encoder_ = None
            return self.load()

    @property
    def fingerprint_(self) -> str:
        """The model fingerprint that keys this embedder's cache entries (loads the encoder's description)."""
        return self.load().fingerprint

    def open_store(self):
        """The embedding store for this model's fingerprint, or a NullStore with the cache off (``cache_dir=None``)."""
        enc = self.load()
        root = self._cache_root()
        if root is None:
            return NullStore(enc.dim)
        return EmbeddingStore(root, enc.fingerprint, enc.dim, enc.description)

    # -- encoding ----------------------------------------------------------------------------
    def _encode_ids(self, enc: LoadedEncoder, batch_ids: list[list[int]]) -> np.ndarray:
        if enc.backend == "openvino":
            padded = enc.ensure_tokenizer().pad({"input_ids": batch_ids}, return_tensors="np")
            return enc.ensure_compiled()(padded["input_ids"], padded["attention_mask"])
        padded = enc.ensure_tokenizer().pad({"input_ids": batch_ids}, return_tensors="pt")
        model = enc.ensure_model()
        ids = padded["input_ids"].to(enc.device)
        mask = padded["attention_mask"].to(enc.device)
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool(hidden, mask, enc.pooling).float().cpu().numpy()

    def encode_new(self, texts: list[str], bar=None) -> tuple[np.ndarray, int]:
        """Encode already-normalized texts, bypassing the cache; returns ``(vectors, truncated)``."""
        enc = self.load()
        out = np.zeros((len(texts), enc.dim), dtype=np.float32)
        if not texts:
            return out, 0
        tokenized = enc.ensure_tokenizer()(texts, add_special_tokens=True, truncation=True, max_length=enc.max_length,
                                  return_attention_mask=False)["input_ids"]
        # a text at exactly max_length tokens may fit or have been cut: tokenize those few again, uncut
        at_limit = [texts[i] for i, ids in enumerate(tokenized) if len(ids) >= enc.max_length]
        truncated = sum(1 for ids in enc.ensure_tokenizer()(at_limit, add_special_tokens=True)["input_ids"]
                        if len(ids) > enc.max_length) if at_limit else 0
        order = np.argsort([len(ids) for ids in tokenized], kind="stable")
        # OpenVINO needs no torch: not importing it saves about a second of every cold `embed` here
        with contextlib.nullcontext() if enc.backend == "openvino" else _torch().inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                out[rows] = self._encode_ids(enc, [tokenized[i] for i in rows])
                if bar is not None:
                    bar.update(len(rows))
        return out, truncated

    def embed(self, texts: list[str]) -> tuple[np.ndarray, EmbedStats]:
        """Vectors for ``texts`` in order, and what it cost. Only cache misses are encoded."""
        from tqdm.auto import tqdm

        started = time.perf_counter()
        enc = self.load()
        norm, _ = normalizer(self.normalize)
        normalized = [norm(t) for t in texts]
        index: dict[str, int] = {}
        rows_of = np.array([index.setdefault(t, len(index)) for t in normalized], dtype=np.int64)
        unique = list(index)
        keys = [text_key(enc.fingerprint, t) for t in unique]
        store = self.open_store()
        try:
            found, vectors = store.get_many(keys)
            missing = np.flatnonzero(~found)
            stats = EmbedStats(texts=len(texts), unique=len(unique), encoded=len(missing), damaged=store.dropped,
                               hits=int(found[rows_of].sum()))
            # encode in groups, committing each, so an interrupted run keeps what it finished
            missing = missing[np.argsort([len(unique[i]) for i in missing], kind="stable")]
            with tqdm(total=len(missing), unit="text", desc="encoding", disable=None if self.progress and len(missing) else True) as bar:
                for start in range(0, len(missing), self.commit_every):
                    rows = missing[start:start + self.commit_every]
                    new, truncated = self.encode_new([unique[i] for i in rows], bar)
                    vectors[rows] = new
                    store.put_many([keys[i] for i in rows], new)
                    stats.truncated += truncated
        finally:
            store.close()
        stats.seconds = time.perf_counter() - started
        return vectors[rows_of], stats

    def fit(self, texts=None, y=None):
        """Nothing to fit (scikit-learn protocol): returns ``self``."""
        return self

    def transform(self, texts) -> np.ndarray:
        """The vectors of ``texts`` as a float32 array ``(n, dim)``, through the cache (``embed`` without its stats)."""
        return self.embed(list(texts))[0]
