"""Hub ids for ``--model`` and ``--head`` against a real Hugging Face cache laid out in a temp folder.

The Hub cannot be reached from here, so each repo is put where ``huggingface_hub`` itself looks
(``HF_HUB_CACHE/models--OWNER--NAME/snapshots/COMMIT/`` with ``refs/main`` naming the commit), and
real ``python cli.py`` processes run with ``HF_HUB_OFFLINE=1``: the resolution is the library's own
``snapshot_download``, not a mock of it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .artifacts import artifact
from .conftest import REPO

pytestmark = pytest.mark.slow
TEXTS = ["what a debate tonight", "the moderators were awful", "he said nothing new"]
TORCH = ("--backend", "torch", "--precision", "fp32")  # the head's own vectors on every CPU


def cache_repo(cache: Path, repo_id: str, folder: Path) -> str:
    """Put ``folder`` into the hub cache ``cache`` as model repo ``repo_id``; returns the commit hash."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / commit, ignore=shutil.ignore_patterns("checkpoint"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return commit


def cli(*args, cache: Path, cache_dir: Path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    return subprocess.run([sys.executable, "cli.py", *map(str, args), "--cache-dir", str(cache_dir)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hub-cache")
    cache_repo(cache, "someone/tiny-run", artifact(tmp_path_factory, "run-cls"))
    cache_repo(cache, "someone/tiny-head", artifact(tmp_path_factory, "head"))
    cache_repo(cache, "someone/other-run", artifact(tmp_path_factory, "run-mean"))
    return cache


def _labels(proc) -> list[dict]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_hub_ids_give_what_the_local_folders_give(hub, tmp_path, tmp_path_factory):
    run, head = artifact(tmp_path_factory, "run-cls"), artifact(tmp_path_factory, "head")
    local = cli("predict", "--model", run, "--head", head, *TORCH, "--json", *TEXTS, cache=hub, cache_dir=tmp_path / "c")
    remote = cli("predict", "--model", "someone/tiny-run", "--head", "someone/tiny-head", *TORCH, "--json", *TEXTS,
                 cache=hub, cache_dir=tmp_path / "c")
    assert _labels(remote) == _labels(local)
    # the run's own end-to-end classifier through the hub id too (the run marker is read from the snapshot)
    e2e = cli("predict", "--model", "someone/tiny-run", *TORCH, "--json", *TEXTS, cache=hub, cache_dir=tmp_path / "c")
    assert [row["text"] for row in _labels(e2e)] == TEXTS


def test_a_hub_head_of_another_model_is_refused_as_a_local_one_is(hub, tmp_path, tmp_path_factory):
    local = cli("predict", "--model", artifact(tmp_path_factory, "run-mean"), "--head", artifact(tmp_path_factory, "head"),
                *TORCH, "--json", "x", cache=hub, cache_dir=tmp_path / "c")
    remote = cli("predict", "--model", "someone/other-run", "--head", "someone/tiny-head", *TORCH, "--json", "x",
                 cache=hub, cache_dir=tmp_path / "c")
    assert local.returncode == remote.returncode == 1, remote.stdout + remote.stderr
    assert "Traceback" not in remote.stderr, remote.stderr
    # the same refusal: the same two fingerprints and the same fix, only the folder names differ
    tail = lambda text: text.split("(fingerprint ", 1)[1]
    assert tail(remote.stderr).split("model ")[0] == tail(local.stderr).split("model ")[0]
    assert remote.stderr.split("(fingerprint ")[2] == local.stderr.split("(fingerprint ")[2]
    assert "come from model 'someone/other-run'" in remote.stderr


def test_offline_with_nothing_cached_is_one_line_naming_what_is_missing(hub, tmp_path):
    proc = cli("predict", "--model", "someone/not-downloaded", "--head", "someone/tiny-head", "x",
               cache=hub, cache_dir=tmp_path / "c")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "'someone/not-downloaded' is not a local folder and not in the Hugging Face cache" in lines[0]
    assert str(hub) in lines[0] and "HF_HUB_OFFLINE=1 forbids downloading it" in lines[0]
    head = cli("predict", "--model", "someone/tiny-run", "--head", "someone/no-such-head", *TORCH, "x",
               cache=hub, cache_dir=tmp_path / "c")
    assert head.returncode == 1 and "'someone/no-such-head'" in head.stderr and "Traceback" not in head.stderr
