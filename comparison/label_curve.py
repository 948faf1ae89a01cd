"""Accuracy per labelled tweet: every head refit on stratified samples of the training file.

Because the training texts are cached vectors, refitting a head on a subset costs seconds, so
``compare --train-sizes 32,128,512,2048,all`` can show how many labelled tweets each head needs.
For each size, ``repeats`` stratified samples are drawn (seeds ``seed``, ``seed + 1``, ...; the
whole file once, since every draw would be the same); each head is refit on a sample with its
saved parameters, except the hyperparameter its search chose (C, k, rounds), which is chosen again
on the sample's own 10% holdout exactly as ``train-head`` does (``select_and_fit``); each refit
is scored on the test rows, all and novel. The summary gives the mean and the min-max over
repeats of accuracy, macro-F1 and macro-recall.

Left out: samples smaller than two rows per class (the holdout needs one of each), and the
end-to-end model, which would need a fine-tune per sample (``compare`` draws it as a reference line
when ``--model`` is a run folder, beside any ``--reference`` asked for).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from embed.errors import TweetheadsError
from heads.base import SELECT_METRICS as METRICS
from heads.base import selection_score

from .train_head import select_and_fit

ALL = "all"


@dataclass(frozen=True)
class CurveConfig:
    """The label curve's sample sizes (or "all"), repeats per size and first seed."""

    sizes: tuple = (32, 128, 512, 2048, ALL)  # labelled rows per sample, or "all"
    repeats: int = 3
    seed: int = 42


def parse_sizes(text: str) -> tuple:
    """``"32,128,all"`` -> ``(32, 128, "all")``; raises TweetheadsError naming the bad item."""
    sizes = []
    for item in (part.strip() for part in text.split(",")):
        if item.lower() == ALL:
            sizes.append(ALL)
        elif item.isdigit() and int(item) > 0:
            sizes.append(int(item))
        else:
            raise TweetheadsError(f"--train-sizes: {item!r} is not a positive whole number or 'all'; "
                                  "write e.g. 32,128,512,2048,all")
    if not sizes:
        raise TweetheadsError("--train-sizes is empty; write e.g. 32,128,512,2048,all")
    return tuple(dict.fromkeys(sizes))


def sample_rows(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A stratified sample of ``size`` row indexes (sorted), every class at least twice.

    All rows when ``size >= len(y)``.
    """
    if size >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    if size < 2 * len(classes):
        raise TweetheadsError(f"--train-sizes {size}: a sample needs at least 2 rows of each of the {len(classes)} "
                              f"labels ({2 * len(classes)} rows) so a head can choose its hyperparameter on a "
                              "holdout; use a larger size")
    rows, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.sort(rows)


def searchable(head):
    """An unfitted copy of a saved head with its saved parameters, the searched ones back to their defaults."""
    from sklearn.base import clone

    fresh = clone(head)
    defaults = type(head)().get_params(deep=False)
    return fresh.set_params(**{key: defaults[key] for key in head.selected_params()})


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """The metrics the heads select on (``selection_score``), or none for an empty subset."""
    return {m: selection_score(m, y_true, y_pred) for m in METRICS} if len(y_true) else {}


def label_curve(heads: list[tuple[str, object]], X: np.ndarray, y: np.ndarray, X_test: np.ndarray,
                y_test: np.ndarray, novel: np.ndarray, config: CurveConfig = CurveConfig()) -> dict:
    """``{"sizes": [...], "heads": {name: [point per size]}}``; a point has mean/min/max per metric and subset."""
    if not isinstance(config.repeats, int) or config.repeats < 1:
        raise TweetheadsError(f"--repeats must be a whole number of at least 1, got {config.repeats!r}")
    y, y_test = np.asarray(y), np.asarray(y_test)
    sizes = sorted({len(y) if s == ALL else min(int(s), len(y)) for s in config.sizes})
    runs: dict[tuple[str, int], list[dict]] = {(name, size): [] for name, _ in heads for size in sizes}
    for size in sizes:
        for repeat in range(1 if size >= len(y) else config.repeats):
            seed = config.seed + repeat
            rows = sample_rows(y, size, seed)  # one sample per draw, the same for every head
            for name, head in heads:
                start = time.perf_counter()
                fitted = select_and_fit(searchable(head), X[rows], y[rows], seed=seed)
                fit_seconds = time.perf_counter() - start
                predicted = fitted.predict(X_test)
                runs[name, size].append({"seed": seed, "fit_seconds": fit_seconds, "chose": fitted.selected_params(),
                                         "all": _scores(y_test, predicted),
                                         "novel": _scores(y_test[novel], predicted[novel])})
    return {"sizes": sizes, "repeats": config.repeats, "train_rows": int(len(y)),
            "heads": {name: [_point(size, runs[name, size]) for size in sizes] for name, _ in heads}}


def _point(size: int, runs: list[dict]) -> dict:
    """One size of one head: its runs, mean fit seconds, and mean/min/max of each metric per subset."""
    point = {"size": size, "runs": runs, "fit_seconds": float(np.mean([r["fit_seconds"] for r in runs]))}
    for subset in ("all", "novel"):
        point[subset] = {m: {"mean": float(np.mean([r[subset][m] for r in runs])),
                             "min": float(min(r[subset][m] for r in runs)),
                             "max": float(max(r[subset][m] for r in runs))}
                         for m in METRICS if runs[0][subset]}
    return point


def curve_table(curve: dict, subset: str = "all") -> list[str]:
    """Markdown rows: one per head and size, mean (min-max over repeats) of each metric."""
    lines = ["| head | labelled tweets | repeats | accuracy | macro-F1 | macro-recall | fit s |",
             "|---|---:|---:|---|---|---|---:|"]
    for name, points in curve["heads"].items():
        for point in points:
            cells = []
            for metric in METRICS:
                value = point[subset].get(metric)
                cells.append("-" if value is None else
                             f"{value['mean']:.4f} ({value['min']:.4f}-{value['max']:.4f})")
            lines.append(f"| {name} | {point['size']:,} | {len(point['runs'])} | " + " | ".join(cells)
                         + f" | {point['fit_seconds']:.2f} |")
    return lines

