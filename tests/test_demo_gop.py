"""The GOP demo's fine-tune learns something: its end-to-end model is clearly above the majority class.

The settings are read from scripts/demo.sh itself (its GOP branch), so the demo and this check
cannot drift apart. About 3 minutes on 2 CPU cores; skipped where the GOP data is absent.
"""
from __future__ import annotations

import json
import re

import pytest

from cli import cli

from .conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.data, pytest.mark.long]  # 2.5 min: bash scripts/test.sh -m long


def demo_gop_settings() -> dict[str, str]:
    """STEPS, LR and BATCH of demo.sh's branch for a given DATA_FILE (the ``else`` line)."""
    line = next(l for l in (REPO / "scripts" / "demo.sh").read_text().splitlines() if l.startswith("else LABEL="))
    return dict(re.findall(r"(STEPS|LR|BATCH)=\$\{\w+:-([^}]+)\}", line))


def test_the_settings_are_read_from_the_demo():
    assert demo_gop_settings() == {"STEPS": "300", "LR": "1e-4", "BATCH": "16"}


def test_the_gop_demo_fine_tune_ends_well_above_the_majority_class(gop_csv, tmp_path):
    from click.testing import CliRunner

    settings = demo_gop_settings()
    runner = CliRunner()
    split = runner.invoke(cli, ["split", str(gop_csv), "--eval-fraction", "0.2", "--seed", "42", "-o",
                                str(tmp_path / "split"), "--json"])
    assert split.exit_code == 0, split.output
    run = runner.invoke(cli, ["finetune", "--model", "minilm", "--train", str(tmp_path / "split" / "train.csv"),
                              "--eval", str(tmp_path / "split" / "eval.csv"), "--label-col", "sentiment",
                              "--lr", settings["LR"], "--train-batch-size", settings["BATCH"],
                              "--max-steps", settings["STEPS"], "--max-length", "128", "-o", str(tmp_path / "run"),
                              "--json", "-q"])
    assert run.exit_code == 0, run.output
    final = json.loads(run.output.strip().splitlines()[-1])["final"]
    import csv

    with open(tmp_path / "split" / "eval.csv", newline="") as handle:
        labels = [row["sentiment"] for row in csv.DictReader(handle)]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    assert majority == pytest.approx(0.6205, abs=1e-3)  # the card's split
    assert final["accuracy"] > majority + 0.04, f"end to end {final['accuracy']:.4f} against majority {majority:.4f}"
