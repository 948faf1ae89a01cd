"""The run folder's ``README.md``, in the format of the reference card (Hugging Face Trainer's card)."""
from __future__ import annotations

from pathlib import Path

from .models import ALIASES
from .runs import run_pooling


def fixed(value, digits: int = 4) -> str:
    """A number with ``digits`` decimals, ``-`` for None: the one formatter of every table (card, report, bench)."""
    return "-" if value is None else f"{value:.{digits}f}"


def render_model_card(info: dict, metrics: dict) -> str:
    config = info["config"]
    final = metrics.get("final") or {}
    pooling = run_pooling(info)
    pooled = {"cls": "the CLS token", "mean": "the mean of the token vectors"}[pooling]
    short = {"cls": "CLS", "mean": "mean"}[pooling]
    lines = [
        f"# {Path(info.get('run_dir', '')).name or 'tweetheads run'}",
        "",
        f"This model is a fine-tuned version of `{ALIASES.get(info['base_model'], info['base_model'])}` for three-way tweet sentiment "
        f"({', '.join(info['labels'])}), trained end to end (encoder + classification head on {pooled}) "
        "by `tweetheads finetune`.",
    ]
    if metrics.get("interrupted"):
        lines += ["", f"**Interrupted** at step {metrics['steps']} of {metrics['total_steps']}; "
                      "continue with `finetune --resume`."]
    if "accuracy" in final:
        lines += ["", "It achieves the following results on the evaluation set:",
                  f"- Loss: {fixed(final['validation_loss'])}", f"- Accuracy: {fixed(final['accuracy'])}"]
    lines += ["", "## Training and evaluation data", ""]
    for role, entry in info.get("data", {}).items():
        lines.append(f"- {role}: `{entry['path']}` ({entry['rows']} rows, sha256 `{entry['sha256']}`)")
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
              "- `metrics.json`: the table above as JSON", ""]
    return "\n".join(lines)


def write_model_card(run_dir: Path, info: dict, metrics: dict) -> None:
    (run_dir / "README.md").write_text(render_model_card({**info, "run_dir": str(run_dir)}, metrics))
