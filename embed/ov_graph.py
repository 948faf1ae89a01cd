"""A BERT encoder with its pooling written straight as an OpenVINO graph from its safetensors: no torch.

A model's first OpenVINO run used to trace it through torch (``backends.convert``): importing torch and
transformers, loading the weights into ``BertModel`` and tracing took about 7 s of the first command
on the AMD EPYC of BENCHMARKS.md, most of the gap between a model's first and second run. A plain
BERT (MiniLM and the runs fine-tuned from it) is a few dozen standard operations, so ``build``
writes that graph itself from ``config.json`` and ``model.safetensors`` (read by the safetensors
library into numpy) in well under a second. The graph computes what ``BertModel`` plus ``pool``
computes (``tests/test_backends.py`` checks the vectors against torch, CLS and mean, to 2e-5), with
the same inputs and output as the traced one, so an export written either way is read alike.

Anything else (another architecture, another position embedding or activation, weights in
``pytorch_model.bin`` only, a tensor missing or of an odd type) raises ``NotBuildable`` with the
reason, and the caller traces the model through torch as before.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import ModelError


class NotBuildable(ModelError):
    """This model folder is not a plain BERT that ``build`` writes itself (the reason is the message);
    ``backends.convert`` catches it and traces the model through torch instead."""


_ACTIVATIONS = {"gelu": "erf"}  # the exact GELU; other activations are traced (not checked here)


def _config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise NotBuildable(f"no readable config.json ({exc})") from exc
    checks = {
        "model_type": (config.get("model_type"), ("bert",)),
        # AutoModel loads the BertModel inside any of these; its weights then carry a "bert." prefix
        "architectures": (all(str(a).startswith("Bert") for a in config.get("architectures") or ["BertModel"]),
                          (True,)),
        "position_embedding_type": (config.get("position_embedding_type", "absolute"), ("absolute",)),
        "hidden_act": (config.get("hidden_act", "gelu"), tuple(_ACTIVATIONS)),
        "is_decoder": (bool(config.get("is_decoder", False)), (False,)),
    }
    for name, (found, allowed) in checks.items():
        if found not in allowed:
            raise NotBuildable(f"config {name} is {found!r}, not one of {allowed!r}")
    if config["hidden_size"] % config["num_attention_heads"]:
        raise NotBuildable("hidden_size is not a multiple of num_attention_heads")
    return config


def _weights(folder: Path):
    path = folder / "model.safetensors"
    if not path.is_file():
        raise NotBuildable("no model.safetensors (only safetensors weights are read without torch)")
    try:
        from safetensors import safe_open

        handle = safe_open(str(path), framework="np")
        names = set(handle.keys())
    except Exception as exc:  # the reader's errors have no common type
        raise NotBuildable(f"model.safetensors unreadable without torch ({type(exc).__name__}: {exc})") from exc
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in names else ""

    def get(name: str) -> np.ndarray:
        if prefix + name not in names:
            raise NotBuildable(f"model.safetensors has no {prefix + name}")
        try:
            tensor = handle.get_tensor(prefix + name)
        except Exception as exc:  # e.g. bf16, which numpy has no type for
            raise NotBuildable(f"{prefix + name} unreadable in numpy ({type(exc).__name__}: {exc})") from exc
        if tensor.dtype not in (np.float32, np.float16, np.float64):
            raise NotBuildable(f"{prefix + name} is {tensor.dtype}, not a float type")
        return np.ascontiguousarray(tensor, dtype=np.float32)

    return get


def build(folder: str | Path, pooling: str):
    """The OpenVINO model of the BERT in ``folder`` (its transformer folder) with ``pooling`` (cls or mean):
    inputs ``input_ids`` and ``attention_mask`` (int64, dynamic batch and length), one float32 output
    of one vector per text. Raises NotBuildable where the folder is not such a BERT."""
    import openvino as ov
    import openvino.opset13 as ops

    if pooling not in ("cls", "mean"):
        raise NotBuildable(f"pooling {pooling!r}")
    folder = Path(folder)
    config = _config(folder)
    get = _weights(folder)
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    gelu = _ACTIVATIONS[config.get("hidden_act", "gelu")]

    def const(array):
        return ops.constant(np.asarray(array))

    def layer_norm(x, name):
        normed = ops.mvn(x, const(np.array([-1], dtype=np.int64)), True, eps, "inside_sqrt")
        return ops.add(ops.multiply(normed, const(get(f"{name}.weight"))), const(get(f"{name}.bias")))

    def linear(x, name):
        return ops.add(ops.matmul(x, const(get(f"{name}.weight")), False, True), const(get(f"{name}.bias")))

    input_ids = ops.parameter([-1, -1], np.int64, name="input_ids")
    attention_mask = ops.parameter([-1, -1], np.int64, name="attention_mask")
    input_ids.output(0).get_tensor().set_names({"input_ids"})
    attention_mask.output(0).get_tensor().set_names({"attention_mask"})
    shape = ops.shape_of(input_ids, "i64")  # [batch, length]
    length = ops.gather(shape, const(np.array(1, dtype=np.int64)), const(np.array(0, dtype=np.int64)))
    positions = ops.range(const(np.array(0, dtype=np.int64)), length, const(np.array(1, dtype=np.int64)), "i64")
    zero = const(np.array(0, dtype=np.int64))
    x = ops.gather(const(get("embeddings.word_embeddings.weight")), input_ids, zero)
    x = ops.add(x, ops.gather(const(get("embeddings.position_embeddings.weight")), positions, zero))
    x = ops.add(x, const(get("embeddings.token_type_embeddings.weight")[0]))  # token type 0: no type ids are passed
    x = layer_norm(x, "embeddings.LayerNorm")

    mask = ops.convert(attention_mask, np.float32)
    # additive mask over the keys, [batch, 1, 1, length]: 0 for tokens, the float minimum for padding
    bias = ops.multiply(ops.subtract(const(np.float32(1.0)), mask), const(np.finfo(np.float32).min))
    bias = ops.unsqueeze(bias, const(np.array([1, 2], dtype=np.int64)))
    split = const(np.array([0, 0, heads, hidden // heads], dtype=np.int64))  # 0: keep that input dim
    order = const(np.array([0, 2, 1, 3], dtype=np.int64))
    merged = const(np.array([0, 0, hidden], dtype=np.int64))
    for i in range(int(config["num_hidden_layers"])):
        name = f"encoder.layer.{i}"

        def heads_of(part):
            return ops.transpose(ops.reshape(linear(x, f"{name}.attention.self.{part}"), split, True), order)

        context = ops.scaled_dot_product_attention(heads_of("query"), heads_of("key"), heads_of("value"), bias,
                                                   const(np.float32(1.0 / np.sqrt(hidden // heads))), causal=False)
        context = ops.reshape(ops.transpose(context, order), merged, True)
        x = layer_norm(ops.add(linear(context, f"{name}.attention.output.dense"), x),
                       f"{name}.attention.output.LayerNorm")
        inner = ops.gelu(linear(x, f"{name}.intermediate.dense"), gelu)
        x = layer_norm(ops.add(linear(inner, f"{name}.output.dense"), x), f"{name}.output.LayerNorm")

    if pooling == "cls":
        pooled = ops.gather(x, zero, const(np.array(1, dtype=np.int64)))
    else:  # the masked mean, as ``backends.pool``: sum over tokens / max(count, 1)
        weights = ops.unsqueeze(mask, const(np.array([-1], dtype=np.int64)))
        total = ops.reduce_sum(ops.multiply(x, weights), const(np.array([1], dtype=np.int64)), False)
        count = ops.maximum(ops.reduce_sum(weights, const(np.array([1], dtype=np.int64)), False),
                            const(np.float32(1.0)))
        pooled = ops.divide(total, count)
    return ov.Model([pooled.output(0)], [input_ids, attention_mask], "pooled_bert")
