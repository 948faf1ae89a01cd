"""Heads on real embeddings: fit seconds (hyperparameter selection included) and eval accuracy.

Data: the GOP 80/20 split (seed 42: 11,096 train / 2,775 eval rows), embedded through the cache
by each encoder that is available: the packaged MiniLM frozen (384-d CLS), MiniLM fine-tuned
(384-d CLS: a run given with ``--run``, else a short ``finetune`` made here, 300 steps at lr 2e-5,
about 2 minutes), and all-mpnet-base-v2 frozen (768-d CLS, when its parts are installed).
Each head is fitted the way ``train-head`` fits it by default (``select_and_fit``: the
hyperparameter chosen on a stratified 10% of train, then a refit on all of train), and scored on
the eval rows (all, and novel: text not in train).

Before and after, side by side: ``--before REV`` (default ``BEFORE``, the last commit before the
heads were made fast) checks out that git revision into a temporary worktree and fits the same
vectors with its code, in a child process per variant. A third variant fits the current heads with
``class_weight="balanced"`` and ``select_metric="macro_f1"``, for what they do to accuracy and
macro-F1. Fit times are one fit each, so they carry the machine's noise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEADS = ("logistic", "lightgbm", "knn")
BEFORE = "2e3f026"
SEEDED, SEEDS = ("lightgbm",), (0, 1, 2)
BALANCED = {name: {"class_weight": "balanced", "select_metric": "macro_f1"} for name in HEADS}


def _vectors(work: Path, run: str | None) -> list[tuple[str, Path]]:
    """Embed the GOP split once per encoder (cached); ``[(name, folder with X/y npy files)]``."""
    import common
    from common import log

    from embed.data import load_texts
    from embed.encoder import Embedder
    from embed.errors import ModelError
    from embed.split import SplitConfig, split_file

    split = work / "split"
    if not (split / "eval.csv").exists():
        split_file(common.gop_csv(), split, SplitConfig(eval_fraction=0.2, seed=42))
    if run is None:
        run = str(work / "run-300")
        if not (Path(run) / "tweetheads_run.json").exists():
            from embed.finetune import FinetuneConfig, fine_tune

            log("fine-tuning MiniLM for 300 steps (lr 2e-5) for fine-tuned vectors")
            fine_tune(split / "train.csv", run, FinetuneConfig(model="minilm", lr=2e-5, max_steps=300,
                                                             label_col="sentiment", progress=False))
    train = load_texts(split / "train.csv", "text", "sentiment")
    evals = load_texts(split / "eval.csv", "text", "sentiment")
    novel = np.array([t not in set(train.texts) for t in evals.texts])
    models = [("MiniLM frozen, 384-d", "minilm"), ("MiniLM fine-tuned, 384-d", run), ("MPNet frozen, 768-d", "mpnet")]
    found = []
    for name, spec in models:
        folder = work / spec.replace("/", "_").strip("_")
        try:
            embedder = Embedder(spec, cache_dir=os.environ.get("TWEETHEADS_CACHE_DIR", "default"), progress=True)
            if not (folder / "X_eval.npy").exists():
                folder.mkdir(parents=True, exist_ok=True)
                np.save(folder / "X_train.npy", embedder.transform(train.texts))
                np.save(folder / "X_eval.npy", embedder.transform(evals.texts))
        except ModelError as exc:
            log(f"{name}: skipped ({str(exc)[:120]})")
            continue
        np.save(folder / "y_train.npy", np.array(train.labels))
        np.save(folder / "y_eval.npy", np.array(evals.labels))
        np.save(folder / "novel.npy", novel)
        found.append((name, folder))
    return found


def worker(folder: Path, heads: list[str], params: dict) -> list[dict]:
    """Fit every head on one encoder's vectors with the code on sys.path; print JSON rows."""
    from sklearn.metrics import accuracy_score, f1_score

    from heads import get_head

    try:
        from comparison.train_head import select_and_fit
    except ImportError:  # code from before it existed: the same procedure, as fit_head ran it inline
        from sklearn.base import clone
        from sklearn.model_selection import train_test_split

        def select_and_fit(head, X, y, seed=42):
            fit_rows, hold_rows = train_test_split(np.arange(len(y)), test_size=0.1, random_state=seed, stratify=y)
            probe = clone(head).fit(X[fit_rows], y[fit_rows], X_eval=X[hold_rows], y_eval=y[hold_rows])
            return clone(head).set_params(**probe.selected_params()).fit(X, y)

    X, y = np.load(folder / "X_train.npy"), np.load(folder / "y_train.npy")
    Xe, ye, novel = np.load(folder / "X_eval.npy"), np.load(folder / "y_eval.npy"), np.load(folder / "novel.npy")
    get_head("logistic").fit(X[:300], y[:300])  # warm-up: imports and first-call set-up, untimed
    rows = []
    for name in heads:
        runs = []
        for seed in SEEDS if name in SEEDED else (None,):  # LightGBM samples rows and dimensions by seed
            head = get_head(name, **params.get(name, {}), **({} if seed is None else {"random_state": seed}))
            start = time.perf_counter()
            head = select_and_fit(head, X, y)
            seconds = time.perf_counter() - start
            predicted = head.predict(Xe)
            runs.append({"fit_seconds": seconds, "chose": head.selected_params(),
                         "accuracy": accuracy_score(ye, predicted),
                         "macro_f1": f1_score(ye, predicted, average="macro"),
                         "novel_accuracy": accuracy_score(ye[novel], predicted[novel]),
                         "novel_macro_f1": f1_score(ye[novel], predicted[novel], average="macro")})
        row = {"head": name, "seeds": len(runs), "chose": [r["chose"] for r in runs]}
        for key in ("fit_seconds", "accuracy", "macro_f1", "novel_accuracy", "novel_macro_f1"):
            values = [r[key] for r in runs]
            row[key], row[key + "_range"] = float(np.mean(values)), (min(values), max(values))
        rows.append(row)
    return rows


def _child(code_root: Path, folder: Path, heads: list[str], params: dict) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": f"{code_root}{os.pathsep}{Path(__file__).parent}"}
    done = subprocess.run([sys.executable, __file__, "--worker", str(folder), "--heads", ",".join(heads),
                           "--params", json.dumps(params)], cwd=code_root, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"worker failed ({code_root}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False, before: str | None = BEFORE, run_dir: str | None = None, work: Path | None = None,
        params: dict | None = None):
    import common  # bench/ is on sys.path; imported here only: the --worker child needs none of it
    from common import REPO, Table, log

    work = work or Path(tempfile.mkdtemp(prefix="heads-real-"))
    params = params or {}
    variants = [("now", REPO, params), ("now, balanced + macro_f1", REPO, {**BALANCED, **params})]
    tree = None
    if before:
        tree = work / f"before-{before}"
        subprocess.run(["git", "worktree", "add", "--force", "--detach", str(tree), before], cwd=REPO, check=True,
                       capture_output=True)
        variants.insert(0, (f"before ({before})", tree, params))
    table = Table(
        title="Heads on real GOP embeddings: fit with selection, eval accuracy",
        compared=("Each head as `train-head` fits it by default (hyperparameter chosen on a stratified 10% of the "
                  "11,096 training rows, then refit on all of them), on cached CLS vectors of the GOP 80/20 split; "
                  "accuracy and macro-F1 on the 2,775 eval rows (all / novel). "
                  + (f"`before` is the code at {before}, `now` the working tree, each fitted in a child process "
                     "of its own, in turn on the same vectors. " if before else "")
                  + f"LightGBM: the mean of seeds {', '.join(map(str, SEEDS))} (random_state), their range in "
                  "brackets; logistic and exact kNN do not depend on a seed. One fit per seed and cell: fit "
                  "seconds carry the machine's noise."),
        columns=["vectors", "head", "code", "fit s (with selection)", "chose", "accuracy all / novel",
                 "macro-F1 all / novel"])
    try:
        _fill(table, work, run_dir, variants, log)
    finally:
        if tree is not None:  # leave no worktree registered in the checkout
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    return [table]


def _fill(table, work: Path, run_dir, variants, log) -> None:
    for name, folder in _vectors(work, run_dir):
        results = {}
        for label, root, options in variants:
            log(f"{name}: fitting with {label}")
            results[label] = {r["head"]: r for r in _child(root, folder, list(HEADS), options)}
        for head in HEADS:
            for label, _, _ in variants:
                r = results[label][head]

                def cell(key):
                    text = f"{r[key]:.4f}"
                    if r["seeds"] > 1:
                        text += f" ({r[key + '_range'][0]:.4f}-{r[key + '_range'][1]:.4f})"
                    return text

                chose = "; ".join(", ".join(f"{k}={v:g}" for k, v in c.items()) for c in r["chose"])
                table.rows.append([name, head, label, f"{r['fit_seconds']:.2f}", chose,
                                   f"{cell('accuracy')} / {cell('novel_accuracy')}",
                                   f"{cell('macro_f1')} / {cell('novel_macro_f1')}"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--params", default="{}", help='JSON: {"knn": {"class_weight": "balanced"}, ...}')
    parser.add_argument("--before", default=BEFORE, help="git revision to compare against (its heads/ code)")
    parser.add_argument("--run", help="a fine-tuned run folder on the GOP split, for its CLS vectors")
    parser.add_argument("--work", type=Path, help="folder for the split and the vectors (reused when rerun)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.heads.split(","), json.loads(args.params))))
    else:
        for t in run(args.quick, args.before, args.run, args.work, json.loads(args.params)):
            print(t.markdown())
