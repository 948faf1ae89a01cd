"""Stage two, phase two: every head (and a run's end-to-end model) on the same test rows.

``--model`` is any embedding model: an alias (``minilm``), a hub id, a sentence-transformers
folder, or a run folder written by ``finetune``. A run adds its end-to-end model as a row (its own
classifier on the same vectors) and records its training file; any other model has no end-to-end
row (the report says so in one line) and needs ``--train``.

Each metric is reported on all test rows and on the *novel* ones, whose normalized text does not
occur in the training file: on the GOP split a quarter of the eval tweets are retweets of training
tweets, which every method gets mostly right and which hide the differences between methods.

Rows: the majority-class baseline, any quoted references asked for (``--reference card`` is the
reference card's 0.7146 on the GOP data; ``--reference NAME=ACCURACY`` any other; none by default,
since a quoted figure belongs to the data it was measured on), the end-to-end model when there is
one, and each head. Columns: accuracy with a 95% bootstrap interval, macro-F1, macro-recall
(TweetEval's metric), per-class F1, McNemar's exact p-value against the end-to-end model (or,
without one, against the best head by accuracy on all rows), fit seconds and predictions per
second. Writes ``results.json``, ``report.md`` and PNG plots (see ``plots.py``).

Every head, and the run's own classifier, is loaded and checked against the model by
:func:`scoring.predictor.load_checked`, the one place that does it: a head trained on another
model's vectors is refused with the message ``score`` gives.

With ``train_sizes`` (``--train-sizes 32,128,512,2048,all``) it also refits every head on
stratified samples of the training file and reports accuracy per labelled tweet
(:mod:`comparison.label_curve`): the training file is embedded once, through the cache.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from embed.data import load_texts
from embed.errors import TweetheadsError
from embed.normalize import normalizer
from embed.runs import read_run_info
from scoring.predictor import load_checked
from scoring.predict import E2E

from .train_head import REPORT_FILE, predictions_per_second


@dataclass(frozen=True)
class Reference:
    """A quoted accuracy drawn beside the measured rows (not re-measured here)."""

    name: str
    accuracy: float
    note: str = "quoted with --reference, not re-measured here"


CARD = Reference("reference card (quoted)", 0.7146,
                 "msmarco-distilbert-base-tas-b fine-tuned end to end on the GOP debate tweets, 20 epochs; quoted "
                 "from the card, not re-measured here, and its split is not ours")
NAMED_REFERENCES = {"card": CARD}


def parse_reference(text: str) -> Reference:
    """``card`` (the reference card's 0.7146) or ``NAME=ACCURACY`` (accuracy in 0-1); TweetheadsError otherwise."""
    text = text.strip()
    if text.lower() in NAMED_REFERENCES:
        return NAMED_REFERENCES[text.lower()]
    name, sep, value = text.rpartition("=")
    try:
        accuracy = float(value)
    except ValueError:
        accuracy = math.nan
    if not sep or not name.strip() or not 0 <= accuracy <= 1:
        raise TweetheadsError(f"--reference {text!r}: expected NAME=ACCURACY with an accuracy from 0 to 1 (e.g. "
                              f"--reference 'SetFit paper=0.74'), or one of: {', '.join(NAMED_REFERENCES)}")
    return Reference(name.strip(), accuracy)


@dataclass(frozen=True)
class CompareConfig:
    text_col: str = "text"
    label_col: str = "label"
    bootstrap: int = 1000
    seed: int = 42
    max_train_rows: int | None = None
    train_sizes: tuple = ()  # labelled rows per sample for the label curve ("all": every row); () skips it
    repeats: int = 3  # samples per size
    references: tuple = ()  # Reference rows and lines to draw; () draws none


def bootstrap_interval(correct: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of a 0/1 vector."""
    if len(correct) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Exact McNemar test: a binomial test on the rows where exactly one of the two is right."""
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], reference: np.ndarray | None,
            config: CompareConfig) -> dict:
    """The figures of one method on one subset; ``reference``: the McNemar reference's correct rows (None: it is it)."""
    if len(y_true) == 0:
        return {"rows": 0}
    correct = y_true == y_pred
    low, high = bootstrap_interval(correct.astype(float), config.bootstrap, config.seed)
    per_class = f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    return {
        "rows": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci95": [low, high],
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "macro_recall": float(recall_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "f1_per_class": {c: float(v) for c, v in zip(classes, per_class)},
        "mcnemar_p": None if reference is None else mcnemar_p(correct, reference),
    }


def head_names(heads: list[tuple[Path, object]]) -> list[str]:
    """Each head by its head name; the folder is added only where two heads would share a name.

    Raises TweetheadsError for a folder given twice (its rows would be the same).
    """
    seen: dict[Path, Path] = {}
    for folder, _ in heads:
        key = Path(folder).resolve()
        if key in seen:
            raise TweetheadsError(f"{folder}: head folder given twice (also as {seen[key]}); name each HEAD_DIR once")
        seen[key] = Path(folder)
    names = [head.name for _, head in heads]
    names = [f"{n} ({Path(f).name})" if names.count(n) > 1 else n for n, (f, _) in zip(names, heads)]
    return [f"{head.name} ({folder})" if names.count(n) > 1 else n for n, (folder, head) in zip(names, heads)]


def _training_file(model: str, run_dir: Path | None, train_path, sizes: tuple) -> Path:
    if train_path is not None:
        return Path(train_path)
    why = "novel test rows can be told apart" + (" and the heads refit for --train-sizes" if sizes else "")
    if run_dir is None:
        raise TweetheadsError(f"--train is required: {model} is not a run folder written by `finetune`, so no "
                              f"training file is recorded; pass --train FILE (the file the heads were trained on) so "
                              f"{why}")
    recorded = read_run_info(run_dir).get("data", {}).get("train", {}).get("path")
    if not recorded or not Path(recorded).exists():
        raise TweetheadsError(f"the training file recorded in {run_dir} ({recorded}) is not there; "
                              f"pass --train FILE so {why}")
    return Path(recorded)


def compare(embedder, test_path, head_dirs: list, report_dir=None, train_path=None,
            config: CompareConfig = CompareConfig()) -> dict:
    """Score each head (and a run's end-to-end model) on ``test_path``; write the report when asked.

    ``embedder``: an ``Embedder`` for any model; when it is a run folder its end-to-end classifier
    is a row too. ``train_path`` is required unless the model is a run (which records its own).
    """
    quoted = [r.name for r in config.references]
    if len(set(quoted)) < len(quoted):
        twice = next(name for name in quoted if quoted.count(name) > 1)
        raise TweetheadsError(f"--reference {twice!r} given twice with different accuracies; give each name once")
    encoder = embedder.load()
    run_dir = Path(encoder.source.run_dir) if encoder.source.kind == "run" else None
    model = str(embedder.model)
    no_e2e = None if run_dir else f"no end-to-end row: {model} is not a run folder written by `finetune`"
    if run_dir is None and not head_dirs:
        raise TweetheadsError(f"nothing to compare: {model} is not a run folder, so it has no end-to-end model, and "
                              f"no HEAD_DIR was given; pass head folders trained with `train-head --model {model}`")
    train_path = _training_file(model, run_dir, train_path, tuple(config.train_sizes))
    e2e = load_checked(E2E, embedder).classifier if run_dir else None  # checked before any work
    heads = [(Path(d), load_checked(d, embedder).classifier) for d in head_dirs]
    names = head_names(heads)

    test = load_texts(test_path, config.text_col, config.label_col)
    train = load_texts(train_path, config.text_col, config.label_col, config.max_train_rows)
    norm, _ = normalizer(embedder.normalize)
    seen = {norm(t) for t in train.texts}
    novel = np.array([norm(t) not in seen for t in test.texts], dtype=bool)
    y = np.asarray(test.labels)
    X, _ = embedder.embed(test.texts)
    if e2e is not None:
        classes = [str(c) for c in e2e.classes_]
    else:
        classes = sorted({str(c) for _, head in heads for c in head.classes_})
    majority = max(set(train.labels), key=train.labels.count)

    methods = [{"name": "majority class", "kind": "baseline", "predictions": np.full(len(y), majority),
                "fit_seconds": None, "predictions_per_second": None}]
    run_metrics = {}
    if e2e is not None:
        metrics_path = run_dir / "metrics.json"
        run_metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        methods.append({"name": f"end-to-end ({read_run_info(run_dir).get('base_model', 'run')})", "kind": "e2e",
                        "predictions": e2e.predict(X), "fit_seconds": run_metrics.get("train_seconds"),
                        "predictions_per_second": predictions_per_second(e2e, X)})
    for name, (folder, head) in zip(names, heads):
        report_file = folder / REPORT_FILE
        fit_seconds = json.loads(report_file.read_text()).get("fit_seconds") if report_file.exists() else None
        methods.append({"name": name, "kind": "head", "predictions": head.predict(X), "fit_seconds": fit_seconds,
                        "predictions_per_second": predictions_per_second(head, X)})

    # McNemar against the end-to-end model, or without one the best head on all rows (the first of a tie)
    candidates = [m for m in methods if m["kind"] == ("e2e" if e2e is not None else "head")]
    against = max(candidates, key=lambda m: float(np.mean(m["predictions"] == y)) if len(y) else 0.0)
    reference_correct = against["predictions"] == y
    rows = []
    for m in methods:
        ref = None if m is against else reference_correct
        rows.append({**m, "correct": m["predictions"] == y,
                     "all": metrics(y, m["predictions"], classes, ref, config),
                     "novel": metrics(y[novel], m["predictions"][novel], classes,
                                      None if ref is None else ref[novel], config)})
    mcnemar = {"name": against["name"], "kind": against["kind"],
               "label": "e2e" if against["kind"] == "e2e" else against["name"],
               "why": "the end-to-end model" if against["kind"] == "e2e" else
               "the best head by accuracy on all test rows, as there is no end-to-end model"}

    references = [asdict(r) for r in config.references]
    curve = None
    if config.train_sizes:
        from .label_curve import CurveConfig, label_curve

        X_train, _ = embedder.embed(train.texts)  # cached: encoded at most once
        curve = label_curve(list(zip(names, (head for _, head in heads))), X_train, np.asarray(train.labels), X, y,
                            novel, CurveConfig(tuple(config.train_sizes), config.repeats, config.seed))
        curve["references"] = {}
        if e2e is not None:
            curve["references"]["end-to-end, all training rows"] = float(reference_correct.mean())
        curve["references"].update({r["name"]: r["accuracy"] for r in references})
    results = {
        "test": str(test_path), "train": str(train_path), "model_name": model,
        "run": None if run_dir is None else str(run_dir), "model": encoder.description,
        "no_end_to_end": no_e2e, "rows": int(len(y)), "novel_rows": int(novel.sum()), "classes": classes,
        "references": references, "mcnemar_reference": mcnemar,
        "methods": [{k: v for k, v in r.items() if k not in ("predictions", "correct")} for r in rows],
    }
    if curve is not None:
        results["label_curve"] = curve
    if report_dir is not None:
        from .plots import write_plots
        from .report import render_report

        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        results["plots"] = write_plots(report_dir, rows, y, classes, run_metrics, results)
        (report_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (report_dir / "report.md").write_text(render_report(results))
    return results
