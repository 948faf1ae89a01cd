"""The command line's shared conventions: --version, help on every option, --json, -q, old spellings, -, 130.

Each command is driven as a user drives it (``CliRunner`` on ``cli``, or a real process where a
signal or a terminal matters), on the packaged MiniLM and the shipped sample tweets.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import cli

from .conftest import REPO, SAMPLE, write_tweets


def run(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def _one_object(result) -> dict:
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.output  # one JSON object and nothing else on stdout
    return json.loads(lines[0])


def _commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))
        else:
            yield prefix + (name,), command


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("tweetheads ") and result.output.split()[1][0].isdigit()
    assert run("-V").output == result.output


def test_every_option_of_every_command_says_what_it_does():
    missing = [f"{' '.join(path)} {param.opts[0]}" for path, command in _commands(cli) for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()
               and param.name != "help"]
    assert not missing, f"options without help text: {missing}"


def test_every_command_with_a_summary_has_json_and_quiet():
    for path, command in _commands(cli):
        names = {opt for param in command.params for opt in param.opts}
        if path[0] in ("serve",):  # a server prints no summary
            continue
        assert "--json" in names, path
        if path[0] != "predict":  # predict's output is its result, not a summary
            assert "--quiet" in names, path


@pytest.fixture(scope="module")
def head(tmp_path_factory, minilm_path):
    tmp = tmp_path_factory.mktemp("conv")
    result = CliRunner().invoke(cli, ["train-head", "--head", "logistic", "--model", "minilm", "--train", str(SAMPLE),
                                      "-o", str(tmp / "head"), "--cache-dir", str(tmp / "cache")])
    assert result.exit_code == 0, result.output
    return tmp


def test_split_json_old_spelling_and_stratify(tmp_path):
    data = write_tweets(tmp_path / "tweets.csv", 120)
    new = _one_object(run("split", data, "-o", tmp_path / "a", "--stratify", "label", "--json"))
    assert new["train_rows"] == 96 and new["eval_rows"] == 24 and new["stratify"] == "label"
    with open(tmp_path / "a" / "eval.csv", newline="") as handle:
        labels = [row["label"] for row in csv.DictReader(handle)]
    with open(data, newline="") as handle:
        every = [row["label"] for row in csv.DictReader(handle)]
    for label in set(every):  # each label's share kept to within one row of 20%
        assert abs(labels.count(label) - every.count(label) * 0.2) <= 1, label
    old = run("split", data, "--out-dir", tmp_path / "b")  # the old spelling still works, and does the same
    assert old.exit_code == 0, old.output
    assert run("split", data, "-o", tmp_path / "c").output == old.output.replace(str(tmp_path / "b"), str(tmp_path / "c"))
    assert (tmp_path / "b" / "eval.csv").read_bytes() == (tmp_path / "c" / "eval.csv").read_bytes()
    both = run("split", data, "-o", tmp_path / "d", "--out-dir", tmp_path / "e")
    assert both.exit_code == 2 and "old spelling" in both.output
    assert run("split", data).exit_code == 2 and "Missing option '-o' / '--output'" in run("split", data).output
    assert run("split", data, "-o", tmp_path / "q", "-q").output == ""


def test_split_refuses_stratify_with_a_single_example_label(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("text,label\na,x\nb,x\nc,y\nd,x\n")
    result = run("split", data, "-o", tmp_path / "s", "--stratify", "label")
    assert result.exit_code == 1 and "'y'" in result.output and "occur once" in result.output


def test_embed_and_train_head_json_and_old_spellings(head, tmp_path):
    cache = head / "cache"
    out = _one_object(run("embed", SAMPLE, "--model", "minilm", "-o", tmp_path / "v.npy", "--cache-dir", cache, "--json"))
    assert out["shape"] == [120, 384] and out["encoded"] == 0 and out["hits"] == 120  # the head's fit cached them
    old = run("embed", "--model", "minilm", "--input", SAMPLE, "--cache-dir", cache)
    assert old.exit_code == 0 and "120 texts" in old.output
    assert run("embed", "--model", "minilm", "--cache-dir", cache).exit_code == 2
    trained = _one_object(run("train-head", "--head", "knn", "--model", "minilm", "--train", SAMPLE,
                              "--out", tmp_path / "knn", "--cache-dir", cache, "--json"))
    assert trained["head"] == "knn" and trained["train_rows"] == 120 and (tmp_path / "knn" / "head.json").is_file()


def test_score_json_stdin_stdout_and_max_rejects(head, tmp_path):
    cache, folder = head / "cache", head / "head"
    source = "text,label\nWhat a great debate,Positive\n,Neutral\nterrible answers,Negative\n"
    result = run("score", "-", "--model", "minilm", "--head", folder, "-o", "-", "--cache-dir", cache, input=source)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [r["text"] for r in rows] == ["What a great debate", "terrible answers"]
    assert "-,3,empty text" in result.stderr and "1 rejected -> stderr" in result.stderr
    (tmp_path / "in.csv").write_text(source)
    summary = _one_object(run("score", tmp_path / "in.csv", "--model", "minilm", "--head", folder, "-o",
                              tmp_path / "out.csv", "--cache-dir", cache, "--json"))
    assert summary["rows_read"] == 3 and summary["rows_rejected"] == 1 and summary["gold"]["labelled"] == 2
    for limit, code in (("0", 1), ("1", 0), ("10%", 1), ("40%", 0)):
        done = run("score", tmp_path / "in.csv", "--model", "minilm", "--head", folder, "-o", tmp_path / f"o{code}.csv",
                   "--cache-dir", cache, "--max-rejects", limit)
        assert done.exit_code == code, (limit, done.output)
        assert (tmp_path / f"o{code}.csv").is_file()  # written either way
        if code:
            assert "over --max-rejects" in done.output
    assert run("score", tmp_path / "in.csv", "--model", "minilm", "--head", folder, "-o", tmp_path / "x.csv",
               "--max-rejects", "lots").exit_code == 2


def test_cache_info_json_and_clear_asks(head, tmp_path):
    cache = head / "cache"
    info = _one_object(run("cache", "info", "--cache-dir", cache, "--json"))
    assert info["stores"] and info["stores"][0]["vectors"] >= 120
    store = info["stores"][0]["store"]
    refused = run("cache", "clear", store[:6], "--cache-dir", cache)  # CliRunner's stdin is not a terminal
    assert refused.exit_code == 1 and "pass --yes" in refused.output and "will remove" in refused.output
    assert (cache / store).is_dir()
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(cache, copy)
    removed = json.loads(run("cache", "clear", store[:6], "--cache-dir", copy, "--yes", "--json").stdout
                         .splitlines()[-1])
    assert removed["removed"] == [str(copy / store)] and not (copy / store).exists()


def test_predict_json_is_one_line_per_text(head):
    result = run("predict", "--model", "minilm", "--head", head / "head", "--cache-dir", head / "cache", "--json",
                 "one", "two")
    assert [json.loads(line)["text"] for line in result.output.splitlines()] == ["one", "two"]


def _default_sigint() -> None:
    """In the child: Ctrl-C's default disposition. A suite started in the background by a shell without job
    control inherits SIGINT ignored, and Python then never raises KeyboardInterrupt (seen in a CI run)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_checkpoint(tmp_path, minilm_path):
    """A real process: SIGINT during a fine-tune saves a checkpoint, says how to resume, and exits 130."""
    train = write_tweets(tmp_path / "train.csv", 400)
    env = {**os.environ, "TWEETHEADS_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "cli.py", "finetune", "--model", "minilm", "--train", str(train), "-o",
                             str(tmp_path / "run"), "--max-steps", "2000", "--max-length", "32", "--precision", "fp32",
                             "--log-every", "1"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=_default_sigint)
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        if line.startswith("step ") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(timeout=120) == 130, rest
    assert "Interrupted" in rest and "--resume" in rest and (tmp_path / "run" / "checkpoint").is_dir(), rest


@pytest.mark.slow
def test_finetune_recipe_preset_is_recorded_and_explicit_options_win(tmp_path, minilm_path):
    train = write_tweets(tmp_path / "train.csv", 24)
    common = ["finetune", "--model", "minilm", "--train", train, "--max-steps", "2", "--max-length", "24",
              "--precision", "fp32", "--cache-dir", tmp_path / "cache"]
    preset = _one_object(run(*common, "--recipe", "setfit", "--lr", "1e-4", "--out", tmp_path / "a", "--json"))
    config = json.loads((tmp_path / "a" / "tweetheads_run.json").read_text())["config"]
    assert preset["recipe"] == config["recipe"] == "setfit" and preset["steps"] == 2
    assert (config["objective"], config["pooling"], config["train_batch_size"], config["epochs"]) == \
        ("contrastive", "mean", 32, 40) and config["lr"] == 1e-4  # the preset, and the option given over it
    assert run(*common, "-o", tmp_path / "b").exit_code == 0
    card = json.loads((tmp_path / "b" / "tweetheads_run.json").read_text())["config"]
    assert (card["recipe"], card["objective"], card["lr"], card["train_batch_size"]) == ("card", "classify", 1e-6, 8)
