"""The README's command blocks, run as a new user would, so an example that stops working fails CI.

Every ```bash and ```python block runs, in document order, in one shell, in a copy of the
checkout (its tracked and untracked-but-not-ignored files, the installed .venv linked in), with
its own empty embedding cache. A block can only be left out by a line just above it,
``<!-- readme-check: skip: REASON -->``, saying why (the GOP data set, a run of many minutes, a
command CI runs itself); ```text blocks are output, not commands.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli import cli

from .conftest import REPO

_FENCE = re.compile(r"^```(\w*)\s*$")
_SKIP = re.compile(r"^<!-- readme-check: skip: (.+\S) -->$")


def readme_blocks(text: str) -> list[dict]:
    """Fenced blocks: language, code, first line number, and the skip reason (None: it runs)."""
    blocks, lines, at = [], text.splitlines(), 0
    while at < len(lines):
        opened = _FENCE.match(lines[at])
        if not opened or not opened.group(1):
            at += 1
            continue
        end = next(i for i in range(at + 1, len(lines)) if lines[i].strip() == "```")
        above = _SKIP.match(lines[at - 1].strip()) if at else None
        blocks.append({"lang": opened.group(1), "code": "\n".join(lines[at + 1:end]), "line": at + 1,
                       "skip": above.group(1) if above else None})
        at = end + 1
    return blocks


def runnable(blocks: list[dict]) -> list[dict]:
    return [b for b in blocks if b["skip"] is None and b["lang"] in ("bash", "python")]


def test_every_block_runs_or_says_why_not():
    blocks = readme_blocks((REPO / "README.md").read_text())
    langs = {b["lang"] for b in blocks}
    assert langs <= {"bash", "python", "text"}, f"a block in a language this check cannot run: {langs}"
    assert len(runnable(blocks)) >= 5, "the README's walkthrough should be runnable"
    commands = set(cli.commands)
    for block in blocks:
        for name in re.findall(r"python cli\.py ([\w-]+)", block["code"]):
            assert name in commands, f"README line {block['line']}: `cli.py {name}` is no command of cli.py"


def test_the_skip_marker_is_read():
    text = "intro\n<!-- readme-check: skip: needs the GOP data -->\n```bash\nfalse\n```\n```python\nprint(1)\n```\n"
    blocks = readme_blocks(text)
    assert [(b["lang"], b["skip"], b["line"]) for b in blocks] == [("bash", "needs the GOP data", 3),
                                                                    ("python", None, 6)]
    assert [b["code"] for b in runnable(blocks)] == ["print(1)"]


def _copy_checkout(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)


@pytest.mark.slow  # a 12-step fine-tune, three heads, compare and score on the sample: about a minute
def test_readme_commands_run_on_a_fresh_copy(tmp_path):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: cannot tell which files a fresh clone has")
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running inside a virtual environment: the README's `source .venv/bin/activate` needs one")
    checkout = tmp_path / "checkout"
    _copy_checkout(checkout)
    script = ["set -euo pipefail"]
    for number, block in enumerate(runnable(readme_blocks((REPO / "README.md").read_text()))):
        script.append(f"echo '== README block at line {block['line']}'")
        if block["lang"] == "bash":
            script.append(block["code"])
        else:
            path = checkout / f".readme-block-{number}.py"
            path.write_text(block["code"] + "\n")
            script.append(f"python {path.name}")
    env = {**os.environ, "TWEETHEADS_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=900)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"a README block failed (exit {done.returncode}):\n{tail}"
    assert (checkout / "out" / "report" / "report.md").is_file(), tail
    assert "against 'label': accuracy" in done.stdout, tail
