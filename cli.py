"""tweetheads command line: a thin click layer over the library (embed/, heads/, cache/, scoring/).

Library code raises; only this file turns exceptions into one-line messages and exit codes.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cache import default_cache_dir, list_stores
from embed.encoder import COMMIT_EVERY, POOLING_CHOICES, POOLINGS
from errors import TweetheadsError
from embed.finetune import OBJECTIVES, PAIRS, RECIPES, FinetuneConfig
from embed.backends import BACKENDS
from embed.models import PRECISIONS
from heads.base import SELECT_METRICS
from scoring.score import ENGINES, PART_FORMATS, ScoreConfig
from serving.config import ServeConfig

_FT = FinetuneConfig()  # the reference card's recipe: every CLI default comes from here
_SERVE = ServeConfig()  # serve's defaults


def _user_errors() -> tuple[type[BaseException], ...]:
    """Every error the library raises on purpose derives from ``errors.TweetheadsError``; scikit-learn's
    NotFittedError is the one from outside (a head used before fit)."""
    errors: list[type[BaseException]] = [TweetheadsError]
    if "sklearn" in sys.modules:  # a command that never touched a head need not import it
        from sklearn.exceptions import NotFittedError

        errors.append(NotFittedError)
    return tuple(errors)


INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C (128 + SIGINT)


class _Group(click.Group):
    """Turns library exceptions into ``Error: ...`` and exit code 1, never a traceback; Ctrl-C exits 130."""

    def invoke(self, ctx):
        from embed.finetune import Interrupted

        try:
            return super().invoke(ctx)
        except Interrupted as exc:  # finetune saved a checkpoint first: its message says how to resume
            click.echo(f"Interrupted: {exc}", err=True)
            ctx.exit(INTERRUPTED)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(INTERRUPTED)
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
    f = click.option("--batch-size", type=int, default=64, show_default=True,
                     help="Texts per encoder call (sorted by length, so little padding).")(f)
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


# -- the conventions every command shares ------------------------------------------------------------
def _renamed(name: str, *old: str, required: bool = False, type=None, missing: str | None = None):
    """Hidden old spellings (``old``) of the option whose parameter is ``name``: a command line written
    against them keeps working. ``required`` is checked here, since either spelling may give the value."""
    import functools

    def decorate(f):
        keys = [f"_old_{name}_{i}" for i in range(len(old))]

        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            for key, flag in zip(keys, old):
                value = kwargs.pop(key)
                if value is None:
                    continue
                if kwargs.get(name) not in (None, value):
                    raise click.UsageError(f"{flag} is the old spelling of --{name.replace('_', '-')}; give one of them")
                kwargs[name] = value
            if required and kwargs.get(name) is None:
                raise click.UsageError(missing or f"Missing option '--{name.replace('_', '-')}'")
            return f(*args, **kwargs)

        for key, flag in zip(keys, old):
            wrapper = click.option(flag, key, type=type, default=None, hidden=True)(wrapper)
        return wrapper

    return decorate


def _output_option(*old: str, required: bool = True, folder: bool = False, help: str):
    """``-o/--output`` (a file, or a folder with ``folder``), with the command's old spelling(s) hidden."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)

    def decorate(f):
        f = _renamed("output", *old, required=required, type=kind, missing="Missing option '-o' / '--output'")(f)
        return click.option("-o", "--output", "output", type=kind, default=None, help=help)(f)

    return decorate


def _summary_options(f):
    """``--json`` (one object on stdout a script can parse, instead of the prose summary) and ``-q/--quiet``."""
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary (errors still go to stderr).")(f)
    return click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")(f)


def _report(as_json: bool, quiet: bool, summary: dict, lines) -> None:
    """The end of every command: the summary as JSON, or its prose ``lines`` unless quiet."""
    if as_json:
        import json

        click.echo(json.dumps(summary, default=str))
    elif not quiet:
        for line in [lines] if isinstance(lines, str) else lines:
            click.echo(line)


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("tweetheads")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(_version(), "-V", "--version", message="tweetheads %(version)s")
def cli():
    """Fine-tune a sentence encoder once, cache its CLS embeddings, train cheap swappable heads."""


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--eval-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              help="Share of the rows that go to eval.")
@click.option("--seed", type=int, default=42, help="Seed of the shuffle (42 with 0.2 gives the card's 11,096 / 2,775 "
                                                   "GOP rows).")
@_output_option("--out-dir", folder=True, help="Folder for train.EXT and eval.EXT (EXT: FILE's own format).")
@text_col_option
@click.option("--stratify", metavar="LABEL_COL", default=None,
              help="Keep each label's share of this column the same on both sides.")
@click.option("--group-duplicates", is_flag=True,
              help="Keep every copy of a normalized text on one side (an honest held-out split).")
@_summary_options
def split(file, eval_fraction, seed, output, text_col, stratify, group_duplicates, as_json, quiet):
    """Split FILE (CSV/TSV/JSONL/Parquet) into OUTPUT/train and OUTPUT/eval, keeping every column."""
    from embed.split import SplitConfig, split_file

    result = split_file(file, output, SplitConfig(eval_fraction=eval_fraction, seed=seed, text_col=text_col,
                                                  group_duplicates=group_duplicates, stratify=stratify))
    share = result.eval_in_train / result.eval_rows
    _report(as_json, quiet, {
        "train": str(result.train_path), "eval": str(result.eval_path), "train_rows": result.train_rows,
        "eval_rows": result.eval_rows, "eval_in_train": result.eval_in_train,
        "eval_exact_in_train": result.eval_exact_in_train, "stratify": stratify, "group_duplicates": group_duplicates,
    }, [f"train: {result.train_rows} rows -> {result.train_path}",
        f"eval:  {result.eval_rows} rows -> {result.eval_path}",
        f"eval texts also in train: {result.eval_in_train} of {result.eval_rows} ({share:.1%}) after "
        f"normalization, {result.eval_exact_in_train} exact copies"
        + ("" if group_duplicates else "; --group-duplicates keeps copies on one side")])


@cli.command()
@click.option("--train", "train_path", type=click.Path(path_type=Path), required=True,
              help="Labelled training file (CSV/TSV/JSONL/Parquet).")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path), default=None,
              help="Labelled eval file: validation loss and accuracy after every epoch.")
@_output_option("--out", folder=True, help="The run folder to write (encoder, classifier, metrics, model card).")
@click.option("--model", default=_FT.model,
              help="Hub id, local folder, run folder, or an offline alias (minilm, mpnet).")
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), default="card",
              help="Preset defaults: card, the reference card's (lr 1e-6, batch 8, 20 epochs); setfit, SetFit's "
              "recipe for a few labels (--objective contrastive --pooling mean --train-batch-size 32 --epochs 40 "
              "--lr 2e-5). Options given explicitly win; the run records the recipe.")
@text_col_option
@label_col_option
@max_rows_option
@click.option("--lr", type=float, default=_FT.lr, help="Peak learning rate (Adam).")
@click.option("--train-batch-size", type=int, default=_FT.train_batch_size, help="Training examples per step.")
@click.option("--eval-batch-size", type=int, default=_FT.eval_batch_size, help="Examples per eval batch.")
@click.option("--seed", type=int, default=_FT.seed, help="Seed of the classifier's init, dropout and batch order.")
@click.option("--adam-beta1", type=float, default=_FT.adam_beta1, help="Adam's beta1.")
@click.option("--adam-beta2", type=float, default=_FT.adam_beta2, help="Adam's beta2.")
@click.option("--adam-epsilon", type=float, default=_FT.adam_epsilon, help="Adam's epsilon.")
@click.option("--weight-decay", type=float, default=_FT.weight_decay, help="Decoupled weight decay (AdamW when > 0).")
@click.option("--warmup-steps", type=int, default=_FT.warmup_steps, help="Linear warm-up steps before the linear decay.")
@click.option("--warmup-ratio", type=float, default=_FT.warmup_ratio,
              help="Warm-up as a share of the steps (SetFit: 0.1); used when --warmup-steps is 0.")
@click.option("--epochs", type=float, default=_FT.epochs, help="Passes over the training rows (a fraction is allowed).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many steps (overrides --epochs).")
@click.option("--max-length", type=int, default=None, help="Max tokens per text [default: the model's max_seq_length].")
@click.option("--dropout", type=float, default=_FT.dropout, help="Dropout before the classifier (the card's 0.2).")
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
@click.option("--device", default=_FT.device, help="cpu, cuda, cuda:1 or auto (a GPU when torch sees one).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_FT.precision,
              show_default=True, help="Training precision: auto = bf16 autocast on a GPU (fp16 where bf16 is "
              "missing) and on a CPU with bf16 units (AMX, AVX512-BF16), else fp32. The run records what it "
              "trained in. The reference card trained in fp32.")
@click.option("--save-every", type=int, default=_FT.save_every,
              help="Checkpoint every N steps (also at an epoch's end when the last checkpoint is a minute old, "
              "at the last step and on Ctrl-C).")
@click.option("--log-every", type=click.IntRange(min=1), default=_FT.log_every,
              help="Record the training loss every N steps in metrics.json [default: about 50 points per run].")
@click.option("--calibrate", type=click.Choice(["temperature", "none"]), default=_FT.calibrate,
              help="temperature: fit a temperature on the final model's probabilities of the --eval rows (its "
              "validation split) and apply it to the end-to-end probabilities everywhere (score, predict, serve, "
              "compare); the most probable class, so accuracy, is unchanged. Needs --eval. none: the softmax as trained.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/checkpoint (the same command plus --resume).")
@cache_dir_option
@_summary_options
@click.pass_context
def finetune(ctx, train_path, eval_path, output, recipe, resume, cache_dir, as_json, quiet, **options):
    """Fine-tune the encoder end to end (defaults: the reference card's recipe, or --recipe)."""
    from click.core import ParameterSource

    from embed.finetune import fine_tune, recipe_config
    from embed.runs import read_run_info

    _quiet_transformers()
    given = {name: value for name, value in options.items()
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    config = recipe_config(recipe, **given, progress=not quiet)
    metrics = fine_tune(train_path, output, config, eval_path=eval_path, resume=resume, cache_dir=cache_dir)
    final = metrics.get("final") or {}
    summary = f"wrote {output}: {metrics['steps']} steps"
    if "accuracy" in final:
        summary += f", eval accuracy {final['accuracy']:.4f}, eval loss {final['validation_loss']:.4f}"
    if metrics.get("examples_per_second"):
        summary += f", {metrics['examples_per_second']:.1f} training examples/s"
    calibration = read_run_info(output).get("calibration") or {}
    if calibration.get("why"):
        summary += f"; end-to-end probabilities not calibrated: {calibration['why']}"
    elif calibration.get("method") == "temperature":
        summary += (f"; end-to-end probabilities calibrated by temperature {calibration['temperature']:.3f} "
                    f"fitted on the {calibration['rows']} eval rows")
    _report(as_json, quiet, {"run": str(output), "recipe": recipe, "steps": metrics["steps"],
                             "final": final, "examples_per_second": metrics.get("examples_per_second"),
                             "train_seconds": metrics.get("train_seconds"), "calibration": calibration}, summary)


@cli.command()
@click.option("--model", default=_FT.model,
              help="Hub id, local folder, run folder, or an offline alias (minilm, mpnet).")
@click.argument("input_path", metavar="FILE", required=False, type=click.Path(path_type=Path))
@_renamed("input_path", "--input", required=True, type=click.Path(path_type=Path), missing="Missing argument 'FILE'")
@_output_option(required=False, help="Also write the vectors, in FILE's row order, to this .npy file.")
@text_col_option
@click.option("--commit-every", type=click.IntRange(min=1), default=COMMIT_EVERY,
              help="Texts encoded between cache commits (a killed run loses at most this many).")
@_embed_options
@cache_dir_option
@_summary_options
def embed(model, input_path, output, text_col, commit_every, pooling, max_length, batch_size, device, precision, backend,
          cache_dir, as_json, quiet):
    """Embed FILE's texts through the cache (only texts it has not seen are encoded)."""
    import numpy as np

    from embed.data import load_texts

    table = load_texts(input_path, text_col)
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir,
                         progress=not quiet)
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
    encoder = embedder.load()
    _report(as_json, quiet, {"input": str(input_path), "output": None if output is None else str(output),
                             "shape": list(vectors.shape), "fingerprint": encoder.fingerprint,
                             "model": encoder.description.get("model"), "backend": encoder.backend,
                             "precision": encoder.precision, "texts": stats.texts, "unique": stats.unique,
                             "hits": stats.hits, "encoded": stats.encoded, "truncated": stats.truncated,
                             "seconds": stats.seconds},
            ([f"wrote {output} {vectors.shape}"] if output is not None else []) + [stats.summary()])


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
@click.option("--train", "train_path", type=click.Path(path_type=Path), required=True,
              help="Labelled training file; its texts are embedded through the cache.")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path), default=None,
              help="Labelled eval file: the summary reports accuracy and macro-F1 on it.")
@_output_option("--out", folder=True, help="The head folder to write (head.json, its safe files, train_report.json).")
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
@click.option("--calibrate", type=click.Choice(["temperature", "none"]), default="temperature",
              help="temperature: fit a temperature on the rows that chose C / k / rounds (the 10% holdout, or --eval "
                   "with --select-on eval), saved in head.json and applied to every probability; labels and accuracy "
                   "are unchanged. none: the head's own probabilities.")
@click.option("--drift-reference/--no-drift-reference", default=True, show_default=True,
              help="Keep 1,000 training vectors (float16, not texts) in the head for the drift check score runs on "
                   "every file; --no-drift-reference leaves them out (and the check).")
@click.option("--probe-from-train", is_flag=True,
              help="Keep the first 64 training texts as the head's portability probe (saved verbatim in head.json) "
              "instead of the 64 texts shipped with tweetheads (the default: the head holds no training text).")
@_embed_options
@cache_dir_option
@_summary_options
def train_head(head_name, model, train_path, eval_path, output, text_col, label_col, max_train_rows, select_on,
               select_metric, class_weight, params, calibrate, drift_reference, probe_from_train, pooling, max_length,
               batch_size, device, precision, backend, cache_dir, as_json, quiet):
    """Fit a head on cached embeddings of TRAIN, save it to OUTPUT, report on EVAL."""
    from heads import get_head
    from comparison.train_head import HeadConfig, fit_head

    get_head(head_name)  # an unknown head fails before any embedding
    config = HeadConfig(head=head_name, params=_head_params(params), text_col=text_col, label_col=label_col,
                        max_train_rows=max_train_rows, select_on=select_on, select_metric=select_metric,
                        class_weight=None if class_weight == "none" else class_weight, probe_from_train=probe_from_train,
                        calibrate=calibrate, drift_reference=drift_reference)
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir,
                         progress=not quiet)
    report = fit_head(embedder, train_path, output, config, eval_path=eval_path)
    from dataclasses import asdict

    _report(as_json, quiet, asdict(report), [report.summary(), f"saved {output}"])


@cli.command()
@click.option("--model", required=True,
              help="Alias (minilm), hub id, sentence-transformers folder, or a run folder written by `finetune` "
                   "(then its end-to-end model is compared too).")
@click.option("--test", "test_path", required=True, type=click.Path(path_type=Path),
              help="Labelled test file: every method is scored on the same rows (all, and novel: not in --train).")
@click.argument("head_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--train", "train_path", type=click.Path(path_type=Path), default=None,
              help="The heads' training file, to tell novel test rows apart and refit for --train-sizes "
                   "[default: the one recorded in a run folder; required for any other --model].")
@click.option("--reference", "references", multiple=True, metavar="NAME=ACCURACY",
              help="A quoted accuracy drawn beside the measured rows, repeatable; `card` is the reference card's "
                   "0.7146 on the GOP data. None by default.")
@_output_option("--report-dir", required=False, folder=True,
                help="Write report.md, results.json and PNG plots to this folder.")
@click.option("--train-sizes", default=None,
              help="Also refit every head on stratified samples of TRAIN of these sizes, e.g. 32,128,512,2048,all: "
                   "accuracy per labelled tweet (label_curve.png).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, help="Samples per --train-sizes size.")
@text_col_option
@label_col_option
@max_rows_option
@_embed_options
@cache_dir_option
@_summary_options
def compare(model, test_path, head_dirs, train_path, references, output, train_sizes, repeats, text_col,
            label_col, max_train_rows, pooling, max_length, batch_size, device, precision, backend, cache_dir, as_json,
            quiet):
    """Compare each HEAD_DIR (and a run's end-to-end model) on the same TEST rows (all and novel)."""
    from comparison.compare import CompareConfig, parse_reference
    from comparison.compare import compare as run_compare
    from comparison.label_curve import curve_table, parse_sizes
    from comparison.report import probability_table, summary, table

    sizes = parse_sizes(train_sizes) if train_sizes else ()
    quoted = tuple(dict.fromkeys(parse_reference(r) for r in references))
    report_dir = output
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir,
                         progress=not quiet)
    results = run_compare(embedder, test_path, list(head_dirs), report_dir, train_path,
                          CompareConfig(text_col=text_col, label_col=label_col, max_train_rows=max_train_rows,
                                        train_sizes=sizes, repeats=repeats, references=quoted))
    lines = list(summary(results))
    for subset in ("all", "novel"):
        lines += [f"\n{subset} rows:", *table(results, subset)]
    for subset in ("all", "novel"):
        lines += [f"\n{subset} rows, probabilities (ECE: {results['probability_definitions']['ece']}):",
                  *probability_table(results, subset)]
    if "label_curve" in results:
        lines += ["\naccuracy per labelled tweet (all rows; mean and min-max over repeats):",
                  *curve_table(results["label_curve"], "all")]
    if report_dir is not None:
        lines.append(f"\nwrote {report_dir}/report.md, results.json, " + ", ".join(results.get("plots", [])))
    _report(as_json, quiet, results | {"report_dir": None if report_dir is None else str(report_dir)}, lines)


@cli.group(cls=_Group)
def cache():
    """Inspect or clear the embedding cache."""


def _store_line(info) -> str:
    from heads.base import backend_of

    desc = info.description
    return (f"{info.path.name}  {desc.get('model', '?')} ({desc.get('pooling', '?')}, {backend_of(desc)} "
            f"{desc.get('precision', '?')}, dim {desc.get('dim', '?')})  {info.count} vectors  {info.bytes / 2**20:.1f} MiB")


def _store_record(info) -> dict:
    return {"store": info.path.name, "path": str(info.path), "fingerprint": info.fingerprint, "vectors": info.count,
            "bytes": info.bytes, "model": info.description.get("model"), "pooling": info.description.get("pooling"),
            "backend": info.description.get("backend", "torch"), "precision": info.description.get("precision"),
            "dim": info.description.get("dim")}


@cache.command("info")
@cache_dir_option
@_summary_options
def cache_info(cache_dir, as_json, quiet):
    """List stores: fingerprint, model, vectors, size."""
    from embed.backends import EXPORTS

    root = Path(cache_dir or default_cache_dir())
    exports = sorted((root / EXPORTS).glob("openvino-*/model.xml"))
    size = sum(p.stat().st_size for d in exports for p in d.parent.iterdir() if p.is_file())
    failed = sorted((root / EXPORTS).glob("openvino-*.failed.json"))
    stores = list_stores(root)
    lines = []
    if exports:
        lines.append(f"{EXPORTS}/  {len(exports)} OpenVINO model(s)  {size / 2**20:.1f} MiB  (converted once per model)")
    if failed:
        lines.append(f"{EXPORTS}/  {len(failed)} model(s) OpenVINO could not convert: torch encodes them "
                     f"(cache clear all to try again)")
    lines += [_store_line(info) for info in stores] or [f"no cache stores under {root}"]
    _report(as_json, quiet, {"root": str(root), "exports": len(exports), "exports_bytes": size,
                             "failed_exports": len(failed), "stores": [_store_record(i) for i in stores]}, lines)


@cache.command("clear")
@click.argument("store")
@click.option("-y", "--yes", is_flag=True, help="Delete without asking (needed where stdin is not a terminal).")
@cache_dir_option
@_summary_options
def cache_clear(store, yes, cache_dir, as_json, quiet):
    """Remove the stores whose fingerprint starts with STORE (``all``: every store and the OpenVINO exports).

    Lists what it will delete and asks first; --yes skips the question.
    """
    import shutil

    from cache.store import find_stores
    from embed.backends import EXPORTS

    root = Path(cache_dir or default_cache_dir())
    found = find_stores(root, store)
    exports = root / EXPORTS if store == "all" and (root / EXPORTS).is_dir() else None
    if not found and exports is None:
        raise click.ClickException(f"no cache store under {root} matches {store!r}; see `tweetheads cache info`")
    click.echo("will remove:", err=True)
    for info in found:
        click.echo(f"  {_store_line(info)}", err=True)
    if exports is not None:
        click.echo(f"  {exports} (the OpenVINO exports)", err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise click.ClickException("not a terminal, so nothing was removed: pass --yes to remove the stores "
                                       "listed above")
        click.confirm(f"remove {len(found)} store(s){' and the exports' if exports else ''}?", abort=True, err=True)
    if exports is not None:
        shutil.rmtree(exports)
    for info in found:
        shutil.rmtree(info.path)
    removed = [str(i.path) for i in found] + ([str(exports)] if exports is not None else [])
    _report(as_json, quiet, {"removed": removed}, [f"removed {path}" for path in removed])


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", required=True, help="Model the head was trained on: alias (minilm, mpnet), folder, "
                                             "run folder or hub id.")
@click.option("--head", default=None, help="Head folder (written by a head's save), a hub id, or e2e: the run's own "
                                           "classifier (--model must then be the run folder) [default: a bundle's own "
                                           "head, a run's e2e].")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Output file: .csv, .csv.gz or .parquet (--engine ray: a folder of part files); - writes CSV to "
                   "stdout (the summary then goes to stderr).")
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
@click.option("--actor-cpus", type=float, default=None,
              help="Ray: CPUs each scoring actor reserves (readers take 0.5 each) [default: 1, or 0.5 where the "
                   "read tasks would otherwise find no free CPU]. A value that leaves no room is refused.")
@click.option("--stall-timeout", "stall_seconds", type=float, default=ScoreConfig.stall_seconds, show_default=True,
              help="Ray: seconds without a finished chunk before the run stops with a report of what is waiting.")
@click.option("--resource-check/--no-resource-check", default=True, show_default=True,
              help="Ray: check at plan time that the actors leave CPUs for the read tasks (skip it for an "
                   "autoscaling cluster that will add nodes; the stall timeout still applies).")
@click.option("--review-below", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="P",
              help="Also write every scored row whose top probability is under P (e.g. 0.6) to a review file; the "
                   "rows stay in the output, and the summary counts them. Local engine, --output FILE only.")
@click.option("--review", "review_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The review file for --review-below (CSV) [default: OUT's name ending .review.csv].")
@click.option("--drift-check/--no-drift-check", default=True, show_default=True,
              help="Compare a sample of up to 1,000 of the file's vectors with the head's training vectors and say in "
                   "the summary whether these tweets look like them (scoring/drift.py; a second or two).")
@click.option("--line-reader", is_flag=True, default=False,
              help="Read every row with the line-accurate reader, not clean CSV/TSV/Parquet blocks through Arrow "
                   "(slower; the output, rejects and counts are the same bytes either way).")
@click.option("--max-rejects", default=None, metavar="N|P%",
              help="Exit 1 (after writing everything) when more rows than this are rejected: a count, or a share "
                   "of the rows read such as 1%.")
@_embed_options
@cache_dir_option
@_summary_options
def score(inputs, model, head, output, text_col, keep_cols, prefix, label_col, rejects, chunk_rows, engine,
          ray_address, concurrency, part_format, actor_cpus, stall_seconds, resource_check, review_below, review_path,
          drift_check, line_reader, max_rejects, pooling, max_length, batch_size, device, precision, backend, cache_dir, as_json,
          quiet):
    """Label INPUTS (files, folders, globs; CSV/TSV/JSONL/Parquet, optionally .gz) into one output file.

    Writes every input column, then pred_label, pred_proba_<class> per class, pred_model and pred_head.
    When the inputs have the gold label column, the summary also gives accuracy and macro-F1 against
    it. Rows that cannot be scored go to the rejects file with their line and reason; read = scored +
    rejected. Memory stays bounded: the input is read and written chunk by chunk. If a run stops
    (crash, kill, Ctrl-C), rerunning the same command resumes after the last finished chunk and writes
    the same rows as an uninterrupted run. With --engine ray, Ray workers do the reading, scoring and
    writing: OUT is a folder (scored/ and rejects/ part files, in input order, and manifest.json with
    each file's counts). The head must come from --model with the same --pooling, --max-length and
    --precision; a mismatch stops before any work. An input - reads a CSV table from stdin; --output -
    writes the scored CSV to stdout (rejected rows, unless --rejects names a file, follow on stderr).
    """
    import json
    import shutil
    import tempfile

    from scoring.score import score_files

    limit = _reject_limit(max_rejects)
    streams = "-" in inputs or str(output) == "-"
    if streams and engine == "ray":
        raise click.UsageError("--engine ray reads and writes files on its workers; - (stdin/stdout) needs --engine local")
    if review_below is not None and str(output) == "-" and review_path is None:
        raise click.UsageError("--review-below writes its review file beside --output, and --output is - (stdout); "
                               "pass --review FILE, or write the output to a file")
    spool = Path(tempfile.mkdtemp(prefix="tweetheads-score-")) if streams else None
    try:
        if "-" in inputs:  # spooled to disk, not memory: stdin may be larger than RAM
            with open(spool / "stdin.csv", "wb") as handle:
                shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
            inputs = tuple(str(spool / "stdin.csv") if item == "-" else item for item in inputs)
        to_stdout = str(output) == "-"
        if to_stdout:
            output = spool / "stdout.csv"
            rejects = rejects if rejects is not None else spool / "stdout.rejects.csv"
        keep = None if keep_cols is None else tuple(c.strip() for c in keep_cols.split(",") if c.strip())
        embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir,
                             progress=False)
        config = ScoreConfig(text_col=text_col, keep_cols=keep, prefix=prefix, label_col=label_col, rejects=rejects,
                             chunk_rows=chunk_rows, engine=engine, concurrency=concurrency, ray_address=ray_address,
                             part_format=part_format, actor_cpus=actor_cpus, stall_seconds=stall_seconds,
                             resource_check=resource_check, progress=not quiet and not to_stdout,
                             review_below=review_below, review=review_path, drift_check=drift_check,
                             fast=not line_reader)
        summary = score_files(list(inputs), output, embedder, head, config)
        if to_stdout:
            with open(output, "rb") as handle:
                shutil.copyfileobj(handle, sys.stdout.buffer, 1 << 20)
            sys.stdout.flush()
            if summary.rows_rejected and Path(summary.rejects).parent == spool:
                _stream_rejects(Path(summary.rejects), str(spool / "stdin.csv"))
        rejects_went = "stderr" if to_stdout and Path(summary.rejects).parent == spool else str(summary.rejects)
        if to_stdout:
            result = summary.as_dict() | {"output": "stdout", "rejects": rejects_went}
            if as_json or not quiet:
                click.echo(json.dumps(result, default=str) if as_json else summary.line().replace(
                    str(summary.rejects), rejects_went), err=True)
        else:
            _report(as_json, quiet, summary.as_dict(), [f"wrote {summary.output}", summary.line()])
    finally:
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
    if limit(summary.rows_rejected, summary.rows_read):
        raise click.ClickException(f"{summary.rows_rejected:,} of {summary.rows_read:,} rows rejected, over "
                                   f"--max-rejects {max_rejects}; every output was written, the rejected rows "
                                   f"to {rejects_went}")


def _stream_rejects(path: Path, stdin_file: str) -> None:
    """The rejects CSV on stderr, the spooled stdin's path written as ``-`` (what the user passed)."""
    import csv
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        writer = csv.writer(sys.stderr, lineterminator="\n")
        for row in csv.reader(handle):
            writer.writerow(["-" if row and row[0] == stdin_file else row[0], *row[1:]] if row else row)
    sys.stderr.flush()


def _reject_limit(spec: str | None):
    """``--max-rejects``: a function (rejected, read) -> whether the limit is passed."""
    if spec is None:
        return lambda rejected, read: False
    text = spec.strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if not 0 <= share <= 1:
                raise ValueError
            return lambda rejected, read: rejected > share * read
        count = int(text)
        if count < 0:
            raise ValueError
        return lambda rejected, read: rejected > count
    except ValueError:
        raise click.BadParameter(f"expected a whole number of rows (e.g. 10) or a share of the rows read (e.g. 1%), "
                                 f"got {spec!r}", param_hint="--max-rejects") from None


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


@cli.command()
@click.option("--model", required=True, help="Alias (minilm, mpnet), hub id, model folder or run folder.")
@click.option("--head", default=None, help="Head folder, or e2e for a run's own classifier [default: e2e when "
                                           "--model is a run folder].")
@click.option("--host", default=_SERVE.host, help="Address to listen on: loopback, so only this machine can call it; "
                                                  "0.0.0.0 listens on every interface (there is no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=_SERVE.port, help="Port; 0 takes a free one (the "
                                                                                "URL is printed when ready).")
@click.option("--max-batch-texts", type=click.IntRange(1), default=_SERVE.max_batch_texts,
              help="Texts per encoder call at most: concurrent requests are joined up to this many (a larger "
                   "request is still served whole). --batch-size is how the encoder splits a call.")
@click.option("--max-wait-ms", type=click.FloatRange(0), default=_SERVE.max_wait_ms,
              help="How long the oldest waiting request may wait for others to join its encoder call.")
@click.option("--max-texts", type=click.IntRange(1), default=_SERVE.max_texts, help="Texts per request at most (422).")
@click.option("--max-text-chars", type=click.IntRange(1), default=_SERVE.max_text_chars,
              help="Characters per text at most (422); longer than the model's max tokens is truncated and flagged.")
@click.option("--max-body-bytes", type=click.IntRange(1), default=_SERVE.max_body_bytes,
              help="Request body size at most (413).")
@click.option("--max-queued-texts", type=click.IntRange(1), default=_SERVE.max_queued_texts,
              help="Texts waiting for the encoder at most; past it a request gets 503 with Retry-After.")
@click.option("--drain-seconds", type=click.FloatRange(0), default=_SERVE.drain_seconds,
              help="After SIGTERM, how long requests in flight may take to finish.")
@click.option("--keep-alive-seconds", type=click.FloatRange(0, min_open=True), default=_SERVE.keep_alive_seconds,
              help="How long an idle connection stays open; keep it above the clients' (or load balancer's) idle "
                   "expiry so they close first.")
@click.option("--drift-window", type=click.IntRange(0), default=_SERVE.drift_window,
              help="Drift check: the vectors of this many last texts are compared with the head's training vectors "
                   "(GET /drift; a line on stderr when it fires); 0 switches it off.")
@click.option("--drift-every", type=click.IntRange(1), default=_SERVE.drift_every,
              help="Drift check: run it again after this many new texts (in a thread of its own, off the requests' "
                   "path).")
@_embed_options
@cache_dir_option
def serve(model, head, host, port, max_batch_texts, max_wait_ms, max_texts, max_text_chars, max_body_bytes,
          max_queued_texts, drain_seconds, keep_alive_seconds, drift_window, drift_every, pooling, max_length,
          batch_size, device, precision, backend, cache_dir):
    """Serve a head on its model over HTTP: POST /predict {"texts": [...]}, GET /health, GET /info, GET /drift.

    Requests that arrive together are batched into one encoder call, through the embedding cache. A
    head of another model is refused before the port opens, as score refuses it. SIGTERM stops
    accepting, finishes the requests in flight and exits 0. The API: README, "serve".
    """
    from serving import ServeConfig, load_predictor
    from serving import serve as run_server

    config = ServeConfig(host=host, port=port, max_batch_texts=max_batch_texts, max_wait_ms=max_wait_ms,
                         max_texts=max_texts, max_text_chars=max_text_chars, max_body_bytes=max_body_bytes,
                         max_queued_texts=max_queued_texts, drain_seconds=drain_seconds,
                         keep_alive_seconds=keep_alive_seconds, drift_window=drift_window, drift_every=drift_every)
    embedder = _embedder(model, pooling, max_length, batch_size, device, precision, backend, cache_dir, progress=False)
    run_server(load_predictor(embedder, head), config, announce=click.echo)


@cli.command("export")
@click.option("--model", required=True, help="The run folder (or any model: alias, hub id, folder) the head was "
                                             "trained on.")
@click.option("--head", required=True, help="The head folder (or hub id) to bundle with it.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@cache_dir_option
@_summary_options
def export_command(model, head, out, cache_dir, as_json, quiet):
    """Write OUT: the model and head as one checked folder that predict, score and serve take as --model OUT.

    OUT holds the run (or the model), the head, the encoder's OpenVINO export where this machine has one,
    the labels, the cards and tweetheads_bundle.json with the sha256 of every file (checked on every load).
    """
    from dataclasses import asdict

    from sharing.export import export_bundle

    _quiet_transformers()
    report = export_bundle(model, head, out, cache_dir=cache_dir or "default")
    _report(as_json, quiet, asdict(report), report.summary())


@cli.command("push")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo private (an existing repo keeps its visibility).")
@click.option("--dry-run", is_flag=True, help="Check PATH and list what would be uploaded; upload nothing.")
@_summary_options
def push_command(path, repo_id, private, dry_run, as_json, quiet):
    """Upload PATH (a run folder, a head folder or a bundle) to the Hub model repo REPO_ID (user/name).

    PATH is checked first as its loaders check it (every sha256); a run's checkpoint/ stays behind and
    records go without local paths. Uses huggingface_hub's login (`hf auth login`, HF_TOKEN) and
    HF_ENDPOINT; HF_HUB_OFFLINE=1 refuses to upload.
    """
    from sharing.push import prepare_push, push

    plan = prepare_push(path)
    summary = {"path": str(path), "repo_id": repo_id, "kind": plan.kind, "files": plan.files, "bytes": plan.bytes,
               "private": private}
    if dry_run:
        _report(as_json, quiet, summary, [f"would upload {len(plan.files)} files ({plan.bytes / 2**20:.1f} MiB) of "
                                          f"{plan.kind} {path} to {repo_id}", *[f"  {name}" for name in plan.files]])
        return
    url = push(path, repo_id, private=private)
    _report(as_json, quiet, {**summary, "commit_url": url},
            f"pushed {plan.kind} {path} ({len(plan.files)} files, {plan.bytes / 2**20:.1f} MiB) to {repo_id}: {url}")


def main() -> None:
    cli(prog_name="tweetheads")


if __name__ == "__main__":
    sys.exit(main())
