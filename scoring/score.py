"""Batch scoring: tweet files in, one labelled CSV or Parquet file out, in bounded memory, resumable.

``score_files(inputs, output, model, head, config)`` reads the inputs with :mod:`scoring.reader`
in chunks of ``config.chunk_rows`` records. Each chunk's texts go through the ``Embedder`` (texts
already in the cache cost no encoding), the head turns the vectors into class probabilities, and
the chunk is appended to the output and its rejects to the rejects file, crash-safe and resumable
(see :mod:`scoring.output`). One chunk is held at a time, so memory does not grow with the input.
``engine="ray"`` hands everything after planning to Ray workers (:mod:`scoring.ray_engine`): they
read, score and write part files into the output folder, and this process checks the accounting.

Everything that can stop a run is checked before the first row is scored: every input readable,
with a header and the text column; the files' columns; output names; the head trained on this
embedding model (``check_fingerprint``; ``head="e2e"``: the run's own classifier, the model must be
that run folder).

Output columns: the input columns unchanged and in input order (or ``keep_cols``, in that order),
then ``pred_label``, one ``pred_proba_<class>`` per class in the head's ``classes_`` order,
``pred_model`` (``name@fingerprint[:12]``) and ``pred_head`` (``head-name@folder``,
``e2e@run-folder``). Decisions:

- Names: the added columns carry the prefix ``pred_`` by default, so a labelled file (an eval
  split, with its gold ``label`` column) scores with no flags and keeps its gold column beside the
  prediction. ``prefix`` changes it (``""`` gives ``label``, ``proba_<class>``, ``model``, ``head``).
  An input column named like an added column still stops the run before any work (pass another
  ``prefix`` or leave it out with ``keep_cols``): nothing is renamed silently.
- Gold labels: when the inputs have the label column (``label_col``; by default the column the head
  or run was trained on, as recorded in its folder), the summary adds accuracy and macro-F1 against
  it (:mod:`scoring.gold`); rows with an empty or unknown gold label are scored and counted, not
  dropped. An explicit ``label_col`` that a file lacks stops the run before any work.
- Several inputs: rows go to one output in file order. Every file must have the same columns in
  the same order (with ``keep_cols``: every file must have those columns), else the error names
  both files; no ``source_file`` column is added (the rejects file's ``file`` column names the
  file of each reject).
- Truncated rows: a row counts when its normalized text has more tokens than the model's max
  length. This is decided per row here rather than taken from ``EmbedStats.truncated``, which
  counts only the texts encoded by that call, so a rerun with a warm cache would report none.
- CSV cells are written unchanged (JSONL/Parquet values: numbers, lists and dicts as JSON);
  probabilities as the shortest text that reads back to the same float. In Parquet, input columns
  keep their types (CSV/TSV cells are strings) and probabilities are float64.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from embed.errors import DataError

from .drift import DriftConfig, DriftResult, Reservoir, domain_auc, missing_reference, not_run
from .gold import GoldTally
from .output import REJECT_COLUMNS, CsvOutput, ParquetOutput, Progress, RowFormatter, reject_rows, sibling
from .predict import E2E, Classifier
from .predictor import Predictor, load_checked
from .ray_engine import PART_FORMATS
from .memo import VectorMemo
from .blocks import iter_chunks
from .reader import Chunk, InputFile, name_list, resolve_inputs

if TYPE_CHECKING:
    from embed.encoder import Embedder

ENGINES = ("local", "ray")
_FILES_SHOWN = 10
_OUTPUT_SUFFIXES = {".csv.gz": "csv", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class ScoreConfig:
    """How to score; the model's own settings (pooling, max length, batch size, ...) live on the Embedder."""

    text_col: str = "text"
    keep_cols: tuple[str, ...] | None = None  # None: every input column
    prefix: str = "pred_"  # for the added columns: label, proba_<class>, model, head
    label_col: str | None = None  # gold labels to report accuracy against; None: the head's own, if present
    rejects: str | Path | None = None  # None: OUT's name ending .rejects.csv, beside OUT
    chunk_rows: int = 4096
    engine: str = "local"  # or "ray": OUT is then a folder of part files (scoring.ray_engine)
    concurrency: int = 1  # Ray actors
    ray_address: str | None = None  # None: start a local Ray
    part_format: str = "parquet"  # Ray: the scored part files, "parquet" or "csv"
    actor_cpus: float | None = None  # Ray: CPUs each scoring actor reserves; None: 1, or 0.5 where readers need room
    resource_check: bool = True  # Ray: refuse, at plan time, actors that would leave no CPU for the read tasks
    stall_seconds: float = 300.0  # Ray: stop with a report when no chunk finishes for this long
    progress: bool = False
    review_below: float | None = None  # also write rows whose top probability is under this to the review file
    review: str | Path | None = None  # None: OUT's name ending .review.csv, beside OUT
    drift_check: bool = True  # compare a sample of the file's vectors with the head's training vectors (scoring/drift.py)
    fast: bool = True  # clean CSV/TSV/Parquet blocks through Arrow (scoring/blocks.py); False: every row by line


@dataclass
class ScoreSummary:
    """Row accounting for a whole run, an earlier interrupted part included: read = scored + rejected."""

    output: Path
    rejects: Path
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    truncated: int = 0
    resumed_chunks: int = 0  # chunks an earlier, interrupted run had finished
    rows_this_run: int = 0
    seconds: float = 0.0
    gold: GoldTally | None = None  # accuracy against the gold label column, when the inputs have one
    driver_cpu_seconds: float = 0.0  # CPU time of this process (with Ray: the driver's share only)
    files: list[dict] | None = None  # Ray: each input file's counts, from the workers' records
    nodes: list[str] | None = None  # Ray: the nodes that read or scored
    encoded: int | None = None  # Ray: distinct texts the workers had to encode (the rest came from caches)
    cleared: str | None = None  # Ray: what an earlier run left in the folder that was cleared first
    actor_cpus: float | None = None  # Ray: CPUs each scoring actor reserved
    sizing_note: str | None = None  # Ray: why the actors were sized as they were, when not the default
    review: Path | None = None  # the review file (rows under review_below), None when not asked for
    review_below: float | None = None
    rows_review: int = 0  # rows written to the review file (they are in the output too)
    drift: DriftResult | None = None  # the file-level drift check (None: switched off)

    @property
    def rows_per_second(self) -> float:
        """Rows read in this run per second (0 for a run that took no time)."""
        return self.rows_this_run / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """The summary as plain JSON values (``score --json``)."""
        out = {"output": str(self.output), "rejects": str(self.rejects), "rows_read": self.rows_read,
               "rows_scored": self.rows_scored, "rows_rejected": self.rows_rejected, "truncated": self.truncated,
               "resumed_chunks": self.resumed_chunks, "rows_this_run": self.rows_this_run, "seconds": self.seconds,
               "rows_per_second": self.rows_per_second}
        if self.files is not None:
            out.update({"files": self.files, "nodes": self.nodes, "encoded": self.encoded,
                        "actor_cpus": self.actor_cpus, "sizing_note": self.sizing_note})
        if self.review is not None:
            out.update({"review": str(self.review), "review_below": self.review_below, "rows_review": self.rows_review})
        if self.drift is not None:
            out["drift"] = self.drift.as_dict()
        if self.gold is not None:
            out["gold"] = {"column": self.gold.column, "labelled": self.gold.labelled, "accuracy": self.gold.accuracy(),
                           "macro_f1": self.gold.macro_f1(), "missing": self.gold.missing, "unknown": self.gold.unknown}
        return out

    def line(self) -> str:
        """The summary for a person: rows read, scored, truncated and rejected, rows/s; Ray and resume details."""
        text = (f"read {self.rows_read:,} rows: {self.rows_scored:,} scored ({self.truncated:,} truncated), "
                f"{self.rows_rejected:,} rejected -> {self.rejects}; {self.rows_per_second:,.0f} rows/s")
        if self.resumed_chunks:
            text += f" (resumed after {self.resumed_chunks:,} finished chunks)"
        if self.review is not None:
            text += (f"\n{self.rows_review:,} of {self.rows_scored:,} scored rows have a top probability under "
                     f"{self.review_below:g} -> {self.review} (they are in the output too)")
        if self.files is not None:
            text += (f"\n{len(self.nodes or [])} Ray node(s); {self.encoded:,} texts encoded; driver CPU "
                     f"{self.driver_cpu_seconds:.1f} s" + (f"; cleared {self.cleared} first" if self.cleared else "")
                     + (f"; {self.sizing_note}" if self.sizing_note else ""))
            for item in self.files[:_FILES_SHOWN]:
                text += (f"\n  {item['file']}: read {item['rows_read']:,} = {item['rows_scored']:,} scored + "
                         f"{item['rows_rejected']:,} rejected")
            if len(self.files) > _FILES_SHOWN:
                text += f"\n  ... {len(self.files) - _FILES_SHOWN:,} more files: see {self.output / 'manifest.json'}"
        if self.drift is not None:
            text += "\n" + self.drift.line()
        if self.gold is not None:
            text += "\n" + self.gold.line()
        return text


@dataclass
class Plan:
    """Everything decided before the first row is scored."""

    files: list[InputFile]  # every input, resolved once: format, columns, size, row estimate
    output: Path
    rejects: Path
    kept: list[str]
    columns: list[str]
    embedder: Embedder
    classifier: Classifier
    head_spec: tuple[str, str]  # ("e2e", run folder) or ("head", folder): how a Ray actor reloads it
    model_id: str
    head_id: str
    identity: str
    label_col: str | None = None  # the gold column scored against, None: no accuracy
    predictor: Predictor | None = None  # embedder + checked classifier: what the local engine calls per chunk
    review: Path | None = None  # where rows under config.review_below go (None: not asked for)
    review_below: float | None = None

    @property
    def paths(self) -> list[Path]:
        """The input files' paths, in order."""
        return [file.path for file in self.files]


def score_files(inputs: Iterable[str | Path] | str | Path, output: str | Path, model, head: str | Path,
                config: ScoreConfig = ScoreConfig()) -> ScoreSummary:
    """Score ``inputs`` (files, folders, globs) into ``output``; rerunning after a crash resumes.

    ``model`` is a model spec (alias, folder, run folder, hub id) or an ``Embedder``; ``head`` a head
    folder or ``"e2e"``. Raises DataError/ModelError/HeadError before any work when something is off.
    A write that fails (a full disk) raises DataError; the same command, rerun, resumes.
    """
    try:
        plan = prepare(inputs, output, model, head, config)
    except BaseException:
        if config.engine == "ray":
            from .ray_engine import release_early

            release_early()
        raise
    if config.engine == "ray":
        return _score_on_ray(plan, config)
    try:
        return _score_locally(plan, config)
    except OSError as exc:  # a full disk, a lost mount: the progress file still holds the last finished chunk
        raise DataError(
            f"cannot write {plan.output} or {plan.rejects} ({exc.strerror or exc}); free disk space and rerun the "
            f"same command: it resumes after the last finished chunk, and a file already at {plan.output} stays "
            "as it was until the run finishes") from exc


def _score_locally(plan: Plan, config: ScoreConfig) -> ScoreSummary:
    from tqdm.auto import tqdm

    started, cpu = time.perf_counter(), time.process_time()
    writer = _Writer(plan)
    state = writer.open()
    done = state["chunk"]
    summary = ScoreSummary(plan.output, plan.rejects, resumed_chunks=done + 1)
    sample = (Reservoir(DriftConfig.sample, seed=DriftConfig.seed)  # nothing sampled where nothing compares it
              if config.drift_check and missing_reference(plan.classifier, plan.head_spec[0] == E2E) is None else None)
    chunks = _sampled(iter_chunks(plan.files, config.text_col, config.chunk_rows, fast=config.fast), sample)
    with tqdm(total=_estimate_rows(plan.files) if config.progress else None, unit="row", unit_scale=True,
              desc="scoring", disable=None if config.progress else True) as bar:
        def pending() -> Iterator[Chunk]:
            for chunk in chunks:
                if chunk.index > done:
                    yield chunk
                else:
                    bar.update(chunk.rows_read)

        predictions = _local_predictions(pending(), plan)
        try:
            for chunk, proba, truncated in predictions:
                writer.write(chunk, proba, truncated, state)
                summary.rows_this_run += chunk.rows_read
                bar.update(chunk.rows_read)
        except BaseException:
            writer.close()  # the partial files stay: rerunning the command resumes from them
            raise
        finally:
            predictions.close()
        bar.total = bar.n
    writer.finish()
    for key, value in state["counts"].items():
        setattr(summary, key, value)
    summary.gold = writer.gold
    summary.review, summary.review_below = plan.review, plan.review_below
    summary.drift = drift_check(plan, sample.kept if sample else []) if config.drift_check else None
    summary.seconds = time.perf_counter() - started
    summary.driver_cpu_seconds = time.process_time() - cpu
    return summary


def _score_on_ray(plan: Plan, config: ScoreConfig) -> ScoreSummary:
    """Everything on Ray workers; this process plans, follows progress and checks the accounting."""
    from tqdm.auto import tqdm

    from .ray_engine import REJECTS, score_on_ray

    started, cpu = time.perf_counter(), time.process_time()
    with tqdm(unit="row", unit_scale=True, desc="scoring", disable=None if config.progress else True) as bar:
        done = score_on_ray(plan, config, formatter(plan), bar.update)
    summary = ScoreSummary(plan.output, plan.output / REJECTS, resumed_chunks=done["resumed_chunks"],
                           gold=done["gold"], files=done["files"], nodes=done["nodes"], encoded=done["encoded"],
                           cleared=done["cleared"], actor_cpus=done["actor_cpus"], sizing_note=done["sizing_note"])
    for key in ("rows_read", "rows_scored", "rows_rejected", "truncated"):
        setattr(summary, key, done[key])
    summary.rows_this_run = done["rows_read"] - done["resumed_rows"]
    if config.drift_check:
        summary.drift = _ray_drift(plan, done)
    summary.seconds = time.perf_counter() - started
    summary.driver_cpu_seconds = time.process_time() - cpu
    return summary


def _ray_drift(plan: Plan, done: dict) -> DriftResult:
    """The drift check of the sample the Ray workers sent back (see :class:`scoring.drift.KeyedSample`)."""
    why = missing_reference(plan.classifier, plan.head_spec[0] == E2E)
    if why is not None:
        return not_run(why)
    vectors = done["drift_vectors"]
    if not len(vectors) and done["resumed_chunks"]:
        return not_run("every chunk was scored by an earlier run, and the check samples the chunks a run scores")
    return domain_auc(plan.classifier.drift_reference_, vectors, DriftConfig())


def _sampled(chunks: Iterator[Chunk], sample: Reservoir | None) -> Iterator[Chunk]:
    """``chunks`` as they are, each one's texts offered to ``sample`` (those of finished chunks too, on a resume)."""
    for chunk in chunks:
        if sample is not None:  # an Arrow chunk's texts as the array: only the sampled ones become str
            array = getattr(chunk, "text_array", None)
            sample.add(chunk.texts if array is None else array)
        yield chunk


def drift_check(plan: Plan, texts: list[str]) -> DriftResult:
    """The drift check of ``texts`` (a sample of the scored file) against the head's reference vectors."""
    why = missing_reference(plan.classifier, plan.head_spec[0] == E2E)
    if why is not None:
        return not_run(why)
    vectors, _ = plan.embedder.embed(texts)  # every text was just scored: from the cache
    return domain_auc(plan.classifier.drift_reference_, vectors, DriftConfig())


def _local_predictions(chunks: Iterator[Chunk], plan: Plan):
    memo = VectorMemo(plan.embedder, plan.classifier)
    for chunk in chunks:
        text_array = getattr(chunk, "text_array", None)
        if text_array is not None:  # an Arrow chunk: its distinct texts found by Arrow, not row by row
            encoded = text_array.dictionary_encode()
            proba, truncated, _ = memo(None, encoded.dictionary.to_pylist(), encoded.indices.to_numpy())
        else:
            proba, truncated, _ = memo(chunk.texts)
        yield chunk, proba, truncated


# -- before any work -----------------------------------------------------------------------------
def prepare(inputs, output, model, head, config: ScoreConfig) -> Plan:
    """Check everything that can stop a run, load the classifier and hash the command's identity."""
    from embed.encoder import Embedder

    _check_config(config)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    output = Path(output)
    if config.engine == "ray":
        from .ray_engine import REJECTS, check_output_folder, require_ray

        check_output_folder(output, config.rejects)
        out_format, rejects = f"folder of {config.part_format}", output / REJECTS
    else:
        out_format = output_format(output)
        rejects = Path(config.rejects) if config.rejects is not None else default_rejects(output)
        if output_format(rejects) != "csv":
            raise DataError(f"{rejects}: the rejects file is CSV; name it .csv or .csv.gz")
    review = _review_path(config, output)
    files = resolve_inputs([str(item) for item in inputs], config.text_col)
    paths = [file.path for file in files]
    headers = {file.path: list(file.columns) for file in files}
    _check_paths(paths, output, rejects)
    if review is not None:
        _check_review(paths, output, rejects, review)
    kept = _kept_columns(paths, headers, config.keep_cols)
    if config.engine == "ray":
        from .ray_engine import plan_time_check

        require_ray(data=False)  # Ray Data itself is imported by the run (seconds saved on a refusal)
        plan_time_check(config)  # a plan the cluster cannot run is refused before the model loads
    embedder = model if isinstance(model, Embedder) else Embedder(str(model))
    encoder = embedder.load()
    checked = load_checked(head, embedder)
    classifier, head_spec, head_id, head_digest = checked.classifier, checked.spec, checked.head_id, checked.digest
    label_col = _gold_column(config.label_col, head_spec, classifier, paths, headers)
    added = added_columns(classifier.classes_, config.prefix)
    clash = [name for name in kept if name in added]
    if clash:
        raise DataError(
            f"input column(s) {', '.join(map(repr, clash))} clash with the columns score adds "
            f"({', '.join(added)}); pass --prefix (e.g. --prefix pred_) to name the added columns "
            "differently, or --keep-cols to leave the input column out")
    model_id = f"{encoder.description.get('model')}@{encoder.fingerprint[:12]}"
    identity = {
        "files": [[str(f.path.resolve()), f.size, f.mtime_ns] for f in files],
        "fingerprint": encoder.fingerprint, "head": head_digest, "columns": kept + added,
        "ids": [model_id, head_id], "text_col": config.text_col, "chunk_rows": config.chunk_rows,
        "output": [str(output.resolve()), out_format], "rejects": str(rejects.resolve()), "engine": config.engine,
        "label_col": label_col,
        **({} if review is None else {"review": [str(review.resolve()), config.review_below]}),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Plan(files, output, rejects, kept, kept + added, embedder, classifier, head_spec, model_id, head_id,
                digest, label_col, Predictor(embedder, checked), review, config.review_below)


def _review_path(config: ScoreConfig, output: Path) -> Path | None:
    """The review file for ``review_below`` (``OUT.review.csv`` beside OUT unless named); None when not asked for.

    A resumed run cuts the review file back to its last finished chunk as it does the output, so no row
    is written twice.
    """
    if config.review_below is None:
        if config.review is not None:
            raise DataError(f"a review file ({config.review}) was named but no threshold given; pass --review-below P "
                            "(e.g. 0.6) to write the rows whose top probability is under P to it")
        return None
    if isinstance(config.review_below, bool) or not isinstance(config.review_below, (int, float)) or not (
            0 < config.review_below <= 1):
        raise DataError(f"--review-below expects a probability above 0 and at most 1 (e.g. 0.6), got "
                        f"{config.review_below!r}")
    if config.engine == "ray":
        raise DataError("--review-below is written by the local engine only; drop --engine ray, or score with "
                        "--engine ray and filter the part files' pred_proba_* columns afterwards")
    review = Path(config.review) if config.review is not None else default_rejects(output).with_name(
        default_rejects(output).name[: -len(".rejects.csv")] + ".review.csv")
    if output_format(review) != "csv":
        raise DataError(f"{review}: the review file is CSV; name it .csv or .csv.gz")
    return review


def _check_review(paths: list[Path], output: Path, rejects: Path, review: Path) -> None:
    """DataError when the review file is an input, the output or the rejects file."""
    if review.resolve() in {p.resolve() for p in paths}:
        raise DataError(f"{review}: the review file is also an input; write it somewhere else")
    for path, what in ((output, "output"), (rejects, "rejects file")):
        if review.resolve() == path.resolve():
            raise DataError(f"{review}: the review file and the {what} are the same file; name another review file")


def trained_label_column(head_spec: tuple[str, str], classifier) -> str | None:
    """The label column the head (its ``train_report.json``) or the run (its config) was trained on."""
    kind, folder = head_spec
    try:
        if kind == E2E:
            return classifier.info["config"]["label_col"]
        from heads.base import REPORT_FILE

        return json.loads((Path(folder) / REPORT_FILE).read_text())["config"]["label_col"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a head saved by hand: no recorded column


def _gold_column(asked: str | None, head_spec, classifier, paths: list[Path], headers) -> str | None:
    """The column to report accuracy against: ``asked`` (every file must have it), else the trained one if present."""
    if asked is not None:
        for path in paths:
            if asked not in headers[path]:
                raise DataError(f"{path}: no label column {asked!r} to report accuracy against; columns found: "
                                f"{name_list(headers[path])}. Pass the gold column with --label-col, "
                                "or leave --label-col out to score without accuracy")
        return asked
    recorded = trained_label_column(head_spec, classifier)
    if recorded and any(recorded in headers[path] for path in paths):
        return recorded
    return None


def _check_config(config: ScoreConfig) -> None:
    if config.engine not in ENGINES:
        raise DataError(f"engine must be one of {', '.join(ENGINES)}, got {config.engine!r}")
    if not isinstance(config.chunk_rows, int) or config.chunk_rows < 1:
        raise DataError(f"chunk_rows must be a whole number of at least 1, got {config.chunk_rows!r}")
    if not isinstance(config.concurrency, int) or config.concurrency < 1:
        raise DataError(f"concurrency must be a whole number of at least 1, got {config.concurrency!r}")
    if config.part_format not in PART_FORMATS:
        raise DataError(f"part_format must be one of {', '.join(PART_FORMATS)}, got {config.part_format!r}")
    if config.actor_cpus is not None and (not isinstance(config.actor_cpus, (int, float)) or not config.actor_cpus > 0):
        raise DataError(f"actor_cpus must be a number above 0 (or None to size it), got {config.actor_cpus!r}")
    if not isinstance(config.stall_seconds, (int, float)) or not config.stall_seconds > 0:
        raise DataError(f"stall_seconds must be a number of seconds above 0, got {config.stall_seconds!r}")


def output_format(path: Path) -> str:
    """``csv`` or ``parquet`` from the output's name (.csv, .csv.gz, .parquet); raises DataError otherwise."""
    name = Path(path).name.lower()
    for suffix, kind in _OUTPUT_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    raise DataError(f"{path}: unknown output type; name the output .csv, .csv.gz or .parquet")


def default_rejects(output: Path) -> Path:
    """The rejects file beside ``output``: its name without the output suffix, plus ``.rejects.csv``."""
    name = output.name
    for suffix in _OUTPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(name + ".rejects.csv")


def added_columns(classes, prefix: str = "") -> list[str]:
    """The columns scoring adds, each after ``prefix``: ``label``, ``proba_CLASS`` per class, ``model``, ``head``."""
    return ([f"{prefix}label"] + [f"{prefix}proba_{c}" for c in np.asarray(classes).tolist()]
            + [f"{prefix}model", f"{prefix}head"])


def _check_paths(paths: list[Path], output: Path, rejects: Path) -> None:
    inputs = {p.resolve() for p in paths}
    for path, what in ((output, "output"), (rejects, "rejects file")):
        if path.resolve() in inputs:
            raise DataError(f"{path}: the {what} is also an input; write it somewhere else")
    if output.resolve() == rejects.resolve():
        raise DataError(f"{output}: the output and the rejects file are the same file; pass another --rejects")


def _kept_columns(paths: list[Path], headers: dict[Path, list[str]], keep_cols) -> list[str]:
    first, columns = paths[0], headers[paths[0]]
    if keep_cols is None:
        for path in paths[1:]:
            if headers[path] != columns:
                sets = [set(headers[p]) for p in paths]
                common = [c for c in columns if all(c in names for names in sets)]
                raise DataError(
                    f"{path}: columns {name_list(headers[path])} differ from {first}'s "
                    f"({name_list(columns)}); all inputs go to one table, so they need the same "
                    f"columns in the same order. Score them separately, or pass --keep-cols with columns "
                    f"all files have ({','.join(common) or 'none in common'})")
        return list(columns)
    keep = list(keep_cols)
    doubled = sorted(name for name, n in Counter(keep).items() if n > 1)
    if doubled:
        raise DataError(f"--keep-cols names {', '.join(map(repr, doubled))} more than once; name each column once")
    for path in paths:
        present = set(headers[path])
        missing = [c for c in keep if c not in present]
        if missing:
            raise DataError(f"{path}: no column(s) {name_list(missing)} for --keep-cols; columns "
                            f"found: {name_list(headers[path])}")
    return keep


def _estimate_rows(files: list[InputFile]) -> int | None:
    """Records to read, for the progress bar, from what resolving the inputs found; None when a file has no estimate."""
    if any(file.rows is None for file in files):
        return None
    return sum(file.rows for file in files)


# -- writing -------------------------------------------------------------------------------------
def formatter(plan: Plan) -> RowFormatter:
    """The plan's output columns as a picklable formatter (the Ray workers get a copy)."""
    return RowFormatter(plan.kept, plan.columns, np.asarray(plan.classifier.classes_).tolist(), plan.model_id,
                        plan.head_id)


class _Writer:
    """Appends finished chunks to the output and rejects files, and records each in the progress file."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.classes = np.asarray(plan.classifier.classes_)
        self.progress = Progress(sibling(plan.output, ".progress.json"), plan.identity)
        self.rejects = CsvOutput(plan.rejects, REJECT_COLUMNS, "rejects")
        self.parquet = output_format(plan.output) == "parquet"
        self.formatter = formatter(plan)
        self.out = (ParquetOutput(plan.output, self.formatter.empty_schema(plan.paths[0])) if self.parquet
                    else CsvOutput(plan.output, plan.columns, "output"))
        self.gold = GoldTally(plan.label_col, self.classes.tolist()) if plan.label_col else None
        self.review = None if plan.review is None else CsvOutput(plan.review, plan.columns, "review")
        self.parts = [self.out, self.rejects] + ([self.review] if self.review is not None else [])

    def open(self) -> dict:
        """Resume what the progress file records for this command, or start afresh; the state dict."""
        self.plan.output.parent.mkdir(parents=True, exist_ok=True)
        self.plan.rejects.parent.mkdir(parents=True, exist_ok=True)
        if self.review is not None:
            self.plan.review.parent.mkdir(parents=True, exist_ok=True)
        state = self.progress.load()
        if state is not None and all(part.resume(state) for part in self.parts):
            if self.gold is not None:
                self.gold = GoldTally.from_state(state["gold"], self.classes.tolist())
            return state
        for part in self.parts:
            part.discard()
            part.start()
        state = {"chunk": -1, "counts": {"rows_read": 0, "rows_scored": 0, "rows_rejected": 0, "truncated": 0}}
        if self.review is not None:
            state["counts"]["rows_review"] = 0
        if self.gold is not None:
            state["gold"] = self.gold.state()
        self._save(state)
        return state

    def _save(self, state: dict) -> None:
        for part in self.parts:
            state.update(part.state())
        state.pop("version", None)
        state.pop("identity", None)
        self.progress.save(state)

    def write(self, chunk: Chunk, proba: np.ndarray, truncated: np.ndarray, state: dict) -> None:
        picked = np.argmax(proba, axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
        if self.parquet:
            self.out.append(chunk.index, self.formatter.table(chunk, picked, proba))
        else:
            self._append(self.out, chunk, picked, proba)
        self.rejects.append(reject_rows(chunk))
        counts = state["counts"]
        if self.review is not None and len(proba):
            under = np.flatnonzero(proba.max(axis=1) < self.plan.review_below)
            if len(under):
                self._append(self.review, chunk, picked, proba, under)
            counts["rows_review"] += len(under)
        counts["rows_read"] += chunk.rows_read
        counts["rows_scored"] += chunk.rows_read - len(chunk.rejects)
        counts["rows_rejected"] += len(chunk.rejects)
        counts["truncated"] += int(np.count_nonzero(truncated))
        if self.gold is not None:
            self.gold.add(self.formatter.gold_cells(chunk, self.gold.column), picked)
            state["gold"] = self.gold.state()
        state["chunk"] = chunk.index
        self._save(state)

    def _append(self, out: CsvOutput, chunk: Chunk, picked: np.ndarray, proba: np.ndarray, take=None) -> None:
        """The chunk's rows (``take``: those) to a CSV output: column by column for an Arrow chunk, else row by row."""
        data = self.formatter.csv_lines(chunk, picked, proba, take)
        if data is not None:
            out.append_bytes(data)
            return
        rows = self.formatter.rows(chunk, picked, proba)
        out.append(rows if take is None else [rows[i] for i in take])

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def finish(self) -> None:
        for part in self.parts:
            part.finish()
        self.progress.remove()
