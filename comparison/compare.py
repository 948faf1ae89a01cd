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

A run's end-to-end probabilities are calibrated by the temperature the run fitted on its eval file
(``embed.runs``). When the test file is that very file (the same sha256), probability metrics
computed with that T would be scored on the rows it was fitted on, so the end-to-end row's
probabilities are cross-fitted instead (``probability.cross_fitted``: ``FOLDS`` folds of the test
rows, each calibrated by the T fitted on the others); ``results.json``'s ``e2e_calibration`` and a
line of the report say which. Accuracy is the same either way (a temperature keeps the argmax).

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
from fileio import sha256_file
from scoring.predictor import load_checked
from scoring.predict import E2E

from .probability import BINS, COVERAGES, FOLDS, aligned, cross_fitted, prior_proba, probability_metrics
from .train_head import REPORT_FILE, predictions_per_second

DEFINITIONS = {
    "ece": f"expected calibration error: {BINS} equal-width bins of the top-class probability over [0, 1]; "
           "sum over bins of (rows in bin / rows) * |accuracy - mean top probability| in the bin",
    "brier": "multi-class Brier score: sum over classes of (probability - one-hot label)^2, mean over rows "
             "(0 best, 2 worst)",
    "log_loss": "sklearn.metrics.log_loss with the class list given",
    "selective_accuracy": "accuracy on the most confident share of rows (top-class probability, ties in file "
                          f"order), at coverages {', '.join(f'{c:.0%}' for c in COVERAGES)}",
    "majority class": "probabilities: the training file's class shares on every row",
}


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
    """What ``compare`` reads (columns, rows), how it measures (bootstrap, seed) and what it adds (label curve,
    quoted references)."""

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
    """``--train`` as given, else the training file a run recorded; TweetheadsError when neither is there."""
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


@dataclass
class Methods:
    """What ``compare`` scores: the model, its run folder (or None), the training file and the checked classifiers."""

    model: str
    encoder: object  # the loaded encoder: its description goes into results.json
    run_dir: Path | None
    train_path: Path
    e2e: object | None  # the run's own classifier, checked against the vectors
    heads: list[tuple[Path, object]]  # (folder, checked head)
    names: list[str]  # each head's row name

    @property
    def no_e2e(self) -> str | None:
        """The one line saying why there is no end-to-end row (None for a run)."""
        return None if self.run_dir else f"no end-to-end row: {self.model} is not a run folder written by `finetune`"


@dataclass
class EvalRows:
    """The test file embedded once, its labels, which rows are novel, and the training file's texts and labels."""

    texts: list
    y: np.ndarray
    X: np.ndarray
    novel: np.ndarray
    train_texts: list
    train_labels: list


def check_references(references) -> None:
    """TweetheadsError when one reference name is given twice (with different accuracies)."""
    quoted = [r.name for r in references]
    if len(set(quoted)) < len(quoted):
        twice = next(name for name in quoted if quoted.count(name) > 1)
        raise TweetheadsError(f"--reference {twice!r} given twice with different accuracies; give each name once")


def load_methods(embedder, head_dirs: list, train_path, config: CompareConfig) -> Methods:
    """The run's end-to-end classifier (when the model is a run) and every head, each checked by ``load_checked``
    before any text is embedded; TweetheadsError when there is nothing to compare or no training file."""
    encoder = embedder.load()
    run_dir = Path(encoder.source.run_dir) if encoder.source.kind == "run" else None
    model = str(embedder.model)
    if run_dir is None and not head_dirs:
        raise TweetheadsError(f"nothing to compare: {model} is not a run folder, so it has no end-to-end model, and "
                              f"no HEAD_DIR was given; pass head folders trained with `train-head --model {model}`")
    train_path = _training_file(model, run_dir, train_path, tuple(config.train_sizes))
    e2e = load_checked(E2E, embedder).classifier if run_dir else None  # checked before any work
    heads = [(Path(d), load_checked(d, embedder).classifier) for d in head_dirs]
    return Methods(model, encoder, run_dir, train_path, e2e, heads, head_names(heads))


def load_rows(embedder, test_path, train_path: Path, config: CompareConfig) -> EvalRows:
    """Embed the test file (through the cache) and mark its novel rows: normalized text not in the training file."""
    test = load_texts(test_path, config.text_col, config.label_col)
    train = load_texts(train_path, config.text_col, config.label_col, config.max_train_rows)
    norm, _ = normalizer(embedder.normalize)
    seen = {norm(t) for t in train.texts}
    novel = np.array([norm(t) not in seen for t in test.texts], dtype=bool)
    X, _ = embedder.embed(test.texts)
    return EvalRows(test.texts, np.asarray(test.labels), X, novel, train.texts, train.labels)


def class_list(methods: Methods) -> list[str]:
    """The report's classes: the end-to-end model's, else every head's, sorted."""
    if methods.e2e is not None:
        return [str(c) for c in methods.e2e.classes_]
    return sorted({str(c) for _, head in methods.heads for c in head.classes_})


def run_metrics_of(run_dir: Path | None) -> dict:
    """The run's ``metrics.json`` (training seconds, learning history), or {} without a run or the file."""
    if run_dir is None:
        return {}
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def predict_all(methods: Methods, rows: EvalRows, run_metrics: dict) -> list[dict]:
    """One dict per method, in report order (majority baseline, end-to-end, heads), with its predictions."""
    y, X = rows.y, rows.X
    majority = max(set(rows.train_labels), key=rows.train_labels.count)
    classes = class_list(methods)
    predicted = [{"name": "majority class", "kind": "baseline", "predictions": np.full(len(y), majority),
                  "proba": prior_proba(rows.train_labels, classes, len(y)),
                  "fit_seconds": None, "predictions_per_second": None}]
    if methods.e2e is not None:
        e2e = methods.e2e
        predicted.append({"name": f"end-to-end ({read_run_info(methods.run_dir).get('base_model', 'run')})",
                          "kind": "e2e", **_predictions(e2e, X, classes), "fit_seconds": run_metrics.get("train_seconds"),
                          "predictions_per_second": predictions_per_second(e2e, X)})
    for name, (folder, head) in zip(methods.names, methods.heads):
        report_file = folder / REPORT_FILE
        fit_seconds = json.loads(report_file.read_text()).get("fit_seconds") if report_file.exists() else None
        predicted.append({"name": name, "kind": "head", **_predictions(head, X, classes), "fit_seconds": fit_seconds,
                          "predictions_per_second": predictions_per_second(head, X)})
    return predicted


def _predictions(classifier, X: np.ndarray, classes: list[str]) -> dict:
    """A classifier's labels and its probabilities (columns in ``classes`` order), from one ``predict_proba``."""
    proba = np.asarray(classifier.predict_proba(X))
    labels = np.asarray(classifier.classes_)[np.argmax(proba, axis=1)] if len(X) else np.asarray([], dtype=str)
    return {"predictions": labels, "proba": aligned(proba, [str(c) for c in classifier.classes_], classes)}


def e2e_calibration(methods: Methods, test_path, rows: EvalRows, predicted: list[dict], classes: list[str],
                    config: CompareConfig) -> dict | None:
    """How the end-to-end row's probabilities are calibrated (``results.json``'s ``e2e_calibration``, with its
    report ``line``); None without a run. On the file the run's temperature was fitted on, the row's ``proba``
    in ``predicted`` is replaced by cross-fitted probabilities (its predictions stay: same argmax)."""
    e2e = methods.e2e
    if e2e is None:
        return None
    entry = e2e.info.get("calibration")
    if e2e.calibration_ is None:
        why = (entry or {}).get("why") or "the run records no temperature: it was written before finetune fitted one"
        return {"method": "none", "why": why,
                "line": f"end-to-end probabilities: the classifier's softmax, not calibrated ({why})"}
    fit, fitted_on = e2e.calibration_, entry.get("fitted_on") or {}
    name = Path(str(fitted_on.get("path", "?"))).name
    out = {"method": "temperature", "temperature": fit.temperature, "smoothing": fit.smoothing, "rows": fit.rows,
           "fitted_on": fitted_on}
    if fitted_on.get("sha256") != sha256_file(Path(test_path)):
        return {**out, "applied": "the run's temperature",
                "line": f"end-to-end probabilities: calibrated by the run's temperature T = {fit.temperature:.3f}, "
                        f"fitted on `{name}` ({fit.rows} rows), another file than this test file"}
    row = next(m for m in predicted if m["kind"] == "e2e")
    codes = np.array([classes.index(str(label)) if str(label) in classes else -1 for label in rows.y])
    own = aligned(e2e.uncalibrated_proba(rows.X), [str(c) for c in e2e.classes_], classes)
    row["proba"], folds = cross_fitted(own, codes, FOLDS, config.seed)
    return {**out, "applied": "cross-fitted", "folds": FOLDS,
            "fold_temperatures": [[t.temperature, t.smoothing] for t in folds],
            "line": f"end-to-end probabilities: this test file is the run's eval file, which its temperature "
                    f"(T = {fit.temperature:.3f}) was fitted on, so the probability metrics of the end-to-end row "
                    f"use a temperature cross-fitted over the test rows ({FOLDS} folds, each calibrated by the T "
                    f"fitted on the others); its accuracy is the same either way"}


def mcnemar_reference(predicted: list[dict], y: np.ndarray) -> dict:
    """The method McNemar's test compares against: the end-to-end model, or without one the best head on all
    rows (the first of a tie)."""
    has_e2e = any(m["kind"] == "e2e" for m in predicted)
    candidates = [m for m in predicted if m["kind"] == ("e2e" if has_e2e else "head")]
    return max(candidates, key=lambda m: float(np.mean(m["predictions"] == y)) if len(y) else 0.0)


def score_methods(predicted: list[dict], rows: EvalRows, classes: list[str], config: CompareConfig
                  ) -> tuple[list[dict], dict]:
    """Each method's metrics on all and novel rows, and the McNemar reference's description."""
    y, novel = rows.y, rows.novel
    against = mcnemar_reference(predicted, y)
    reference_correct = against["predictions"] == y
    scored = []
    for m in predicted:
        ref = None if m is against else reference_correct
        correct = m["predictions"] == y
        scored.append({**m, "correct": correct,
                       "all": {**metrics(y, m["predictions"], classes, ref, config),
                               **probability_metrics(m["proba"], y, classes, correct)},
                       "novel": {**metrics(y[novel], m["predictions"][novel], classes,
                                           None if ref is None else ref[novel], config),
                                 **probability_metrics(m["proba"][novel], y[novel], classes, correct[novel])}})
    mcnemar = {"name": against["name"], "kind": against["kind"],
               "label": "e2e" if against["kind"] == "e2e" else against["name"],
               "why": "the end-to-end model" if against["kind"] == "e2e" else
               "the best head by accuracy on all test rows, as there is no end-to-end model",
               "accuracy": float(reference_correct.mean()) if len(y) else float("nan")}
    return scored, mcnemar


def curve_of(embedder, methods: Methods, rows: EvalRows, mcnemar: dict, references: list[dict],
             config: CompareConfig) -> dict:
    """The label curve (``label_curve``): every head refit on samples of the training file (embedded once, cached)."""
    from .label_curve import CurveConfig, label_curve

    X_train, _ = embedder.embed(rows.train_texts)  # cached: encoded at most once
    curve = label_curve(list(zip(methods.names, (head for _, head in methods.heads))), X_train,
                        np.asarray(rows.train_labels), rows.X, rows.y, rows.novel,
                        CurveConfig(tuple(config.train_sizes), config.repeats, config.seed))
    curve["references"] = {}
    if methods.e2e is not None:
        curve["references"]["end-to-end, all training rows"] = mcnemar["accuracy"]
    curve["references"].update({r["name"]: r["accuracy"] for r in references})
    return curve


def write_report(report_dir, scored: list[dict], rows: EvalRows, classes: list[str], run_metrics: dict,
                 results: dict) -> None:
    """Write the plots, ``results.json`` and ``report.md`` into ``report_dir`` (made if missing)."""
    from .plots import write_plots
    from .report import render_report

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    results["plots"] = write_plots(report_dir, scored, rows.y, classes, run_metrics, results)
    (report_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (report_dir / "report.md").write_text(render_report(results))


def compare(embedder, test_path, head_dirs: list, report_dir=None, train_path=None,
            config: CompareConfig = CompareConfig()) -> dict:
    """Score each head (and a run's end-to-end model) on ``test_path``; write the report when asked.

    ``embedder``: an ``Embedder`` for any model; when it is a run folder its end-to-end classifier
    is a row too. ``train_path`` is required unless the model is a run (which records its own).
    In order: load and check every method, embed the test rows and mark the novel ones, predict,
    score (all and novel rows, McNemar), the label curve when asked for, the report.
    """
    check_references(config.references)
    methods = load_methods(embedder, head_dirs, train_path, config)
    rows = load_rows(embedder, test_path, methods.train_path, config)
    classes = class_list(methods)
    run_metrics = run_metrics_of(methods.run_dir)
    predicted = predict_all(methods, rows, run_metrics)
    calibration = e2e_calibration(methods, test_path, rows, predicted, classes, config)
    scored, mcnemar = score_methods(predicted, rows, classes, config)
    references = [asdict(r) for r in config.references]
    results = {
        "test": str(test_path), "train": str(methods.train_path), "model_name": methods.model,
        "run": None if methods.run_dir is None else str(methods.run_dir), "model": methods.encoder.description,
        "no_end_to_end": methods.no_e2e, "e2e_calibration": calibration, "rows": int(len(rows.y)), "novel_rows": int(rows.novel.sum()),
        "classes": classes, "references": references,
        "mcnemar_reference": {k: v for k, v in mcnemar.items() if k != "accuracy"},
        "methods": [{k: v for k, v in r.items() if k not in ("predictions", "proba", "correct")} for r in scored],
        "probability_definitions": DEFINITIONS,
    }
    if config.train_sizes:
        results["label_curve"] = curve_of(embedder, methods, rows, mcnemar, references, config)
    if report_dir is not None:
        write_report(report_dir, scored, rows, classes, run_metrics, results)
    return results
