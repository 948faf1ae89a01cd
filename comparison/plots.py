"""PNG plots for the comparison: confusion matrices, accuracy with intervals, the learning and label curves."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(report_dir: Path, rows: list[dict], y: np.ndarray, classes: list[str], run_metrics: dict,
                results: dict) -> list[str]:
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    written = []
    methods = [r for r in rows if r["kind"] != "baseline"]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.6), squeeze=False)
    for ax, row in zip(axes[0], methods):
        matrix = confusion_matrix(y, row["predictions"], labels=classes, normalize="true")
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value > 0.6 else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=30)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_title(f"{row['name']}\nacc {row['all']['accuracy']:.3f}", fontsize=9)
        ax.set_xlabel("predicted")
    axes[0][0].set_ylabel("true (row-normalized)")
    fig.tight_layout()
    fig.savefig(report_dir / "confusion_matrices.png", dpi=110)
    plt.close(fig)
    written.append("confusion_matrices.png")

    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.8))
    names = [r["name"] for r in rows]
    for offset, subset, color in ((-0.2, "all", "#4878a8"), (0.2, "novel", "#e49444")):
        acc = [r[subset].get("accuracy", np.nan) for r in rows]
        ci = np.array([r[subset].get("accuracy_ci95", [np.nan, np.nan]) for r in rows])
        err = np.abs(np.vstack([np.array(acc) - ci[:, 0], ci[:, 1] - np.array(acc)]))
        ax.barh(np.arange(len(rows)) + offset, acc, height=0.38, xerr=err, color=color, capsize=3,
                label=f"{subset} rows")
    ax.axvline(results["card"]["accuracy"], color="black", linestyle="--", linewidth=1,
               label=f"reference card {results['card']['accuracy']} (quoted)")
    ax.set_yticks(range(len(rows)), names)
    ax.set_xlabel("accuracy (95% bootstrap interval)")
    ax.set_xlim(0, 1)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(report_dir / "accuracy.png", dpi=110)
    plt.close(fig)
    written.append("accuracy.png")

    if run_metrics.get("history") or run_metrics.get("training_log"):
        learning_curve(report_dir / "learning_curve.png", run_metrics, results["card"]["accuracy"])
        written.append("learning_curve.png")
    if "label_curve" in results:
        plot_curve(report_dir / "label_curve.png", results["label_curve"])
        written.append("label_curve.png")
    return written


def learning_curve(path: Path, run_metrics: dict, card_accuracy: float | None = None) -> None:
    """Left: training loss at every logged step, validation loss per epoch; right: eval accuracy per epoch.

    Both panels share the x axis (training steps) and mark epoch ends; runs written before
    ``training_log`` existed fall back to the per-epoch training loss.
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
    if card_accuracy is not None:
        right.axhline(card_accuracy, color="black", linestyle="--", linewidth=1, label=f"card {card_accuracy} (quoted)")
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
    ``curve["references"]`` (the end-to-end model, the card) as horizontal lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name, points in curve["heads"].items():
        sizes = [p["size"] for p in points]
        mean = [p["all"]["accuracy"]["mean"] for p in points]
        ax.plot(sizes, mean, marker="o", label=name)
        ax.fill_between(sizes, [p["all"]["accuracy"]["min"] for p in points],
                        [p["all"]["accuracy"]["max"] for p in points], alpha=0.2)
    for (label, value), style in zip(curve.get("references", {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="black", linestyle=style, linewidth=1, label=f"{label} {value:.4f}")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training tweets (stratified samples; shading: min-max over repeats)")
    ax.set_ylabel("accuracy, all test rows")
    ax.set_title("accuracy per labelled tweet")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
