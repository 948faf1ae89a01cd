"""Stage two, phase one: ``fit_head`` embeds through the cache, fits a head, saves it, measures it.

Hyperparameters (C, k, boosting rounds) are chosen without looking at the eval file by default
(``select_on="train"``): a stratified 10% of the training rows picks them, then the head is refit
on all training rows with the choice fixed (``selected_params``), so the eval accuracy printed
afterwards is an honest held-out figure. ``select_on="eval"`` picks them on the eval file instead
(as the reference workflows do; the eval figure is then optimistic by the selection).
``select_and_fit`` is that procedure alone, on arrays (the heads benchmark times it).

Calibration (``calibrate="temperature"``, ``train-head --calibrate``): the same held-out rows that chose
the hyperparameters also fit a temperature (``heads.calibration``): the probe head, fitted on the other
90%, predicts them (rows it never saw), ``BaseHead.calibrate`` fits T on those probabilities, and the
final head, refit on every row, keeps that T (``set_calibration``). The head then saves T in head.json
and ``predict_proba`` applies it everywhere (score, predict, serve, compare). With ``select_on="eval"``
the eval file fits T too (and the eval figures are then optimistic by it, as by the selection). The
most probable class, hence accuracy, does not change.

``class_weight`` ("balanced") and ``select_metric`` (accuracy, macro_f1, macro_recall) are head
parameters that every head takes; the config passes them on, they are saved in ``head.json``
with the other parameters, and the summary line shows them.

The portability probe (the texts whose vectors later tell whether another machine's embedding is
close enough to the one the head was trained on, ``BaseHead.check_fingerprint``) is the fixed set
shipped in ``embed/samples/probe.csv`` (``embed.probe``), so a saved head holds none of its training
texts; ``probe_from_train=True`` (``train-head --probe-from-train``) keeps the first 64 distinct
training texts instead, as heads did before. The head folder also gets its model card
(``README.md``, ``embed.model_card.head_card``): encoder, classes, parameters, eval accuracy and
macro-F1 with 95% bootstrap intervals, the training file by name and row count.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split

from embed.data import load_texts
from embed.errors import TweetheadsError
from embed.model_card import encoder_record, head_card, head_record
from embed.probe import shipped_probe
from fileio import sha256_file
from heads import get_head
from heads.base import PROBE_TEXTS, REPORT_FILE
from heads.calibration import METHODS as CALIBRATIONS
from heads.calibration import MIN_ROWS

CARD_FILE = "README.md"


@dataclass(frozen=True)
class HeadConfig:
    """How ``fit_head`` trains a head: which head and parameters, the columns, selection, calibration, probe."""

    head: str = "logistic"
    params: dict = field(default_factory=dict)
    text_col: str = "text"
    label_col: str = "label"
    max_train_rows: int | None = None
    select_on: str = "train"  # "train" (10% holdout of train) or "eval"
    seed: int = 42
    class_weight: str | None = None  # None or "balanced" (every head)
    select_metric: str = "accuracy"  # what picks C / k / rounds: accuracy, macro_f1, macro_recall
    probe_from_train: bool = False  # True: the probe is the first training texts, kept verbatim in head.json
    calibrate: str = "temperature"  # "temperature": fit T on the selection holdout; "none": the head's own probabilities
    drift_reference: bool = True  # keep 1,000 training vectors (float16) for score's drift check (scoring/drift.py)


@dataclass
class HeadReport:
    """What ``fit_head`` did: rows, the hyperparameters chosen, the calibration, timings, eval figures."""

    head: str
    out_dir: str
    train_rows: int
    selected: dict
    fit_seconds: float
    embed_seconds: float
    encoded: int
    eval_rows: int = 0
    accuracy: float | None = None
    macro_f1: float | None = None
    accuracy_ci95: tuple[float, float] | None = None  # percentile bootstrap over the eval rows
    macro_f1_ci95: tuple[float, float] | None = None
    predictions_per_second: float | None = None
    recall_vs_exact: float | None = None  # approximate kNN indexes only
    class_weight: str | None = None
    select_metric: str = "accuracy"
    calibration: dict | None = None  # head.json's calibration (None: uncalibrated)
    calibration_ece: dict | None = None  # ECE before/after on the rows T was fitted on, and on the eval file

    def summary(self) -> str:
        """One line: fit time and choices, calibration, embedding, and the eval figures when there was an eval file."""
        text = (f"{self.head}: fit {self.fit_seconds:.2f} s on {self.train_rows} rows "
                f"(chose {', '.join(f'{k}={v:g}' for k, v in self.selected.items()) or 'defaults'} "
                f"by {self.select_metric}; class_weight {self.class_weight or 'none'}); "
                f"embedded with {self.encoded} texts encoded")
        text += "; " + calibration_line(self.calibration)
        if self.accuracy is not None:
            text += (f"; eval ({self.eval_rows} rows): accuracy {self.accuracy:.4f}, macro-F1 {self.macro_f1:.4f}, "
                     f"{self.predictions_per_second:,.0f} predictions/s")
        if self.recall_vs_exact is not None:
            text += f"; approximate index recall vs exact: {self.recall_vs_exact:.3f}"
        return text


def calibration_line(calibration: dict | None) -> str:
    """How a head's probabilities are calibrated, for the summary (and its card)."""
    if calibration is None:
        return "uncalibrated (--calibrate none)"
    if calibration["temperature"] == 1.0 and calibration["smoothing"] == 0.0:
        if calibration["rows"] < MIN_ROWS:
            return (f"not calibrated: {calibration['rows']} held-out rows are too few to fit a temperature "
                    f"(at least {MIN_ROWS}; train on more rows or pass --calibrate none)")
        return f"not calibrated: no temperature lowered the log-loss of the {calibration['rows']} held-out rows"
    before, after = calibration.get("nll_before"), calibration.get("nll_after")
    nll = "" if after is None else f", log-loss {'inf' if before is None else f'{before:.3f}'} -> {after:.3f}"
    smoothing = f", smoothing {calibration['smoothing']:g}" if calibration["smoothing"] else ""
    return f"temperature {calibration['temperature']:.3f}{smoothing} (fitted on {calibration['rows']} held-out rows{nll})"


def predictions_per_second(head, X: np.ndarray, repeats: int = 3) -> float:
    """Best of a few timed ``predict`` calls on ``X`` (vectors already embedded)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        head.predict(X)
        best = min(best, time.perf_counter() - start)
    return len(X) / best if best > 0 else float("inf")


def calibration_ece(head, X: np.ndarray, y: np.ndarray) -> dict:
    """``{"rows", "ece_before", "ece_after"}``: the head's ECE on (X, y) without and with its calibration
    (15 equal-width bins of the top probability, :func:`comparison.probability.ece`)."""
    from .probability import ece

    raw, calibrated = head.uncalibrated_proba(X), head.predict_proba(X)
    classes = np.asarray(head.classes_)
    return {"rows": int(len(y)), "ece_before": ece(raw, classes[raw.argmax(axis=1)] == y),
            "ece_after": ece(calibrated, classes[calibrated.argmax(axis=1)] == y)}


def select_and_fit(head, X: np.ndarray, y: np.ndarray, select_on: str = "train", seed: int = 42,
                   X_eval: np.ndarray | None = None, y_eval: np.ndarray | None = None, calibrate: str = "none",
                   measured: dict | None = None):
    """Choose the head's hyperparameters (on a stratified 10% of train, or on the eval set), then fit.

    ``select_on="train"``: a probe fitted on 90% of the rows picks them on the other 10%, and the
    head is refit on every row with the choice fixed. ``"eval"``: one fit that picks them on
    (X_eval, y_eval). ``calibrate="temperature"`` fits a temperature on those same selection rows
    (the probe's probabilities on its holdout, or the head's on the eval set). Returns the fitted head;
    ``measured``, a dict, gets ``"holdout"``: :func:`calibration_ece` on the rows T was fitted on.
    """
    if calibrate not in CALIBRATIONS:
        raise TweetheadsError(f"calibrate must be one of {', '.join(CALIBRATIONS)}, got {calibrate!r}")
    if select_on == "eval":
        head = head.fit(X, y, X_eval=X_eval, y_eval=y_eval).calibrate(X_eval, y_eval, calibrate)
        if measured is not None and calibrate != "none":
            measured["holdout"] = calibration_ece(head, X_eval, y_eval)
        return head
    counts = np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 else None
    # 10% of the rows, and at least one of each class when stratified
    hold = max(int(np.ceil(0.1 * len(y))), len(counts) if stratify is not None else 1)
    fit_rows, hold_rows = train_test_split(np.arange(len(y)), test_size=hold, random_state=seed, stratify=stratify)
    probe = clone(head).fit(X[fit_rows], y[fit_rows], X_eval=X[hold_rows], y_eval=y[hold_rows])
    final = probe.refit(X, y)
    if calibrate != "none":
        final.set_calibration(probe.calibrate(X[hold_rows], y[hold_rows], calibrate).calibration_)
        if measured is not None:
            measured["holdout"] = calibration_ece(probe, X[hold_rows], y[hold_rows])
    return final


def fit_head(embedder, train_path, out_dir, config: HeadConfig = HeadConfig(), eval_path=None) -> HeadReport:
    """Embed (cache), fit, calibrate, save to ``out_dir``, and evaluate on ``eval_path`` when given."""
    if config.calibrate not in CALIBRATIONS:
        raise TweetheadsError(f"calibrate must be one of {', '.join(CALIBRATIONS)}, got {config.calibrate!r}")
    if config.select_on not in ("train", "eval"):
        raise TweetheadsError(f"select_on must be 'train' or 'eval', got {config.select_on!r}")
    if config.select_on == "eval" and eval_path is None:
        raise TweetheadsError("--select-on eval needs --eval FILE")
    train = load_texts(train_path, config.text_col, config.label_col, config.max_train_rows)
    evals = load_texts(eval_path, config.text_col, config.label_col) if eval_path else None
    params = {"class_weight": config.class_weight, "select_metric": config.select_metric, **config.params}
    head = get_head(config.head, **params)
    X, stats = embedder.embed(train.texts)
    y = np.asarray(train.labels)
    encoded, embed_seconds = stats.encoded, stats.seconds
    if evals is not None:
        X_eval, eval_stats = embedder.embed(evals.texts)
        y_eval = np.asarray(evals.labels)
        unseen = sorted(set(y_eval) - set(y))
        if unseen:
            raise TweetheadsError(f"{eval_path}: label(s) {unseen} do not occur in {train_path}; "
                                  "a head cannot predict them")
        encoded, embed_seconds = encoded + eval_stats.encoded, embed_seconds + eval_stats.seconds
    start = time.perf_counter()
    measured: dict = {}
    head = select_and_fit(head, X, y, config.select_on, config.seed,
                          *((X_eval, y_eval) if config.select_on == "eval" else (None, None)), calibrate=config.calibrate,
                          measured=measured)
    fit_seconds = time.perf_counter() - start
    enc = embedder.load()
    # the description without the encoder's local path: head.json names the model as it was given
    head.set_model(enc.fingerprint, {k: v for k, v in enc.description.items() if k != "path"})
    if config.probe_from_train:
        first = {}  # the first distinct training texts: the probe that later checks vectors computed another way
        for i, text in enumerate(train.texts):
            if len(first) == PROBE_TEXTS:
                break
            first.setdefault(text, i)
        head.set_probe(list(first), X[list(first.values())], source="train")
    else:
        probe = shipped_probe()
        head.set_probe(probe, embedder.embed(probe)[0], source="shipped")
    if config.drift_reference:
        from scoring.drift import reference_sample

        head.set_drift_reference(reference_sample(X, seed=config.seed))
    out_dir = Path(out_dir)
    head.save(out_dir)
    report = HeadReport(config.head, str(out_dir), len(y), head.selected_params(), fit_seconds, embed_seconds, encoded,
                        class_weight=head.class_weight, select_metric=head.select_metric,
                        calibration=None if head.calibration_ is None else head.calibration_.to_json())
    if getattr(head, "index", "flat") != "flat" and hasattr(head, "recall_against_exact"):
        queries = X_eval if evals is not None else X[:1000]
        report.recall_vs_exact = float(head.recall_against_exact(queries))
    if evals is not None:
        predicted = head.predict(X_eval)
        report.eval_rows = len(y_eval)
        report.accuracy = float(accuracy_score(y_eval, predicted))
        report.macro_f1 = float(f1_score(y_eval, predicted, average="macro"))
        report.accuracy_ci95, report.macro_f1_ci95 = bootstrap_intervals(y_eval, predicted, seed=config.seed)
        report.predictions_per_second = predictions_per_second(head, X_eval)
        if head.calibration_ is not None:
            measured["eval"] = calibration_ece(head, X_eval, y_eval)
    report.calibration_ece = measured or None
    files = {"train": _file_entry(train_path, len(y))}
    if evals is not None:
        files["eval"] = _file_entry(eval_path, len(y_eval))
    record = {**asdict(report), "config": asdict(config), "train_path": str(train_path),
              "eval_path": str(eval_path) if eval_path else None, "files": files,
              "encoder": encoder_record(enc), "probe_source": head.probe_source_}
    (out_dir / REPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    head_card(head_record(head, record, out_dir.name)).save(out_dir / CARD_FILE)
    return report


def bootstrap_intervals(y_true, y_pred, resamples: int = 1000, seed: int = 42) -> tuple[list, list]:
    """95% percentile bootstrap intervals of accuracy and macro-F1 (the classes present, as f1_score's
    default), resampling the eval rows ``resamples`` times in chunks that keep memory small."""
    classes, codes = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]), return_inverse=True)
    truth, guess = codes[:len(y_true)], codes[len(y_true):]
    n, rng = len(truth), np.random.default_rng(seed)
    accuracy, macro = [], []
    step = max(1, 4_000_000 // max(n, 1))
    for start in range(0, resamples, step):
        rows = rng.integers(0, n, size=(min(step, resamples - start), n))
        t, p = truth[rows], guess[rows]
        accuracy.append((t == p).mean(axis=1))
        f1 = []
        for c in range(len(classes)):
            tp = ((t == c) & (p == c)).sum(axis=1)
            both = (t == c).sum(axis=1) + (p == c).sum(axis=1)
            f1.append(np.where(both > 0, 2 * tp / np.maximum(both, 1), 0.0))
        macro.append(np.mean(f1, axis=0))
    return ([float(v) for v in np.percentile(np.concatenate(accuracy), [2.5, 97.5])],
            [float(v) for v in np.percentile(np.concatenate(macro), [2.5, 97.5])])


def _file_entry(path, rows: int) -> dict:
    """A data file for the card: its name (the path stays in train_report.json), rows and sha256."""
    return {"path": Path(path).name, "rows": int(rows), "sha256": sha256_file(path)}
