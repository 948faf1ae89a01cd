"""``score --engine ray`` on a real two-node Ray cluster that this module starts and stops.

Two raylets on this machine (``ray start --head --num-cpus 1`` and ``ray start --address HEAD
--num-cpus 1``, each with its own custom resource), started in one new session and ended by its
session id. Every run is a real ``python cli.py score`` process joining the cluster; the workers
read, score and write, and the output is compared with the local engine's on the same inputs.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not RAY.exists():
        pytest.skip(f"no ray command beside {sys.executable}")
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="thr", dir="/tmp"))  # short: Ray's socket paths must stay short
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               RAY_USAGE_STATS_ENABLED="0")
    common = "--num-cpus 1 --node-ip-address 127.0.0.1 --disable-usage-stats"
    script = (f"set -e\n{RAY} start --head --port {port} {common} --resources '{{\"node_a\": 1}}' "
              f"--temp-dir {temp} --include-dashboard false\n"
              f"{RAY} start --address 127.0.0.1:{port} {common} --resources '{{\"node_b\": 1}}'\n")
    starter = subprocess.Popen(["bash", "-c", script], start_new_session=True, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    session = starter.pid  # the new session's id: every Ray process below keeps it
    try:
        out, _ = starter.communicate(timeout=240)
        if starter.returncode:
            pytest.fail(f"ray start failed:\n{out}")
        nodes = subprocess.run([sys.executable, "-c", (
            "import json, ray; ray.init(address='127.0.0.1:%d', logging_level='ERROR'); "
            "print(json.dumps({n['NodeID']: sorted(k for k in n['Resources'] if k.startswith('node_')) "
            "for n in ray.nodes() if n['Alive']}))") % port], env=env, capture_output=True, text=True, timeout=120)
        assert nodes.returncode == 0, nodes.stderr
        node_ids = json.loads(nodes.stdout.strip().splitlines()[-1])
        assert sorted(sum(node_ids.values(), [])) == ["node_a", "node_b"], node_ids
        yield {"address": f"127.0.0.1:{port}", "env": env, "nodes": node_ids}
    finally:
        subprocess.run(["pkill", "-9", "-s", str(session)], check=False)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def head(tmp_path_factory, minilm_path):
    """A logistic head on the sample tweets (its vectors in a cache of their own)."""
    from embed.encoder import Embedder
    from heads import get_head

    tmp = tmp_path_factory.mktemp("rayhead")
    rows = _sample()
    embedder = Embedder("minilm", precision="fp32", cache_dir=tmp / "cache")  # as cli_score embeds
    vectors, _ = embedder.embed([row["text"] for row in rows])
    encoder = embedder.load()
    get_head("logistic", C=1.0).fit(vectors, [r["label"] for r in rows]).save(
        tmp / "head", fingerprint=encoder.fingerprint, model=encoder.description)
    return tmp / "head"


def _sample() -> list[dict]:
    with open(SAMPLE, newline="") as handle:
        return list(csv.DictReader(handle))


def _rows(n: int, tag: str) -> list[list]:
    """``n`` rows whose texts are new to every cache (a tag and a number on a sample tweet)."""
    rows = _sample()
    return [[f"{tag}{i}", f"{rows[i % len(rows)]['text']} #{tag}{i}", rows[i % len(rows)]["label"]] for i in range(n)]


SIZES = (700, 600, 500, 500, 400)  # good rows per file: a few thousand in all
SMALL = (200, 150, 120, 120, 100)  # for the fault tests: long enough to be hit mid-run


def messy_inputs(folder: Path, sizes=SIZES) -> tuple[list[Path], int, int]:
    """Five files of five formats, with rejects of every kind; (paths, rows read, rows rejected)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ["id", "text", "label"]
    a = folder / "a.csv"
    with open(a, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *_rows(sizes[0], "a")])
    with open(a, "ab") as handle:  # empty text, invalid UTF-8, a ragged row, a NUL, an unclosed quote
        handle.write(b"x1,,Neutral\nx2,bad \xff byte,Neutral\nx3,ok,Neutral,extra\nx4,nul \x00 here,Neutral\n"
                     b'x5,"never closed,Neutral\n')
    b = folder / "b.csv.gz"
    buffer = [",".join(header)] + [f"{i},\"{t.replace(chr(34), chr(34) * 2)}\",{lab}" for i, t, lab in _rows(sizes[1], "b")]
    b.write_bytes(gzip.compress(("\n".join(buffer) + "\n").encode()))
    c = folder / "c.tsv"
    with open(c, "w", newline="") as handle:
        csv.writer(handle, delimiter="\t").writerows([header, *_rows(sizes[2], "c"), ["c-empty", "", "Neutral"]])
    d = folder / "d.jsonl"
    with open(d, "w") as handle:
        for i, text, label in _rows(sizes[3], "d"):
            handle.write(json.dumps({"id": i, "text": text, "label": label}) + "\n")
        handle.write('{"id": "d-broken", "text": \n{"id": "d-num", "text": 5, "label": "Neutral"}\n')
    e = folder / "e.parquet"
    rows = _rows(sizes[4], "e") + [["e-null", None, "Neutral"]]
    pq.write_table(pa.table({name: [r[j] for r in rows] for j, name in enumerate(header)}), e)
    read = sum(sizes) + 5 + 1 + 2 + 1
    return [a, b, c, d, e], read, 5 + 1 + 2 + 1


def cli_score(paths, output, head, cache, *extra, env=None, wait=True):
    """``score`` in fp32: a text's fp32 vector is the same in any batch (to ~1e-7), so a distributed run and a
    local one write the same bytes; in bf16 (the default on a CPU with bf16 units) the batch a text was
    encoded in moves its vector by up to ~1e-3, and a re-encoded row could print other digits."""
    command = [sys.executable, "cli.py", "score", *map(str, paths), "--output", str(output), "--model", "minilm",
               "--head", str(head), "--cache-dir", str(cache), "--precision", "fp32", *map(str, extra)]
    proc = subprocess.Popen(command, cwd=REPO, env=env or dict(os.environ, HF_HUB_OFFLINE="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def on_cluster(cluster, *extra, actors=2):
    """Join the cluster; ``actors`` scoring actors of half a CPU each, spread over the nodes."""
    return ("--engine", "ray", "--ray-address", cluster["address"], "--concurrency", actors, "--actor-cpus", 0.5,
            *extra)


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "_records").glob("chunk-*.json"))]


def reject_rows(folder: Path) -> list[list[str]]:
    rows = []
    for part in sorted((folder / "rejects").glob("part-*.csv")):
        with open(part, newline="", encoding="utf-8", errors="surrogateescape") as handle:
            rows += list(csv.reader(handle))[1:]
    return rows


def local_reject_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return list(csv.reader(handle))[1:]


def test_cluster_reads_scores_and_writes_on_both_nodes_like_the_local_engine(cluster, head, tmp_path):
    from scoring.ray_engine import read_output

    paths, read, rejected = messy_inputs(tmp_path / "in")
    cache = tmp_path / "cache"
    # default flags with as many actors as the cluster has CPUs: the reported hang (1 CPU per actor would
    # starve the read tasks), now sized to 0.5 CPU each by the plan-time check
    out = cli_score(paths, tmp_path / "ray", head, cache, "--chunk-rows", 128, "--engine", "ray", "--ray-address",
                    cluster["address"], "--concurrency", 2, "--stall-timeout", 240, env=cluster["env"])
    assert "scoring actors sized to 0.5 CPU each (not 1) so read tasks fit beside 2 of them on 2 CPUs" in out, out
    assert f"read {read:,} rows: {read - rejected:,} scored (0 truncated), {rejected} rejected" in out, out
    assert "2 Ray node(s)" in out and f"{read - rejected:,} texts encoded" in out, out
    for path, n, bad in zip(paths, (705, 600, 501, 502, 401), (5, 0, 1, 2, 1)):
        assert f"{path}: read {n:,} = {n - bad:,} scored + {bad:,} rejected" in out, out

    # both raylets read and scored: the workers' records name both node ids
    done = records(tmp_path / "ray")
    assert {r["node"] for r in done} == set(cluster["nodes"]), (done[:2], cluster["nodes"])
    reads = {json.loads(p.read_text())["node"] for p in (tmp_path / "ray" / "_records").glob("file-*.json")}
    assert reads <= set(cluster["nodes"])
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["state"] == "finished" and manifest["rows_read"] == read and manifest["actor_cpus"] == 0.5
    assert [f["rows_read"] for f in manifest["files"]] == [705, 600, 501, 502, 401]

    # the local engine on the same inputs (every text now in the cache): the same rows, labels, probabilities
    local = tmp_path / "local.parquet"
    cli_score(paths, local, head, cache, "--chunk-rows", 128)
    assert read_output(tmp_path / "ray").equals(pq.read_table(local))
    assert reject_rows(tmp_path / "ray") == local_reject_rows(tmp_path / "local.rejects.csv")
    reasons = {row[2].split(":")[0] for row in reject_rows(tmp_path / "ray")}
    assert {"empty text", "ragged row", "text is not a string"} <= reasons, reasons

    # the same node scoring the same texts again encodes none of them
    again = cli_score(paths, tmp_path / "ray2", head, cache, "--chunk-rows", 128, *on_cluster(cluster),
                      env=cluster["env"])
    assert "; 0 texts encoded;" in again, again


def _wait_for(condition, proc, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the fault could be injected:\n{proc.communicate()[0]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("timed out waiting for the run to get going")


def test_a_worker_killed_mid_run_loses_and_doubles_no_row(cluster, head, tmp_path):
    from scoring.ray_engine import read_output

    paths, read, rejected = messy_inputs(tmp_path / "in", SMALL)
    cache, folder = tmp_path / "cache", tmp_path / "ray"
    proc = cli_score(paths, folder, head, cache, "--chunk-rows", 32, *on_cluster(cluster, actors=1),
                     env=cluster["env"], wait=False)
    _wait_for(lambda: len(list((folder / "_records").glob("chunk-*.json"))) >= 2, proc)
    victim = records(folder)[0]["pid"]
    os.kill(victim, signal.SIGKILL)  # the only scoring actor, mid-run: Ray restarts it and retries its task
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    with pytest.raises(ProcessLookupError):
        os.kill(victim, 0)  # it did die
    assert {r["pid"] for r in records(folder)} - {victim}  # and a restarted actor finished the run
    assert f"read {read:,} rows: {read - rejected:,} scored" in out, out
    local = tmp_path / "local.parquet"
    cli_score(paths, local, head, cache, "--chunk-rows", 32)
    got, want = read_output(folder), pq.read_table(local)
    assert got.column("id").to_pylist() == want.column("id").to_pylist()  # none lost, none doubled, in order
    assert got.column("pred_label").to_pylist() == want.column("pred_label").to_pylist()
    assert got.equals(want)
    assert reject_rows(folder) == local_reject_rows(tmp_path / "local.rejects.csv")


def test_driver_killed_then_rerun_resumes_and_another_command_starts_clean(cluster, head, tmp_path):
    paths, read, rejected = messy_inputs(tmp_path / "in", SMALL)
    cache, folder = tmp_path / "cache", tmp_path / "ray"
    args = ("--chunk-rows", 32, *on_cluster(cluster, "--part-format", "csv", actors=1))
    proc = cli_score(paths, folder, head, cache, *args, env=cluster["env"], wait=False)
    _wait_for(lambda: len(list((folder / "_records").glob("chunk-*.json"))) >= 3, proc)
    proc.kill()  # the driver, kill -9
    proc.wait()
    time.sleep(2)  # the cluster ends the dead driver's job and its actors
    out = cli_score(paths, folder, head, cache, *args, env=cluster["env"])
    assert "resumed after" in out and f"read {read:,} rows: {read - rejected:,} scored" in out, out
    local = tmp_path / "local.csv"
    cli_score(paths, local, head, cache, "--chunk-rows", 32)
    assert _csv_body(folder) == local.read_bytes()
    assert reject_rows(folder) == local_reject_rows(tmp_path / "local.rejects.csv")

    # another command into the same folder: the old parts are cleared, not mixed in
    out = cli_score(paths, folder, head, cache, "--chunk-rows", 50,
                    *on_cluster(cluster, "--part-format", "csv", actors=1), env=cluster["env"])
    assert "cleared another command's parts first" in out, out
    assert all(int(p.name.split("-")[2][:8]) < 5 for p in (folder / "scored").iterdir())  # 50-row chunks only
    # against a local run in 50-row chunks too: a head's float64 probabilities can differ in their last
    # digit with the number of rows in a BLAS call (seen with AVX-512), so the same bytes need the same chunks
    local = tmp_path / "local-50.csv"
    cli_score(paths, local, head, cache, "--chunk-rows", 50)
    assert _csv_body(folder) == local.read_bytes()


def _csv_body(folder: Path) -> bytes:
    """The CSV parts joined in name order, one header kept: the local engine's file."""
    parts = sorted((folder / "scored").glob("part-*.csv"))
    body = [parts[0].read_bytes()] + [p.read_bytes().split(b"\n", 1)[1] for p in parts[1:]]
    return b"".join(body)


def _one_file(folder: Path, n: int = 120) -> tuple[Path, int]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "in.csv"
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "text", "label"], *_rows(n, folder.name)])
    return path, n


def _ray(cluster, *extra):
    return ("--engine", "ray", "--ray-address", cluster["address"], *map(str, extra))


def test_actors_that_would_starve_the_readers_are_refused_before_any_work(cluster, head, tmp_path):
    path, _ = _one_file(tmp_path / "refused")
    started = time.monotonic()
    proc = cli_score([path], tmp_path / "ray", head, tmp_path / "cache",
                     *_ray(cluster, "--concurrency", 2, "--actor-cpus", 1), env=cluster["env"], wait=False)
    out, _ = proc.communicate(timeout=300)
    seconds = time.monotonic() - started
    assert proc.returncode == 1, out
    assert "the Ray cluster has 2 CPUs (2 node(s): 1 + 1); 2 scoring actor(s) of 1 CPUs each" in out, out
    assert "pass --concurrency 1 or fewer" in out and "Traceback" not in out, out
    assert not list((tmp_path / "ray" / "_records").glob("chunk-*.json"))
    assert seconds < 120, f"took {seconds:.0f} s to refuse"  # a hang is what this guards against


def test_the_stall_watchdog_stops_a_deadlocked_run_and_says_what_waits(cluster, head, tmp_path):
    path, _ = _one_file(tmp_path / "stalled")
    proc = cli_score([path], tmp_path / "ray", head, tmp_path / "cache",
                     *_ray(cluster, "--concurrency", 2, "--actor-cpus", 1, "--no-resource-check",
                           "--stall-timeout", 8), env=cluster["env"], wait=False)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    assert "no chunk finished for 8 s (--stall-timeout), so the run was stopped" in out, out
    assert "0 of 2 CPUs free" in out and "read tasks that feed the actors cannot be scheduled" in out, out
    assert "rerun the same command to resume" in out and "Traceback" not in out, out
