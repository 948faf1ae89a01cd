"""``--engine ray``: reading, rejects, embedding, the head and writing all on Ray workers.

The driver plans (which files, which chunks are already done), follows progress and checks the
accounting at the end; it never parses an input row or writes an output row. One Ray Data pipeline:

    input files --(read tasks: one per file, READ_CPUS each)--> one row per chunk
                --(ChunkWriter actors: ActorPoolStrategy(size=concurrency), one GPU each where the
                   cluster has GPUs and the backend is torch)--> part files on disk + one small record per chunk to the driver

A read task streams its file through :func:`scoring.blocks.iter_chunks`, the local engine's reader,
so the chunks, reject reasons and line numbers are the same. A ``ChunkWriter`` builds the
``Embedder`` and the classifier once, then for each chunk embeds through the cache, classifies,
formats the rows with the local engine's :class:`scoring.output.RowFormatter`, and writes::

    OUT/scored/part-FFFFF-CCCCCCCC.parquet   chunk C of input file F: its good rows, in input order
                                             (.csv with part_format="csv": a header, then the rows)
    OUT/rejects/part-FFFFF-CCCCCCCC.csv      that chunk's rejects (file, line, reason, raw), if any
    OUT/_records/chunk-FFFFF-CCCCCCCC.json   its counts, written after both parts: the commit point
    OUT/_records/file-FFFFF.json             written by the read task once the whole file is read
    OUT/manifest.json                        the driver's: the command's identity; at the end the
                                             per-file counts and the parts in order

Part names sort in input order (file, then chunk, then row), so the parts concatenated in name
order are the local engine's output rows, and :func:`read_output` does that.

Accounting: at the end the driver sums the records the workers wrote (not what it was streamed)
and checks, per file, that every chunk 0..n-1 has a record, that their rows add up to the rows the
read task counted, that read = scored + rejected, and that the part files on disk are exactly the
ones the records name (Parquet: with the recorded row counts). Anything else stops with an error.

Faults: every name is decided by (file, chunk) and every file is written to a temporary name and
renamed, so a task that Ray retries or an actor it restarts (Ray Data restarts actors and retries
their tasks; read tasks are retried too) rewrites the same files with the same content: a worker
killed mid-run loses and doubles nothing. A rerun of the same command after the driver died
resumes: chunks with a record are skipped (their files are still parsed, to reach the next chunk).
A folder holding another command's parts, or a finished run's, is cleared of them (only the
names above) and started clean; a non-empty folder that is not a score folder is refused.

The embedding cache: each actor opens the cache folder on its own node, so every node keeps a
local store (SQLite + shard files) and a text a node embedded is not encoded again when that node
scores it again. The drift check (:mod:`scoring.drift`): each chunk's actor sends back, with the
chunk's small row, its share of a :class:`~scoring.drift.KeyedSample` (at most 1,000 float16
vectors, 0.75 MB for MiniLM), and the driver keeps the 1,000 with the smallest keys: a uniform
sample of the rows this run scored (chunks an earlier, interrupted run finished are not in it).
Point the cache at node-local disk: SQLite's locking is not safe on network file
systems. ``ray_address`` joins a running cluster (every node needs this package, the model, the
head or run folder and the inputs at the same paths); otherwise a local Ray is started and shut down.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from embed.errors import TweetheadsError
from fileio import atomic_path, fsync_dir, write_atomic

from .drift import NO_PART, KeyedSample, keyed_part
from .gold import GoldTally
from .output import REJECT_COLUMNS, RowFormatter, csv_bytes, reject_rows
from .predict import load_classifier
from .predictor import CheckedHead, Predictor
from .blocks import iter_chunks

MANIFEST = "manifest.json"
SCORED, REJECTS, RECORDS = "scored", "rejects", "_records"
PART_FORMATS = ("parquet", "csv")
READ_CPUS = 0.5  # a reader is light next to an encoder: two share a core with room for a scorer
AUTO_ACTOR_CPUS = (1.0, 0.5)  # tried in order when --actor-cpus is left out: multiples of READ_CPUS
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_KIND = "tweetheads score --engine ray"


def require_ray(data: bool = True):
    """Import Ray (and Ray Data; ``data=False``: only check it is there, a few seconds saved), or say how to
    install it."""
    try:
        import ray
        if data:
            import ray.data  # noqa: F401
        elif importlib.util.find_spec("ray.data") is None:
            raise ImportError("ray.data")
    except ImportError as exc:
        raise TweetheadsError("--engine ray needs Ray Data, which is not installed: "
                              "pip install 'tweetheads[ray]' (or use --engine local)") from exc
    return ray


@dataclass(frozen=True)
class WorkSpec:
    """Everything a worker needs, as plain picklable values."""

    folder: str
    paths: tuple[str, ...]
    text_col: str
    chunk_rows: int
    part_format: str
    formatter: RowFormatter
    label_col: str | None
    embedder_params: dict
    head_spec: tuple[str, str]
    files: tuple = ()  # the driver's InputFile records, paths made absolute: no read task opens a header again
    drift_sample: int = 0  # rows of each chunk's vectors sent back for the drift check (0: none)
    fast: bool = True  # clean blocks through Arrow (scoring/blocks.py), as ScoreConfig.fast


def part_name(file: int, chunk: int) -> str:
    """The stem of chunk ``chunk`` of input ``file``'s part files: names sort in input order."""
    return f"part-{file:05d}-{chunk:08d}"


# -- on the workers ------------------------------------------------------------------------------
def read_file(item: dict, spec: WorkSpec):
    """A read task: one row per chunk not done yet, then the file's own record.

    The chunk travels as a Python object in the row; Ray serializes it in memory between its own
    worker processes (nothing of it is written to or read from disk by this project).
    """
    import ray

    file, done = int(item["file"]), {int(c) for c in item["done"]}
    rows = chunks = 0
    source = spec.files[file] if spec.files else Path(spec.paths[file])
    for chunk in iter_chunks([source], spec.text_col, spec.chunk_rows, fast=spec.fast):
        rows += chunk.rows_read
        chunks += 1
        if chunk.index not in done:
            yield {"file": file, "chunk": chunk.index, "payload": chunk}
    record = {"file": file, "path": spec.paths[file], "rows_read": rows, "chunks": chunks,
              "node": ray.get_runtime_context().get_node_id()}
    write_atomic(Path(spec.folder) / RECORDS / f"file-{file:05d}.json", json.dumps(record))


class ChunkWriter:
    """A Ray actor: builds the Embedder and the classifier once; each call scores and writes one chunk."""

    def __init__(self, spec: WorkSpec):
        import ray

        from embed.encoder import Embedder

        self.spec = spec
        # the driver's prepare checked the head against the model: the actor only rebuilds both
        self.predictor = Predictor(Embedder(**spec.embedder_params),
                                   CheckedHead(load_classifier(spec.head_spec), spec.head_spec, "", ""))
        self.node = ray.get_runtime_context().get_node_id()
        self.folder = Path(spec.folder)

    def __call__(self, row: dict) -> dict:
        chunk = row["payload"]
        file, spec = int(row["file"]), self.spec
        seen: list[np.ndarray] = []  # the chunk's vectors, for its share of the drift check's sample
        proba, truncated, encoded = self.predictor.predict_counted(chunk.texts,
                                                                   seen.append if spec.drift_sample else None)
        picked = np.argmax(proba, axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
        name = part_name(file, chunk.index)
        if chunk.rows:
            target = self.folder / SCORED / f"{name}.{spec.part_format}"
            if spec.part_format == "parquet":
                import pyarrow.parquet as pq

                with atomic_path(target) as tmp:
                    pq.write_table(spec.formatter.table(chunk, picked, proba), tmp)
            else:
                lines = spec.formatter.csv_lines(chunk, picked, proba)
                if lines is None:
                    lines = csv_bytes(spec.formatter.rows(chunk, picked, proba))
                write_atomic(target, csv_bytes([spec.formatter.columns]) + lines)
        if chunk.rejects:
            write_atomic(self.folder / REJECTS / f"{name}.csv", csv_bytes([REJECT_COLUMNS, *reject_rows(chunk)]))
        gold = None
        if spec.label_col is not None:
            tally = GoldTally(spec.label_col, spec.formatter.classes.tolist())
            tally.add(spec.formatter.gold_cells(chunk, spec.label_col), picked)
            gold = tally.state()
        record = {"file": file, "chunk": chunk.index, "rows_read": chunk.rows_read, "rows_scored": len(chunk.rows),
                  "rows_rejected": len(chunk.rejects), "truncated": int(np.count_nonzero(truncated)),
                  "encoded": int(encoded), "node": self.node, "pid": os.getpid(), "gold": gold}
        write_atomic(self.folder / RECORDS / f"chunk-{file:05d}-{chunk.index:08d}.json", json.dumps(record))
        part = keyed_part(seen[0], file, chunk.index, spec.drift_sample) if seen else NO_PART
        return {"file": file, "chunk": chunk.index, "rows_read": chunk.rows_read, **part}


# -- in the driver -------------------------------------------------------------------------------
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
    # every worker computes the vectors the driver checked the head against: the driver's resolved
    # backend and precision, not "auto" again on a node that may differ (OpenVINO: CPU only)
    encoder = embedder.load()
    params["precision"], params["backend"] = encoder.precision, encoder.backend
    if encoder.backend == "openvino":
        params["device"] = "cpu"
    return params


def check_output_folder(folder: Path, rejects) -> None:
    """Refuse, before any work, an output that cannot be a folder of parts."""
    if rejects is not None:
        raise TweetheadsError(f"--rejects: with --engine ray the rejects are part files in {folder / REJECTS}/; "
                              "leave --rejects out")
    if not folder.is_dir() and any(folder.name.lower().endswith(suffix) for suffix in (".csv", ".csv.gz", ".parquet")):
        raise TweetheadsError(f"{folder}: --engine ray writes a folder of part files, not one file; name --output "
                              f"without a file suffix (e.g. {folder.with_name(folder.name.split('.')[0])})")
    if folder.exists() and not folder.is_dir():
        raise TweetheadsError(f"{folder}: --engine ray writes a folder of part files, and this is a file; pass a "
                              "folder path for --output (a new or empty folder, or one an earlier run wrote)")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise TweetheadsError(f"{folder}: the folder is not empty and holds no {MANIFEST} of a score run; pass a "
                              "new or empty folder for --output, so no file of yours is overwritten")


def _open_folder(folder: Path, identity: str) -> tuple[dict[tuple[int, int], dict], str | None]:
    """Records of the finished chunks to resume from, and why the folder was cleared, if it was."""
    cleared = None
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except ValueError:
            old = {}
        if old.get("identity") == identity and old.get("state") == "running":
            records = _chunk_records(folder)
            _drop_strays(folder)
            return records, None
        cleared = "a finished run of this command" if old.get("identity") == identity else "another command's parts"
        for name in (SCORED, REJECTS, RECORDS):
            shutil.rmtree(folder / name, ignore_errors=True)
    for name in (SCORED, REJECTS, RECORDS):
        (folder / name).mkdir(parents=True, exist_ok=True)
    write_atomic(manifest, json.dumps({"kind": _KIND, "identity": identity, "state": "running"}, indent=1),
                 durable=True)
    return {}, cleared


def _drop_strays(folder: Path) -> None:
    """Temporary files left by workers killed mid-write; nothing renamed into place is touched."""
    for name in (SCORED, REJECTS, RECORDS):
        for path in (folder / name).glob("*.tmp"):
            path.unlink(missing_ok=True)


def _chunk_records(folder: Path) -> dict[tuple[int, int], dict]:
    records = {}
    for path in sorted((folder / RECORDS).glob("chunk-*.json")):
        record = json.loads(path.read_text())
        records[(record["file"], record["chunk"])] = record
    return records


@dataclass(frozen=True)
class Sizing:
    """What the plan-time check decided: CPUs per scoring actor, and why when it was not the default."""

    actor_cpus: float
    note: str | None = None


def size_actors(node_cpus: list[float], concurrency: int, actor_cpus: float | None, gpus_per_actor: int = 0,
                total_gpus: float = 0.0) -> Sizing:
    """Actor CPUs that leave room for read tasks on a cluster whose alive nodes have ``node_cpus``.

    The pipeline deadlocks when the scoring actors hold every CPU: the read tasks that feed them
    (``READ_CPUS`` each) can then never start, and Ray waits forever without a word. So the actors
    must fit on the nodes (each on one node) and leave at least one read task's CPUs free.
    ``actor_cpus=None`` picks the first of ``AUTO_ACTOR_CPUS`` that fits (those are multiples of
    ``READ_CPUS``, so free CPUs are never cut into pieces too small for a reader); an explicit value
    that cannot fit is refused, in one line naming the numbers and the flags to change.
    """
    total = float(sum(node_cpus))
    if gpus_per_actor and concurrency * gpus_per_actor > total_gpus:
        raise TweetheadsError(f"--concurrency {concurrency} asks for {concurrency * gpus_per_actor} GPU(s), one per "
                              f"scoring actor, and the Ray cluster has {total_gpus:g}; pass --concurrency "
                              f"{int(total_gpus // gpus_per_actor) or 1} or fewer, or --device cpu")

    def fits(cpus: float) -> bool:
        placed = sum(int(c / cpus + 1e-9) for c in node_cpus)
        return placed >= concurrency and total - concurrency * cpus >= READ_CPUS - 1e-9

    if actor_cpus is not None:
        if fits(actor_cpus):
            return Sizing(float(actor_cpus))
        most = max((n for n in range(concurrency, 0, -1) if total - n * actor_cpus >= READ_CPUS
                    and sum(int(c / actor_cpus + 1e-9) for c in node_cpus) >= n), default=0)
        fix = f"--concurrency {most} or fewer, or a smaller --actor-cpus" if most else "a smaller --actor-cpus"
        raise TweetheadsError(
            f"the Ray cluster has {total:g} CPUs ({_nodes(node_cpus)}); {concurrency} scoring actor(s) of "
            f"{actor_cpus:g} CPUs each plus one read task of {READ_CPUS:g} need "
            f"{concurrency * actor_cpus + READ_CPUS:g} and must each fit on one node, or the run would wait "
            f"forever with the readers unscheduled; pass {fix} (or leave --actor-cpus out to size it)")
    for cpus in AUTO_ACTOR_CPUS:
        if fits(cpus):
            note = None if cpus == AUTO_ACTOR_CPUS[0] else (
                f"scoring actors sized to {cpus:g} CPU each (not {AUTO_ACTOR_CPUS[0]:g}) so read tasks fit beside "
                f"{concurrency} of them on {total:g} CPUs")
            return Sizing(cpus, note)
    most = max(int((total - READ_CPUS) / AUTO_ACTOR_CPUS[-1] + 1e-9), 0)
    raise TweetheadsError(
        f"the Ray cluster has {total:g} CPUs ({_nodes(node_cpus)}): too few for {concurrency} scoring actors of at "
        f"least {AUTO_ACTOR_CPUS[-1]:g} CPU each plus a read task of {READ_CPUS:g}; pass --concurrency "
        f"{most} or fewer" + ("" if most else " after adding CPUs to the cluster") + ", or add nodes")


def _nodes(node_cpus: list[float]) -> str:
    return f"{len(node_cpus)} node(s): " + " + ".join(f"{c:g}" for c in node_cpus)


def cluster_sizing(ray, config, gpus_per_actor: int) -> Sizing:
    """:func:`size_actors` on the connected cluster's alive nodes (or the config as it is, unchecked)."""
    if not config.resource_check:
        return Sizing(AUTO_ACTOR_CPUS[0] if config.actor_cpus is None else float(config.actor_cpus),
                      "resource check skipped (--no-resource-check)")
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_cpus = [float(n.get("Resources", {}).get("CPU", 0.0)) for n in nodes]
    gpus = float(sum(n.get("Resources", {}).get("GPU", 0.0) for n in nodes))
    return size_actors(node_cpus, config.concurrency, config.actor_cpus, gpus_per_actor, gpus)


_EARLY: dict[str, bool] = {}  # {"connected": True} while a connection made by plan_time_check waits for its run


def plan_time_check(config) -> None:
    """The resource check, before the model and head load (so a refusal comes in seconds): connect to
    the cluster (kept for the run) and size the actors, where the cluster has no GPUs; a cluster with
    GPUs is checked by :func:`score_on_ray`, once the model says whether its actors take one."""
    if not config.resource_check:
        return
    ray = require_ray(data=False)
    ours = not ray.is_initialized()
    if ours:
        _connect(ray, config)
        _EARLY["connected"] = True
    try:
        if ray.cluster_resources().get("GPU", 0) < 1:
            cluster_sizing(ray, config, 0)
    except BaseException:
        release_early()
        raise


def release_early() -> None:
    """Shut down a connection :func:`plan_time_check` made, when the run will not take it (planning failed)."""
    if _EARLY.pop("connected", False):
        import ray

        ray.shutdown()


class Stalled(TweetheadsError):
    """No chunk finished within the stall timeout: the run is stopped instead of waiting forever."""


def follow(rows, stall_seconds: float, describe: Callable[[], str]):
    """Yield from ``rows`` (consumed on a thread); raise :class:`Stalled` when none arrives for ``stall_seconds``.

    ``describe()`` says what the cluster is doing, for the message.
    """
    import queue
    import threading

    box: queue.Queue = queue.Queue(maxsize=64)
    end = object()

    def pump():
        try:
            for row in rows:
                box.put((row, None))
        except BaseException as exc:  # handed to the driver's thread, raised there
            box.put((None, exc))
        else:
            box.put((end, None))

    threading.Thread(target=pump, name="ray-rows", daemon=True).start()
    while True:
        try:
            row, error = box.get(timeout=stall_seconds)
        except queue.Empty:
            _quiet_ray()  # shutting down under a waiting pipeline makes Ray log tracebacks of its own
            raise Stalled(f"no chunk finished for {stall_seconds:g} s (--stall-timeout), so the run was stopped "
                          f"instead of waiting: {describe()}. Finished chunks are kept: rerun the same command "
                          "to resume, with fewer --concurrency or --actor-cpus if the CPUs are all taken, or a "
                          "larger --stall-timeout if one chunk takes that long") from None
        if error is not None:
            raise error
        if row is end:
            return
        yield row


def _quiet_ray() -> None:
    for name in [n for n in logging.root.manager.loggerDict if n == "ray" or n.startswith("ray.")]:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _describe(ray, sizing: Sizing, concurrency: int) -> Callable[[], str]:
    def describe() -> str:
        try:
            free, total = ray.available_resources().get("CPU", 0.0), ray.cluster_resources().get("CPU", 0.0)
        except Exception as exc:  # the cluster itself may be the problem
            return f"the cluster's resources could not be read ({exc})"
        text = (f"{free:g} of {total:g} CPUs free; {concurrency} scoring actor(s) reserve {sizing.actor_cpus:g} "
                f"each and each read task needs {READ_CPUS:g}")
        if free < READ_CPUS:
            text += ", so the read tasks that feed the actors cannot be scheduled"
        return text
    return describe


def _connect(ray, config) -> None:
    path = os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)
    options = dict(logging_level="WARNING", log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    if config.ray_address:
        ray.init(address=config.ray_address, **options)
        return
    ray.init(num_cpus=max(os.cpu_count() or 1, 2 * config.concurrency), include_dashboard=False, **options)
    # (2 per actor: room for one actor of the largest automatic size and its readers)


def score_on_ray(plan, config, formatter: RowFormatter, update: Callable[[int], None]) -> dict:
    """Run the pipeline into ``plan.output`` (a folder); the checked accounting as a dict.

    ``formatter`` turns chunks into output rows (the workers get a copy); ``update(rows)`` is
    called as chunks finish, for a progress bar.
    """
    ray = require_ray()
    folder = plan.output
    folder.mkdir(parents=True, exist_ok=True)
    done, cleared = _open_folder(folder, plan.identity)
    files_done = _files_done(folder, done, len(plan.paths))
    sample = KeyedSample()  # the drift check's rows, from the workers (scoring/drift.py)
    wanted = config.drift_check and getattr(plan.classifier, "drift_reference_", None) is not None
    spec = WorkSpec(str(folder.resolve()), tuple(str(p.resolve()) for p in plan.paths), config.text_col,
                    config.chunk_rows, config.part_format, formatter, plan.label_col,
                    embedder_params(plan.embedder), plan.head_spec,
                    tuple(dataclasses.replace(f, path=f.path.resolve()) for f in plan.files),
                    drift_sample=sample.size if wanted else 0, fast=config.fast)
    items = [{"file": i, "done": sorted(c for f, c in done if f == i)}
             for i in range(len(plan.paths)) if i not in files_done]
    for record in done.values():
        update(record["rows_read"])
    started = time.perf_counter()
    sizing = None
    early = _EARLY.pop("connected", False)  # plan_time_check connected for this run
    if not items and early:
        ray.shutdown()
    if items:
        connected = early or not ray.is_initialized()
        if not ray.is_initialized():
            _connect(ray, config)
        data_logger = logging.getLogger("ray.data")
        level = data_logger.level
        data_logger.setLevel(logging.ERROR)  # our own progress bar and summary replace Ray Data's
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            context.print_on_execution_start = False
            on_gpu = spec.embedder_params["backend"] == "torch" and spec.embedder_params["device"] != "cpu"
            gpus = 1 if on_gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
            sizing = cluster_sizing(ray, config, gpus)  # refuses, before any work, a plan that cannot run
            dataset = (ray.data.from_items(items, override_num_blocks=len(items))
                       .flat_map(read_file, fn_kwargs={"spec": spec}, num_cpus=READ_CPUS)
                       .map(ChunkWriter, fn_constructor_kwargs={"spec": spec},
                            compute=ray.data.ActorPoolStrategy(size=config.concurrency),
                            num_cpus=sizing.actor_cpus, num_gpus=gpus))  # Ray Data spreads actors over nodes
            rows = follow(dataset.iter_rows(), config.stall_seconds, _describe(ray, sizing, config.concurrency))
            for row in rows:
                update(int(row["rows_read"]))
                sample.add(int(row["file"]), int(row["chunk"]), row)
        finally:
            data_logger.setLevel(level)
            if connected:
                ray.shutdown()
    accounting = check_folder(folder, plan.paths, plan.label_col, plan.classifier.classes_, config.part_format)
    accounting.update(resumed_chunks=len(done), resumed_rows=sum(r["rows_read"] for r in done.values()),
                      cleared=cleared, seconds=time.perf_counter() - started,
                      actor_cpus=None if sizing is None else sizing.actor_cpus,
                      sizing_note=None if sizing is None else sizing.note)
    manifest = {"kind": _KIND, "identity": plan.identity, "state": "finished", "part_format": config.part_format,
                "columns": plan.columns, **{k: v for k, v in accounting.items() if k != "gold"}}
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1), durable=True)
    accounting["drift_vectors"] = sample.vectors()  # this run's chunks only: a resumed run's earlier ones are not in it
    return accounting


def _files_done(folder: Path, done: dict, n_files: int) -> set[int]:
    finished = set()
    for i in range(n_files):
        path = folder / RECORDS / f"file-{i:05d}.json"
        if path.is_file() and all((i, c) in done for c in range(json.loads(path.read_text())["chunks"])):
            finished.add(i)
    return finished


def check_folder(folder: Path, paths: list[Path], label_col, classes, part_format: str) -> dict:
    """Sum the workers' records and check them against each file's count and the parts on disk."""
    records = _chunk_records(folder)
    totals = {"rows_read": 0, "rows_scored": 0, "rows_rejected": 0, "truncated": 0, "encoded": 0}
    files, expected, nodes = [], {SCORED: set(), REJECTS: set()}, set()
    gold = GoldTally(label_col, list(np.asarray(classes).tolist())) if label_col else None
    for i, path in enumerate(paths):
        record_path = folder / RECORDS / f"file-{i:05d}.json"
        if not record_path.is_file():
            raise TweetheadsError(f"{folder}: no read record for input {path}; rerun the same command to finish it")
        read = json.loads(record_path.read_text())
        nodes.add(read["node"])
        mine = [records.get((i, c)) for c in range(read["chunks"])]
        missing = [c for c, r in enumerate(mine) if r is None]
        if missing:
            raise TweetheadsError(f"{folder}: {len(missing)} chunk(s) of {path} have no record (first: chunk "
                                  f"{missing[0]}); rerun the same command to finish them")
        counts = {key: sum(r[key] for r in mine) for key in totals}
        if counts["rows_read"] != read["rows_read"] or counts["rows_read"] != counts["rows_scored"] + counts["rows_rejected"]:
            raise TweetheadsError(f"{folder}: the chunk records of {path} count {counts['rows_read']} rows read, "
                                  f"{counts['rows_scored']} scored, {counts['rows_rejected']} rejected, but its read "
                                  f"task read {read['rows_read']}; remove the folder and score again")
        for r in mine:
            name = part_name(i, r["chunk"])
            if r["rows_scored"]:
                expected[SCORED].add(f"{name}.{part_format}")
            if r["rows_rejected"]:
                expected[REJECTS].add(f"{name}.csv")
            nodes.add(r["node"])
            if gold is not None and r["gold"] is not None:
                gold.merge(GoldTally.from_state(r["gold"], gold.classes))
        files.append({"file": str(path), "rows_read": read["rows_read"], "rows_scored": counts["rows_scored"],
                      "rows_rejected": counts["rows_rejected"], "chunks": read["chunks"]})
        for key in totals:
            totals[key] += counts[key]
    for sub, names in expected.items():
        found = {p.name for p in (folder / sub).iterdir() if not p.name.endswith(".tmp")}
        if found != names:
            extra, lost = sorted(found - names), sorted(names - found)
            raise TweetheadsError(f"{folder / sub}: the parts on disk differ from the records ("
                                  f"{len(lost)} missing, e.g. {lost[:1]}; {len(extra)} not recorded, e.g. "
                                  f"{extra[:1]}); remove the folder and score again")
    if part_format == "parquet":
        _check_row_counts(folder, records)
    _drop_strays(folder)
    fsync_dir(folder)
    return {**totals, "files": files, "nodes": sorted(nodes), "gold": gold,
            "parts": sorted(expected[SCORED]), "reject_parts": sorted(expected[REJECTS])}


def _check_row_counts(folder: Path, records: dict) -> None:
    import pyarrow.parquet as pq

    for (file, chunk), record in records.items():
        if record["rows_scored"]:
            path = folder / SCORED / f"{part_name(file, chunk)}.parquet"
            rows = pq.ParquetFile(path).metadata.num_rows
            if rows != record["rows_scored"]:
                raise TweetheadsError(f"{path}: {rows} rows, its record says {record['rows_scored']}; remove the "
                                      "folder and score again")


def read_output(folder: str | Path):
    """A finished ``--engine ray`` folder's scored rows as one Arrow table, in input order.

    Parquet parts are combined with their column types unified (as the local engine's single
    Parquet file is); CSV parts are read as text, every column a string.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .output import conform, unify_schemas

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("state") != "finished":
        raise TweetheadsError(f"{folder}: the run has not finished; rerun the same score command to finish it")
    parts = [folder / SCORED / name for name in manifest["parts"]]
    if manifest["part_format"] == "csv":
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in manifest["columns"]},
                                       strings_can_be_null=False, quoted_strings_can_be_null=False)
        tables = [pacsv.read_csv(p, convert_options=convert) for p in parts]
        schema = pa.schema([pa.field(c, pa.string()) for c in manifest["columns"]])
    else:
        tables = [pq.read_table(p) for p in parts]
        schema = unify_schemas([t.schema for t in tables]) if tables else None
    if not tables:
        return pa.table({c: pa.array([], pa.string()) for c in manifest["columns"]})
    return pa.concat_tables([conform(t, schema) for t in tables])
