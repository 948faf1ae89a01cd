"""``report.md`` and the table ``compare`` prints, rendered from ``results.json``."""
from __future__ import annotations

from embed.model_card import fixed


def _p(value) -> str:
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _rate(value) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(results: dict, subset: str) -> list[str]:
    classes = results["classes"]
    head = ["method", "accuracy", "95% CI", "macro-F1", "macro-recall"] + [f"F1 {c}" for c in classes] + \
        ["McNemar p vs e2e", "fit s", "pred/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if subset == "all":
        card = results["card"]
        lines.append(f"| {card['name']} | {card['accuracy']:.4f} | - | - | - | " + " | ".join("-" for _ in classes)
                     + " | - | - | - |")
    for method in results["methods"]:
        m = method[subset]
        if not m.get("rows"):
            continue
        low, high = m["accuracy_ci95"]
        cells = [method["name"], fixed(m["accuracy"]), f"{low:.3f}-{high:.3f}", fixed(m["macro_f1"]),
                 fixed(m["macro_recall"])]
        cells += [fixed(m["f1_per_class"][c]) for c in classes]
        cells += [_p(m["mcnemar_p_vs_e2e"]), fixed(method["fit_seconds"], 2), _rate(method["predictions_per_second"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_report(results: dict) -> str:
    lines = [
        "# tweetheads comparison", "",
        f"- model: `{results['model'].get('model')}` ({results['model'].get('pooling')} pooling, "
        f"{results['model'].get('dim')}-d), run `{results['run']}`",
        f"- test file: `{results['test']}`: {results['rows']} rows, of which {results['novel_rows']} are novel "
        f"(normalized text not in `{results['train']}`)",
        f"- the reference card's {results['card']['accuracy']} is {results['card']['note']}.",
        "- 95% CI: percentile bootstrap of accuracy; McNemar: exact test against our end-to-end model on the "
        "same rows; fit s: seconds to fit (the end-to-end row: seconds of fine-tuning steps).",
        "", "## All test rows", "", *table(results, "all"),
        "", "## Novel test rows (text not in the training file)", "", *table(results, "novel"), "",
    ]
    curve = results.get("label_curve")
    if curve:
        from .label_curve import curve_table

        refs = "; ".join(f"{name} {value:.4f}" for name, value in curve["references"].items())
        for subset, title in (("all", "all test rows"), ("novel", "novel test rows")):
            lines += [f"## Accuracy per labelled tweet ({title})", "",
                      f"Each head refit on stratified samples of the {curve['train_rows']:,} training rows "
                      f"({curve['repeats']} repeats per size, one for the whole file), its hyperparameter chosen "
                      f"again on the sample's own 10% holdout; mean (min-max over repeats). References: {refs}.",
                      "", *curve_table(curve, subset), ""]
    for plot in results.get("plots", []):
        lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines)
