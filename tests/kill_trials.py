"""Kill -9 trials: ``embed``, ``finetune`` and ``score`` killed at seeded random points, then checked and rerun.

    python tests/kill_trials.py --trials 20                  # 20 trials of each kind (RELIABILITY.md has timings)
    python tests/kill_trials.py --trials 3 --kinds score     # one kind, fewer trials
    python tests/kill_trials.py --trials 20 --kinds concurrent  # 4 embed processes, a 5th killed
    python tests/kill_trials.py --trials 20 --json out.json  # also write every trial as JSON

Each trial starts the real command line (``python cli.py ...``) in a subprocess, sends it SIGKILL at
a seeded random point and checks what it left behind, then reruns the same command to the end (here
in a subprocess too; the tests rerun it in process through click's CliRunner, which saves loading
torch and the model again):

- embed: the cache opens; every vector it returns equals a fresh computation
  (``Embedder("minilm", cache_dir=None)``) to 1e-6 of the vector's largest component; no committed
  row is damaged; an output file, if there is one, is complete. The rerun exits 0, counts every
  committed vector as a cache hit (nothing committed is lost or re-encoded), writes vectors equal to
  the fresh ones and leaves the store holding each text once.
- finetune (``--save-every 2``): the rerun (``--resume`` when a checkpoint exists, else the plain
  command) ends with the classifier and encoder weights of an uninterrupted run (atol 1e-6) and a
  run folder whose recorded sha256 digests verify.
- score: the rerun resumes and writes the same bytes (output and rejects) as an uninterrupted run,
  with ``read = scored + rejected``; the cache the killed run was writing to is checked as for embed.

Kill points, seeded: even seeds at a uniform random time in 5-90% of an uninterrupted run's
duration; odd seeds at an event: embed at the k-th growth of a shard file (a batch appended, its
index commit not yet done), finetune while the k-th checkpoint is being written, score right after
chunk k is recorded (seeds 3, 7, 11, ...: the moment the output file is renamed into place, before
the rejects file is). ``tests/test_reliability.py`` runs these same functions with fewer, smaller
trials. What this leaves out: kills of the machine itself (power loss), which SIGKILL does not model
for data still in the page cache.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE = REPO / "embed" / "samples" / "tweets.csv"
TOLERANCE = 1e-6  # of the vector's largest component (float32 noise from batch padding is ~2e-7 of it)
# bf16 (the default on a CPU with bf16 units): a vector moves with the batch it was encoded in (its
# padded length), by up to ~1e-3 of its largest component here; a torn or misplaced row is off by O(1)
TOLERANCE_BF16 = 5e-3
SUMMARY = re.compile(r"(\d+) texts, (\d+) cache hits, (\d+) encoded")
SCORE_SUMMARY = re.compile(r"read ([\d,]+) rows: ([\d,]+) scored \(([\d,]+) truncated\), ([\d,]+) rejected")
FINETUNE_ARGS = ["--save-every", "2", "--train-batch-size", "4", "--max-length", "32", "--lr", "1e-4", "--seed", "7"]


# -- data -----------------------------------------------------------------------------------------
def sample_rows() -> list[dict]:
    with open(SAMPLE, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def make_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` short tweet-like texts, distinct after normalization, from the sample tweets' words."""
    words = " ".join(row["text"] for row in sample_rows()).split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + f" #{i}" for i in range(n)]


def write_texts(path: Path, texts: list[str], labels: list[str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"] + (["label"] if labels else []))
        for i, text in enumerate(texts):
            writer.writerow([i, text] + ([labels[i]] if labels else []))
    return path


def normalized(texts: list[str]) -> list[str]:
    from embed.normalize import normalize_tweet

    return [normalize_tweet(t) for t in texts]


# -- fresh vectors and the cache check --------------------------------------------------------------
class Fresh:
    """Reference vectors computed without any cache, memoized by normalized text."""

    def __init__(self, embedder=None):
        from embed.encoder import Embedder

        self.embedder = embedder if embedder is not None else Embedder("minilm", cache_dir=None, batch_size=32)
        self.memo: dict[str, np.ndarray] = {}
        self.seconds = 0.0
        self.worst = 0.0  # largest difference seen, relative to the vector's largest component

    def vectors(self, texts: list[str]) -> np.ndarray:
        keys = normalized(texts)
        new = list(dict.fromkeys(k for k in keys if k not in self.memo))
        if new:
            started = time.perf_counter()
            self.memo.update(zip(new, self.embedder.transform(new)))
            self.seconds += time.perf_counter() - started
        return np.stack([self.memo[k] for k in keys]) if keys else np.zeros((0, self.embedder.load().dim), np.float32)

    def check(self, got: np.ndarray, texts: list[str], what: str) -> None:
        want = self.vectors(texts)
        if got.shape != want.shape:
            raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
        scale = np.maximum(1.0, np.abs(want).max(axis=1))
        diff = np.abs(got - want).max(axis=1) / scale
        if len(diff):
            self.worst = max(self.worst, float(diff.max()))
        tolerance = TOLERANCE_BF16 if self.embedder.load().precision == "bf16" else TOLERANCE
        bad = np.flatnonzero(~(diff <= tolerance))
        if len(bad):
            raise AssertionError(f"{what}: {len(bad)} of {len(texts)} vectors differ from a fresh computation "
                                 f"(worst {diff[bad].max():.2e} of the largest component; first {texts[bad[0]]!r})")


def check_store(cache_dir: Path, fresh: Fresh, texts: list[str]) -> int:
    """Open the store as a new process would; every vector it returns must be right. Returns its size."""
    from cache import EmbeddingStore, text_key

    enc = fresh.embedder.load()
    if not (Path(cache_dir) / enc.fingerprint[:20] / "store.json").exists():
        return 0
    store = EmbeddingStore(cache_dir, enc.fingerprint, enc.dim)
    try:
        unique = list(dict.fromkeys(normalized(texts)))
        found, got = store.get_many([text_key(enc.fingerprint, t) for t in unique])
        if store.dropped:
            raise AssertionError(f"{cache_dir}: {store.dropped} committed rows were damaged")
        fresh.check(got[found], [t for t, f in zip(unique, found) if f], f"cache {cache_dir}")
        count = len(store)
        if count != int(found.sum()):
            raise AssertionError(f"{cache_dir}: the index holds {count} rows, {int(found.sum())} of them for these texts")
        return count
    finally:
        store.close()


# -- processes -----------------------------------------------------------------------------------
@dataclass
class Trial:
    kind: str
    seed: int
    mode: str  # "time" or "event"
    kill_after: float = 0.0  # seconds after start: when it was killed, or when it ended by itself
    killed_mid_run: bool = False  # False: the command had already finished when the kill came
    planned: float | None = None  # timed kills: the seconds drawn
    detail: dict = field(default_factory=dict)
    failure: str | None = None
    seconds: float = 0.0

    def line(self) -> str:
        if self.killed_mid_run:
            when = f"killed at {self.kill_after:.2f} s"
        else:
            when = f"ended by itself at {self.kill_after:.2f} s" + (
                f", before the kill due at {self.planned:.2f} s" if self.planned else ", before the event")
        facts = "".join(f", {k} {v}" for k, v in self.detail.items())
        verdict = f"FAILED: {self.failure}" if self.failure else "ok"
        return f"{self.kind:8} seed {self.seed:3} {self.mode:5} {when}{facts}; trial {self.seconds:.1f} s: {verdict}"


def _env(work: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               TWEETHEADS_CACHE_DIR=str(work / "default-cache"), PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    return env


def start(command: list[str], work: Path, log: Path, **env: str) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        return subprocess.Popen(command, cwd=REPO, env={**_env(work), **env}, stdout=handle, stderr=subprocess.STDOUT)


def run_to_end(command: list[str], work: Path, log: Path, timeout: float = 900) -> tuple[str, float]:
    """Run a command to the end; return its output and seconds; raise if it fails."""
    started = time.perf_counter()
    offset = log.stat().st_size if log.exists() else 0  # the log may already hold a killed run's output
    proc = start(command, work, log)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with open(log, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode(errors="replace")
    if proc.returncode != 0 or "Traceback" in text:
        raise AssertionError(f"{' '.join(command[1:4])} exited {proc.returncode}: {text[-800:]}")
    return text, time.perf_counter() - started


def subprocess_runner(args: list[str], work: Path, log: Path) -> tuple[str, float]:
    """How references and reruns run by default: ``python cli.py ARGS`` to the end, in a subprocess."""
    return run_to_end(_python(*args), work, log)


def kill_when(proc: subprocess.Popen, trial: Trial, deadline: float, event=None, timeout: float = 900) -> None:
    """SIGKILL ``proc`` at ``deadline`` seconds after now, or as soon as ``event()`` is true (polled)."""
    started = time.perf_counter()
    limit = started + (deadline if event is None else timeout)
    while time.perf_counter() < limit and proc.poll() is None:
        if event is not None and event():
            break
        time.sleep(0.003 if event is not None else min(0.01, max(0.0, limit - time.perf_counter())))
    trial.kill_after = time.perf_counter() - started
    trial.planned = deadline if event is None else None
    trial.killed_mid_run = proc.poll() is None
    if trial.killed_mid_run:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def shard_growth(cache: Path, target: int):
    """An event for ``kill_when``: true once the store's shard files have grown ``target`` times."""
    seen = [0, 0]  # growths seen, last total size

    def grown() -> bool:
        size = sum(p.stat().st_size for p in cache.glob("*/shards/*.f32"))
        if size > seen[1]:
            seen[0], seen[1] = seen[0] + 1, size
        return seen[0] >= target

    return grown


def _python(*args: str, commit_every: int | None = None) -> list[str]:
    """``python cli.py ARGS``; ``commit_every`` (embed only): small cache-commit groups give a short run many commits."""
    return [sys.executable, "cli.py", *args] + (["--commit-every", str(commit_every)] if commit_every else [])


def _run_trials(kind: str, seeds, one) -> list[Trial]:
    results = []
    for seed in seeds:
        trial = Trial(kind, seed, "event" if seed % 2 else "time")
        started = time.perf_counter()
        try:
            one(trial)
        except Exception as exc:  # noqa: BLE001 - a trial's failure is recorded, the others still run
            trial.failure = f"{type(exc).__name__}: {exc}"
        trial.seconds = time.perf_counter() - started
        results.append(trial)
    return results


# -- embed ---------------------------------------------------------------------------------------
class EmbedTrials:
    """``python cli.py embed --model minilm`` over ``texts`` into an empty cache, killed and rerun."""

    def __init__(self, work: Path, fresh: Fresh, texts: list[str], *, batch_size: int = 8,
                 commit_every: int | None = None):
        self.work, self.fresh, self.texts = Path(work), fresh, texts
        self.batch_size, self.commit_every = batch_size, commit_every
        self.input = write_texts(self.work / "embed-input.csv", texts)
        self.group = commit_every or _shipped_commit_group()
        self.duration = None
        self.rerun = None  # None: rerun in a subprocess; else a runner(args, work, log) -> (output, seconds)

    def args(self, cache: Path, output: Path) -> list[str]:
        return ["embed", "--model", "minilm", "--input", str(self.input), "--output", str(output),
                "--cache-dir", str(cache), "--batch-size", str(self.batch_size)]

    def command(self, cache: Path, output: Path) -> list[str]:
        return _python(*self.args(cache, output), commit_every=self.commit_every)

    def _rerun(self, cache: Path, output: Path, log: Path) -> str:
        if self.rerun is not None:
            return self.rerun(self.args(cache, output), self.work, log)[0]
        return run_to_end(self.command(cache, output), self.work, log)[0]

    def calibrate(self) -> float:
        """One uninterrupted run: its duration spreads the timed kills, its output must be right."""
        folder = self.work / "embed-calibration"
        shutil.rmtree(folder, ignore_errors=True)
        _, self.duration = run_to_end(self.command(folder / "cache", folder / "out.npy"), self.work, folder / "log")
        self.fresh.check(np.load(folder / "out.npy"), self.texts, "uninterrupted embed output")
        shutil.rmtree(folder, ignore_errors=True)
        return self.duration

    def run(self, seeds) -> list[Trial]:
        if self.duration is None and any(seed % 2 == 0 for seed in seeds):
            self.calibrate()  # only timed kills need it
        return _run_trials("embed", seeds, self.one)

    def one(self, trial: Trial) -> None:
        rng = random.Random(trial.seed)
        folder = self.work / f"embed-{trial.seed}"
        shutil.rmtree(folder, ignore_errors=True)
        cache, output = folder / "cache", folder / "out.npy"
        proc = start(self.command(cache, output), self.work, folder / "log")
        if trial.mode == "time":
            kill_when(proc, trial, rng.uniform(0.05, 0.9) * self.duration)
            self.duration = self.duration if trial.killed_mid_run else trial.kill_after  # runs got faster
        else:
            commits = math.ceil(len(set(normalized(self.texts))) / self.group)
            target = rng.randint(1, commits)
            kill_when(proc, trial, 0, event=shard_growth(cache, target))
            trial.detail["at growth"] = f"{target}/{commits}"
        committed = check_store(cache, self.fresh, self.texts)
        trial.detail["committed"] = committed
        if output.exists():  # written by rename, so complete whenever it exists
            self.fresh.check(np.load(output), self.texts, "output left by the killed run")
        text = self._rerun(cache, output, folder / "log")
        match = SUMMARY.search(text)
        if not match:
            raise AssertionError(f"no summary line in the rerun's output: {text[-400:]!r}")
        n, hits, encoded = map(int, match.groups())
        unique = len(set(normalized(self.texts)))
        if (n, hits, encoded) != (len(self.texts), committed, unique - committed):
            raise AssertionError(f"rerun said {match.group(0)!r}; expected {committed} hits and "
                                 f"{unique - committed} encoded (every committed vector reused)")
        self.fresh.check(np.load(output), self.texts, "rerun output")
        if check_store(cache, self.fresh, self.texts) != unique:
            raise AssertionError("after the rerun the store does not hold each text exactly once")
        shutil.rmtree(folder, ignore_errors=True)


def _shipped_commit_group() -> int:
    from embed import encoder

    return encoder.COMMIT_EVERY


# -- concurrent embed ----------------------------------------------------------------------------
class ConcurrentTrials:
    """Four ``embed`` processes fill one store while a fifth, writing to the same store, is killed.

    The five inputs are overlapping windows of ``texts`` (each shares texts with its neighbours, so
    writers race on the same keys). Each trial: all five start together (one torch thread each),
    the fifth is killed (timed: 5-90% of its calibrated duration; event: at the k-th growth of any
    shard file), the four survivors must exit 0 with outputs equal to fresh vectors, the store must
    open and return only right vectors, and the killed command, rerun, must finish and leave the
    store holding each text once.
    """

    def __init__(self, work: Path, fresh: Fresh, texts: list[str], *, commit_every: int = 8):
        self.work, self.fresh, self.texts, self.commit_every = Path(work), fresh, texts, commit_every
        step, width = len(texts) // 5, 2 * len(texts) // 5
        self.sets = [(texts + texts)[i * step: i * step + width] for i in range(5)]
        self.inputs = [write_texts(self.work / f"concurrent-in-{i}.csv", own) for i, own in enumerate(self.sets)]
        self.duration = None

    def command(self, i: int, folder: Path) -> list[str]:
        return _python("embed", "--model", "minilm", "--input", str(self.inputs[i]), "--output",
                       str(folder / f"out-{i}.npy"), "--cache-dir", str(folder / "cache"), "--batch-size", "8",
                       commit_every=self.commit_every)

    def _start_all(self, folder: Path) -> list[subprocess.Popen]:
        return [start(self.command(i, folder), self.work, folder / f"log-{i}", OMP_NUM_THREADS="1") for i in range(5)]

    def _finish(self, procs: list[subprocess.Popen], folder: Path, which) -> None:
        for i in which:
            procs[i].wait(timeout=900)
            log = (folder / f"log-{i}").read_text(errors="replace")
            if procs[i].returncode != 0 or "Traceback" in log:
                raise AssertionError(f"process {i} exited {procs[i].returncode}: {log[-800:]}")
            self.fresh.check(np.load(folder / f"out-{i}.npy"), self.sets[i], f"process {i} output")

    def calibrate(self) -> float:
        folder = self.work / "concurrent-calibration"
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        procs = self._start_all(folder)
        procs[4].wait(timeout=900)
        self.duration = time.perf_counter() - started
        self._finish(procs, folder, range(5))
        shutil.rmtree(folder, ignore_errors=True)
        return self.duration

    def run(self, seeds) -> list[Trial]:
        if self.duration is None:
            self.calibrate()
        return _run_trials("concurrent", seeds, self.one)

    def one(self, trial: Trial) -> None:
        rng = random.Random(trial.seed)
        folder = self.work / f"concurrent-{trial.seed}"
        shutil.rmtree(folder, ignore_errors=True)
        cache = folder / "cache"
        procs = self._start_all(folder)
        try:
            if trial.mode == "time":
                kill_when(procs[4], trial, rng.uniform(0.05, 0.9) * self.duration)
            else:
                target = rng.randint(1, 12)
                kill_when(procs[4], trial, 0, event=shard_growth(cache, target))
                trial.detail["at growth"] = target
            self._finish(procs, folder, range(4))  # the survivors finish, with right vectors
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        everything = [t for own in self.sets for t in own]
        trial.detail["stored before the rerun"] = check_store(cache, self.fresh, everything)
        run_to_end(self.command(4, folder), self.work, folder / "log-4")
        self.fresh.check(np.load(folder / "out-4.npy"), self.sets[4], "the killed command, rerun")
        unique = len(set(normalized(everything)))
        if check_store(cache, self.fresh, everything) != unique:
            raise AssertionError("after the rerun the store does not hold each text exactly once")
        shutil.rmtree(folder, ignore_errors=True)


# -- finetune ------------------------------------------------------------------------------------
_REFERENCES: dict[tuple, tuple[Path, float]] = {}  # (train sha256, steps, flags) -> (reference run, seconds)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


class FinetuneTrials:
    """``python cli.py finetune --model minilm --save-every 2`` on 16 rows (4 steps an epoch), killed, then resumed."""

    def __init__(self, work: Path, rows: int = 16, steps: int = 6):
        self.work = Path(work)
        labelled = sample_rows()
        random.Random(1).shuffle(labelled)
        labelled = labelled[:rows]
        self.train = write_texts(self.work / "finetune-train.csv", [r["text"] for r in labelled],
                                 [r["label"] for r in labelled])
        self.reference = self.work / "finetune-reference"
        self.duration = None
        self.steps = steps
        per_epoch = math.ceil(rows / 4)
        self.saves = len({s for s in range(1, steps + 1) if s % 2 == 0 or s % per_epoch == 0 or s == steps})
        self.rerun = None  # None: resume in a subprocess; else a runner(args, work, log) -> (output, seconds)

    def args(self, run_dir: Path, resume: bool = False) -> list[str]:
        return ["finetune", "--model", "minilm", "--train", str(self.train), "--out", str(run_dir),
                "--cache-dir", str(self.work / "finetune-cache"), "--max-steps", str(self.steps), *FINETUNE_ARGS,
                *(["--resume"] if resume else [])]

    def command(self, run_dir: Path, resume: bool = False) -> list[str]:
        return _python(*self.args(run_dir, resume))

    def calibrate(self, runner=subprocess_runner) -> float:
        """The uninterrupted run every trial must match; its duration spreads the timed kills.

        The run is seeded, so the same training rows, steps and flags give the same weights: a reference
        this process has already trained for them is linked into place (hard links; nothing writes into
        a reference) instead of trained again. The tests make three such trials of one recipe."""
        shutil.rmtree(self.reference, ignore_errors=True)
        key = (hashlib.sha256(self.train.read_bytes()).hexdigest(), self.steps, tuple(FINETUNE_ARGS))
        made = _REFERENCES.get(key)
        if made is not None and (made[0] / "tweetheads_run.json").is_file():
            shutil.copytree(made[0], self.reference, copy_function=_link_or_copy)
            self.duration = made[1]
            return self.duration
        _, self.duration = runner(self.args(self.reference), self.work, self.work / "finetune-reference.log")
        _REFERENCES[key] = (self.reference, self.duration)
        return self.duration

    def run(self, seeds) -> list[Trial]:
        if self.duration is None:
            self.calibrate()
        return _run_trials("finetune", seeds, self.one)

    def one(self, trial: Trial) -> None:
        from embed.runs import verify_run

        rng = random.Random(trial.seed)
        run_dir = self.work / f"finetune-{trial.seed}"
        shutil.rmtree(run_dir, ignore_errors=True)
        log = self.work / f"finetune-{trial.seed}.log"
        log.unlink(missing_ok=True)
        proc = start(self.command(run_dir), self.work, log)
        if trial.mode == "time":
            kill_when(proc, trial, rng.uniform(0.05, 0.9) * self.duration)
            self.duration = self.duration if trial.killed_mid_run else trial.kill_after  # runs got faster
        else:
            target, state = rng.randint(1, self.saves), {"seen": 0, "was": False, "at": None}
            pause = rng.uniform(0.0, 0.3)
            tmp = run_dir / "checkpoint.tmp"

            def saving() -> bool:
                now = tmp.exists()
                if now and not state["was"]:
                    state["seen"] += 1
                state["was"] = now
                if state["seen"] >= target and state["at"] is None:
                    state["at"] = time.perf_counter()
                return state["at"] is not None and time.perf_counter() - state["at"] >= pause

            kill_when(proc, trial, 0, event=saving)
            trial.detail["during save"] = f"{target}/{self.saves} +{pause:.2f} s"
        # a kill between save_checkpoint's two renames leaves only checkpoint.old/, which --resume falls back to
        found = [f / "progress.json" for f in (run_dir / "checkpoint", run_dir / "checkpoint.old")
                 if (f / "progress.json").exists()]
        resumed = bool(found)
        trial.detail["resumed from step"] = json.loads(found[0].read_text())["step"] if found else "none"
        if found and found[0].parent.name == "checkpoint.old":
            trial.detail["from"] = "checkpoint.old"
        (self.rerun or subprocess_runner)(self.args(run_dir, resume=resumed), self.work, log)
        verify_run(run_dir)
        compare_weights(self.reference, run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def compare_weights(reference: Path, run_dir: Path, atol: float = 1e-6) -> None:
    """Classifier and encoder weights of ``run_dir`` equal the reference run's."""
    from safetensors.numpy import load_file

    for name in ("classifier.safetensors", "encoder/model.safetensors"):
        want, got = load_file(str(reference / name)), load_file(str(run_dir / name))
        if set(want) != set(got):
            raise AssertionError(f"{run_dir / name}: tensors {sorted(set(want) ^ set(got))} differ in name")
        for key in want:
            if not np.allclose(want[key], got[key], rtol=0, atol=atol):
                worst = float(np.abs(want[key].astype(np.float64) - got[key]).max())
                raise AssertionError(f"{run_dir / name}: {key} differs from the uninterrupted run by {worst:.2e}")


# -- score ---------------------------------------------------------------------------------------
class ScoreTrials:
    """``python cli.py score`` over ``rows`` rows (chunks of 20) with a logistic head; most texts cached."""

    def __init__(self, work: Path, fresh: Fresh, texts: list[str], *, rows: int = 2000, cold: int = 20,
                 chunk_rows: int = 20):
        from cache import EmbeddingStore, text_key
        from heads import get_head

        self.work, self.fresh, self.texts, self.chunk_rows = Path(work), fresh, texts, chunk_rows
        self.rows = rows
        row_texts = [texts[i % len(texts)] for i in range(rows)]
        self.input = write_texts(self.work / "score-input.csv", row_texts)
        with open(self.input, "ab") as handle:  # three rows that must be rejected, not lost
            handle.write(b"900001,\n900002,bad \xff byte\n900003,ok,extra\n")
        vectors = fresh.vectors(texts)
        labels = [("Negative", "Neutral", "Positive")[i % 3] for i in range(len(texts))]
        enc = fresh.embedder.load()
        self.head = self.work / "score-head"
        get_head("logistic", C=1.0).fit(vectors, labels).save(self.head, fingerprint=enc.fingerprint,
                                                              model=enc.description)
        self.warm = self.work / "score-warm-cache"  # every text but the last ``cold`` already embedded
        shutil.rmtree(self.warm, ignore_errors=True)
        store = EmbeddingStore(self.warm, enc.fingerprint, enc.dim, enc.description)
        keep = texts[: len(texts) - cold]
        store.put_many([text_key(enc.fingerprint, t) for t in normalized(keep)], fresh.vectors(keep))
        store.close()
        self.reference = self.work / "score-reference" / "out.csv"
        self.duration = None
        self.rerun = None  # None: rerun in a subprocess; else a runner(args, work, log) -> (output, seconds)

    def args(self, output: Path, cache: Path) -> list[str]:
        return ["score", str(self.input), "--output", str(output), "--model", "minilm", "--head", str(self.head),
                "--cache-dir", str(cache), "--chunk-rows", str(self.chunk_rows)]

    def command(self, output: Path, cache: Path) -> list[str]:
        return _python(*self.args(output, cache))

    def calibrate(self, runner=subprocess_runner) -> float:
        """The uninterrupted run whose bytes every trial must reproduce; its duration spreads the timed kills."""
        folder = self.reference.parent
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(self.warm, folder / "cache")
        text, self.duration = runner(self.args(self.reference, folder / "cache"), self.work, folder / "log")
        self._check_summary(text)
        return self.duration

    def _check_summary(self, text: str) -> None:
        match = SCORE_SUMMARY.search(text)
        if not match:
            raise AssertionError(f"no summary line: {text[-400:]!r}")
        read, scored, _, rejected = (int(g.replace(",", "")) for g in match.groups())
        if (read, scored, rejected) != (self.rows + 3, self.rows, 3):
            raise AssertionError(f"summary {match.group(0)!r}: expected {self.rows + 3} read = {self.rows} scored + 3")

    def run(self, seeds) -> list[Trial]:
        if self.duration is None:
            self.calibrate()
        return _run_trials("score", seeds, self.one)

    def one(self, trial: Trial) -> None:
        rng = random.Random(trial.seed)
        folder = self.work / f"score-{trial.seed}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(self.warm, folder / "cache")
        output = folder / "out" / "out.csv"
        proc = start(self.command(output, folder / "cache"), self.work, folder / "log")
        if trial.mode == "time":
            kill_when(proc, trial, rng.uniform(0.05, 0.9) * self.duration)
            self.duration = self.duration if trial.killed_mid_run else trial.kill_after  # runs got faster
        elif trial.seed % 4 == 3:  # the moment the output is renamed into place, before the rejects file
            kill_when(proc, trial, 0, event=output.exists)
            trial.detail["at"] = "output rename"
        else:
            chunks = math.ceil((self.rows + 3) / self.chunk_rows)
            target = rng.randint(0, chunks - 2)
            progress = output.with_name("out.csv.progress.json")

            def recorded() -> bool:
                try:
                    return json.loads(progress.read_text())["chunk"] >= target
                except (OSError, ValueError, KeyError):
                    return False

            kill_when(proc, trial, 0, event=recorded)
            trial.detail["after chunk"] = f"{target}/{chunks}"
        if output.exists() and output.read_bytes() != self.reference.read_bytes():  # renamed: must be complete
            raise AssertionError(f"{output} was left incomplete or different by the killed run")
        trial.detail["committed"] = check_store(folder / "cache", self.fresh, self.texts)
        text, _ = (self.rerun or subprocess_runner)(self.args(output, folder / "cache"), self.work, folder / "log")
        self._check_summary(text)
        for name in ("out.csv", "out.rejects.csv"):
            if (output.parent / name).read_bytes() != (self.reference.parent / name).read_bytes():
                raise AssertionError(f"{output.parent / name} differs from the uninterrupted run's")
        left = sorted(p.name for p in output.parent.iterdir())
        if left != ["out.csv", "out.rejects.csv"]:
            raise AssertionError(f"{output.parent} holds {left} after the rerun")
        if check_store(folder / "cache", self.fresh, self.texts) != len(set(normalized(self.texts))):
            raise AssertionError("after the rerun the cache does not hold every text once")
        shutil.rmtree(folder, ignore_errors=True)


# -- the script ----------------------------------------------------------------------------------
def summarize(results: list[Trial]) -> list[str]:
    lines = []
    for kind in dict.fromkeys(t.kind for t in results):
        group = [t for t in results if t.kind == kind]
        failed = [t for t in group if t.failure]
        mid = sum(t.killed_mid_run for t in group)
        lines.append(f"{kind}: {len(group)} trials, {mid} killed mid-run ({len(group) - mid} ended first), "
                     f"{len(failed)} failures, "
                     f"{sum(t.seconds for t in group):.0f} s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials of each kind")
    parser.add_argument("--kinds", default="embed,finetune,score", help="comma-separated: embed, finetune, score, concurrent")
    parser.add_argument("--seed", type=int, default=0, help="first seed; trial i uses seed + i")
    parser.add_argument("--texts", type=int, default=2500,
                        help="distinct texts per embed trial (more than one commit group of 2048)")
    parser.add_argument("--commit-every", type=int, default=0,
                        help="texts per cache commit in embed trials (0: the shipped value, 2048)")
    parser.add_argument("--workdir", type=Path, default=None, help="[default: a temporary folder, removed]")
    parser.add_argument("--json", type=Path, default=None, help="write every trial here")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kill-trials-"))
    work.mkdir(parents=True, exist_ok=True)
    seeds = range(args.seed, args.seed + args.trials)
    started = time.perf_counter()
    fresh = Fresh()
    results: list[Trial] = []
    try:
        for kind in kinds:
            if kind == "embed":
                trials = EmbedTrials(work, fresh, make_texts(args.texts, seed=1), commit_every=args.commit_every or None)
                print(f"embed: calibration run {trials.calibrate():.1f} s", flush=True)
            elif kind == "finetune":
                trials = FinetuneTrials(work)
                print(f"finetune: uninterrupted run {trials.calibrate():.1f} s", flush=True)
            elif kind == "concurrent":
                trials = ConcurrentTrials(work, fresh, make_texts(200, seed=11))
                print(f"concurrent: five processes, the fifth took {trials.calibrate():.1f} s", flush=True)
            elif kind == "score":
                trials = ScoreTrials(work, fresh, make_texts(300, seed=2))
                print(f"score: uninterrupted run {trials.calibrate():.1f} s", flush=True)
            else:
                parser.error(f"unknown kind {kind!r}")
            for seed in seeds:
                [trial] = trials.run([seed])
                results.append(trial)
                print(trial.line(), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    for line in summarize(results):
        print(line)
    print(f"worst vector difference seen: {fresh.worst:.2e} of the largest component; "
          f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(t) for t in results], indent=2) + "\n")
    return 1 if any(t.failure for t in results) else 0


if __name__ == "__main__":
    sys.exit(main())
