"""ONNX Runtime encoders for the embedding benchmark: fp32 export and dynamic int8 quantization.

``build(model_path, workdir)`` exports the transformer inside a sentence-transformers folder with
``torch.onnx.export`` (dynamic batch and sequence axes; the TorchScript exporter first, then the
dynamo one), quantizes its weights to int8 with ``onnxruntime.quantization.quantize_dynamic``, and
returns encoders that batch exactly as ``Embedder.encode_new`` does (tokenize once, sort by
length, pad per batch) and return the CLS row of the last hidden state.

Both exporters need the ``onnx`` package (the dynamo one also ``onnxscript``), and so does
``quantize_dynamic``; where they are missing ``build`` raises ``OnnxUnavailable`` whose message
is the exporters' own errors, which the benchmark writes into BENCHMARKS.md. Not here: ONNX
graph optimizations beyond what ONNX Runtime does by default, static (calibrated) quantization.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class OnnxUnavailable(RuntimeError):
    """The model could not be exported or quantized here; the message says why."""


class OrtEncoder:
    """Length-sorted batched CLS encoding with an ONNX Runtime session."""

    def __init__(self, onnx_path: Path, tokenizer, max_length: int, batch_size: int, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer, self.max_length, self.batch_size = tokenizer, max_length, batch_size
        self.dim = self.session.get_outputs()[0].shape[-1]

    def encode(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                             return_attention_mask=False)["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = None
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            padded = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="np")
            hidden = self.session.run(None, {"input_ids": padded["input_ids"].astype(np.int64),
                                             "attention_mask": padded["attention_mask"].astype(np.int64)})[0]
            if out is None:
                out = np.zeros((len(texts), hidden.shape[-1]), dtype=np.float32)
            out[rows] = hidden[:, 0]
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _export(model, path: Path) -> None:
    """Export with the TorchScript exporter, else the dynamo one; raise both errors if neither works."""
    import torch

    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    wrapped = LastHidden(model).eval()
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "last_hidden_state": {0: "batch", 1: "sequence"}}
    errors = []
    for dynamo in (False, True):
        try:
            with torch.no_grad():
                torch.onnx.export(wrapped, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                                  output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                                  dynamo=dynamo)
            return
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not hidden
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            errors.append(f"torch.onnx.export(dynamo={dynamo}): {type(exc).__name__}: {first}")
    raise OnnxUnavailable("; ".join(errors))


def build(model_path: str, workdir: Path, batch_size: int = 64) -> dict:
    """Return ``{"fp32": OrtEncoder, "int8": OrtEncoder, "seconds": {...}}`` or raise OnnxUnavailable."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from embed.models import max_seq_length, transformer_dir

    folder = transformer_dir(Path(model_path))
    model = AutoModel.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    fp32_path, int8_path = workdir / "model.onnx", workdir / "model.int8.onnx"
    seconds = {}
    start = time.perf_counter()
    _export(model, fp32_path)
    seconds["export"] = time.perf_counter() - start
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except Exception as exc:  # noqa: BLE001
        raise OnnxUnavailable(f"onnxruntime.quantization: {type(exc).__name__}: {exc}") from exc
    start = time.perf_counter()
    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
    seconds["quantize"] = time.perf_counter() - start
    max_length = max_seq_length(Path(model_path))
    threads = torch.get_num_threads()
    return {"fp32": OrtEncoder(fp32_path, tokenizer, max_length, batch_size, threads),
            "int8": OrtEncoder(int8_path, tokenizer, max_length, batch_size, threads),
            "seconds": seconds}
