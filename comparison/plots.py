"""PNG plots for the comparison: confusion matrices, accuracy with intervals, calibration (reliability diagram and
confidence histogram), coverage-accuracy, the learning and label curves."""
from __future__ import annotations

from itertools import cycle
from pathlib import Path

import numpy as np

STYLES = ("--", ":", "-.", (0, (5, 1)))  # reference lines, in turn


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_cells(y: np.ndarray, predicted: np.ndarray, classes: list[str]) -> tuple[np.ndarray, list[list[str]]]:
    """Row rates (true class normalized to 1) and each cell's text: the rate over the count, ``"0.82\n(1,234)"``."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y, predicted, labels=classes)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return rates, [[f"{rates[i, j]:.2f}\n({counts[i, j]:,})" for j in range(len(classes))] for i in range(len(classes))]


def accuracy_limits(rows: list[dict], references=()) -> tuple[float, float]:
    """x-limits of ``accuracy.png``: the 95% intervals of every method but the majority baseline, and the
    references, with a margin, so a point of difference between methods is visible (not 0 to 1)."""
    lows, highs = [], []
    for row in rows:
        if row["kind"] == "baseline":
            continue
        for subset in ("all", "novel"):
            if row[subset].get("rows"):
                low, high = row[subset]["accuracy_ci95"]
                lows.append(low), highs.append(high)
    values = [accuracy for _, accuracy in references]
    lows, highs = lows + values, highs + values
    if not lows:
        return 0.0, 1.0
    low, high = min(lows), max(highs)
    margin = max(0.02, 0.1 * (high - low))
    return max(0.0, low - margin), min(1.0, high + margin)


def write_plots(report_dir: Path, rows: list[dict], y: np.ndarray, classes: list[str], run_metrics: dict,
                results: dict) -> list[str]:
    """Write every plot that applies into ``report_dir``; returns their file names in report order."""
    plt = _pyplot()
    written = []
    references = [(r["name"], r["accuracy"]) for r in results.get("references", [])]
    methods = [r for r in rows if r["kind"] != "baseline"]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods), 3.9), squeeze=False)
    for ax, row in zip(axes[0], methods):
        rates, cells = confusion_cells(y, row["predictions"], classes)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(rates):
            ax.text(j, i, cells[i][j], ha="center", va="center", fontsize=8,
                    color="white" if value > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=30)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_title(f"{row['name']}\nacc {row['all']['accuracy']:.3f}", fontsize=9)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("true (row rate, count)")
    fig.tight_layout()
    fig.savefig(report_dir / "confusion_matrices.png", dpi=110)
    plt.close(fig)
    written.append("confusion_matrices.png")

    low, high = accuracy_limits(rows, references)
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.8))
    names = []
    for r in rows:
        acc = r["all"].get("accuracy", np.nan)
        novel = r["novel"].get("accuracy")
        label = f"{r['name']}\nall {acc:.3f}" + ("" if novel is None else f", novel {novel:.3f}")
        names.append(label + (" (left of the axis)" if acc < low else ""))
    for offset, subset, color in ((-0.2, "all", "#4878a8"), (0.2, "novel", "#e49444")):
        acc = [r[subset].get("accuracy", np.nan) for r in rows]
        ci = np.array([r[subset].get("accuracy_ci95", [np.nan, np.nan]) for r in rows])
        err = np.abs(np.vstack([np.array(acc) - ci[:, 0], ci[:, 1] - np.array(acc)]))
        ax.barh(np.arange(len(rows)) + offset, acc, height=0.38, xerr=err, color=color, capsize=3,
                label=f"{subset} rows")
    for (name, value), style in zip(references, cycle(STYLES)):
        ax.axvline(value, color="black", linestyle=style, linewidth=1, label=f"{name} {value:.4f}")
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.set_xlabel("accuracy (95% bootstrap interval; axis zoomed to the methods' intervals)")
    ax.set_xlim(low, high)
    ax.grid(axis="x", color="0.9", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(report_dir / "accuracy.png", dpi=110)
    plt.close(fig)
    written.append("accuracy.png")

    if any("reliability" in r["all"] for r in rows):
        calibration_plot(report_dir / "calibration.png", rows)
        coverage_plot(report_dir / "coverage.png", rows, y)
        written += ["calibration.png", "coverage.png"]
    if run_metrics.get("history") or run_metrics.get("training_log"):
        learning_curve(report_dir / "learning_curve.png", run_metrics, references)
        written.append("learning_curve.png")
    if "label_curve" in results:
        plot_curve(report_dir / "label_curve.png", results["label_curve"])
        written.append("label_curve.png")
    return written


def calibration_plot(path: Path, rows: list[dict]) -> None:
    """``calibration.png``: left, the reliability diagram on all test rows (accuracy against mean top probability
    per bin, one curve per method, each point labelled with its row count); right, the confidence histogram
    (rows per bin of the top probability, per method)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    left.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
    for row in rows:
        m = row["all"]
        if "reliability" not in m:
            continue
        bins = [b for b in m["reliability"] if b["rows"]]
        line, = left.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", markersize=4,
                          label=f"{row['name']} (ECE {m['ece']:.3f})")
        for b in bins:
            left.annotate(f"{b['rows']:,}", (b["confidence"], b["accuracy"]), fontsize=6, color=line.get_color(),
                          xytext=(2, 3), textcoords="offset points")
        edges = [b["low"] for b in m["reliability"]] + [m["reliability"][-1]["high"]]
        right.stairs([b["rows"] for b in m["reliability"]], edges, color=line.get_color(), label=row["name"])
    left.set_xlim(0, 1), left.set_ylim(0, 1)
    left.set_xlabel("mean top-class probability in the bin (15 equal-width bins)")
    left.set_ylabel("accuracy in the bin (labels: rows)")
    left.set_title("reliability diagram, all test rows")
    left.legend(fontsize=7, loc="upper left")
    right.set_xlim(0, 1)
    right.set_xlabel("top-class probability")
    right.set_ylabel("rows")
    right.set_title("confidence histogram")
    right.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coverage_plot(path: Path, rows: list[dict], y: np.ndarray) -> None:
    """``coverage.png``: accuracy on the most confident rows against the share of rows kept (all test rows)."""
    from .probability import coverage_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for row in rows:
        if "proba" not in row or not len(y):
            continue
        coverage, accuracy = coverage_curve(row["proba"], row["correct"])
        ax.plot(coverage, accuracy, linewidth=1.3, label=row["name"])
    ax.set_xlim(0, 1)
    ax.set_xlabel("coverage: share of rows kept, most confident first")
    ax.set_ylabel("accuracy on the rows kept")
    ax.set_title("selective prediction (all test rows)")
    ax.grid(color="0.9", linewidth=0.8)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def learning_curve(path: Path, run_metrics: dict, references=()) -> None:
    """Left: training loss at every logged step, validation loss per epoch; right: eval accuracy per epoch.

    Both panels share the x axis (training steps) and mark epoch ends; runs written before
    ``training_log`` existed fall back to the per-epoch training loss. ``references``: ``(name,
    accuracy)`` pairs drawn as horizontal lines on the accuracy panel (none unless asked for).
    """
    plt = _pyplot()
    history = run_metrics.get("history") or []
    log = run_metrics.get("training_log") or [{"step": h["step"], "training_loss": h.get("training_loss")}
                                              for h in history if h.get("training_loss") is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    left.plot([p["step"] for p in log], [p["training_loss"] for p in log], linewidth=1.2,
              marker="." if len(log) < 60 else None, label="training loss (per logged step)")
    evaluated = [h for h in history if h.get("validation_loss") is not None]
    if evaluated:
        steps = [h["step"] for h in evaluated]
        left.plot(steps, [h["validation_loss"] for h in evaluated], marker="o", label="validation loss (per epoch)")
        right.plot(steps, [h["accuracy"] for h in evaluated], marker="o", label="end-to-end eval accuracy")
    else:
        right.text(0.5, 0.5, "no eval file: no validation figures", ha="center", va="center",
                   transform=right.transAxes)
    for (name, value), style in zip(references, cycle(STYLES)):
        right.axhline(value, color="black", linestyle=style, linewidth=1, label=f"{name} {value:.4f}")
    for ax in (left, right):
        for h in history:
            ax.axvline(h["step"], color="0.85", linewidth=0.8, zorder=0)
        ax.set_xlabel("training step (grey lines: epoch ends)")
        ax.legend(fontsize=8)
    left.set_title("loss"), right.set_title("accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(path: Path, curve: dict) -> None:
    """``label_curve.png``: accuracy on all test rows against labelled tweets (log x), spread shaded, with
    ``curve["references"]`` (the end-to-end model where there is one, and any quoted references asked
    for) as horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, points in curve["heads"].items():
        sizes = [p["size"] for p in points]
        mean = [p["all"]["accuracy"]["mean"] for p in points]
        ax.plot(sizes, mean, marker="o", label=name)
        ax.fill_between(sizes, [p["all"]["accuracy"]["min"] for p in points],
                        [p["all"]["accuracy"]["max"] for p in points], alpha=0.2)
    for (label, value), style in zip(curve.get("references", {}).items(), cycle(STYLES)):
        ax.axhline(value, color="black", linestyle=style, linewidth=1, label=f"{label} {value:.4f}")
    ax.set_xscale("log")
    ax.set_xticks(curve["sizes"], [f"{size:,}" for size in curve["sizes"]])  # the sizes asked for, not powers of 10
    ax.minorticks_off()
    ax.set_xlabel("labelled training tweets (stratified samples; shading: min-max over repeats)")
    ax.set_ylabel("accuracy, all test rows")
    ax.set_title("accuracy per labelled tweet")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
