"""The accuracy a user gets without us: a plain Hugging Face ``Trainer`` run on the GOP split (or, with
``--data tse``, tweet_sentiment_extraction's train.csv -> test.csv).

The same body (the packaged MiniLM folder), the same normalized texts, the same 80/20 split (seed
42; 11,096 train / 2,775 eval rows) and the same recipe as our 2-epoch ``finetune`` row in
BENCHMARKS.md (lr 2e-5, 2 epochs, batch 8, seed 42, Adam betas (0.9, 0.999), eps 1e-8, no weight
decay, linear schedule without warm-up, max length 256, eval every epoch):
``AutoModelForSequenceClassification`` (BERT's pooler on the CLS token, then a linear layer, the
model's own dropout 0.1), ``DataCollatorWithPadding``, ``TrainingArguments(use_cpu=True, ...)``,
otherwise the Trainer's defaults (random sampler, fused AdamW). Its predictions on the eval file
are scored the way ``compare`` scores ours: accuracy on all rows and on novel rows (normalized
text not in train) with 95% bootstrap intervals, and macro-F1; ``--ours`` adds the rows of a
``compare`` results.json on the same split beside it.

    python bench/trainer_peer.py --json bench/results/trainer-gop-2ep.json \\
        --ours bench/results/gop-minilm-2ep/results.json           # about 20 minutes on 2 cores

``--lr`` and ``--batch-size`` change the recipe's learning rate and batch (train and eval) to match
another of our runs; ``--precision bf16`` trains under the Trainer's own ``bf16=True`` (CPU autocast,
its documented switch), as ``finetune --precision auto`` does on a CPU with bf16 units.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/trainer_peer.py`

RECIPE = {"learning_rate": 2e-5, "num_train_epochs": 2, "per_device_train_batch_size": 8,
          "per_device_eval_batch_size": 8, "seed": 42, "adam_beta1": 0.9, "adam_beta2": 0.999,
          "adam_epsilon": 1e-8, "weight_decay": 0.0, "lr_scheduler_type": "linear", "warmup_steps": 0}
MAX_LENGTH = 256


def train_and_predict(train_texts, train_labels, eval_texts, eval_labels, work: Path, max_steps: int | None = None,
                      recipe: dict | None = None, bf16: bool = False):
    import transformers
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainingArguments)

    from embed.models import transformer_dir

    names = sorted(set(train_labels))
    folder = str(transformer_dir(Path(common.minilm_path())))
    transformers.logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(names))

    def rows(texts, labels):
        enc = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
        return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                 "labels": names.index(labels[i])} for i in range(len(texts))]

    last = {}

    def accuracy(pred):  # each epoch's evaluation; the last one's predictions are the result
        last["logits"] = pred.predictions
        return {"accuracy": float(np.mean(pred.predictions.argmax(-1) == pred.label_ids))}

    recipe = dict(recipe or RECIPE, **({"max_steps": max_steps} if max_steps else {}))
    args = TrainingArguments(output_dir=str(work / "hf-trainer"), report_to="none", save_strategy="no",
                             eval_strategy="epoch", logging_strategy="epoch", use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0, bf16=bf16, **recipe)
    train_rows, eval_rows = rows(train_texts, train_labels), rows(eval_texts, eval_labels)
    trainer = Trainer(model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows,
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy)
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        out = trainer.train()
    wall = time.perf_counter() - started
    eval_s = sum(entry.get("eval_runtime", 0) for entry in trainer.state.log_history)
    epochs = [{k: v for k, v in entry.items() if k in ("epoch", "eval_loss", "eval_accuracy", "loss")}
              for entry in trainer.state.log_history]
    return ([names[i] for i in last["logits"].argmax(-1)], {"train_s": wall - eval_s, "eval_s": eval_s,
            "steps": trainer.state.global_step, "train_samples_per_second": out.metrics["train_samples_per_second"],
            "log": epochs})


def run(work: Path | None = None, max_steps: int | None = None, ours: Path | None = None, data: str = "gop",
        lr: float | None = None, batch_size: int | None = None, precision: str = "fp32") -> tuple[list, dict]:
    from sklearn.metrics import f1_score

    from comparison.compare import bootstrap_interval
    from common import Table
    from embed.data import load_texts
    from embed.normalize import normalize_tweet

    if precision not in ("fp32", "bf16"):
        raise SystemExit(f"--precision must be fp32 or bf16, got {precision!r}")
    recipe = dict(RECIPE, **({"learning_rate": lr} if lr else {}),
                  **({"per_device_train_batch_size": batch_size, "per_device_eval_batch_size": batch_size}
                     if batch_size else {}))
    work = Path(work or tempfile.mkdtemp(prefix="tweetheads-trainer-"))
    train_path, eval_path, described = common.peer_data_files(data, work)
    train = load_texts(train_path, "text", "sentiment")
    evals = load_texts(eval_path, "text", "sentiment")
    norm_train = [normalize_tweet(t) for t in train.texts]
    norm_eval = [normalize_tweet(t) for t in evals.texts]
    seen = set(norm_train)
    novel = np.array([t not in seen for t in norm_eval])
    gold = np.asarray(evals.labels)
    common.log(f"trainer_peer: {len(norm_train):,} train rows, {len(norm_eval):,} eval rows")
    pred, info = train_and_predict(norm_train, list(train.labels), norm_eval, list(evals.labels), work, max_steps,
                                   recipe, bf16=precision == "bf16")
    correct = np.asarray(pred) == gold
    result = {"accuracy": float(correct.mean()), "ci": bootstrap_interval(correct, 1000, 0),
              "accuracy_novel": float(correct[novel].mean()), "ci_novel": bootstrap_interval(correct[novel], 1000, 0),
              "macro_f1": float(f1_score(gold, pred, average="macro")), "novel_rows": int(novel.sum()),
              "pred": list(map(str, pred)), "data": described, "recipe": recipe, "precision": precision, **info}
    table = Table(
        title=f"The plain Trainer against our end-to-end model and heads (MiniLM, {described}, {len(gold):,} eval rows)",
        compared=(f"The same body, split, normalized texts and recipe (lr {recipe['learning_rate']:g}, "
                  f"{recipe['num_train_epochs']} epochs, batch {recipe['per_device_train_batch_size']}, seed 42, "
                  f"linear, max length 256, {precision}): a plain `AutoModelForSequenceClassification` + `Trainer` "
                  "run, and ours (`finetune` then the heads on its cached CLS vectors, from `compare`'s "
                  "results.json)."),
        columns=["method", "accuracy (all)", "95% CI", "accuracy (novel)", "macro-F1", "train s"])
    table.add("HF Trainer, AutoModelForSequenceClassification", f"{result['accuracy']:.4f}",
              f"{result['ci'][0]:.3f}-{result['ci'][1]:.3f}", f"{result['accuracy_novel']:.4f}",
              f"{result['macro_f1']:.4f}", f"{info['train_s']:.0f}")
    if ours is not None:
        report = json.loads(Path(ours).read_text())
        for method in report["methods"]:
            if method["kind"] == "baseline":
                continue
            low, high = method["all"]["accuracy_ci95"]
            table.add(f"ours: {method['name']}", f"{method['all']['accuracy']:.4f}", f"{low:.3f}-{high:.3f}",
                      f"{method['novel']['accuracy']:.4f}", f"{method['all']['macro_f1']:.4f}", "-")
        table.notes.append(f"Our rows are quoted from {ours} (the same split and eval file, its own run); "
                           "their predictions are not stored there, so the pairs are compared by their intervals, "
                           "not by McNemar.")
    table.notes.append("Train s: the Trainer's `train()` call less its two evaluations; the accuracy is its "
                       "last evaluation's (after epoch 2).")
    table.notes.append(
        "Remaining differences: the Trainer's model classifies BERT's pooler output (a dense layer and tanh on "
        "the CLS token, pretrained) with dropout 0.1; ours classifies the CLS vector through a "
        "DistilBERT-shaped head (pre_classifier, ReLU, dropout 0.2, classifier), the target card's "
        "architecture. The Trainer shuffles with its random sampler; ours groups by length within shuffled "
        f"windows. Both train in {precision} with fused AdamW and no weight decay.")
    return [table], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="keep the split here")
    parser.add_argument("--max-steps", type=int, help="stop early (a smoke run)")
    parser.add_argument("--ours", type=Path, help="compare's results.json for our run on the same split")
    parser.add_argument("--data", default="gop", help="gop (80/20 split) or tse (tweet_sentiment_extraction)")
    parser.add_argument("--lr", type=float, help=f"learning rate [default: {RECIPE['learning_rate']:g}]")
    parser.add_argument("--batch-size", type=int,
                        help=f"train and eval batch [default: {RECIPE['per_device_train_batch_size']}]")
    parser.add_argument("--precision", default="fp32", help="fp32 (default) or bf16 (the Trainer's bf16=True)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tables, result = run(args.work, args.max_steps, args.ours, args.data, args.lr, args.batch_size, args.precision)
    for table in tables:
        print(table.markdown())
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
