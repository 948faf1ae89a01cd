"""tweetheads command line: a thin click layer over the library (embed/, heads/, cache/, scoring/).

Library code raises; only this file turns exceptions into one-line messages and exit codes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cache import clear_store, default_cache_dir, list_stores
from embed.encoder import COMMIT_EVERY, POOLING_CHOICES, POOLINGS
from errors import TweetheadsError
from embed.finetune import OBJECTIVES, PAIRS, FinetuneConfig
from embed.backends import BACKENDS
from embed.models import PRECISIONS
from heads.base import SELECT_METRICS
from scoring.score import ENGINES, PART_FORMATS, ScoreConfig

_FT = FinetuneConfig()  # the reference card's recipe: every CLI default comes from here


def _user_errors() -> tuple[type[BaseException], ...]:
    """Every error the library raises on purpose derives from ``errors.TweetheadsError``; scikit-learn's
    NotFittedError is the one from outside (a head used before fit)."""
    errors: list[type[BaseException]] = [TweetheadsError]
    if "sklearn" in sys.modules:  # a command that never touched a head need not import it
        from sklearn.exceptions import NotFittedError

        errors.append(NotFittedError)
    return tuple(errors)


class _Group(click.Group):
    """Turns library exceptions into ``Error: ...`` and exit code 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except _user_errors() as exc:
            raise click.ClickException(str(exc)) from exc


def _quiet_transformers() -> None:
    """Errors only from transformers, and no hub progress bars: set where transformers reads them on
    import, so a command that never loads a model (a head on cached vectors) never imports it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (in process, e.g. a test): tell it directly
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()


cache_dir_option = click.option(
    "--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Embedding cache folder [default: $TWEETHEADS_CACHE_DIR or ~/.cache/tweetheads].")
text_col_option = click.option("--text-col", default="text", show_default=True, help="Column holding the tweet.")
label_col_option = click.option("--label-col", default="label", show_default=True, help="Column holding the label.")
max_rows_option = click.option("--max-train-rows", type=int, default=None,
                               help="Use only the first N training rows (short CPU runs).")


def _embed_options(f):
    f = click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                     help="Where vectors are computed (part of the cache fingerprint). auto: OpenVINO on a CPU "
                     "where it is installed (the fastest that held accuracy on the CPUs measured, in bf16 and fp32), "
                     "torch on a GPU.")(f)
    f = click.option("--precision", type=click.Choice(PRECISIONS), default="auto",
                     show_default=True, help="Inference precision (part of the cache fingerprint). auto: bf16 on a CPU "
                     "with bf16 units (about 3x fp32 there with AMX, a head within 0.1 point), fp16 on a GPU, else fp32.")(f)
    f = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1 or auto.")(f)
    f = click.option("--batch-size", type=int, default=64, show_default=True)(f)
    f = click.option("--max-length", type=int, default=None,
                     help="Max tokens per text [default: the model's own max_seq_length].")(f)
    f = click.option("--pooling", type=click.Choice(POOLING_CHOICES), default="auto", show_default=True,
                     help="auto: a run folder's own pooling (what finetune trained it with), else the CLS token "
                     "(the target model's pooling); cls; or mean of the tokens.")(f)
    return f


def _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir, progress=True):
    from embed.encoder import Embedder

    _quiet_transformers()
    return Embedder(model, pooling=pooling, max_length=max_length, batch_size=batch_size, device=device,
                    precision=precision, backend=backend, cache_dir=cache_dir or "default", progress=progress)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def cli():
    """Fine-tune a sentence encoder once, cache its CLS embeddings, train cheap swappable heads."""


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--eval-fraction", type=float, default=0.2)
@click.option("--seed", type=int, default=42)
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@text_col_option
@click.option("--group-duplicates", is_flag=True,
              help="Keep every copy of a normalized text on one side (an honest held-out split).")
def split(file, eval_fraction, seed, out_dir, text_col, group_duplicates):
    """Split FILE into OUT_DIR/train and OUT_DIR/eval, keeping every column."""
    from embed.split import SplitConfig, split_file

    result = split_file(file, out_dir, SplitConfig(eval_fraction=eval_fraction, seed=seed, text_col=text_col,
                                                   group_duplicates=group_duplicates))
    share = result.eval_in_train / result.eval_rows
    click.echo(f"train: {result.train_rows} rows -> {result.train_path}")
    click.echo(f"eval:  {result.eval_rows} rows -> {result.eval_path}")
    click.echo(f"eval texts also in train: {result.eval_in_train} of {result.eval_rows} ({share:.1%}) after "
               f"normalization, {result.eval_exact_in_train} exact copies"
               + ("" if group_duplicates else "; --group-duplicates keeps copies on one side"))


@cli.command()
@click.option("--train", "train_path", type=click.Path(path_type=Path), required=True)
@click.option("--eval", "eval_path", type=click.Path(path_type=Path), default=None)
@click.option("--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--model", default=_FT.model,
              help="Hub id, local folder, run folder, or an offline alias (minilm, mpnet).")
@text_col_option
@label_col_option
@max_rows_option
@click.option("--lr", type=float, default=_FT.lr)
@click.option("--train-batch-size", type=int, default=_FT.train_batch_size)
@click.option("--eval-batch-size", type=int, default=_FT.eval_batch_size)
@click.option("--seed", type=int, default=_FT.seed)
@click.option("--adam-beta1", type=float, default=_FT.adam_beta1)
@click.option("--adam-beta2", type=float, default=_FT.adam_beta2)
@click.option("--adam-epsilon", type=float, default=_FT.adam_epsilon)
@click.option("--weight-decay", type=float, default=_FT.weight_decay)
@click.option("--warmup-steps", type=int, default=_FT.warmup_steps)
@click.option("--warmup-ratio", type=float, default=_FT.warmup_ratio,
              help="Warm-up as a share of the steps (SetFit: 0.1); used when --warmup-steps is 0.")
@click.option("--epochs", type=float, default=_FT.epochs)
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (overrides --epochs).")
@click.option("--max-length", type=int, default=None, help="[default: the model's max_seq_length]")
@click.option("--dropout", type=float, default=_FT.dropout)
@click.option("--objective", type=click.Choice(OBJECTIVES), default=_FT.objective,
              help="classify: cross-entropy through the classification head (the card's). contrastive: "
              "SetFit's pair loss on the pooled vectors (same label: cosine 1, else 0), for a few labelled rows; "
              "the head then learns from the vectors without moving the encoder.")
@click.option("--pairs", type=click.Choice(PAIRS), default=_FT.pairs, show_default=True,
              help="With --objective contrastive: all, the mean over every in-batch pair; balanced, positive and "
              "negative pairs weigh half each (SetFit's sampler draws them one for one).")
@click.option("--pooling", type=click.Choice(POOLINGS), default=_FT.pooling,
              help="The vector the head (and a contrastive objective) trains on: cls, the first token (the "
              "card's), or mean of the tokens (SetFit's, and most sentence-transformers models'). Recorded in "
              "the run; embedding it with --pooling auto pools the same way.")
@click.option("--group-by-length/--no-group-by-length", default=_FT.group_by_length,
              help="Length-grouped batches within shuffled mega-batches (less padding), or batches drawn at "
              "random each epoch. Default: grouped for --objective classify, random for contrastive (its pairs "
              "are the batches; grouping would give a small sample the same batches every epoch).")
@click.option("--normalize/--no-normalize", default=_FT.normalize, help="Tweet normalization (@user, http).")
@click.option("--device", default=_FT.device)
@click.option("--precision", type=click.Choice(PRECISIONS), default=_FT.precision,
              show_default=True, help="Training precision: auto = bf16 autocast on a GPU (fp16 where bf16 is "
              "missing) and on a CPU with bf16 units (AMX, AVX512-BF16), else fp32. The run records what it "
              "trained in. The reference card trained in fp32.")
@click.option("--save-every", type=int, default=_FT.save_every,
              help="Checkpoint every N steps (also at an epoch's end when the last checkpoint is a minute old, "
              "at the last step and on Ctrl-C).")
@click.option("--log-every", type=click.IntRange(min=1), default=_FT.log_every,
              help="Record the training loss every N steps in metrics.json [default: about 50 points per run].")
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/checkpoint.")
@cache_dir_option
def finetune(train_path, eval_path, run_dir, resume, cache_dir, **options):
    """Fine-tune the encoder end to end (defaults are the reference card's recipe)."""
    from embed.finetune import fine_tune

    _quiet_transformers()
    config = FinetuneConfig(**options)
    metrics = fine_tune(train_path, run_dir, config, eval_path=eval_path, resume=resume, cache_dir=cache_dir)
    final = metrics.get("final") or {}
    summary = f"wrote {run_dir}: {metrics['steps']} steps"
    if "accuracy" in final:
        summary += f", eval accuracy {final['accuracy']:.4f}, eval loss {final['validation_loss']:.4f}"
    if metrics.get("examples_per_second"):
        summary += f", {metrics['examples_per_second']:.1f} training examples/s"
    click.echo(summary)


@cli.command()
@click.option("--model", default=_FT.model,
              help="Hub id, local folder, run folder, or an offline alias (minilm, mpnet).")
@click.option("--input", "input_path", type=click.Path(path_type=Path), required=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the vectors, in input row order, to this .npy file.")
@text_col_option
@click.option("--commit-every", type=click.IntRange(min=1), default=COMMIT_EVERY,
              help="Texts encoded between cache commits (a killed run loses at most this many).")
@_embed_options
@cache_dir_option
def embed(model, input_path, output, text_col, commit_every, pooling, max_length, batch_size, device, precision, backend,
          cache_dir):
    """Embed a file's texts through the cache (only new texts are encoded)."""
    import numpy as np

    from embed.data import load_texts

    table = load_texts(input_path, text_col)
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir)
    embedder.set_params(commit_every=commit_every)
    vectors, stats = embedder.embed(table.texts)
    if output is not None:
        from fileio import atomic_path

        output.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_path(output) as tmp, open(tmp, "wb") as handle:
                np.save(handle, vectors)  # a file object: np.save adds no .npy to the name
        except OSError as exc:
            raise click.ClickException(f"cannot write {output} ({exc}); free disk space or pick another --output "
                                       "(the vectors are cached: rerunning encodes nothing)") from exc
        click.echo(f"wrote {output} {vectors.shape}")
    click.echo(stats.summary())


def _head_params(pairs: tuple[str, ...]) -> dict:
    import json

    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


@cli.command("train-head")
@click.option("--head", "head_name", required=True, help="logistic, lightgbm or knn (see heads/).")
@click.option("--model", required=True, help="Run folder, model folder, hub id or alias (minilm, mpnet).")
@click.option("--train", "train_path", type=click.Path(path_type=Path), required=True)
@click.option("--eval", "eval_path", type=click.Path(path_type=Path), default=None)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@text_col_option
@label_col_option
@max_rows_option
@click.option("--select-on", type=click.Choice(["train", "eval"]), default="train",
              help="Pick C / k / rounds on a 10% holdout of train (honest eval figure) or on --eval.")
@click.option("--select-metric", type=click.Choice(SELECT_METRICS), default="accuracy",
              help="What picks C / k / rounds on the selection rows.")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none",
              help="balanced: weight each class by n_samples / (n_classes * n_in_class), for skewed labels.")
@click.option("--param", "params", multiple=True, help="Head parameter NAME=VALUE (repeatable), e.g. k=15.")
@_embed_options
@cache_dir_option
def train_head(head_name, model, train_path, eval_path, out_dir, text_col, label_col, max_train_rows, select_on,
               select_metric, class_weight, params, pooling, max_length, batch_size, device, precision, backend, cache_dir):
    """Fit a head on cached embeddings of TRAIN, save it to OUT, report on EVAL."""
    from heads import get_head
    from comparison.train_head import HeadConfig, fit_head

    get_head(head_name)  # an unknown head fails before any embedding
    config = HeadConfig(head=head_name, params=_head_params(params), text_col=text_col, label_col=label_col,
                        max_train_rows=max_train_rows, select_on=select_on, select_metric=select_metric,
                        class_weight=None if class_weight == "none" else class_weight)
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir)
    report = fit_head(embedder, train_path, out_dir, config, eval_path=eval_path)
    click.echo(report.summary())
    click.echo(f"saved {out_dir}")


@cli.command()
@click.option("--model", "run_dir", required=True, type=click.Path(path_type=Path),
              help="The run folder written by `finetune` (its end-to-end model is compared too).")
@click.option("--test", "test_path", required=True, type=click.Path(path_type=Path))
@click.argument("head_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--train", "train_path", type=click.Path(path_type=Path), default=None,
              help="Training file, to tell novel test rows apart [default: the one recorded in the run].")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write report.md, results.json and PNG plots here.")
@click.option("--train-sizes", default=None,
              help="Also refit every head on stratified samples of TRAIN of these sizes, e.g. 32,128,512,2048,all: "
                   "accuracy per labelled tweet (label_curve.png).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="Samples per --train-sizes size.")
@text_col_option
@label_col_option
@max_rows_option
@_embed_options
@cache_dir_option
def compare(run_dir, test_path, head_dirs, train_path, report_dir, train_sizes, repeats, text_col, label_col,
            max_train_rows, pooling, max_length, batch_size, device, precision, backend, cache_dir):
    """Compare the end-to-end model and each HEAD_DIR on the same TEST rows (all and novel)."""
    from comparison.compare import CompareConfig
    from comparison.compare import compare as run_compare
    from comparison.label_curve import curve_table, parse_sizes
    from comparison.report import table

    sizes = parse_sizes(train_sizes) if train_sizes else ()
    embedder = _embedder(str(run_dir), pooling, max_length, batch_size, device, precision, backend, cache_dir)
    results = run_compare(embedder, run_dir, test_path, list(head_dirs), report_dir, train_path,
                          CompareConfig(text_col=text_col, label_col=label_col, max_train_rows=max_train_rows,
                                        train_sizes=sizes, repeats=repeats))
    click.echo(f"{results['rows']} test rows, {results['novel_rows']} novel")
    for subset in ("all", "novel"):
        click.echo(f"\n{subset} rows:")
        click.echo("\n".join(table(results, subset)))
    if "label_curve" in results:
        click.echo("\naccuracy per labelled tweet (all rows; mean and min-max over repeats):")
        click.echo("\n".join(curve_table(results["label_curve"], "all")))
    if report_dir is not None:
        click.echo(f"\nwrote {report_dir}/report.md, results.json, " + ", ".join(results.get("plots", [])))


@cli.group(cls=_Group)
def cache():
    """Inspect or clear the embedding cache."""


@cache.command("info")
@cache_dir_option
def cache_info(cache_dir):
    """List stores: fingerprint, model, vectors, size."""
    from embed.backends import EXPORTS
    from heads.base import backend_of

    root = Path(cache_dir or default_cache_dir())
    exports = sorted((root / EXPORTS).glob("openvino-*/model.xml"))
    if exports:
        size = sum(p.stat().st_size for d in exports for p in d.parent.iterdir() if p.is_file())
        click.echo(f"{EXPORTS}/  {len(exports)} OpenVINO model(s)  {size / 2**20:.1f} MiB  (converted once per model)")
    failed = sorted((root / EXPORTS).glob("openvino-*.failed.json"))
    if failed:
        click.echo(f"{EXPORTS}/  {len(failed)} model(s) OpenVINO could not convert: torch encodes them "
                   f"(cache clear all to try again)")
    stores = list_stores(root)
    if not stores:
        click.echo(f"no cache stores under {root}")
        return
    for info in stores:
        desc = info.description
        click.echo(f"{info.path.name}  {desc.get('model', '?')} ({desc.get('pooling', '?')}, "
                   f"{backend_of(desc)} {desc.get('precision', '?')}, dim {desc.get('dim', '?')})  {info.count} vectors  "
                   f"{info.bytes / 2**20:.1f} MiB")


@cache.command("clear")
@click.argument("store")
@cache_dir_option
def cache_clear(store, cache_dir):
    """Remove the store whose fingerprint starts with STORE (``all``: every store and the OpenVINO exports)."""
    import shutil

    from embed.backends import EXPORTS

    root = Path(cache_dir or default_cache_dir())
    if store == "all" and (root / EXPORTS).is_dir():
        shutil.rmtree(root / EXPORTS)
        click.echo(f"removed {root / EXPORTS}")
    for path in clear_store(root, store):
        click.echo(f"removed {path}")


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", required=True, help="Model the head was trained on: alias (minilm, mpnet), folder, "
                                             "run folder or hub id.")
@click.option("--head", required=True, help="Head folder (written by a head's save), or e2e: the run's own "
                                            "classifier (--model must then be the run folder).")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Output file: .csv, .csv.gz or .parquet (--engine ray: a folder of part files).")
@text_col_option
@click.option("--keep-cols", default=None,
              help="Comma-separated input columns to write, in this order [default: all, in input order].")
@click.option("--prefix", default=ScoreConfig.prefix,
              help="Prefix for the added columns: pred_label, pred_proba_<class>, pred_model, pred_head "
                   "('' gives label, proba_<class>, ...).")
@click.option("--label-col", default=None,
              help="Gold label column: the summary adds accuracy and macro-F1 against it [default: the column "
                   "the head or run was trained on, when the inputs have it].")
@click.option("--rejects", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Rejected rows (file,line,reason,raw) [default: OUT's name ending .rejects.csv].")
@click.option("--chunk-rows", type=int, default=4096, help="Records per chunk (the unit of resume).")
@click.option("--engine", type=click.Choice(ENGINES), default=ScoreConfig.engine,
              help="ray: Ray workers read, embed, classify and write part files into the --output folder "
                   "(needs tweetheads[ray]).")
@click.option("--ray-address", default=None, help="Join this Ray cluster [default: start a local Ray].")
@click.option("--concurrency", type=int, default=1, help="Ray actors, one model copy (and GPU, if any) each.")
@click.option("--part-format", type=click.Choice(PART_FORMATS), default=ScoreConfig.part_format,
              help="Ray: the scored part files' format.")
@click.option("--actor-cpus", type=float, default=ScoreConfig.actor_cpus,
              help="Ray: CPUs each scoring actor reserves (readers take 0.5 each).")
@_embed_options
@cache_dir_option
def score(inputs, model, head, output, text_col, keep_cols, prefix, label_col, rejects, chunk_rows, engine,
          ray_address, concurrency, part_format, actor_cpus, pooling, max_length, batch_size, device, precision, backend,
          cache_dir):
    """Label INPUTS (files, folders, globs; CSV/TSV/JSONL/Parquet, optionally .gz) into one output file.

    Writes every input column, then pred_label, pred_proba_<class> per class, pred_model and pred_head.
    When the inputs have the gold label column, the summary also gives accuracy and macro-F1 against
    it. Rows that cannot be scored go to the rejects file with their line and reason; read = scored +
    rejected. Memory stays bounded: the input is read and written chunk by chunk. If a run stops
    (crash, kill, Ctrl-C), rerunning the same command resumes after the last finished chunk and writes
    the same rows as an uninterrupted run. With --engine ray, Ray workers do the reading, scoring and
    writing: OUT is a folder (scored/ and rejects/ part files, in input order, and manifest.json with
    each file's counts). The head must come from --model with the same --pooling, --max-length and
    --precision; a mismatch stops before any work.
    """
    from scoring.score import score_files

    keep = None if keep_cols is None else tuple(c.strip() for c in keep_cols.split(",") if c.strip())
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir, progress=False)
    config = ScoreConfig(text_col=text_col, keep_cols=keep, prefix=prefix, label_col=label_col, rejects=rejects,
                         chunk_rows=chunk_rows, engine=engine, concurrency=concurrency, ray_address=ray_address,
                         part_format=part_format, actor_cpus=actor_cpus, progress=True)
    summary = score_files(list(inputs), output, embedder, head, config)
    click.echo(f"wrote {summary.output}")
    click.echo(summary.line())


def _predict_texts(texts: tuple[str, ...], input_path: Path | None, text_col: str) -> tuple[list[str], list[str]]:
    """The texts to classify and where each came from (for an error naming it): arguments, ``-`` (stdin
    lines) or a file's ``text_col``."""
    if input_path is not None:
        if texts:
            raise click.UsageError("pass texts as arguments or --input FILE, not both")
        from embed.data import load_texts

        table = load_texts(input_path, text_col)  # names the rows of empty cells
        return table.texts, [f"{input_path} data row {i + 1}" for i in range(len(table.texts))]
    if not texts:
        raise click.UsageError("give texts to classify as arguments, - to read one per line from stdin, "
                               "or --input FILE")
    out, where = [], []
    for n, text in enumerate(texts, 1):
        if text == "-":
            lines = sys.stdin.read().splitlines()
            out += lines
            where += [f"stdin line {i}" for i in range(1, len(lines) + 1)]
        else:
            out.append(text)
            where.append(f"argument {n}")
    for text, place in zip(out, where):
        if not text.strip():
            raise click.ClickException(f"{place} is empty: there is nothing to classify; remove it or give it a text")
    if not out:
        raise click.ClickException("no texts on stdin: give one text per line")
    return out, where


def _print_table(texts: list[str], labels, proba, classes) -> None:
    import shutil

    width = shutil.get_terminal_size((100, 20)).columns
    label_w = max([len("label")] + [len(str(c)) for c in classes])
    room = max(20, width - label_w - 10)
    click.echo(f"{'label':<{label_w}}  {'proba':>5}  text")
    for text, label, row in zip(texts, labels, proba):
        shown = " ".join(text.split())
        shown = shown if len(shown) <= room else shown[: room - 1] + "…"
        click.echo(f"{str(label):<{label_w}}  {row.max():5.3f}  {shown}")


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--model", required=True, help="Alias (minilm, mpnet), hub id, model folder or run folder.")
@click.option("--head", default=None, help="Head folder, or e2e for a run's own classifier [default: e2e when "
                                           "--model is a run folder].")
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the texts from this CSV/TSV/JSONL/Parquet file's --text-col (for big files use score).")
@text_col_option
@click.option("--json/--table", "as_json", default=None,
              help="JSONL, one {text, label, proba, truncated} per text, or a table [default: a table on a "
                   "terminal, JSONL when piped].")
@_embed_options
@cache_dir_option
def predict(texts, model, head, input_path, text_col, as_json, pooling, max_length, batch_size, device, precision,
            backend, cache_dir):
    """Classify TEXTS (arguments; - reads one per line from stdin) with a head on its model.

    Vectors come from the embedding cache where a text was seen before. A head trained on another
    model (or with other settings) is refused, as score refuses it.
    """
    import json

    from scoring.predictor import Predictor

    texts, _ = _predict_texts(texts, input_path, text_col)
    _quiet_transformers()
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir, progress=False)
    predictor = Predictor.load(embedder, head)
    proba, truncated = predictor.predict_details(texts)
    classes = predictor.classes_
    labels = classes[proba.argmax(axis=1)]
    if as_json is None:
        as_json = not sys.stdout.isatty()
    if not as_json:
        _print_table(texts, labels, proba, classes)
        return
    names = classes.tolist()
    for text, label, row, cut in zip(texts, labels.tolist(), proba, truncated.tolist()):
        click.echo(json.dumps({"text": text, "label": label, "proba": dict(zip(names, row.tolist())),
                               "truncated": cut}, ensure_ascii=False))


def main() -> None:
    cli(prog_name="tweetheads")


if __name__ == "__main__":
    sys.exit(main())
