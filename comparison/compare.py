"""Stage two, phase two: every head against the end-to-end model, on the same test rows.

Each metric is reported on all test rows and on the *novel* ones, whose normalized text does not
occur in the training file: on the GOP split a quarter of the eval tweets are retweets of training
tweets, which every method gets mostly right and which hide the differences between methods.

Rows: the majority-class baseline, the reference card's 0.7146 (a quoted figure, not re-measured
here), our end-to-end model (the run's own classifier on the same CLS vectors), and each head.
Columns: accuracy with a 95% bootstrap interval, macro-F1, macro-recall (TweetEval's metric),
per-class F1, McNemar's exact p-value against the end-to-end model, fit seconds and predictions
per second. Writes ``results.json``, ``report.md`` and PNG plots (see ``plots.py``).

With ``train_sizes`` (``--train-sizes 32,128,512,2048,all``) it also refits every head on
stratified samples of the training file and reports accuracy per labelled tweet
(:mod:`comparison.label_curve`): the training file is embedded once, through the cache.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from embed.data import load_texts
from embed.errors import TweetheadsError
from embed.normalize import normalizer
from embed.runs import EndToEndClassifier, read_run_info
from heads import load_head
from heads.base import warn_accepted

from .train_head import REPORT_FILE, predictions_per_second

CARD = {"name": "reference card (quoted)", "accuracy": 0.7146, "loss": 0.6954,
        "note": "msmarco-distilbert-base-tas-b fine-tuned end to end, 20 epochs; quoted from the card, "
                "not re-measured here, and its split is not ours"}


@dataclass(frozen=True)
class CompareConfig:
    text_col: str = "text"
    label_col: str = "label"
    bootstrap: int = 1000
    seed: int = 42
    max_train_rows: int | None = None
    train_sizes: tuple = ()  # labelled rows per sample for the label curve ("all": every row); () skips it
    repeats: int = 3  # samples per size


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
        "mcnemar_p_vs_e2e": None if reference is None else mcnemar_p(correct, reference),
    }


def compare(embedder, run_dir, test_path, head_dirs: list, report_dir=None, train_path=None,
            config: CompareConfig = CompareConfig()) -> dict:
    """Score the end-to-end model and each head on ``test_path``; write the report when asked."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if train_path is None:
        train_path = info.get("data", {}).get("train", {}).get("path")
        if not train_path or not Path(train_path).exists():
            raise TweetheadsError(f"the training file recorded in {run_dir} ({train_path}) is not there; "
                                  "pass --train FILE so novel test rows can be told apart")
    heads = [(Path(d), load_head(d)) for d in head_dirs]
    enc = embedder.load()
    e2e = EndToEndClassifier(run_dir)
    e2e.check_vectors(enc.description)  # the run's classifier sees the vectors it was trained on
    for folder, head in heads:  # refuse before any work
        try:
            measured = head.check_fingerprint(enc.fingerprint, enc.description,
                                              embed=lambda texts: embedder.embed(texts)[0])
        except ValueError as exc:
            raise type(exc)(f"{folder}: {exc}") from exc
        if measured:
            warn_accepted(folder, measured)
    test = load_texts(test_path, config.text_col, config.label_col)
    train = load_texts(train_path, config.text_col, config.label_col, config.max_train_rows)
    norm, _ = normalizer(embedder.normalize)
    seen = {norm(t) for t in train.texts}
    novel = np.array([norm(t) not in seen for t in test.texts])
    y = np.asarray(test.labels)
    X, _ = embedder.embed(test.texts)
    classes = [str(c) for c in e2e.classes_]
    majority = max(set(train.labels), key=train.labels.count)

    rows = []

    def add(name: str, kind: str, predicted: np.ndarray, fit_seconds=None, per_second=None):
        correct = predicted == y
        rows.append({"name": name, "kind": kind, "predictions": predicted,
                     "all": metrics(y, predicted, classes, reference_correct if kind != "e2e" else None, config),
                     "novel": metrics(y[novel], predicted[novel], classes,
                                      reference_correct[novel] if kind != "e2e" else None, config),
                     "fit_seconds": fit_seconds, "predictions_per_second": per_second, "correct": correct})

    e2e_pred = e2e.predict(X)
    reference_correct = e2e_pred == y
    add("majority class", "baseline", np.full(len(y), majority))
    metrics_path = run_dir / "metrics.json"
    run_metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    add(f"end-to-end ({info.get('base_model', 'run')})", "e2e", e2e_pred,
        run_metrics.get("train_seconds"), predictions_per_second(e2e, X))
    named = [(f"{head.name} ({folder.name})", folder, head) for folder, head in heads]
    for name, folder, head in named:
        report_file = folder / REPORT_FILE
        fit_seconds = json.loads(report_file.read_text()).get("fit_seconds") if report_file.exists() else None
        add(name, "head", head.predict(X), fit_seconds, predictions_per_second(head, X))
    curve = None
    if config.train_sizes:
        from .label_curve import CurveConfig, label_curve

        X_train, _ = embedder.embed(train.texts)  # cached: encoded at most once
        curve = label_curve([(name, head) for name, _, head in named], X_train, np.asarray(train.labels), X, y,
                            novel, CurveConfig(tuple(config.train_sizes), config.repeats, config.seed))
        curve["references"] = {"end-to-end, all training rows": float(reference_correct.mean()),
                               CARD["name"]: CARD["accuracy"]}
    results = {
        "test": str(test_path), "train": str(train_path), "run": str(run_dir), "model": enc.description,
        "rows": int(len(y)), "novel_rows": int(novel.sum()), "classes": classes, "card": CARD,
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
