"""GPU benchmarks, run by ``bench/gpu.sh`` on a machine with a CUDA GPU (not by ``bench/run.py``).

1. Embedding: ``Embedder.encode_new`` with fp32 / fp16 / bf16 weights against
   ``SentenceTransformer(path, device="cuda").encode(texts, batch_size=64)`` (default settings),
   MiniLM (20,000 texts) and MPNet (10,000), the same texts, interleaved rounds (best of 3), ``torch.cuda.synchronize``
   around every timing.
2. Fine-tuning: ``fine_tune`` of MiniLM for 200 steps of batch 8 (lr 2e-5, max length 128; autocast
   on the GPU as the library does), ``metrics["examples_per_second"]``.
3. kNN: ``get_head("knn", k=10, device="gpu")`` (faiss-gpu flat) against ``device="cpu"`` on 1M
   stored 384-d vectors and 10,000 queries: queries/s and the ratio.

Texts: the GOP tweets (``TWEETHEADS_DATA_DIR`` or ``../shared/data``) when present, else the
project's 120 sample tweets repeated (fine for timing; no accuracy is computed here). A part whose
packages are missing (MPNet volumes, faiss GPU support) is skipped with a line saying so.
``--dry-run`` runs every part on the CPU with tiny sizes, to check the script without a GPU.
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import time
from pathlib import Path

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/gpu_speed.py`
from common import Table, log, ratio


def _texts(n: int) -> tuple[list[str], str]:
    try:
        texts = common.gop_tweets()[0]
        source = "GOP tweets"
    except SystemExit:
        with open(common.REPO / "embed" / "samples" / "tweets.csv", newline="", encoding="utf-8") as handle:
            texts = [row["text"] for row in csv.DictReader(handle)]
        source = "the 120 sample tweets, repeated"
    texts = (texts * (n // len(texts) + 1))[:n]
    return common.normalized(texts), source


def bench_embed(device: str, n: int, rounds: int, tmp: Path) -> list[Table]:
    import torch
    from sentence_transformers import SentenceTransformer

    from embed.encoder import Embedder

    tables = []
    models = [("MiniLM", common.minilm_path, n), ("MPNet", lambda: common.mpnet_path(tmp / "models"), n // 2)]
    for label, path_fn, n in models:
        texts, source = _texts(n)
        try:
            path = path_fn()
        except Exception as exc:  # noqa: BLE001 - a missing model skips its table, with the reason
            tables.append(Table(f"{label}: skipped", f"{type(exc).__name__}: {exc}", ["-"]))
            continue

        def sync():
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        st = SentenceTransformer(path, device=device)
        st.encode(texts[:64], batch_size=64)
        variants = {"encode() (sentence-transformers, fp32)": lambda: st.encode(texts, batch_size=64)}
        for precision in ("fp32", "fp16", "bf16"):
            emb = Embedder(path, precision=precision, device=device, cache_dir=None)
            emb.encode_new(texts[:64])
            variants[f"encode_new {precision}"] = lambda emb=emb: emb.encode_new(texts)

        def timed(fn):
            def run():
                sync()
                fn()
                sync()
            return run

        times = common.interleave({k: timed(v) for k, v in variants.items()}, rounds, f"gpu embed {label}")
        base = n / min(times["encode() (sentence-transformers, fp32)"])
        table = Table(f"{label} embedding on {device}: {n:,} texts ({source}), batch 64, best of {rounds}",
                      "Same texts; interleaved rounds; ratio = texts/s over encode()'s.",
                      ["variant", "texts/s", "vs encode()"])
        for name, secs in times.items():
            table.add(name, n / min(secs), ratio(n / min(secs), base))
        tables.append(table)
        del st, variants
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return tables


def bench_finetune(device: str, steps: int, tmp: Path) -> Table:
    from embed.finetune import FinetuneConfig, fine_tune

    texts, source = _texts(steps * 8)
    labels = ["negative", "neutral", "positive"]
    train = tmp / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((t, labels[i % 3]) for i, t in enumerate(texts))
    config = FinetuneConfig(model="minilm", lr=2e-5, max_steps=steps, train_batch_size=8, max_length=128,
                            device=device, progress=False)
    start = time.perf_counter()
    metrics = fine_tune(train, tmp / "run", config, cache_dir=tmp / "cache")
    table = Table(f"Fine-tuning MiniLM on {device}: {steps} steps x batch 8, max length 128",
                  f"`fine_tune` on {steps * 8:,} texts ({source}; labels assigned in turn: timing only).",
                  ["steps", "examples/s (steps)", "call wall s"])
    table.add(metrics["steps"], metrics["examples_per_second"], time.perf_counter() - start)
    return table


def bench_knn_torch(n: int, n_queries: int, device: str) -> Table:
    """Exact cosine top-10 as one matmul + ``torch.topk`` per query block: the GPU against the host CPU.

    Run when faiss is not installed on the GPU machine (the faiss-gpu-cu12 wheel is 48 MB and needs
    CUDA 12 libraries). It is not the kNN head; it bounds what an exact GPU search gives.
    """
    import torch

    from knn_speed import clustered

    rng = np.random.default_rng(common.SEED)
    centres = rng.standard_normal((1000, 384), dtype=np.float32)
    X, _ = clustered(n, 1, centres)
    Q, _ = clustered(n_queries, 2, centres)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q /= np.linalg.norm(Q, axis=1, keepdims=True)
    stored = {"cpu": torch.from_numpy(X)}
    if device != "cpu":
        stored[device] = stored["cpu"].to(device)

    def search(d):
        q = torch.from_numpy(Q).to(d)
        out = [torch.topk(q[i:i + 1024] @ stored[d].T, 10, dim=1).indices for i in range(0, len(q), 1024)]
        if d != "cpu":
            torch.cuda.synchronize()
        return out

    times = common.interleave({d: (lambda d=d: search(d)) for d in stored}, 3, "torch knn")
    same = float(np.mean([set(a.tolist()) == set(b.tolist()) for a, b in
                          zip(torch.cat(search("cpu")), torch.cat(search(device)).cpu())])) if device != "cpu" else 1.0
    table = Table(f"Exact cosine top-10 in torch, {n:,} stored 384-d vectors, {n_queries:,} queries: GPU vs host CPU",
                  "faiss is not installed on this machine, so the kNN head could not run here; this is "
                  f"`torch.topk(Q @ X.T, 10)` in blocks of 1,024 queries, fp32, best of 3 interleaved rounds, "
                  f"on the GPU and on the host's {os.cpu_count()} CPU threads (torch default). "
                  f"Same top-10 sets on both: {same:.3f} of queries.", ["device", "queries/s", "vs CPU"])
    for d in stored:
        table.add(d, n_queries / min(times[d]), ratio(min(times["cpu"]), min(times[d])))
    return table


def bench_knn(n: int, n_queries: int, want_gpu: bool) -> Table:
    try:
        import faiss
    except ImportError:
        return bench_knn_torch(n, min(n_queries, 2_000), "cuda" if want_gpu else "cpu")

    from heads import get_head
    from knn_speed import clustered

    gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if want_gpu and not gpu:
        return Table("kNN on the GPU: skipped", "This faiss has no GPU support or sees no GPU "
                     "(install faiss-gpu from the carried wheels).", ["-"])
    rng = np.random.default_rng(common.SEED)
    centres = rng.standard_normal((1000, 384), dtype=np.float32)
    X, y = clustered(n, 1, centres)
    Q, _ = clustered(n_queries, 2, centres)
    devices = ["cpu", "gpu"] if gpu else ["cpu"]
    heads = {d: get_head("knn", k=10, device=d).fit(X, y) for d in devices}
    times = common.interleave({d: (lambda h=h: h.predict_proba(Q)) for d, h in heads.items()}, 3, "gpu knn")
    table = Table(f"Exact kNN, k=10, {n:,} stored 384-d vectors, {n_queries:,} queries: faiss GPU vs CPU",
                  "`get_head(\"knn\", k=10, device=...)` flat index; best of 3 interleaved rounds; "
                  "ratio = queries/s over the CPU's.", ["device", "queries/s", "vs CPU"])
    for d in devices:
        table.add(d, n_queries / min(times[d]), ratio(min(times["cpu"]), min(times[d])))
    return table


def machine() -> str:
    import torch

    lines = [f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}")
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        if smi:
            lines.append(f"nvidia-smi: {smi}")
    except (OSError, subprocess.SubprocessError):
        pass
    return "\n".join(f"- {line}" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT", "gpu-bench-out"), help="folder for gpu.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: check the script without a GPU")
    args = parser.parse_args()
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch sees no GPU: run on a GPU machine, or pass --dry-run to check the script on the CPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = dict(n=200, rounds=1, steps=4, knn=20_000, queries=200) if args.dry_run else \
        dict(n=20_000, rounds=3, steps=200, knn=1_000_000, queries=10_000)
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    tables: list[Table] = []
    with common.temp_dir() as tmp:
        for part in (lambda: bench_embed(device, sizes["n"], sizes["rounds"], tmp),
                     lambda: [bench_finetune(device, sizes["steps"], tmp)],
                     lambda: [bench_knn(sizes["knn"], sizes["queries"], want_gpu=not args.dry_run)]):
            try:
                tables.extend(part())
            except Exception as exc:  # noqa: BLE001 - one failed part must not lose the others
                tables.append(Table("A part failed", f"`{type(exc).__name__}: {exc}`", ["-"]))
            body = "\n".join(t.markdown() for t in tables)
            (out / "gpu.md").write_text(f"_Measured {started} UTC by `bash bench/gpu.sh`"
                                        f"{' (--dry-run on the CPU)' if args.dry_run else ''}._\n\n"
                                        f"{machine()}\n\n{body}")
            log(f"wrote {out / 'gpu.md'}")
    print((out / "gpu.md").read_text())


if __name__ == "__main__":
    main()
