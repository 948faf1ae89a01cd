"""The command line through click's CliRunner: the README's stage-one commands and their errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cli import cli

from .conftest import invoke_cli, write_tweets


run = invoke_cli


def test_help_lists_the_commands():
    import click

    expected = {"split", "finetune", "embed", "train-head", "compare", "score", "cache", "predict", "serve",
                "export", "push"}
    assert set(cli.commands) == expected  # registered subcommands, not words in the group's docstring
    assert set(cli.commands["cache"].commands) == {"info", "clear"}
    listed = run("--help").output.split("Commands:")[1].split()
    for name in expected:
        assert name in listed and isinstance(cli.commands[name], click.Command)
        assert run(name, "--help").output.startswith(f"Usage: cli {name}")


def test_split_then_embed_twice_hits_the_cache(tmp_path, minilm_path):
    data = write_tweets(tmp_path / "all.csv", 120)
    out = run("split", data, "--out-dir", tmp_path / "s", "--seed", 1).output
    assert "train: 96 rows" in out and "eval:  24 rows" in out and "also in train" in out
    first = run("embed", "--model", "minilm", "--input", tmp_path / "s" / "eval.csv", "--output", tmp_path / "e.npy")
    assert "24 texts, 0 cache hits, 24 encoded" in first.output
    vectors = np.load(tmp_path / "e.npy")
    assert vectors.shape == (24, 384)
    second = run("embed", "--model", "minilm", "--input", tmp_path / "s" / "eval.csv", "--output", tmp_path / "f.npy")
    assert "24 texts, 24 cache hits, 0 encoded" in second.output
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), vectors)
    from embed.encoder import Embedder

    enc = Embedder("minilm").load()  # no flags: this machine's default backend and precision
    info = run("cache", "info").output
    assert f"minilm (cls, {enc.backend} {enc.precision}, dim 384)  24 vectors" in info
    store = [line for line in info.splitlines() if "24 vectors" in line][0].split()[0]
    assert "removed" in run("cache", "clear", store[:8], "--yes").output
    after = run("cache", "info").output
    assert "no cache stores" in after
    if enc.backend == "openvino":  # the converted model stays until `cache clear all`
        assert "exports/  1 OpenVINO model(s)" in after
        run("embed", "--model", "minilm", "--input", tmp_path / "s" / "eval.csv")
        assert "exports" in run("cache", "clear", "all", "--yes").output
        assert "exports/" not in run("cache", "info").output


@pytest.mark.parametrize("args, message", [
    (["embed", "--model", "minilm", "--input", "missing.csv"], "missing.csv: file not found"),
    (["embed", "--model", "minilm", "--input", "{data}", "--text-col", "tweet"], "columns found: id, text, label"),
    (["embed", "--input", "{data}"], "offline alias (--model minilm"),
    (["embed", "--model", "./no/such/model", "--input", "{data}"], "no such model folder"),
    (["finetune", "--model", "minilm", "--train", "{data}", "--label-col", "sentiment", "--out", "r"],
     "no label column 'sentiment'"),
    (["cache", "clear", "nothing"], "no cache store"),
])
def test_bad_input_is_one_line_and_non_zero(tmp_path, minilm_path, args, message):
    data = write_tweets(tmp_path / "d.csv", 10)
    result = run(*[a.format(data=data) for a in args], ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


def test_finetune_writes_a_run_folder(tmp_path, minilm_path):
    train = write_tweets(tmp_path / "train.csv", 32, seed=3)
    evals = write_tweets(tmp_path / "eval.csv", 16, seed=4)
    out = run("finetune", "--model", "minilm", "--train", train, "--eval", evals, "--out", tmp_path / "run",
              "--max-steps", 4, "--lr", 5e-5, "--max-length", 32).output
    assert "wrote" in out and "4 steps" in out and "eval accuracy" in out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["history"][-1]["step"] == 4
    info = json.loads((tmp_path / "run" / "tweetheads_run.json").read_text())
    assert info["config"]["lr"] == 5e-5 and info["config"]["train_batch_size"] == 8
    embedded = run("embed", "--model", tmp_path / "run", "--input", evals, "--output", tmp_path / "v.npy")
    assert np.load(tmp_path / "v.npy").shape == (16, 384) and "encoded" in embedded.output


def test_train_head_takes_class_weight_and_select_metric(tmp_path, minilm_path):
    train = write_tweets(tmp_path / "train.csv", 120, seed=3)
    out = run("train-head", "--head", "logistic", "--model", "minilm", "--train", train, "--out", tmp_path / "h",
              "--class-weight", "balanced", "--select-metric", "macro_f1").output
    assert "by macro_f1; class_weight balanced)" in out
    params = json.loads((tmp_path / "h" / "head.json").read_text())["params"]
    assert (params["class_weight"], params["select_metric"]) == ("balanced", "macro_f1")
    plain = run("train-head", "--head", "knn", "--model", "minilm", "--train", train, "--out", tmp_path / "k").output
    assert "by accuracy; class_weight none)" in plain
    bad = run("train-head", "--head", "knn", "--model", "minilm", "--train", train, "--out", tmp_path / "x",
              "--select-metric", "f1", ok=False)
    assert bad.exit_code == 2 and "'f1' is not one of 'accuracy', 'macro_f1', 'macro_recall'" in bad.output


def test_commands_on_cached_vectors_never_import_torch(tmp_path, minilm_path):
    """train-head and score on texts already in the cache load no model: torch and transformers
    (seconds of start-up) stay unimported where torch is a CPU-only build; elsewhere only the GPU probe imports it."""
    import importlib.metadata
    import subprocess
    import sys

    from .conftest import REPO

    if not importlib.metadata.version("torch").endswith("+cpu"):
        pytest.skip("not a CPU-only torch build: `auto` must import torch to look for a GPU")
    data = write_tweets(tmp_path / "all.csv", 60)
    head = tmp_path / "head"
    run("train-head", "--head", "logistic", "--model", "minilm", "--train", data, "--out", head)  # encodes
    probe = ("import sys; from cli import cli\n"
             "try:\n    cli.main(sys.argv[1:], standalone_mode=False)\n"
             "finally:\n    print('imported:', sorted({'torch', 'transformers', 'sentence_transformers'} & set(sys.modules)))")
    for args in (["train-head", "--head", "logistic", "--model", "minilm", "--train", data, "--out", tmp_path / "h2"],
                 ["score", "--model", "minilm", "--head", head, data, "--output", tmp_path / "scored.csv"]):
        done = subprocess.run([sys.executable, "-c", probe, *map(str, args)], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert args[0] != "train-head" or "with 0 texts encoded" in done.stdout, done.stdout
        assert "imported: []" in done.stdout, (args[0], done.stdout[-500:])


def test_openvino_embed_never_imports_torch(tmp_path, minilm_path):
    """Encoding new texts with the OpenVINO backend and its export on disk needs no torch: a cold
    `embed` skips torch's second of start-up (the first run converts the model, which does need it)."""
    import csv
    import subprocess
    import sys

    from embed.backends import openvino_available

    from .conftest import REPO

    if not openvino_available():
        pytest.skip("openvino is not installed")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    for path, word in ((first, "rally"), (second, "debate")):
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text"])
            writer.writerows([f"the {word} number {i} was something else"] for i in range(40))
    cache = tmp_path / "cache"
    flags = ["--model", "minilm", "--backend", "openvino", "--precision", "fp32", "--cache-dir", str(cache)]
    run("embed", "--input", first, "--output", tmp_path / "first.npy", *flags)  # converts: torch needed here
    probe = ("import sys; from cli import cli\n"
             "try:\n    cli.main(sys.argv[1:], standalone_mode=False)\n"
             "finally:\n    print('imported:', sorted({'torch'} & set(sys.modules)))")
    args = ["embed", "--input", second, "--output", tmp_path / "second.npy", *flags]
    done = subprocess.run([sys.executable, "-c", probe, *map(str, args)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "40 encoded" in done.stdout + done.stderr, done.stdout + done.stderr
    assert "imported: []" in done.stdout, done.stdout[-500:]
    vectors = np.load(tmp_path / "second.npy")
    assert vectors.shape == (40, 384) and np.isfinite(vectors).all() and np.abs(vectors).sum(1).min() > 0
