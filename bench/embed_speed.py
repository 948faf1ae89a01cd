"""Embedding throughput: our ``Embedder`` against ``SentenceTransformer.encode``, per precision.

The same GOP tweets (a seeded sample, normalized once as ``Embedder.embed`` does) go through:

- ``encode()``: ``SentenceTransformer(path).encode(texts, batch_size=64)`` with default settings
  (fp32; its own pooling, so its vectors are not compared with ours);
- ``encode_new`` with fp32 weights, bf16 weights (``precision="bf16"``), fp32 weights under
  ``torch.autocast("cpu", bfloat16)``, and int8 weights from torch's dynamic quantization of
  every ``nn.Linear`` (a bench-only variant: the library has no int8 precision);
- ``embed`` with a cold cache (raw texts: normalization, deduplication and cache writes
  included; a fresh cache folder for every call);
- ONNX Runtime fp32 / dynamic int8 (``bench/onnx_int8.py``) where the export works here.

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
from common import Table, log, ratio


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


def _variants(path: str, tmp, texts_norm, texts_raw, include: set[str]) -> tuple[dict, list[str]]:
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

    def embedder(precision):
        emb = Embedder(path, precision=precision, cache_dir=None)
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
        e8 = Embedder(path, precision="fp32", cache_dir=None)
        enc = e8.load()
        with warnings_silenced():
            enc.model = torch.ao.quantization.quantize_dynamic(enc.ensure_model(), {torch.nn.Linear},
                                                               dtype=torch.qint8)
        e8.encode_new(texts_norm[:8])
        variants["encode_new int8 (torch dynamic)"] = lambda rows: e8.encode_new([texts_norm[i] for i in rows])[0]
    for precision in ("fp32", "bf16"):
        if f"embed-{precision}" not in include:
            continue
        variants[f"embed {precision}, cold cache"] = _ColdEmbed(
            Embedder(path, precision=precision, cache_dir=None), tmp / f"cold-{precision}", texts_raw)
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
        self.calls = self.encoded = 0
        embedder.cache_dir = root / "warm-up"
        embedder.embed(texts[:8])  # model load + fingerprint (hashes the weights), untimed

    def __call__(self, rows):
        self.calls += 1
        self.embedder.cache_dir = self.root / f"call-{self.calls}"
        vectors, stats = self.embedder.embed([self.texts[i] for i in rows])
        self.encoded += stats.encoded
        return vectors


@contextlib.contextmanager
def warnings_silenced():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def bench_model(label: str, path: str, tmp, n: int, chunk: int, include: set[str],
                short: set[str], short_chunks: int) -> Table:
    texts_raw, labels = common.gop_tweets(n)
    texts_norm = common.normalized(texts_raw)
    y = np.asarray(labels)
    variants, notes = _variants(path, tmp, texts_norm, texts_raw, include)
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
                 "head accuracy", "delta vs fp32 (points)", "max abs diff", "cosine mean / min"])
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
        table.add(name, sum(len(chunks[i]) for i in used), texts_per_s,
                  ratio(vs, base_rate) if name != base else "1.00x",
                  f"{min(per_chunk):.2f}-{max(per_chunk):.2f}" if name != base else "-",
                  acc, delta, diff, cos)
    for name in names:
        if isinstance(variants[name], _ColdEmbed):
            timed = sum(len(chunks[i]) for i, s in enumerate(seconds[name]) if s is not None)
            notes.append(f"`{name}` encoded {variants[name].encoded:,} of its {timed:,} texts: the rest were "
                         "duplicates (retweets) within a chunk, which `embed` encodes once.")
    notes.append("`encode()` uses the model's own pooling (mean pooling, then normalization, for both "
                 "models); its accuracy is for reference, and its delta is against our CLS fp32 vectors.")
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
    one_faster = any(min(times[name]) < min(times[f"{name.split(',')[0]}, {default} thread{'s' if default > 1 else ''}"])
                     for name in times if name.endswith(", 1 thread"))
    table.notes.append(
        "One thread was faster than the default for some precision: other jobs were using the cores (see the "
        "load average in the section's first line), and a second torch thread mostly waited for the first."
        if one_faster else
        "The default thread count was the fastest for every precision: keep torch's default on a machine "
        "whose cores are free.")
    return table


def run(quick: bool = False) -> list[Table]:
    tables = []
    with common.temp_dir() as tmp:
        n_mini, n_mpnet = (400, 200) if quick else (5000, 5000)
        chunk_mini, chunk_mpnet = (200, 100) if quick else (1000, 1000)
        everything = {"encode()", "fp32", "bf16", "autocast", "int8", "embed-fp32", "embed-bf16", "onnx"}
        tables.append(bench_model("MiniLM", common.minilm_path(), tmp / "minilm", n_mini, chunk_mini,
                                  everything, short=set(), short_chunks=0))
        start = time.perf_counter()
        mpnet = common.mpnet_path(tmp / "models")
        assembled = time.perf_counter() - start
        log(f"MPNet assembled in {assembled:.1f} s")
        table = bench_model("MPNet", mpnet, tmp / "mpnet", n_mpnet, chunk_mpnet,
                            {"encode()", "fp32", "bf16", "int8", "embed-bf16"},
                            short={"encode()", "embed"}, short_chunks=2)
        table.notes.append(f"MPNet assembled from its five PyPI volumes in {assembled:.1f} s "
                           "(once per cache folder; not in any timing). Autocast, embed fp32 and ONNX were "
                           "measured on MiniLM only, to keep the run short.")
        tables.append(table)
        tables.append(bench_threads(common.minilm_path(), 200 if quick else 1000, 1 if quick else 2))
    return tables


if __name__ == "__main__":
    common.main(run)
