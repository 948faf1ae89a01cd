"""PNG plots for the comparison: confusion matrices, accuracy with intervals, the learning curve."""
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

    history = run_metrics.get("history") or []
    if history:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        epochs = [h["epoch"] for h in history]
        left.plot(epochs, [h.get("training_loss") for h in history], marker="o", label="training loss")
        if any("validation_loss" in h for h in history):
            left.plot(epochs, [h.get("validation_loss") for h in history], marker="o", label="validation loss")
            right.plot(epochs, [h.get("accuracy") for h in history], marker="o", label="end-to-end accuracy")
        right.axhline(results["card"]["accuracy"], color="black", linestyle="--", linewidth=1, label="card (quoted)")
        left.set_xlabel("epoch"), right.set_xlabel("epoch"), left.legend(), right.legend(fontsize=8)
        left.set_title("fine-tuning loss"), right.set_title("eval accuracy per epoch")
        fig.tight_layout()
        fig.savefig(report_dir / "learning_curve.png", dpi=110)
        plt.close(fig)
        written.append("learning_curve.png")
    return written
