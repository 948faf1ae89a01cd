"""Embedding throughput: our ``Embedder`` against ``SentenceTransformer.encode``, per precision.

The same GOP tweets (a seeded sample, normalized once as ``Embedder.embed`` does) go through:

- ``encode()``: ``SentenceTransformer(path).encode(texts, batch_size=64)`` with default settings
  (fp32; its own pooling, so its vectors are not compared with ours);
- ``encode_new`` with fp32 weights, bf16 weights (``precision="bf16"``), fp32 weights under
  ``torch.autocast("cpu", bfloat16)``, and int8 weights from torch's dynamic quantization of
  every ``nn.Linear`` (a bench-only variant: the library has no int8 precision);
- ``embed`` with a cold cache (raw texts: normalization, deduplication and cache writes
  included; a fresh cache folder for every call);
- ONNX Runtime fp32 / dynamic int8 (``bench/onnx_int8.py``) where the export works here;
- OpenVINO (``--backend openvino``, the default on a CPU): fp32, bf16 where the CPU has bf16 units
  (elsewhere OpenVINO quietly computes in f32, so the row is left out), and a bench-only static
  int8 model quantized by NNCF, calibrated on 320 GOP tweets outside the timed sample.
All torch rows pin ``backend="torch"``; ``embed, no flags`` is what a user gets without flags.

The hardware limit: the best of five 2048x2048 torch matmuls per precision (GFLOP/s), the model's
FLOPs per token from its config (2 x the multiply-adds of the Q/K/V/O and FFN matrices plus the
attention scores and mix at the sample's mean token count), hence texts/s at that peak; each row's
share is its encoded texts/s over the limit of the precision it computes in (int8 rows against fp32).
A second limit times the same matmuls at the model's own layer shapes (``shape_gflops``: a batch of
64 texts at the mean length through its hidden x hidden and hidden x FFN weights), in case narrow
matrices reach less of the unit than a square 2048 product.

Whole process (``bench_whole_process``): ``python cli.py embed`` with a fresh cache folder (the
OpenVINO export included), again with the export already on disk, with ``--backend torch
--precision fp32``, and a script that loads ``SentenceTransformer`` and calls ``encode(texts,
batch_size=64)`` with no other flag, each a new process, interleaved, medians.

Timing: the texts are split into chunks and, chunk by chunk, every variant runs in rotating order,
so a load change on the shared machine hits all variants alike. A variant's texts/s is its texts
over its summed time; a ratio uses only the chunks both variants ran. For MPNet, ``encode()`` and
``embed`` run on the first chunks only (they need no accuracy figure), to keep the run short.

Accuracy: a logistic head (``get_head("logistic")``, default parameters) on a stratified 80/20
split of each variant's vectors, against the fp32 ``encode_new`` vectors (delta in points), plus
the largest absolute difference and the cosine similarity of each vector to its fp32 twin.

Threads: MiniLM fp32 and bf16 ``encode_new`` at ``torch.get_num_threads()`` (the default) and 1.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/embed_speed.py` or from bench/run.py
from common import Table, best_seconds, log, ratio


def _split_accuracy(X: np.ndarray, y: np.ndarray) -> float:
    from sklearn.model_selection import train_test_split

    from heads import get_head

    from threadpoolctl import threadpool_limits

    train, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=common.SEED, stratify=y)
    with threadpool_limits(limits=1):  # same result; avoids BLAS threads fighting other jobs for the cores
        head = get_head("logistic").fit(X[train], y[train])
        return float(np.mean(head.predict(X[test]) == y[test]))


def _vector_diff(X: np.ndarray, ref: np.ndarray) -> tuple[float, float, float]:
    """Max |x - ref|, mean and min cosine(x, ref)."""
    cos = np.sum(X * ref, axis=1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(ref, axis=1) + 1e-12)
    return float(np.max(np.abs(X - ref))), float(np.mean(cos)), float(np.min(cos))


def _openvino_int8(path: str, calibration: list[str]):
    """An Embedder whose OpenVINO graph is NNCF's static int8 quantization of the fp32 export."""
    import nncf  # noqa: F401 - ImportError names the missing package

    from embed.encoder import Embedder

    emb = Embedder(path, precision="fp32", backend="openvino", cache_dir=None)
    enc = emb.load()
    from embed.backends import OpenVinoEncoder, load_or_export
    from embed.models import load_encoder

    tok = enc.ensure_tokenizer()
    fp32 = load_or_export(lambda: load_encoder(enc.source, tokenizer=False)[0].eval(), tok, enc.pooling, None)
    ids = tok(calibration, truncation=True, max_length=enc.max_length, return_attention_mask=False)["input_ids"]
    batches = [tok.pad({"input_ids": ids[i:i + 16]}, return_tensors="np") for i in range(0, len(ids), 16)]
    dataset = nncf.Dataset(batches, lambda b: {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
    with warnings_silenced():
        quantized = nncf.quantize(fp32, dataset, model_type=nncf.ModelType.TRANSFORMER, subset_size=len(batches))
    enc.compiled = OpenVinoEncoder(quantized, "fp32")
    return emb


def _variants(path: str, tmp, texts_norm, texts_raw, include: set[str],
              calibration: list[str] = ()) -> tuple[dict, list[str]]:
    """name -> fn(chunk_indices) returning vectors for those rows; plus notes."""
    import torch
    from sentence_transformers import SentenceTransformer

    from embed.encoder import Embedder

    notes: list[str] = []
    variants: dict = {}
    if "encode()" in include:
        st = SentenceTransformer(path)
        st.encode(texts_norm[:8], batch_size=64)  # warm-up, untimed
        variants["encode()"] = lambda rows: st.encode([texts_norm[i] for i in rows], batch_size=64)

    def embedder(precision, backend="torch"):
        emb = Embedder(path, precision=precision, backend=backend, cache_dir=None)
        emb.encode_new(texts_norm[:8])  # loads weights and tokenizer, untimed
        return emb

    if "fp32" in include or "autocast" in include:
        e32 = embedder("fp32")
        variants["encode_new fp32"] = lambda rows: e32.encode_new([texts_norm[i] for i in rows])[0]
        if "autocast" in include:
            def autocast(rows):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return e32.encode_new([texts_norm[i] for i in rows])[0]
            autocast(range(8))
            variants["encode_new fp32 + bf16 autocast"] = autocast
    if "bf16" in include:
        e16 = embedder("bf16")
        variants["encode_new bf16"] = lambda rows: e16.encode_new([texts_norm[i] for i in rows])[0]
    if "int8" in include:
        e8 = Embedder(path, precision="fp32", backend="torch", cache_dir=None)
        enc = e8.load()
        with warnings_silenced():
            enc.model = torch.ao.quantization.quantize_dynamic(enc.ensure_model(), {torch.nn.Linear},
                                                               dtype=torch.qint8)
        e8.encode_new(texts_norm[:8])
        variants["encode_new int8 (torch dynamic)"] = lambda rows: e8.encode_new([texts_norm[i] for i in rows])[0]
    for precision in ("fp32", "bf16"):
        if f"embed-{precision}" not in include:
            continue
        variants[f"embed torch {precision}, cold cache"] = _ColdEmbed(
            Embedder(path, precision=precision, backend="torch", cache_dir=None), tmp / f"cold-{precision}", texts_raw)
    if "openvino" in include:
        from embed.encoder import cpu_has_bf16

        ov32 = embedder("fp32", "openvino")
        variants["OpenVINO fp32"] = lambda rows: ov32.encode_new([texts_norm[i] for i in rows])[0]
        if cpu_has_bf16():
            ov16 = embedder("bf16", "openvino")
            variants["OpenVINO bf16"] = lambda rows: ov16.encode_new([texts_norm[i] for i in rows])[0]
        else:
            notes.append("OpenVINO bf16 not measured: this CPU has no bf16 units, where OpenVINO computes in f32.")
        try:
            ov8 = _openvino_int8(path, calibration)
            variants["OpenVINO int8 (NNCF static)"] = lambda rows: ov8.encode_new([texts_norm[i] for i in rows])[0]
        except ImportError as exc:
            notes.append(f"OpenVINO int8 not measured: {exc} (pip install nncf).")
    if "embed-auto" in include:
        plain = Embedder(path, cache_dir=None)
        enc = plain.load()
        variants[f"embed, no flags ({enc.backend} {enc.precision}), cold cache"] = _ColdEmbed(
            plain, tmp / "cold-auto", texts_raw)
    if "onnx" in include:
        from onnx_int8 import OnnxUnavailable, build

        start = time.perf_counter()
        try:
            ort = build(path, tmp)
            variants["ONNX Runtime fp32"] = lambda rows: ort["fp32"].encode([texts_norm[i] for i in rows])
            variants["ONNX Runtime int8 (quantize_dynamic)"] = lambda rows: ort["int8"].encode(
                [texts_norm[i] for i in rows])
            notes.append(f"ONNX export {ort['seconds']['export']:.1f} s, quantize_dynamic "
                         f"{ort['seconds']['quantize']:.1f} s.")
        except OnnxUnavailable as exc:
            notes.append(f"ONNX Runtime int8 not measured: the export failed here after "
                         f"{time.perf_counter() - start:.1f} s: `{exc}`. The `onnx` package (and `onnxscript` for "
                         "the default dynamo exporter) is not in this environment, and "
                         "`onnxruntime.quantization` imports `onnx` too. torch's own dynamic int8 "
                         "quantization is measured instead.")
    return variants, notes


class _ColdEmbed:
    """``Embedder.embed`` on rows of ``texts``, each call with a fresh, empty cache folder."""

    def __init__(self, embedder, root, texts):
        self.embedder, self.root, self.texts = embedder, root, texts
        self.calls = self.encoded = self.texts_seen = 0
        embedder.cache_dir = root / "warm-up"
        embedder.embed(texts[:8])  # model load + fingerprint (hashes the weights), untimed

    def __call__(self, rows):
        self.calls += 1
        self.embedder.cache_dir = self.root / f"call-{self.calls}"
        vectors, stats = self.embedder.embed([self.texts[i] for i in rows])
        self.encoded += stats.encoded
        self.texts_seen += len(rows)
        return vectors


@contextlib.contextmanager
def warnings_silenced():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _cpu_precisions():
    """``(name, dtype)`` pairs to time: fp32, and bf16 only where the CPU has bf16 units (elsewhere
    torch emulates it, and no bf16 path is a default)."""
    import torch

    from embed.encoder import cpu_has_bf16

    return (("fp32", torch.float32),) + ((("bf16", torch.bfloat16),) if cpu_has_bf16() else ())


def peak_gflops(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` torch matmul GFLOP/s per precision on this CPU (all torch threads)."""
    import torch

    peaks = {}
    for name, dtype in _cpu_precisions():
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        peaks[name] = 2 * size ** 3 / best_seconds(lambda: a @ b, repeats, warm_up=True) / 1e9  # noqa: B023
    return peaks


def shape_gflops(hidden: int, ffn: int, rows: int, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of torch's matmuls at one encoder layer's own shapes, per precision: ``rows`` tokens (a
    batch of 64 at the mean length) through the Q/K/V/O (``hidden`` x ``hidden``) and FFN (``hidden``
    x ``ffn``, ``ffn`` x ``hidden``) weights, best of ``repeats``: the rate the model's own products
    can reach, which for narrow matrices may be below the 2048x2048 peak."""
    import torch

    rates = {}
    shapes = [(hidden, hidden)] * 4 + [(hidden, ffn), (ffn, hidden)]
    flops = sum(2 * rows * k * n for k, n in shapes)
    for name, dtype in _cpu_precisions():
        inputs = {k: torch.randn(rows, k).to(dtype) for k in {hidden, ffn}}
        weights = [torch.randn(n, k).to(dtype) for k, n in shapes]
        with torch.inference_mode():
            seconds = best_seconds(lambda: [torch.nn.functional.linear(inputs[w.shape[1]], w)  # noqa: B023
                                            for w in weights], repeats, warm_up=True)  # noqa: B023
        rates[name] = flops / seconds / 1e9
    return rates


def flops_per_text(path: str, texts: list[str]) -> tuple[float, float, int, int]:
    """``(FLOPs per text, mean tokens, hidden size, FFN size)`` of the encoder's forward pass, from its config."""
    from transformers import AutoConfig, AutoTokenizer

    from embed.models import max_seq_length, transformer_dir

    folder = transformer_dir(__import__("pathlib").Path(path))
    config = AutoConfig.from_pretrained(str(folder))
    hidden = getattr(config, "hidden_size", None) or config.dim
    ffn = getattr(config, "intermediate_size", None) or config.hidden_dim
    layers = getattr(config, "num_hidden_layers", None) or config.n_layers
    tok = AutoTokenizer.from_pretrained(str(folder))
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_seq_length(folder))["input_ids"]]
    mean = float(np.mean(lengths))
    # per token and layer: Q, K, V, O (4 h^2) + FFN (2 h f) multiply-adds, + scores and mix (2 L h)
    per_token = 2 * layers * (4 * hidden * hidden + 2 * hidden * ffn + 2 * mean * hidden)
    return float(np.mean([per_token * n for n in lengths])), mean, hidden, ffn


def _computes_in(name: str) -> str:
    return "bf16" if "bf16" in name else "fp32"


def bench_model(label: str, path: str, tmp, n: int, chunk: int, include: set[str],
                short: set[str], short_chunks: int, peaks: dict | None = None) -> Table:
    texts_raw, labels = common.gop_tweets(n)
    texts_norm = common.normalized(texts_raw)
    y = np.asarray(labels)
    sample = set(common.normalized(texts_raw))
    calibration = [t for t in common.normalized(common.gop_tweets(2000, seed=99)[0]) if t not in sample][:320]
    per_text, mean_tokens, hidden, ffn = flops_per_text(path, texts_norm)
    limits = {p: g * 1e9 / per_text for p, g in (peaks or {}).items()}
    rows = int(round(64 * mean_tokens))  # a batch of 64 at the mean length
    at_shapes = shape_gflops(hidden, ffn, rows) if peaks else {}
    shape_limits = {p: g * 1e9 / per_text for p, g in at_shapes.items()}
    log(f"{label} matmul GFLOP/s at its own layer shapes: {at_shapes}")
    variants, notes = _variants(path, tmp, texts_norm, texts_raw, include, calibration)
    chunks = [np.arange(s, min(s + chunk, n)) for s in range(0, n, chunk)]
    seconds = {name: [] for name in variants}  # per chunk; None where not run
    vectors = {name: np.zeros((n, 0), dtype=np.float32) for name in variants}
    names = list(variants)
    for c, rows in enumerate(chunks):
        order = names[c % len(names):] + names[:c % len(names)]
        for name in order:
            if any(name.startswith(s) for s in short) and c >= short_chunks:
                seconds[name].append(None)
                continue
            start = time.perf_counter()
            out = variants[name](rows)
            seconds[name].append(time.perf_counter() - start)
            if vectors[name].shape[1] == 0:
                vectors[name] = np.zeros((n, out.shape[1]), dtype=np.float32)
            vectors[name][rows] = out
            log(f"embed {label} chunk {c + 1}/{len(chunks)} {name}: {len(rows) / seconds[name][-1]:.0f} texts/s")

    def rate(name, against=None):
        both = [i for i, s in enumerate(seconds[name]) if s is not None
                and (against is None or seconds[against][i] is not None)]
        return sum(len(chunks[i]) for i in both) / sum(seconds[name][i] for i in both), both

    base = "encode()"
    ref = vectors["encode_new fp32"]
    ran_all = lambda name: all(s is not None for s in seconds[name])  # noqa: E731
    ref_acc = _split_accuracy(ref, y)
    table = Table(
        title=f"{label}: our Embedder vs SentenceTransformer.encode ({n:,} GOP tweets, batch 64)",
        compared=(f"Same {n:,} normalized GOP tweets, same model folder, CPU, timed chunk by chunk "
                  f"({chunk:,} texts per chunk, variants in rotating order). Ratio = texts/s over "
                  "encode()'s texts/s on the same chunks. Accuracy: logistic head, 80/20 stratified "
                  "split of the variant's own vectors; delta and vector differences against "
                  "encode_new fp32."),
        columns=["variant", "texts timed", "texts/s", "vs encode()", "chunk ratios (min-max)",
                 "share of limit: peak / at its shapes", "head accuracy", "delta vs fp32 (points)", "max abs diff", "cosine mean / min"])
    for name in names:
        texts_per_s, used = rate(name)
        vs, both = rate(name, base) if name != base else (texts_per_s, used)
        base_rate, _ = rate(base, name) if name != base else (texts_per_s, used)
        per_chunk = [seconds[base][i] / seconds[name][i] for i in both]
        acc = delta = diff = cos = None
        if ran_all(name):
            acc = ref_acc if name == "encode_new fp32" else _split_accuracy(vectors[name], y)
            delta = f"{100 * (acc - ref_acc):+.1f}"
            if name != base:
                mx, cmean, cmin = _vector_diff(vectors[name], ref)
                diff, cos = mx, f"{cmean:.5f} / {cmin:.5f}"
            acc = f"{acc:.3f}"
        share = None
        if limits:
            encoded_rate = texts_per_s
            if isinstance(variants[name], _ColdEmbed):  # duplicates are not encoded: count what was
                encoded_rate *= variants[name].encoded / max(1, variants[name].texts_seen)
            limit, shape_limit = limits.get(_computes_in(name)), shape_limits.get(_computes_in(name))
            share = (f"{100 * encoded_rate / limit:.0f}% / {100 * encoded_rate / shape_limit:.0f}% "
                     f"({_computes_in(name)})" if limit else None)
        table.add(name, sum(len(chunks[i]) for i in used), texts_per_s,
                  ratio(vs, base_rate) if name != base else "1.00x",
                  f"{min(per_chunk):.2f}-{max(per_chunk):.2f}" if name != base else "-",
                  share, acc, delta, diff, cos)
    for name in names:
        if isinstance(variants[name], _ColdEmbed):
            timed = sum(len(chunks[i]) for i, s in enumerate(seconds[name]) if s is not None)
            notes.append(f"`{name}` encoded {variants[name].encoded:,} of its {timed:,} texts: the rest were "
                         "duplicates (retweets) within a chunk, which `embed` encodes once.")
    notes.append("`encode()` uses the model's own pooling (mean pooling, then normalization, for both "
                 "models); its accuracy is for reference, and its delta is against our CLS fp32 vectors.")
    if limits:
        notes.append(f"Limit: {per_text / 1e9:.2f} GFLOP per text (mean {mean_tokens:.1f} tokens) at the measured "
                     f"matmul peak: {', '.join(f'{limits[p]:,.0f} texts/s in {p} ({peaks[p]:,.0f} GFLOP/s)' for p in limits)}. "
                     "Share = encoded texts/s over the limit of the precision the row computes in (int8 rows "
                     "against fp32: no int8 peak is measured"
                     + ("; no bf16 limit: this CPU has no bf16 units)." if "bf16" not in limits else ")."))
        notes.append("At its shapes: the same matmuls at one layer's own sizes (a batch of 64 texts at the mean "
                     f"length, {rows:,} rows, through {hidden}x{hidden} and {hidden}x{ffn} "
                     f"weights) run at {', '.join(f'{g:,.0f} GFLOP/s in {p}' for p, g in at_shapes.items())}: "
                     f"{', '.join(f'{shape_limits[p]:,.0f} texts/s in {p}' for p in shape_limits)}: the limit this model's "
                     "own products allow, where narrow matrices could reach less of the unit than a square one.")
    table.notes = notes
    return table


def bench_threads(path: str, n: int, rounds: int) -> Table:
    import torch

    from embed.encoder import Embedder

    texts = common.normalized(common.gop_tweets(n, seed=7)[0])
    default = torch.get_num_threads()
    embedders = {p: Embedder(path, precision=p, cache_dir=None) for p in ("fp32", "bf16")}
    for emb in embedders.values():
        emb.encode_new(texts[:8])

    def with_threads(emb, threads):
        def fn():
            torch.set_num_threads(threads)
            try:
                emb.encode_new(texts)
            finally:
                torch.set_num_threads(default)
        return fn

    variants = {}
    for p, emb in embedders.items():
        for threads in sorted({default, 2, 1}, reverse=True):
            variants[f"{p}, {threads} thread{'s' if threads > 1 else ''}"] = with_threads(emb, threads)
    times = common.interleave(variants, rounds, "threads")
    table = Table(
        title=f"MiniLM encode_new: torch threads ({n:,} tweets, best of {rounds} interleaved rounds)",
        compared=(f"torch.get_num_threads() defaults to {default} here; each row sets the thread count "
                  "for the call. Ratio against the same precision at the default thread count."),
        columns=["variant", "texts/s", "vs default threads"])
    for name, secs in times.items():
        p = name.split(",")[0]
        base = min(times[f"{p}, {default} thread{'s' if default > 1 else ''}"])
        table.add(name, n / min(secs), ratio(base, min(secs)))
    gains = {name: min(times[f"{name.split(',')[0]}, {default} thread{'s' if default > 1 else ''}"]) / min(times[name])
             for name in times if name.endswith(", 1 thread")}
    one_faster = any(g > 1.10 for g in gains.values())  # best-of-2 on a shared 2-core machine: 10% is noise
    table.notes.append(
        "One thread was more than 10% faster than the default for some precision: other jobs were using the "
        "cores (see the load average in the section's first line), and a second torch thread mostly waited."
        if one_faster else
        "No thread count was more than 10% faster than the default (the noise of best-of-2 here): keep torch's default on a machine "
        "whose cores are free.")
    return table


_ENCODE_SCRIPT = """
import csv, sys
from sentence_transformers import SentenceTransformer
with open(sys.argv[2], newline="", encoding="utf-8") as handle:
    texts = [row["text"] for row in csv.DictReader(handle)]
SentenceTransformer(sys.argv[1]).encode(texts, batch_size=64)
"""


def bench_whole_process(label: str, model: str, path: str, tmp, n: int, rounds: int) -> Table:
    """Each variant a new process on the same CSV of ``n`` raw GOP tweets, cold embedding store."""
    import shutil
    import subprocess
    import sys

    texts, labels = common.gop_tweets(n, seed=11)
    data = common.write_tweets(tmp / f"whole-{label}.csv", texts, labels)
    script = tmp / "encode.py"
    script.write_text(_ENCODE_SCRIPT)
    kept = tmp / f"kept-{label}"  # a cache folder whose export survives; its store is emptied every run
    cli = [sys.executable, str(common.REPO / "cli.py"), "embed", "--model", model, "--input", str(data)]
    runs = {"cold": 0}

    def ours(*flags, keep=False):
        def fn():
            runs["cold"] += 1
            cache = kept if keep else tmp / f"cold-{label}-{runs['cold']}"
            if keep and cache.exists():
                for child in cache.iterdir():
                    if child.name != "exports":
                        shutil.rmtree(child)
            subprocess.run(cli + ["--output", str(tmp / "out.npy"), "--cache-dir", str(cache), *flags],
                           check=True, capture_output=True)
            if not keep:
                shutil.rmtree(cache, ignore_errors=True)
        return fn

    def encode():
        subprocess.run([sys.executable, str(script), path, str(data)], check=True, capture_output=True)

    ours(keep=True)()  # writes the export that "export on disk" reads
    variants = {"SentenceTransformer.encode(), no flags": encode,
                "embed, no flags, fresh cache (export included)": ours(),
                "embed, no flags, export on disk, empty store": ours(keep=True),
                "embed --backend torch --precision fp32, fresh cache": ours("--backend", "torch", "--precision", "fp32")}
    times = common.interleave(variants, rounds, f"whole process {label}")
    base = float(np.median(times["SentenceTransformer.encode(), no flags"]))
    table = Table(
        title=f"{label}, whole process: `embed` with no flags against `encode()` ({n:,} GOP tweets, cold)",
        compared=(f"Each row a new process on the same CSV of {n:,} raw GOP tweets ({rounds} rounds, rotating "
                  "order, median wall seconds): start-up, model load, reading, and for `embed` normalization, "
                  "deduplication, the cache writes and the `.npy` output. Ratio = encode()'s seconds over the row's."),
        columns=["variant", "median s", "texts/s", "vs encode()"])
    for name, secs in times.items():
        median = float(np.median(secs))
        table.add(name, f"{median:.1f}", n / median, ratio(base, median) if name != list(times)[0] else "1.00x")
    table.notes.append("`encode()` gets the raw texts and its own (mean) pooling; `embed` normalizes, encodes each "
                       "distinct text once (retweets repeat) and writes CLS vectors.")
    return table


def run(quick: bool = False) -> list[Table]:
    tables = []
    with common.temp_dir() as tmp:
        n_mini, n_mpnet = (400, 200) if quick else (5000, 2000)
        chunk_mini, chunk_mpnet = (200, 100) if quick else (1000, 500)
        peaks = peak_gflops()
        log(f"matmul peak GFLOP/s: {peaks}")
        from embed.encoder import cpu_has_bf16

        everything = {"encode()", "fp32", "bf16", "autocast", "int8", "embed-fp32", "embed-auto", "onnx", "openvino"}
        # without bf16 units torch emulates bf16 (about 6x slower than fp32 here): one chunk is enough
        emulated = set() if cpu_has_bf16() else {"encode_new bf16", "encode_new fp32 + bf16 autocast"}
        tables.append(bench_model("MiniLM", common.minilm_path(), tmp / "minilm", n_mini, chunk_mini,
                                  everything, short=emulated, short_chunks=1, peaks=peaks))
        if emulated:
            tables[-1].notes.append("This CPU has no bf16 units: torch emulates bf16, so the bf16 rows ran on the "
                                    "first chunk only, and their accuracy columns are empty.")
        tables.append(bench_whole_process("MiniLM", "minilm", common.minilm_path(), tmp, 500 if quick else 5000,
                                          1 if quick else 3))
        start = time.perf_counter()
        mpnet = common.mpnet_path(tmp / "models")
        assembled = time.perf_counter() - start
        log(f"MPNet assembled in {assembled:.1f} s")
        mpnet_variants = {"encode()", "fp32", "int8", "embed-auto", "openvino"} | (set() if emulated else {"bf16"})
        table = bench_model("MPNet", mpnet, tmp / "mpnet", n_mpnet, chunk_mpnet, mpnet_variants,
                            short={"encode()"}, short_chunks=2, peaks=peaks)
        table.notes.append(f"MPNet assembled from its five PyPI volumes in {assembled:.1f} s "
                           "(once per cache folder; not in any timing). Autocast, embed torch fp32 and ONNX were "
                           "measured on MiniLM only, to keep the run short"
                           + ("; torch bf16 was left out: emulated on this CPU, it ran at 1 text/s." if emulated else "."))
        tables.append(table)
        tables.append(bench_whole_process("MPNet", mpnet, mpnet, tmp, 200 if quick else 1000, 1 if quick else 2))
        tables.append(bench_threads(common.minilm_path(), 200 if quick else 1000, 1 if quick else 2))
    return tables


if __name__ == "__main__":
    common.main(run)
