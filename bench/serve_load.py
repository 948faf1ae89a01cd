"""``tweetheads serve`` under load, against the FastAPI endpoint a user would write, and ``embed``'s own speed.

    python bench/serve_load.py            # the full run: about 5 minutes on 2 quiet cores
    python bench/serve_load.py --quick    # a smoke run (a minute or two); its numbers are not for comparison

Both servers are real processes on 127.0.0.1 (MiniLM, the packaged all-MiniLM-L6-v2, on the CPU),
both on uvicorn, running at the same time (the idle one costs nothing), driven by one httpx
asyncio load generator in this process: ``concurrency`` clients, each sending its next request as
soon as its last one is answered. Requests carry 1 or 32 GOP debate tweets, distinct after
normalization across the whole run, so nothing repeats within a pass; each cell (request size x
concurrency) sends the same texts to both servers, ours first in one cell and the anchor first in
the next.

- **ours**: ``cli.py serve --model minilm --head HEAD`` with every default (micro-batching: up to
  128 texts per encoder call, 2 ms wait; the default backend, OpenVINO on this CPU, in the
  precision ``auto`` picks: fp32 without bf16 units), its cache folder holding the OpenVINO export
  (converted before the run, as ``serve`` finds it after any first run) and no vectors: the cold
  pass encodes every tweet as the anchor does. A warm pass then sends the same requests again
  (every vector from the cache).
- **anchor**: a FastAPI app whose ``def`` endpoint calls ``SentenceTransformer.encode`` (torch
  fp32, its default batch of 32, max length 256 as ours) and a scikit-learn
  ``LogisticRegression.predict_proba`` per request, as the FastAPI docs would have it (a ``def``
  endpoint runs in FastAPI's thread pool, so concurrent requests encode concurrently).
- **embed**: ``Embedder("minilm")`` (our defaults) on the texts of the concurrency-64, 32-tweet
  cell, a fresh cache holding the export (as ``tweetheads embed`` on a cold cache, start-up left
  out), measured in its own process before the servers start and again after the last cell.

Remaining differences, stated in the table's notes: the backends (OpenVINO vs torch), the pooling
(our CLS token vs the model's mean pooling: the same encoder work), the head (ours trained by
``train-head`` with its chosen C, the anchor's ``LogisticRegression()`` on the same 120 sample
tweets), our tweet normalization (``@user``, ``http``), and our cache writes (off the request path).

Latency is measured by the client: from sending a request to having read its whole answer.
Results: the tables on stdout and ``bench/results/serve-load.json`` (``serve-load.quick.json``
with ``--quick``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common  # noqa: F401  bench/ is on sys.path: run as `python bench/serve_load.py`
from common import REPO, Table, cpu_header, gop_tweets, log, minilm_path, normalized, ratio, temp_dir  # noqa: E402

SAMPLE = REPO / "embed" / "samples" / "tweets.csv"
SIZES = (1, 32)
CONCURRENCY = (1, 8, 64)
REQUESTS = {  # (texts per request, concurrency) -> requests sent
    False: {(1, 1): 200, (1, 8): 400, (1, 64): 1000, (32, 1): 20, (32, 8): 40, (32, 64): 160},
    True: {(1, 1): 30, (1, 8): 48, (1, 64): 128, (32, 1): 4, (32, 8): 16, (32, 64): 64},
}
WARM_UP = 8  # requests of 32 and 8 of 1 text to each server before its first cell (texts outside the cells)

ANCHOR = '''
import csv, sys
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer
from sklearn.linear_model import LogisticRegression

model_path, sample, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = SentenceTransformer(model_path, device="cpu")
model.max_seq_length = 256
with open(sample, newline="") as handle:
    rows = list(csv.DictReader(handle))
head = LogisticRegression(max_iter=1000).fit(model.encode([r["text"] for r in rows]), [r["label"] for r in rows])
classes = head.classes_.tolist()
app = FastAPI()


class Texts(BaseModel):
    texts: list[str]


@app.post("/predict")
def predict(request: Texts):
    proba = head.predict_proba(model.encode(request.texts))
    return {"predictions": [{"label": classes[row.argmax()], "proba": dict(zip(classes, row.tolist()))}
                            for row in proba]}


@app.get("/health")
def health():
    return {"status": "ok"}


uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
'''

EMBED = '''
import json, sys, time
from embed.encoder import Embedder
texts = json.load(open(sys.argv[1]))
embedder = Embedder("minilm", cache_dir=sys.argv[2])
embedder.encode_new(["warm up"])
started = time.perf_counter()
vectors, stats = embedder.embed(texts)
seconds = time.perf_counter() - started
d = embedder.load().description
print(json.dumps({"texts": len(texts), "encoded": stats.encoded, "seconds": seconds, "texts_per_s": len(texts) / seconds,
                  "backend": d["backend"], "precision": d["precision"]}))
'''


# -- servers ------------------------------------------------------------------------------------
def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    """A server in a subprocess, up once /health answers; ended by its pid (SIGTERM)."""

    def __init__(self, name: str, command: list[str], url: str, work: Path):
        self.name, self.url = name, url
        self.log = work / f"{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=_env())

    def wait(self, timeout: float = 300) -> Process:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> int:
        self.process.terminate()
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _prepare(work: Path) -> Path:
    """Our head (``train-head`` on the shipped sample), its cache holding MiniLM's OpenVINO export."""
    subprocess.run([sys.executable, "cli.py", "train-head", "--head", "logistic", "--model", "minilm", "--train",
                    str(SAMPLE), "--out", str(work / "head"), "--cache-dir", str(work / "prep-cache")], cwd=REPO,
                   env=_env(), check=True, capture_output=True)
    return work / "head"


def _fresh_cache(work: Path, name: str) -> Path:
    """A cache folder with the export and no vectors: everything sent to it is encoded."""
    cache = work / name
    shutil.copytree(work / "prep-cache" / "exports", cache / "exports")
    return cache


def _embed_speed(work: Path, texts: list[str], name: str) -> dict:
    (work / "embed-texts.json").write_text(json.dumps(texts))
    done = subprocess.run([sys.executable, "-c", EMBED, str(work / "embed-texts.json"),
                           str(_fresh_cache(work, name))], cwd=REPO, env=_env(), capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- load -------------------------------------------------------------------------------------------
async def _drive(url: str, bodies: list[list[str]], concurrency: int) -> dict:
    """Send ``bodies`` from ``concurrency`` clients; throughput, client-side latency percentiles, errors."""
    import httpx

    pending = list(reversed(bodies))
    latencies: list[float] = []
    errors: list[str] = []
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency,
                                                                  max_keepalive_connections=concurrency)) as client:
        async def worker():
            while pending:
                texts = pending.pop()
                sent = time.perf_counter()
                try:
                    response = await client.post(f"{url}/predict", json={"texts": texts})
                    body = response.json()
                    if response.status_code != 200 or len(body["predictions"]) != len(texts):
                        errors.append(f"{response.status_code} {response.text[:200]}")
                except Exception as exc:  # a lost answer is an error, not a crash of the benchmark
                    errors.append(f"{type(exc).__name__}: {exc}")
                latencies.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    texts = sum(len(b) for b in bodies)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"requests": len(bodies), "texts": texts, "seconds": wall, "requests_per_s": len(bodies) / wall,
            "tweets_per_s": texts / wall, "p50_ms": statistics.median(latencies) * 1e3, "p95_ms": cuts[94] * 1e3,
            "p99_ms": cuts[98] * 1e3, "errors": len(errors), "first_errors": errors[:3]}


def _cells(quick: bool, pool: list[str]) -> tuple[dict, list[str]]:
    """Each cell's request bodies (distinct texts across all cells) and the warm-up texts left over."""
    at, cells = 0, {}
    for size in SIZES:
        for concurrency in CONCURRENCY:
            n = REQUESTS[quick][(size, concurrency)]
            cells[(size, concurrency)] = [pool[at + i * size: at + (i + 1) * size] for i in range(n)]
            at += n * size
    need = WARM_UP * 33 * 2
    if at + need > len(pool):
        raise SystemExit(f"the cells need {at + need:,} distinct tweets; the GOP data has {len(pool):,}")
    return cells, pool[at:at + need]


def _distinct_tweets() -> list[str]:
    """The GOP tweets distinct after our normalization (and so raw), in a seeded random order."""
    texts, _ = gop_tweets()
    seen, out = set(), []
    for text, norm in zip(texts, normalized(texts)):
        if norm not in seen and text.strip():
            seen.add(norm)
            out.append(text)
    random.Random(common.SEED).shuffle(out)
    return out


def measure(quick: bool) -> dict:
    cells, warm = _cells(quick, _distinct_tweets())
    big = cells[(32, 64)]
    results = {"cpu": cpu_header(), "quick": quick, "cells": {}, "embed": {}}
    with temp_dir("tweetheads-serve-load-") as work:
        log("preparing our head and the OpenVINO export")
        head = _prepare(work)
        log("embed before the servers")
        results["embed"]["before"] = _embed_speed(work, [t for body in big for t in body], "embed-before")
        port_ours, port_anchor = _free_port(), _free_port()
        (work / "anchor.py").write_text(ANCHOR)
        servers = {
            "ours": Process("ours", [sys.executable, "cli.py", "serve", "--model", "minilm", "--head", str(head),
                                     "--cache-dir", str(_fresh_cache(work, "serve-cache")), "--port", str(port_ours)],
                            f"http://127.0.0.1:{port_ours}", work),
            "anchor": Process("anchor", [sys.executable, str(work / "anchor.py"), minilm_path(), str(SAMPLE),
                                         str(port_anchor)], f"http://127.0.0.1:{port_anchor}", work),
        }
        try:
            for server in servers.values():
                server.wait()
            info = __import__("httpx").get(f"{servers['ours'].url}/info", timeout=30).json()
            results["ours_info"] = {k: info[k] for k in ("backend", "precision", "max_length", "pooling", "limits")}
            for n, server in enumerate(servers.values()):  # warm-up: texts outside the cells
                chunk = warm[n * WARM_UP * 33:(n + 1) * WARM_UP * 33]
                bodies = [chunk[i * 32:(i + 1) * 32] for i in range(WARM_UP)] + [[t] for t in chunk[WARM_UP * 32:]]
                asyncio.run(_drive(server.url, bodies, 8))
            for k, ((size, concurrency), bodies) in enumerate(cells.items()):
                order = ["ours", "anchor"] if k % 2 == 0 else ["anchor", "ours"]
                cell = {}
                for name in order:
                    cell[name] = asyncio.run(_drive(servers[name].url, bodies, concurrency))
                    log(f"{size} text(s) x concurrency {concurrency}, {name}: {cell[name]['tweets_per_s']:.0f} tweets/s, "
                        f"p50 {cell[name]['p50_ms']:.1f} ms, p99 {cell[name]['p99_ms']:.1f} ms, "
                        f"{cell[name]['errors']} errors")
                results["cells"][f"{size}x{concurrency}"] = cell
            for (size, concurrency), bodies in cells.items():  # the same requests again: every vector cached
                warm_cell = asyncio.run(_drive(servers["ours"].url, bodies, concurrency))
                results["cells"][f"{size}x{concurrency}"]["ours_warm"] = warm_cell
                log(f"{size} text(s) x concurrency {concurrency}, ours warm: {warm_cell['tweets_per_s']:.0f} tweets/s, "
                    f"p50 {warm_cell['p50_ms']:.1f} ms")
            results["ours_health"] = __import__("httpx").get(f"{servers['ours'].url}/health", timeout=30).json()
        finally:
            results["exit_codes"] = {name: server.stop() for name, server in servers.items()}
        log("embed after the servers")
        results["embed"]["after"] = _embed_speed(work, [t for body in big for t in body], "embed-after")
    return results


# -- tables -----------------------------------------------------------------------------------------
def tables(results: dict) -> list[Table]:
    embed_rate = statistics.mean(r["texts_per_s"] for r in results["embed"].values())
    ours = results["ours_info"]
    load = Table("Online prediction: `serve` under load",
                 f"{results['cpu']} MiniLM on the CPU; GOP tweets, distinct across the run; one httpx asyncio "
                 "load generator on the same machine. ours: `tweetheads serve` defaults "
                 f"({ours['backend']} {ours['precision']}, up to {ours['limits']['max_batch_texts']} texts per encoder "
                 f"call, {ours['limits']['max_wait_ms']:g} ms wait); cold: an empty vector cache (every tweet "
                 "encoded, as the anchor does), warm: the same requests again. anchor: FastAPI `def` endpoint, "
                 "`SentenceTransformer.encode` (torch fp32) + scikit-learn `LogisticRegression` per request. "
                 "Latency from the client, send to last byte." + (" **--quick smoke run: not for comparison.**"
                                                                  if results["quick"] else ""),
                 ["tweets / request", "concurrency", "server", "requests", "requests/s", "tweets/s",
                  "p50 ms", "p95 ms", "p99 ms", "errors", "tweets/s vs anchor"])
    for key, cell in results["cells"].items():
        size, concurrency = key.split("x")
        for name in ("ours", "ours_warm", "anchor"):
            r = cell[name]
            load.add(int(size), int(concurrency), {"ours": "ours, cold cache", "ours_warm": "ours, warm cache",
                                                   "anchor": "anchor"}[name], r["requests"], r["requests_per_s"],
                     r["tweets_per_s"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["errors"],
                     "1.00x" if name == "anchor" else ratio(r["tweets_per_s"], cell["anchor"]["tweets_per_s"]))
    e = results["embed"]
    load.notes += [
        f"embed (our defaults, {e['before']['backend']} {e['before']['precision']}, cold cache, start-up left out) on "
        f"the texts of the 32 x 64 cell: {e['before']['texts_per_s']:.0f} texts/s before the servers, "
        f"{e['after']['texts_per_s']:.0f} after; mean {embed_rate:.0f}.",
        "Remaining differences: backend (ours OpenVINO, anchor torch), pooling (ours CLS, the anchor's "
        "mean: same encoder work), the heads' C (train-head's choice vs LogisticRegression()'s 1.0), our tweet "
        "normalization, and our cache writes (committed by a thread of their own, off the request path).",
        f"Exit codes after SIGTERM: {results['exit_codes']}.",
    ]
    big, one = results["cells"]["32x64"], results["cells"]["1x1"]
    errors = sum(cell[name]["errors"] for cell in results["cells"].values() for name in ("ours", "ours_warm"))
    goals = Table("Online prediction: the goals",
                  "From issue 30, measured in the run above (ours cold unless said).",
                  ["goal", "measured", "met"])
    goals.add("concurrency 64, 32 tweets: >= 3x the anchor's tweets/s",
              ratio(big["ours"]["tweets_per_s"], big["anchor"]["tweets_per_s"]),
              big["ours"]["tweets_per_s"] >= 3 * big["anchor"]["tweets_per_s"])
    goals.add("concurrency 64, 32 tweets: p99 no worse than the anchor's",
              f"{big['ours']['p99_ms']:.0f} ms vs {big['anchor']['p99_ms']:.0f} ms",
              big["ours"]["p99_ms"] <= big["anchor"]["p99_ms"])
    for size in SIZES:
        cell = results["cells"][f"{size}x64"]
        share = cell["ours"]["tweets_per_s"] / embed_rate
        goals.add(f"concurrency 64, {size} tweet(s): tweets/s >= 80% of embed's texts/s",
                  f"{share:.0%} ({cell['ours']['tweets_per_s']:.0f} vs {embed_rate:.0f})", share >= 0.8)
    goals.add("one tweet, concurrency 1: p50 under 20 ms", f"{one['ours']['p50_ms']:.1f} ms cold, "
              f"{one['ours_warm']['p50_ms']:.1f} ms warm", one["ours"]["p50_ms"] < 20)
    goals.add("0 errors (ours, every cell, cold and warm)", f"{errors}", errors == 0)
    return [load, goals]


def run(quick: bool) -> list[Table]:
    """The ``bench/run.py`` entry point: measure, keep the JSON, return the tables."""
    results = measure(quick)
    out = REPO / "bench" / "results" / ("serve-load.quick.json" if quick else "serve-load.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {out}")
    return tables(results)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per cell: a smoke run")
    args = parser.parse_args(argv)
    for table in run(args.quick):
        print(table.markdown())


if __name__ == "__main__":
    main()
