"""Model cards for a run folder and a head folder, written through ``huggingface_hub``.

Both cards are a ``ModelCard`` whose front matter is a ``ModelCardData`` (with ``EvalResult`` rows
for ``model-index``), so the Hub and ``huggingface_hub.ModelCard.load`` / ``metadata_load`` read
them: ``base_model`` (the real hub id: an alias such as ``minilm`` is written as the repo it stands
for, a local path never), ``library_name``, ``pipeline_tag: text-classification``, ``tags``, the
``labels`` and the eval results the run or head measured. The body keeps the reference card's
recipe and results tables (a run) or the head's parameters and chosen hyperparameter (a head), and
adds how to use it, what it is for and where it fails. No path of the machine that trained it is
written: data files appear by file name, row count and sha256, a run by its folder name.
"""
from __future__ import annotations

import math
from pathlib import Path

from .models import ALIASES, base_model_id, looks_like_hub_id, run_base_model
from .runs import run_pooling

TAGS = ["tweetheads", "text-classification", "tweet-sentiment"]
LIMITS = (
    "## Intended use and limitations\n\n"
    "For measuring the sentiment of English tweets in bulk, as the training data labelled it: how a debate, a "
    "speech or a topic was received, counted over many tweets. The tweets tweetheads is built on are "
    "political (the First GOP Debate tweets, US politics in 2015): the model has learnt that domain's words, "
    "names and sarcasm and will be less accurate on other topics, on other periods and on other languages. "
    "Labels are one annotator pool's reading of a short text; sarcasm, quotes and retweets are often read wrongly. "
    "Accuracy on a held-out split of the same collection (below) overstates accuracy on new data. Do not use it "
    "to judge, profile or target individual people or their political views, nor to moderate one person's "
    "posts: it is a counting tool, wrong on roughly one tweet in three or four.\n\n"
    "Texts are normalized before encoding (`tweet-v1`: user mentions become `@user`, links `http`, runs of "
    "whitespace one space); `Predictor` and `tweetheads predict` do it themselves.")


def fixed(value, digits: int = 4) -> str:
    """A number with ``digits`` decimals, ``-`` for None: the one formatter of every table (card, report, bench)."""
    return "-" if value is None else f"{value:.{digits}f}"


def wilson(share: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion measured on ``n`` rows."""
    if n <= 0:
        return float("nan"), float("nan")
    z = 1.959963984540054
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def file_line(role: str, entry: dict) -> str:
    """``- role: `name` (N rows, sha256 `...`)``: a data file by its name, never its path."""
    sha = f", sha256 `{entry['sha256']}`" if entry.get("sha256") else ""
    return f"- {role}: `{Path(str(entry.get('path', '?'))).name}` ({entry.get('rows', '?')} rows{sha})"


def make_card(data, body: str):
    """A ``huggingface_hub.ModelCard`` from ``ModelCardData`` and a Markdown body."""
    from huggingface_hub import ModelCard

    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.rstrip()}\n")


def eval_result(metric: str, value: float, file: dict, name: str):
    """One ``huggingface_hub.EvalResult`` (text classification on the eval file) for a card's metadata."""
    from huggingface_hub import EvalResult

    file_name = Path(str(file.get("path", "eval"))).name
    return EvalResult(task_type="text-classification", task_name="Text Classification", dataset_type=file_name,
                      dataset_name=f"{file_name} ({file.get('rows', '?')} rows)", dataset_split="eval",
                      metric_type=metric, metric_value=float(value), metric_name=name)


def _link(repo: str | None) -> str:
    return f"[{repo}](https://huggingface.co/{repo})" if repo else "a local model"


def run_card(info: dict, metrics: dict, name: str):
    """The run folder's card: a ``ModelCard`` (see the module docstring)."""
    from huggingface_hub import ModelCardData

    config, final = info["config"], metrics.get("final") or {}
    pooling = run_pooling(info)
    pooled = {"cls": "the CLS token", "mean": "the mean of the token vectors"}[pooling]
    short = {"cls": "CLS", "mean": "mean"}[pooling]
    base, labels = run_base_model(info), list(info["labels"])
    evals = info.get("data", {}).get("eval")
    results = []
    if "accuracy" in final and evals:
        results = [eval_result("accuracy", final["accuracy"], evals, "Accuracy"),
                   eval_result("loss", final["validation_loss"], evals, "Validation loss")]
    data = ModelCardData(base_model=base, library_name="sentence-transformers", pipeline_tag="text-classification",
                         language="en", license=info.get("base_model_license"), tags=TAGS + [f"{short}-pooling"],
                         metrics=["accuracy"] if results else None, model_name=name,
                         eval_results=results or None, labels=labels)
    lines = [
        f"# {name}", "",
        f"This model is a fine-tuned version of {_link(base)} for {len(labels)}-way tweet sentiment "
        f"({', '.join(labels)}), trained end to end (encoder + classification head on {pooled}) "
        "by `tweetheads finetune`.",
    ]
    if metrics.get("interrupted"):
        lines += ["", f"**Interrupted** at step {metrics['steps']} of {metrics['total_steps']}; "
                      "continue with `finetune --resume`."]
    if "accuracy" in final:
        where = f" (`{Path(str(evals['path'])).name}`, {evals['rows']} rows)" if evals else ""
        low, high = wilson(final["accuracy"], int(evals["rows"])) if evals else (None, None)
        lines += ["", f"It achieves the following results on the evaluation set{where}:",
                  f"- Loss: {fixed(final['validation_loss'])}",
                  f"- Accuracy: {fixed(final['accuracy'])}" + (f" (95% Wilson interval {fixed(low)}-{fixed(high)})"
                                                               if evals else "")]
    lines += run_calibration_section(info.get("calibration"))
    lines += ["", LIMITS, "", "## How to use", "",
              "With tweetheads installed (`pip install tweetheads`; the folder is this run, or its hub id once pushed):",
              "", "```python", "from scoring.predictor import Predictor", "",
              f'predictor = Predictor.load("{name}")  # the run\'s own classifier (head "e2e")',
              'predictor.predict(["What a debate tonight", "Worst answer of the night"])', "```", "",
              "```bash", f'tweetheads predict --model {name} --head e2e "What a debate tonight"', "```", "",
              f"`encoder/` alone is a sentence-transformers model with {short} pooling: "
              f'`SentenceTransformer("{name}/encoder").encode(texts)` gives the vectors the classifier reads '
              "(normalize the texts first, as above).",
              "", "## Training and evaluation data", ""]
    lines += [file_line(role, entry) for role, entry in info.get("data", {}).items()]
    lines += [
        "", "## Training procedure", "", "### Training hyperparameters", "",
        "The following hyperparameters were used during training:",
        f"- learning_rate: {config['lr']:g}",
        f"- train_batch_size: {config['train_batch_size']}",
        f"- eval_batch_size: {config['eval_batch_size']}",
        f"- seed: {config['seed']}",
        f"- optimizer: Adam with betas=({config['adam_beta1']},{config['adam_beta2']}) "
        f"and epsilon={config['adam_epsilon']:g}",
        "- lr_scheduler_type: linear",
    ]
    if config.get("warmup_steps"):
        lines.append(f"- lr_scheduler_warmup_steps: {config['warmup_steps']}")
    elif config.get("warmup_ratio"):
        lines.append(f"- lr_scheduler_warmup_ratio: {config['warmup_ratio']:g}")
    lines.append(f"- num_epochs: {config['epochs']:g}")
    if config.get("objective", "classify") != "classify":
        lines.append(f"- objective: {config['objective']} (in-batch cosine pairs for the encoder; the "
                     f"classification head on its stopped {short} vectors)")
        if config.get("pairs", "all") != "all":
            lines.append(f"- pairs: {config['pairs']} (positive and negative pairs weigh half each)")
    if "group_by_length" in config:  # HF cards say group_by_length; ours adds what it means for the batches
        lines.append("- batches: " + ("grouped by length within shuffled windows (group_by_length)"
                                      if config["group_by_length"] else "drawn at random each epoch"))
    if pooling != "cls":
        lines.append(f"- pooling: {pooling} (embed the run with `--pooling auto`, the default, to get "
                     "the vectors its classifier was trained on)")
    if config.get("max_steps"):
        lines.append(f"- training_steps: {config['max_steps']}")
    lines += [f"- max_length: {info['max_length']}", f"- text normalization: {info['normalization']}",
              f"- device: {info['device']}"]
    if info.get("trained_precision"):
        lines.append(f"- precision: {info['trained_precision']} (asked: {config.get('precision', 'auto')})")
    lines += ["", "### Training results", "",
              "| Training Loss | Epoch | Step | Validation Loss | Accuracy |",
              "|:-------------:|:-----:|:----:|:---------------:|:--------:|"]
    for row in metrics.get("history", []):
        lines.append(f"| {fixed(row.get('training_loss'))} | {row['epoch']:.1f} | {row['step']} | "
                     f"{fixed(row.get('validation_loss'))} | {fixed(row.get('accuracy'))} |")
    if metrics.get("examples_per_second"):
        lines += ["", f"Training throughput: {metrics['examples_per_second']:.1f} examples/s "
                      f"({metrics['train_seconds']:.0f} s of training steps)."]
    lines += ["", "## Files", "",
              f"- `encoder/`: the fine-tuned encoder, a sentence-transformers model with {short} pooling",
              "- `classifier.safetensors`, `labels.json`: the end-to-end classification head and its labels",
              "- `metrics.json`: the table above as JSON",
              "- `tweetheads_run.json`: the run's settings, its calibration and the sha256 of every file above (checked on load)"]
    return make_card(data, "\n".join(lines))


def run_calibration_section(calibration: dict | None) -> list[str]:
    """The run card's "Calibration" lines, from ``tweetheads_run.json``'s ``calibration`` (none for a run
    written before it): the temperature and the file it was fitted on, or why there is none."""
    if calibration is None:
        return []
    lines = ["", "## Calibration", ""]
    if calibration.get("method") != "temperature":
        return lines + [f"Not calibrated ({calibration.get('why', 'not asked for')}): the end-to-end probabilities "
                        "are the classifier's softmax."]
    if calibration.get("why"):
        return lines + [f"Temperature scaling was asked for, but none was applied: {calibration['why']}. The "
                        "end-to-end probabilities are the classifier's softmax."]
    fitted_on = calibration.get("fitted_on") or {}
    before, after = calibration.get("nll_before"), calibration.get("nll_after")
    nll = "" if after is None else f"; log-loss there {fixed(before, 3)} -> {fixed(after, 3)}"
    return lines + [
        "The end-to-end probabilities are calibrated by temperature scaling, `softmax(log(p + s) / T)` over the "
        f"classifier's softmax `p`, with T = {calibration['temperature']:.3f} and s = {calibration.get('smoothing', 0):g}, "
        f"fitted by log-loss on the final model's probabilities of the evaluation set "
        f"(`{Path(str(fitted_on.get('path', '?'))).name}`, {fitted_on.get('rows', calibration.get('rows'))} rows, "
        f"sha256 `{fitted_on.get('sha256', '?')}`{nll}). Every use of the model applies it (`score`, `predict`, "
        "`serve`, `compare`; `compare` on that same file cross-fits it instead). The most probable class, hence "
        "every accuracy figure, is the same with and without it."]


def render_model_card(info: dict, metrics: dict, name: str | None = None) -> str:
    """The run folder's model card as Markdown text (``name``: the run folder's name unless given)."""
    return str(run_card(info, metrics, name or Path(str(info.get("run_dir", ""))).name or "tweetheads-run"))


def write_model_card(run_dir: Path, info: dict, metrics: dict) -> None:
    """Write the run's model card to ``run_dir/README.md``."""
    run_card(info, metrics, Path(run_dir).name).save(Path(run_dir) / "README.md")


def head_card(record: dict):
    """A head folder's card from ``record`` (``comparison.train_head.card_record`` builds it)."""
    from huggingface_hub import ModelCardData

    enc, ev, name = record["encoder"], record.get("eval"), record["name"]
    labels = [str(c) for c in record["classes"]]
    results = []
    if ev:
        results = [eval_result("accuracy", ev["accuracy"], ev["file"], "Accuracy"),
                   eval_result("f1", ev["macro_f1"], ev["file"], "Macro-F1")]
        results[1].metric_config = "macro"
    data = ModelCardData(base_model=enc.get("hub_id") or enc.get("base_model"), library_name="tweetheads",
                         pipeline_tag="text-classification", language="en", model_name=name,
                         tags=TAGS + ["head", record["head"]], labels=labels, eval_results=results or None,
                         metrics=["accuracy", "f1"] if results else None,
                         tweetheads={"head": record["head"], "encoder": enc["name"],
                                     "encoder_fingerprint": enc["fingerprint"], "pooling": enc["pooling"],
                                     "max_length": enc["max_length"], "normalization": enc["normalization"],
                                     "calibration": _calibration_meta(record.get("calibration"))})
    made = (f"the fine-tuned run `{enc['name']}` (fine-tuned from {_link(enc.get('base_model'))})"
            if enc["kind"] == "run" else f"{_link(enc.get('hub_id'))}" if enc.get("hub_id") else f"`{enc['name']}`")
    chosen = ", ".join(f"{k}={v:g}" for k, v in record["selected"].items()) or "none (no search)"
    lines = [f"# {name}", "",
             f"A `{record['head']}` head: a scikit-learn classifier over the {enc['dim']}-d {enc['pooling']} "
             f"vectors of {made}, model fingerprint `{enc['fingerprint'][:16]}`. It predicts "
             f"{', '.join(labels)}, and is used only with the encoder whose vectors it was trained on "
             "(tweetheads checks the fingerprint, and refuses any other model's vectors).", ""]
    if ev:
        a, f = ev["accuracy_ci95"], ev["macro_f1_ci95"]
        lines += [f"Results on `{Path(str(ev['file']['path'])).name}` ({ev['file']['rows']} rows, held out from "
                  f"the hyperparameter choice unless said below):",
                  f"- Accuracy: {fixed(ev['accuracy'])} (95% bootstrap interval {fixed(a[0])}-{fixed(a[1])})",
                  f"- Macro-F1: {fixed(ev['macro_f1'])} (95% bootstrap interval {fixed(f[0])}-{fixed(f[1])})", ""]
    lines += ["## Head", "", "| parameter | value |", "|:--|:--|"]
    lines += [f"| {k} | `{v!r}` |" for k, v in record["params"].items()]
    lines += ["", f"Chosen hyperparameter: {chosen}, picked by {record['select_metric']} on "
                  + ("the eval file (the eval figures above are then optimistic)" if record["select_on"] == "eval"
                     else "a stratified 10% of the training rows, then refit on all of them") + ".", "",
              *calibration_section(record.get("calibration"), record.get("calibration_ece"), record["select_on"]),
              "## Training data", "", file_line("train", record["train"]), "",
              "## Portability probe", "", record["probe"], "", LIMITS, "", "## How to use", "",
              "```python", "from scoring.predictor import Predictor", "",
              f'predictor = Predictor.load("{enc["usage"]}", "{name}")',
              'predictor.predict(["What a debate tonight", "Worst answer of the night"])', "```", "",
              "```bash", f'tweetheads predict --model {enc["usage"]} --head {name} "What a debate tonight"', "```",
              "", "## Files", "",
              "- `head.json`: parameters, classes, the encoder's fingerprint and the sha256 of every file",
              "- `probe.npy`: the probe's vectors (its texts are in `head.json`)",
              "- `train_report.json`: how it was trained (timings, columns, the figures above)"]
    return make_card(data, "\n".join(lines))


def _calibration_meta(calibration: dict | None) -> dict:
    if calibration is None:
        return {"method": "none"}
    return {k: calibration.get(k) for k in ("method", "temperature", "smoothing", "rows")}


def calibration_section(calibration: dict | None, measured: dict | None, select_on: str = "train") -> list[str]:
    """The card's "Calibration" lines: the method and its numbers (head.json's ``calibration``), and the
    expected calibration error before and after on the rows it was fitted on and on the eval file."""
    lines = ["## Calibration", ""]
    if calibration is None:
        return lines + ["Not calibrated (`--calibrate none`): the probabilities are the head's own.", ""]
    rows, T, smoothing = calibration.get("rows", 0), calibration["temperature"], calibration.get("smoothing", 0.0)
    if T == 1.0 and smoothing == 0.0:
        lines.append(f"Temperature scaling was asked for, but none was applied: {rows} held-out rows "
                     + ("are too few to fit one (at least 50)." if rows < 50 else "and no temperature lowered their "
                        "log-loss.") + " The probabilities are the head's own.")
    else:
        held = ("the eval file, which also chose the hyperparameters" if select_on == "eval" else
                "the 10% of the training rows that chose the hyperparameters, not trained on")
        before, after = calibration.get("nll_before"), calibration.get("nll_after")
        nll = "" if after is None else f"; log-loss {fixed(before, 3)} -> {fixed(after, 3)}"
        lines.append(f"Probabilities are calibrated by temperature scaling, `softmax(log(p + s) / T)` over the "
                     f"head's own probabilities `p`, with T = {T:.3f} and s = {smoothing:g}, fitted by log-loss on "
                     f"{rows} held-out rows ({held}{nll}). "
                     "The most probable class, hence every accuracy figure, is the same with and without it.")
    named = {"holdout": "the rows T was fitted on (so the after figure is optimistic)",
             "eval": "the eval file" + (" (T was fitted on it too)" if select_on == "eval" else "")}
    found = [(named[k], v) for k, v in (measured or {}).items() if k in named and v]
    if found:
        lines += ["", "Expected calibration error (15 equal-width bins of the top probability; lower is better):", "",
                  "| rows | n | ECE before | ECE after |", "|:--|--:|--:|--:|"]
        lines += [f"| {what} | {v['rows']} | {fixed(v['ece_before'])} | {fixed(v['ece_after'])} |" for what, v in found]
    return lines + [""]


def encoder_record(enc) -> dict:
    """The encoder a head belongs to (a loaded ``Embedder``'s encoder), for its card: a name a user can
    pass, hub ids, fingerprint and settings."""
    source, d = enc.source, enc.description
    given = str(d.get("model", source.name))
    usable = source.kind in ("alias", "hub") or looks_like_hub_id(given) and not Path(given).exists()
    name = given if usable else Path(given.rstrip("/")).name
    return {"name": name, "usage": name, "kind": source.kind, "hub_id": source.hub_id,
            "base_model": base_model_id(source), "fingerprint": enc.fingerprint, "pooling": d.get("pooling"),
            "max_length": d.get("max_length"), "normalization": d.get("normalization"), "dim": d.get("dim")}


def encoder_record_from_head(head) -> dict:
    """The same, from what a saved head recorded (heads saved before cards existed): no model is loaded."""
    d = dict(head.model_ or {})
    given = str(d.get("model", "unknown"))
    hub = ALIASES.get(given) or (given if looks_like_hub_id(given) and not Path(given).exists() else None)
    name = given if hub else Path(given.rstrip("/")).name
    return {"name": name, "usage": name, "kind": "hub" if hub else "local", "hub_id": hub, "base_model": hub,
            "fingerprint": head.fingerprint_, "pooling": d.get("pooling"), "max_length": d.get("max_length"),
            "normalization": d.get("normalization"), "dim": d.get("dim", head.n_features_in_)}


def head_record(head, report: dict, name: str, encoder: dict | None = None) -> dict:
    """What ``head_card`` writes, from a fitted head and its ``train_report.json`` record (``encoder``: for a
    report written before it recorded one)."""
    texts = len(head.probe_[0]) if getattr(head, "probe_", None) is not None else 0
    if getattr(head, "probe_source_", None) == "shipped":
        probe = (f"{texts} fixed texts shipped with tweetheads (`embed/samples/probe.csv`), not training texts: "
                 "their vectors from the training model, kept in `probe.npy`, tell whether another machine's "
                 "vectors (another backend or precision) are close enough to use this head. This head holds no "
                 "training text.")
    elif texts:
        probe = (f"the first {texts} distinct training texts (`--probe-from-train`, or a head saved before the "
                 "shipped probe set), kept verbatim in `head.json` with their vectors: **this head carries part of "
                 "its training data**.")
    else:
        probe = "none: this head is used only with exactly the vectors it was trained on."
    files = report.get("files") or {}
    train = files.get("train") or {"path": report.get("train_path", "?"), "rows": report.get("train_rows", "?")}
    ev = None
    if report.get("accuracy") is not None:
        ev = {"file": files.get("eval") or {"path": report.get("eval_path", "eval"), "rows": report.get("eval_rows")},
              "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
              "accuracy_ci95": report.get("accuracy_ci95") or [None, None],
              "macro_f1_ci95": report.get("macro_f1_ci95") or [None, None]}
    return {"name": name, "head": head.name, "classes": head.classes_.tolist(),
            "encoder": encoder or report.get("encoder") or encoder_record_from_head(head),
            "params": head.get_params(deep=False), "selected": head.selected_params(),
            "select_metric": head.select_metric, "select_on": (report.get("config") or {}).get("select_on", "train"),
            "train": train, "eval": ev, "probe": probe,
            "calibration": None if getattr(head, "calibration_", None) is None else head.calibration_.to_json(),
            "calibration_ece": report.get("calibration_ece")}
