"""Where a vector is computed: torch (any device) or OpenVINO (CPU), picked per machine.

``pick_backend("auto", ...)`` is OpenVINO on a CPU where the ``openvino`` package imports and
computes the precision natively (fp32; bf16 with bf16 units), and torch on a GPU or where not. On the
2-core Intel Xeon with AMX of BENCHMARKS.md OpenVINO bf16 is the fastest variant that holds accuracy
(about 1.05x torch bf16 for MiniLM, 1.15x for MPNet, with vectors closer to fp32); on the AVX2 CPU
before it OpenVINO fp32 encoded about 1.1x as fast as torch fp32 once its export was on disk, with
vectors equal to about 1e-6. int8 paths are as fast or faster but move the vectors (see
BENCHMARKS.md), so they are not defaults.
``--backend torch`` keeps the plain path; the ``TWEETHEADS_NO_OPENVINO=1`` environment variable
does the same for ``auto`` (the fallback test forces it). ``OpenVinoEncoder`` runs the compiled graph.

If ``auto`` picked OpenVINO and the model will not convert (an architecture its converter does
not handle), ``Embedder`` says so on stderr and uses torch for that model instead; the failure is
remembered (``EXPORTS/openvino-<key>.failed.json``, and in memory when there is no cache), so later
runs go straight to torch until ``cache clear all`` or a new OpenVINO version. An explicit
``--backend openvino`` that cannot convert is an error naming ``--backend torch``.

``load_or_export`` converts the transformer with its pooling (``pool``: the CLS row or the masked
mean, the same function the torch path uses) into one OpenVINO graph once per model, and keeps it
beside the embedding store, keyed by a hash of the weights, tokenizer and pooling
(``EXPORTS/<key>/model.xml``), so the next run compiles it from disk instead of converting the model
again. A plain BERT (MiniLM and the runs fine-tuned from it) is not traced: ``ov_graph.build``
writes its graph from ``config.json`` and ``model.safetensors`` without importing torch, which takes
the 4-7 s of torch, transformers and the trace out of a model's first run (BENCHMARKS.md "First
run"); any other model is traced through torch (``trace``, unchecked). The precision hint is
``f32``, or ``bf16`` where the CPU has bf16 units. Left out: int8 (BENCHMARKS.md measures the int8 variants against the 0.3-point
budget), and OpenVINO on GPUs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import types
import uuid
from pathlib import Path

import numpy as np

from .errors import ModelError

BACKENDS = ("auto", "torch", "openvino")
EXPORTS = "exports"  # folder beside the stores in the cache root
_OV_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    """Whether OpenVINO can be used: installed, and not switched off by ``TWEETHEADS_NO_OPENVINO=1``."""
    if os.environ.get("TWEETHEADS_NO_OPENVINO", "").lower() in ("1", "true", "yes"):
        return False
    return importlib.util.find_spec("openvino") is not None


def pick_backend(backend: str, device: str, precision: str, bf16_units: bool) -> str:
    """``auto``: OpenVINO on a CPU where it is installed and can compute ``precision`` natively (fp32;
    bf16 only with bf16 units: elsewhere it would quietly compute in f32), else torch. An explicit
    choice is checked and refused, with the way out, where it cannot do what was asked."""
    if backend not in BACKENDS:
        raise ModelError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    native = precision == "fp32" or (precision == "bf16" and bf16_units)
    if backend == "auto":
        return "openvino" if device == "cpu" and native and openvino_available() else "torch"
    if backend == "openvino":
        if device != "cpu":
            raise ModelError(f"--backend openvino runs on the CPU only, but the device is {device!r}; "
                             "use --device cpu, or --backend torch on the GPU")
        if importlib.util.find_spec("openvino") is None:
            raise ModelError("--backend openvino needs the openvino package: pip install openvino "
                             "(or use --backend torch)")
        if precision not in _OV_PRECISIONS:
            raise ModelError(f"--backend openvino computes in fp32 or bf16, not {precision}; "
                             "use --precision fp32 (or bf16), or --backend torch")
        if not native:
            raise ModelError("--backend openvino --precision bf16 needs a CPU with bf16 units (AVX512-BF16 or "
                             "AMX), which this one lacks: OpenVINO would compute in f32. Use --precision fp32, "
                             "or --backend torch to emulate bf16 (slowly)")
    return backend


_FAILED: dict = {}  # export key -> why it did not convert, for runs without a cache folder


def failure_marker(export_dir: Path) -> Path:
    """The file beside ``export_dir`` that records a failed conversion, so later runs skip it."""
    return export_dir.parent / f"{export_dir.name}.failed.json"


def conversion_failed(key: str, export_dir: Path | None) -> str | None:
    """Why this model did not convert before (this process, or a run that wrote its marker), or None."""
    if key in _FAILED:
        return _FAILED[key]
    if export_dir is not None and failure_marker(export_dir).is_file():
        try:
            return json.loads(failure_marker(export_dir).read_text())["error"]
        except (OSError, ValueError, KeyError):
            return "unreadable marker"
    return None


def record_failure(key: str, export_dir: Path | None, error: str) -> None:
    """Remember that this model failed to convert: in this process, and in its marker file when there is a folder."""
    _FAILED[key] = error
    if export_dir is not None:
        export_dir.parent.mkdir(parents=True, exist_ok=True)
        failure_marker(export_dir).write_text(json.dumps({"error": error}))


def export_key(weights_digest: str, pooling: str) -> str:
    """The converted graph's key: a hash of the weights digest, pooling, OpenVINO version and graph version."""
    import openvino as ov

    parts = {"weights": weights_digest, "pooling": pooling, "openvino": ov.__version__, "graph": 2}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


POOLINGS = ("cls", "mean")  # what ``pool`` computes


def pool(hidden, mask, pooling: str):
    """Torch tensors in, one vector per text out: the CLS row, or the mean over unmasked tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def _pooled(model, pooling: str):
    """The transformer plus ``pool``, as one module for tracing (torch imports only when converting)."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pool(hidden, attention_mask, pooling)

    return Pooled().eval()


def _exact_position_buckets(model) -> None:
    """Trace MPNet's relative-position buckets as an integer table lookup (in place, on ``model``).

    MPNet buckets a relative position through a float ``log`` truncated to an integer. At OpenVINO's
    bf16 inference precision that ``log`` runs in bf16, which moves some bucket boundaries: those
    token pairs get another head's attention bias, and the vectors drift (lowest cosine to fp32 0.992
    on GOP tweets, against 0.998 for torch bf16). The buckets depend on the integer positions only, so
    they are computed here, before tracing, in torch fp32, for every relative position the model
    allows; the traced graph gathers from that constant table: exact in any precision.
    """
    import torch

    encoder = getattr(model, "encoder", None)
    bucket = getattr(type(encoder), "relative_position_bucket", None) if encoder is not None else None
    if bucket is None:
        return
    span = int(getattr(model.config, "max_position_embeddings", 512))
    positions = torch.arange(-span, span + 1)
    tables = {(n, 128): bucket(positions, num_buckets=n, max_distance=128)
              for n in {getattr(model.config, "relative_attention_num_buckets", 32), 32}}

    def lookup(relative_position, num_buckets=32, max_distance=128):
        table = tables.get((num_buckets, max_distance))
        if table is None:  # a bucketing not computed above: the model's own function
            return bucket(relative_position, num_buckets=num_buckets, max_distance=max_distance)
        return table[relative_position + span]

    encoder.relative_position_bucket = lookup


def convert(model, tokenizer, pooling: str, folder: Path | None = None):
    """The OpenVINO model of ``model`` with its pooling (dynamic batch and length).

    ``folder`` (the model's transformer folder): a plain BERT there is written straight as a graph
    from its safetensors (``ov_graph.build``: no torch, no transformers, under a second); any other
    model, or without ``folder``, is traced through torch. ``model`` and ``tokenizer`` (transformers',
    for the trace's example input) may be functions that load them: only a trace calls them.
    """
    if folder is not None:
        from .ov_graph import build

        try:
            return build(folder, pooling)
        except MemoryError:
            raise
        except Exception:  # NotBuildable (not a plain BERT), or a graph that would not assemble: traced below
            pass
    if isinstance(model, types.FunctionType):
        model = model()
    if isinstance(tokenizer, types.FunctionType):
        tokenizer = tokenizer()
    return trace(model, tokenizer, pooling)


def trace(model, tokenizer, pooling: str):
    """Trace ``model`` with its pooling into an OpenVINO model through torch (dynamic batch and length).

    The trace is not checked by running the model again (``check_trace=False``, as optimum-intel
    converts): that check took 2.4 of the trace's 3.4 s for MiniLM here, and the vectors are checked
    against torch by the tests instead.
    """
    import warnings

    import openvino as ov
    import torch
    from transformers.utils import logging as hf_logging

    example = tokenizer(["a first example tweet", "and a second, longer example tweet here"],
                        padding=True, return_tensors="pt")
    inputs = {"input_ids": example["input_ids"], "attention_mask": example["attention_mask"]}
    model = model.float()
    _exact_position_buckets(model)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # tracing repeats transformers' warnings about the traced branches
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

                decoder = TorchScriptPythonDecoder(_pooled(model, pooling), example_input=inputs,
                                                   trace_kwargs={"check_trace": False})
            except (ImportError, TypeError):  # an OpenVINO without this decoder or argument: its own trace
                decoder = _pooled(model, pooling)
            return ov.convert_model(decoder, example_input=inputs)
    finally:
        hf_logging.set_verbosity(verbosity)


def exported(folder: Path | None) -> bool:
    """Whether ``folder`` holds a written export (both files: the rename puts them there together)."""
    return folder is not None and (folder / "model.xml").is_file() and (folder / "model.bin").is_file()


def load_or_export(load_model, tokenizer, pooling: str, folder: Path | None, converted=None,
                   model_dir: Path | None = None):
    """The OpenVINO model from ``folder/model.xml``, exporting it there first if it is not yet written.

    ``converted``: a model this process already converted (written to ``folder`` if it lacks one).
    ``load_model`` and ``tokenizer`` (transformers', for the example input of the trace) are functions
    that load them (``tokenizer`` may be the tokenizer itself): only a trace needs them, and a plain
    BERT in ``model_dir`` (its transformer folder) is not traced (``convert``).
    ``folder=None`` (no cache): converted in memory. The export is written to a temporary folder and
    renamed into place, so a killed export leaves nothing half-written to load.
    """
    import openvino as ov

    if exported(folder):
        try:
            return ov.Core().read_model(str(folder / "model.xml"))
        except RuntimeError:  # damaged: export it again below
            shutil.rmtree(folder, ignore_errors=True)
    if converted is None:
        converted = convert(load_model, tokenizer, pooling, folder=model_dir)
    if folder is None:
        return converted
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        ov.save_model(converted, str(tmp / "model.xml"), compress_to_fp16=False)
        try:
            tmp.rename(folder)
        except OSError:  # another process exported it first: theirs is as good
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return converted


class OpenVinoEncoder:
    """Pooled float32 vectors from padded id batches, through a compiled OpenVINO model."""

    def __init__(self, ov_model, precision: str):
        import openvino as ov

        config = {"INFERENCE_PRECISION_HINT": _OV_PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        result = self.request.infer({"input_ids": input_ids.astype(np.int64),
                                     "attention_mask": attention_mask.astype(np.int64)})
        return np.asarray(result[0], dtype=np.float32)
