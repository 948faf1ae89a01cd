"""``--engine ray``: the chunks' texts embedded and classified by a pool of Ray Data actors.

The driver still reads every file with :mod:`scoring.reader` and writes through
:mod:`scoring.output`, so rejects, row order, output bytes and the progress file are exactly the
local engine's; only the good rows' texts travel to Ray. They go in windows of whole chunks (up to
``WINDOW_ROWS`` rows, so memory stays bounded): each window becomes a dataset with one block per
chunk and a row index column, ``map_batches`` runs :class:`ChunkScorer` actors (each builds the
``Embedder`` and the classifier once, in ``__init__``; one GPU each when the cluster has GPUs)
with ``batch_size=None``, so every call sees one whole chunk as the local engine does, and the
results are put back in row order by the index. Labels are taken from the probabilities in the
driver, as locally.

The actors read and fill the same embedding cache (a shared folder on a multi-node cluster), so
texts embedded by either engine are not encoded again. ``ray_address`` joins a running cluster
(every node needs this package and the model); otherwise a local Ray is started and shut down.
Left out: reading input files on the workers, and resume guarantees (resuming is tested for the
local engine only; a Ray run uses the same progress file, at chunk granularity).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from embed.errors import TweetheadsError

from .predict import Truncation, load_classifier, predict_texts

WINDOW_ROWS = 1 << 17
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def require_ray():
    """Import Ray Data, or say how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise TweetheadsError("--engine ray needs Ray Data, which is not installed: "
                              "pip install 'tweetheads[ray]' (or use --engine local)") from exc
    return ray


class ChunkScorer:
    """A Ray actor: the Embedder and the classifier are built once; each call scores one chunk."""

    def __init__(self, embedder_params: dict, head_spec: tuple[str, str]):
        from embed.encoder import Embedder

        self.embedder = Embedder(**embedder_params)
        self.classifier = load_classifier(head_spec)
        self.truncation = Truncation(self.embedder)

    def __call__(self, batch: dict) -> dict:
        proba, truncated = predict_texts(self.embedder, self.classifier, self.truncation, list(batch["text"]))
        columns = {f"p{j}": np.ascontiguousarray(proba[:, j]) for j in range(proba.shape[1])}
        return {"row": batch["row"], "truncated": truncated, **columns}


def embedder_params(embedder) -> dict:
    """The Embedder's parameters with the cache folder and a model folder made absolute for the workers."""
    from cache import default_cache_dir
    from embed.models import ALIASES

    params = embedder.get_params()
    cache_dir = params["cache_dir"]
    if cache_dir is not None:
        params["cache_dir"] = str(Path(default_cache_dir() if cache_dir == "default" else cache_dir).resolve())
    if params["model"] not in ALIASES and Path(params["model"]).expanduser().exists():
        params["model"] = str(Path(params["model"]).expanduser().resolve())
    params["progress"] = False
    return params


def _connect(ray, config) -> None:
    options = dict(logging_level="WARNING", log_to_driver=False)
    if config.ray_address:
        ray.init(address=config.ray_address, **options)
        return
    path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=max(os.cpu_count() or 1, config.concurrency), include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}}, **options)


def ray_predictions(chunks: Iterator, plan, config) -> Iterator[tuple]:
    """Yield ``(chunk, proba, truncated)`` in chunk order, like the local engine."""
    ray = require_ray()
    connected = not ray.is_initialized()
    if connected:
        _connect(ray, config)
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)  # our own progress bar and summary replace Ray Data's
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        actor = {"fn_constructor_kwargs": {"embedder_params": embedder_params(plan.embedder),
                                           "head_spec": plan.head_spec},
                 "compute": ray.data.ActorPoolStrategy(size=config.concurrency),
                 "num_gpus": 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0}
        n_classes = len(plan.classifier.classes_)
        window: list = []
        rows = 0
        for chunk in chunks:
            window.append(chunk)
            rows += len(chunk.texts)
            if rows >= WINDOW_ROWS:
                yield from _score_window(ray, window, n_classes, actor)
                window, rows = [], 0
        if window:
            yield from _score_window(ray, window, n_classes, actor)
    finally:
        data_logger.setLevel(level)
        if connected:
            ray.shutdown()


def _score_window(ray, window: list, n_classes: int, actor: dict) -> Iterator[tuple]:
    import pyarrow as pa

    starts, tables, total = [], [], 0
    for chunk in window:
        starts.append(total)
        if chunk.texts:
            tables.append(pa.table({"row": pa.array(np.arange(total, total + len(chunk.texts)), pa.int64()),
                                    "text": pa.array(chunk.texts, pa.string())}))
        total += len(chunk.texts)
    proba = np.zeros((total, n_classes))
    truncated = np.zeros(total, dtype=bool)
    seen = 0
    if tables:
        dataset = ray.data.from_arrow(tables).map_batches(ChunkScorer, batch_size=None, batch_format="numpy",
                                                          **actor)
        first = True
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            at = batch["row"]
            scores = np.column_stack([batch[f"p{j}"] for j in range(n_classes)])
            if first:  # keep the classifier's dtype (float32 for e2e) so CSV text matches the local engine
                proba, first = proba.astype(scores.dtype), False
            proba[at] = scores
            truncated[at] = batch["truncated"]
            seen += len(at)
    if seen != total:
        raise TweetheadsError(f"Ray returned {seen} scored rows for a window of {total}; rerun the command")
    for chunk, start in zip(window, starts):
        stop = start + len(chunk.texts)
        yield chunk, proba[start:stop], truncated[start:stop]
