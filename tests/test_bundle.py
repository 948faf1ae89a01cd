"""``tweetheads export`` bundles and ``push --dry-run``, on a real run and head (tests/artifacts.py).

A bundle must predict and score exactly as the run and head it came from, carry no path of the
machine that wrote it, and be refused whole when one byte of it changes; ``push`` checks a folder
as its loaders do before anything would leave the machine (the Hub is not reachable here, so the
upload call itself is not made).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .artifacts import artifact, local_paths, paths_in
from .conftest import SAMPLE, invoke_cli

pytestmark = pytest.mark.slow
TEXTS = ["what a debate tonight", "the moderators were awful", "he said nothing new"]
TORCH = ("--backend", "torch", "--precision", "fp32")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    result = invoke_cli("export", "--model", artifact(tmp_path_factory, "run-cls"), "--head",
                        artifact(tmp_path_factory, "head"), out, "--cache-dir", tmp_path_factory.mktemp("c"), "-q")
    assert out.is_dir() and (out / "tweetheads_bundle.json").is_file(), result.output
    return out


def _predict(*args, cache: Path) -> list[dict]:
    result = invoke_cli("predict", *args, *TORCH, "--json", *TEXTS, "--cache-dir", cache)
    return [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]


def test_a_bundle_predicts_and_scores_as_its_run_and_head(bundle, tmp_path, tmp_path_factory):
    run, head = artifact(tmp_path_factory, "run-cls"), artifact(tmp_path_factory, "head")
    started = time.perf_counter()
    from_bundle = _predict("--model", bundle, cache=tmp_path / "c1")
    seconds = time.perf_counter() - started
    assert from_bundle == _predict("--model", run, "--head", head, cache=tmp_path / "c2")
    assert len(from_bundle) == len(TEXTS), f"{seconds:.1f} s"

    invoke_cli("score", SAMPLE, "--model", bundle, *TORCH, "--output", tmp_path / "b.csv", "--cache-dir", tmp_path / "c1", "-q")
    invoke_cli("score", SAMPLE, "--model", run, "--head", head, *TORCH, "--output", tmp_path / "s.csv",
               "--cache-dir", tmp_path / "c2", "-q")
    ours, theirs = (p.read_text().splitlines() for p in (tmp_path / "b.csv", tmp_path / "s.csv"))
    assert len(ours) == len(theirs) > 10
    # every column but pred_model / pred_head (which name where the model and head were loaded from)
    header = ours[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in ("pred_model", "pred_head")]
    import csv

    rows = lambda lines: [[row[i] for i in keep] for row in csv.reader(lines)]
    assert rows(ours) == rows(theirs)


def test_a_bundle_holds_no_path_of_the_machine_that_wrote_it(bundle, tmp_path_factory):
    found = {}
    for path in bundle.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".csv", ".txt", ".jsonl"):
            hits = paths_in(path.read_text(errors="replace"), local_paths(tmp_path_factory))
            if hits:
                found[str(path.relative_to(bundle))] = hits
    assert not found, found


def test_one_changed_byte_refuses_the_whole_bundle_by_name(bundle, tmp_path):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(bundle, copy)
    target = copy / "head" / "head.json"
    data = bytearray(target.read_bytes())
    data[-2] = ord(" ") if data[-2] != ord(" ") else ord("\t")
    target.write_bytes(bytes(data))
    result = invoke_cli("predict", "--model", copy, *TORCH, "x", "--cache-dir", tmp_path / "c", ok=False)
    assert result.exit_code == 1, result.output
    assert "head/head.json" in result.output and "sha256" in result.output, result.output
    pushed = invoke_cli("push", copy, "someone/tiny", "--dry-run", ok=False)
    assert pushed.exit_code == 1 and "head/head.json" in pushed.output, pushed.output


def test_push_dry_run_lists_the_checked_files_and_uploads_nothing(bundle):
    result = invoke_cli("push", bundle, "someone/tiny", "--dry-run", "--json")
    plan = json.loads(result.output)
    assert plan["kind"] == "bundle" and plan["repo_id"] == "someone/tiny"
    on_disk = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file())
    assert plan["files"] == on_disk and plan["bytes"] == sum((bundle / f).stat().st_size for f in on_disk)
