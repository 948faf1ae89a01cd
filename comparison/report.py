"""``report.md`` and the table ``compare`` prints, rendered from ``results.json``."""
from __future__ import annotations

from embed.model_card import fixed


def _p(value) -> str:
    """A p-value cell."""
    if value is None:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _rate(value) -> str:
    """A predictions-per-second cell."""
    return "-" if value is None else f"{value:,.0f}"


def mcnemar_header(results: dict) -> str:
    """``McNemar p vs e2e``, or ``McNemar p vs logistic`` where the best head is the reference."""
    return f"McNemar p vs {results['mcnemar_reference']['label']}"


def table(results: dict, subset: str) -> list[str]:
    """Markdown rows of the main table on ``subset`` ("all" or "novel"): accuracy, CI, F1s, McNemar, speed."""
    classes = results["classes"]
    head = ["method", "accuracy", "95% CI", "macro-F1", "macro-recall"] + [f"F1 {c}" for c in classes] + \
        [mcnemar_header(results), "fit s", "pred/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if subset == "all":
        for ref in results.get("references", []):
            lines.append(f"| {ref['name']} | {ref['accuracy']:.4f} | - | - | - | " + " | ".join("-" for _ in classes)
                         + " | - | - | - |")
    for method in results["methods"]:
        m = method[subset]
        if not m.get("rows"):
            continue
        low, high = m["accuracy_ci95"]
        cells = [method["name"], fixed(m["accuracy"]), f"{low:.3f}-{high:.3f}", fixed(m["macro_f1"]),
                 fixed(m["macro_recall"])]
        cells += [fixed(m["f1_per_class"][c]) for c in classes]
        cells += [_p(m["mcnemar_p"]), fixed(method["fit_seconds"], 2), _rate(method["predictions_per_second"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def probability_table(results: dict, subset: str) -> list[str]:
    """Markdown rows: each method's ECE, Brier, log-loss, mean top probability and selective accuracy on ``subset``."""
    coverages = None
    lines = []
    for method in results["methods"]:
        m = method[subset]
        if not m.get("rows") or "ece" not in m:
            continue
        if coverages is None:
            coverages = list(m["selective_accuracy"])
            head = ["method", "ECE", "Brier", "log-loss", "mean top p"] + [
                f"acc @ {float(c):.0%} coverage" for c in coverages]
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        cells = [method["name"] + (" (class shares)" if method["kind"] == "baseline" else ""), fixed(m["ece"]),
                 fixed(m["brier"]), fixed(m["log_loss"]), fixed(m["mean_confidence"])]
        cells += [fixed(m["selective_accuracy"][c]) for c in coverages]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary(results: dict) -> list[str]:
    """The lines ``compare`` prints above its tables: rows, why there is no end-to-end row, and whether the
    end-to-end probabilities were cross-fitted."""
    lines = [f"{results['rows']} test rows, {results['novel_rows']} novel"]
    if results.get("no_end_to_end"):
        lines.append(results["no_end_to_end"])
    if (results.get("e2e_calibration") or {}).get("applied") == "cross-fitted":
        lines.append(results["e2e_calibration"]["line"])
    return lines


def render_report(results: dict) -> str:
    """``report.md``: the model and files, the tables on all and novel rows, probabilities, label curve, plots."""
    model = results["model"]
    given = results.get("model_name")
    where = f", run `{results['run']}`" if results.get("run") else (
        f", given as `{given}`" if given and given != model.get("model") else "")
    mcnemar = results["mcnemar_reference"]
    fit = "; fit s: seconds to fit" + (" (the end-to-end row: seconds of fine-tuning steps)"
                                       if mcnemar["kind"] == "e2e" else "")
    lines = [
        "# tweetheads comparison", "",
        f"- model: `{model.get('model')}` ({model.get('pooling')} pooling, {model.get('dim')}-d){where}",
    ]
    if results.get("no_end_to_end"):
        lines.append(f"- {results['no_end_to_end']}")
    if results.get("e2e_calibration"):
        lines.append(f"- {results['e2e_calibration']['line']}.")
    lines += [
        f"- test file: `{results['test']}`: {results['rows']} rows, of which {results['novel_rows']} are novel "
        f"(normalized text not in `{results['train']}`)",
        *(f"- {ref['name']} {ref['accuracy']}: {ref['note']}." for ref in results.get("references", [])),
        f"- 95% CI: percentile bootstrap of accuracy; McNemar: exact test against {mcnemar['name']} "
        f"({mcnemar['why']}) on the same rows{fit}.",
        "", "## All test rows", "", *table(results, "all"),
        "", "## Novel test rows (text not in the training file)", "", *table(results, "novel"), "",
    ]
    definitions = results.get("probability_definitions")
    if definitions:
        lines += ["## Probabilities: calibration and selective prediction", "",
                  *(f"- {name.replace('_', ' ')}: {text}." for name, text in definitions.items()), ""]
        for subset, title in (("all", "All test rows"), ("novel", "Novel test rows")):
            lines += [f"### {title}", "", *probability_table(results, subset), ""]
    curve = results.get("label_curve")
    if curve:
        from .label_curve import curve_table

        refs = "; ".join(f"{name} {value:.4f}" for name, value in curve["references"].items())
        for subset, title in (("all", "all test rows"), ("novel", "novel test rows")):
            lines += [f"## Accuracy per labelled tweet ({title})", "",
                      f"Each head refit on stratified samples of the {curve['train_rows']:,} training rows "
                      f"({curve['repeats']} repeat{'s' if curve['repeats'] != 1 else ''} per size, one for the whole file), its hyperparameter chosen "
                      f"again on the sample's own 10% holdout; mean (min-max over repeats)."
                      + (f" References: {refs}." if refs else ""),
                      "", *curve_table(curve, subset), ""]
    for plot in results.get("plots", []):
        lines += [f"![{plot}]({plot})", ""]
    return "\n".join(lines)
