"""Batch scoring end to end on the packaged MiniLM: messy input, crash and resume, Ray, refusals.

One module-scoped cache holds the sample tweets' vectors (encoded once), so every scoring run
below hits the cache and costs no encoding; tests pass it explicitly with --cache-dir.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from embed.encoder import Embedder
from scoring.score import ScoreConfig, score_files

from .conftest import REPO, sample_heads, write_tweets

CLASSES = ["Negative", "Neutral", "Positive"]
PROBA = [f"pred_proba_{c}" for c in CLASSES]


@pytest.fixture(scope="module")
def shared(tmp_path_factory, minilm_path):
    """A cache with every sample tweet embedded, and a logistic head trained on those vectors."""
    return sample_heads(tmp_path_factory.mktemp("score"))


def score(shared, *args, head=None, model="minilm"):
    argv = ["score", *map(str, args), "--model", str(model), "--head", str(head or shared["head"]),
            "--cache-dir", str(shared["cache"])]
    return CliRunner().invoke(cli, argv)


def read_csv(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def messy_csv(path: Path, rows: list[dict]) -> tuple[list[tuple[int, str]], list[str]]:
    """Write a messy CSV; return the expected rejects (line, reason) and the good rows' ids, in order."""
    long_text = "word " * 20_000  # 100,000 characters, far past MiniLM's 256 tokens
    records = [
        (b"1,Great debate tonight #win,a\n", None),
        (b"2,,b\n", "empty text"),
        (b"3\n", "ragged row: expected 3 columns, found 1"),  # the text cell is missing
        (b"4,caf\xe9 au lait,c\n", "invalid UTF-8"),
        (b"5,hello,d,extra\n", "ragged row: expected 3 columns, found 4"),
        (b'6,"two\nlines and ""quotes""",e\n', None),
        (b"\n", "blank"),  # not a record: skipped, but it still counts as a line
        (b"7,nul\x00byte,f\n", "NUL byte"),
        (b"8," + long_text.encode() + b",g\n", None),
        (b"9,   ,h\n", "empty text"),
    ]
    for i, row in enumerate(rows[:50], start=10):
        text = row["text"].replace('"', '""')
        records.append((f'{i},"{text}",x\n'.encode(), None))
    rejects, good, line = [], [], 2
    for data, reason in records:
        if reason is None:
            good.append(data.split(b",", 1)[0].decode())
        elif reason != "blank":
            rejects.append((line, reason))
        line += data.count(b"\n")
    path.write_bytes(b"id,text,extra\n" + b"".join(data for data, _ in records))
    return rejects, good


def test_messy_csv_every_row_scored_or_rejected(shared, tmp_path):
    source = tmp_path / "messy.csv"
    expected_rejects, good_ids = messy_csv(source, shared["rows"])
    out = tmp_path / "scored.csv"
    result = score(shared, source, "--output", out, "--chunk-rows", 7)
    assert result.exit_code == 0, result.output
    rejects_path = tmp_path / "scored.rejects.csv"
    summary = next(line for line in result.output.splitlines() if line.startswith("read "))
    assert summary.startswith(f"read 59 rows: 53 scored (1 truncated), 6 rejected -> {rejects_path}; ")
    assert len(good_ids) + len(expected_rejects) == 59

    rejects = read_csv(rejects_path)
    assert [(int(r["line"]), r["reason"]) for r in rejects] == expected_rejects
    assert {r["file"] for r in rejects} == {str(source)}
    raw = {r["reason"]: r["raw"] for r in rejects}
    assert raw["invalid UTF-8"] == "4,caf\\xe9 au lait,c" and raw["NUL byte"] == "7,nul\\x00byte,f"

    scored = read_csv(out)
    assert list(scored[0]) == ["id", "text", "extra", "pred_label", *PROBA, "pred_model", "pred_head"]
    assert [r["id"] for r in scored] == good_ids
    by_id = {r["id"]: r for r in scored}
    assert by_id["6"]["text"] == 'two\nlines and "quotes"'
    assert by_id["8"]["text"] == "word " * 20_000
    assert by_id["10"]["text"] == shared["rows"][0]["text"] and by_id["10"]["extra"] == "x"
    proba = np.array([[float(r[c]) for c in PROBA] for r in scored])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert [r["pred_label"] for r in scored] == [CLASSES[i] for i in proba.argmax(axis=1)]
    assert {r["pred_model"] for r in scored} == {f"minilm@{shared['fingerprint'][:12]}"}
    assert {r["pred_head"] for r in scored} == {f"logistic@{shared['head']}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["messy.csv", "scored.csv", "scored.rejects.csv"]


def tweets_with_rejects(path: Path, n: int) -> Path:
    write_tweets(path, n)
    with open(path, "ab") as handle:
        handle.write(b"900001,,Neutral\n900002,bad \xff byte,Neutral\n900003,ok,Neutral,extra\n")
    return path


def test_kill_9_then_rerun_writes_the_same_bytes(shared, tmp_path):
    source = tweets_with_rejects(tmp_path / "in.csv", 3000)
    out = tmp_path / "killed" / "out.csv"
    args = [source, "--output", out, "--chunk-rows", 20]
    command = [sys.executable, "cli.py", "score", *map(str, args), "--model", "minilm",
               "--head", str(shared["head"]), "--cache-dir", str(shared["cache"])]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    progress = out.with_name("out.csv.progress.json")
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if json.loads(progress.read_text())["chunk"] >= 1:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stdout.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists() and out.with_name("out.csv.partial").exists()
    finished = json.loads(progress.read_text())["chunk"]

    resumed = score(shared, *args)
    assert resumed.exit_code == 0, resumed.output
    assert f"(resumed after {finished + 1:,} finished chunks)" in resumed.output
    assert "read 3,003 rows: 3,000 scored (0 truncated), 3 rejected" in resumed.output
    clean_out = tmp_path / "clean" / "out.csv"
    clean = score(shared, source, "--output", clean_out, "--chunk-rows", 20)
    assert clean.exit_code == 0, clean.output
    assert out.read_bytes() == clean_out.read_bytes()
    assert (out.parent / "out.rejects.csv").read_bytes() == (clean_out.parent / "out.rejects.csv").read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.csv", "out.rejects.csv"]


def crash_on_call(n: int, real):
    """``real`` (VectorMemo.__call__: once a chunk), except that its ``n``-th call raises: a crash mid-run."""
    calls = []

    def predict(*args):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("simulated crash")
        return real(*args)

    return predict


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.parquet"])
def test_crash_then_rerun_resumes_byte_identical(shared, tmp_path, monkeypatch, name):
    import scoring.memo as module

    source = tweets_with_rejects(tmp_path / "in.csv", 300)
    config = ScoreConfig(chunk_rows=40, keep_cols=("id", "text"))
    model = Embedder("minilm", cache_dir=shared["cache"])
    real = module.VectorMemo.__call__
    monkeypatch.setattr(module.VectorMemo, "__call__", crash_on_call(4, real))
    out = tmp_path / "a" / name
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_files([source], out, model, shared["head"], config)
    monkeypatch.setattr(module.VectorMemo, "__call__", real)
    progress = json.loads((out.parent / f"{name}.progress.json").read_text())
    assert not out.exists() and progress["chunk"] == 2
    if name.endswith(".parquet"):  # a part written after the last recorded chunk is dropped
        (out.parent / f"{name}.parts" / "part-00000003.parquet").write_bytes(b"half a part")
    else:  # so are bytes appended after the recorded length
        with open(out.parent / f"{name}.partial", "ab") as handle:
            handle.write(b"half,a,row")

    summary = score_files([source], out, Embedder("minilm", cache_dir=shared["cache"]), shared["head"], config)
    assert (summary.resumed_chunks, summary.rows_read, summary.rows_scored, summary.rows_rejected) == (3, 303, 300, 3)
    clean = score_files([source], tmp_path / "b" / name, model, shared["head"], config)
    assert clean.resumed_chunks == 0
    assert out.read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([name, "out.rejects.csv"])
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        assert table.column_names == ["id", "text", "pred_label", *PROBA, "pred_model", "pred_head"]
        assert table.column("id").to_pylist() == [str(i) for i in range(300)]
        assert table.schema.field("pred_proba_Positive").type == "double"


def test_a_bare_carriage_return_in_a_cell_is_quoted_so_the_output_reads_back(shared, tmp_path):
    source = tmp_path / "in.csv"
    source.write_bytes(b'id,text\n1,"first\rsecond"\n2,plain\n')
    result = score(shared, source, "--output", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    rows = read_csv(tmp_path / "out.csv")
    assert [r["text"] for r in rows] == ["first\rsecond", "plain"]
    assert (tmp_path / "out.csv").read_bytes().startswith(b'id,text,pred_label,')


@pytest.mark.slow
def test_ray_engine_on_a_local_ray_matches_local(shared, tmp_path):
    """No --ray-address: a local Ray is started and shut down; the part files hold the local engine's rows.

    The head keeps a drift reference: with no more rows than the check samples, both engines check
    the same rows (the Ray workers' vectors, sent back with each chunk) and print the same line.
    """
    from heads import get_head
    from scoring.ray_engine import read_output

    vectors, _ = shared["embedder"].embed([row["text"] for row in shared["rows"]])
    encoder = shared["embedder"].load()
    head = tmp_path / "head"
    get_head("logistic", C=1.0).fit(vectors, [row["label"] for row in shared["rows"]]).set_drift_reference(
        vectors).save(head, fingerprint=encoder.fingerprint, model=encoder.description)
    source = tweets_with_rejects(tmp_path / "in.csv", 120)
    local = tmp_path / "local.parquet"
    result = score(shared, source, "--output", local, "--chunk-rows", 32, head=head)
    assert result.exit_code == 0, result.output
    local_drift = [line for line in result.output.splitlines() if line.startswith("drift check:")]
    result = score(shared, source, "--output", tmp_path / "ray", "--chunk-rows", 32, "--engine", "ray",
                   "--concurrency", 1, head=head)
    assert result.exit_code == 0, result.output
    assert "read 123 rows: 120 scored (0 truncated), 3 rejected" in result.output
    assert f"{source}: read 123 = 120 scored + 3 rejected" in result.output
    ray_drift = [line for line in result.output.splitlines() if line.startswith("drift check:")]
    assert ray_drift == local_drift and "look like the head's training tweets (domain AUC" in ray_drift[0], ray_drift
    import pyarrow.parquet as pq

    assert read_output(tmp_path / "ray").equals(pq.read_table(local))
    parts = sorted((tmp_path / "ray" / "rejects").iterdir())
    assert [p.name for p in parts] == ["part-00000-00000003.csv"]
    assert parts[0].read_bytes() == (tmp_path / "local.rejects.csv").read_bytes()


@pytest.mark.parametrize("case", ["suffix", "file", "foreign", "rejects"])
def test_ray_output_must_be_a_folder_of_ours(shared, tmp_path, case):
    source = write_tweets(tmp_path / "in.csv", 5)
    out, extra = tmp_path / "out", []
    if case == "suffix":
        out = tmp_path / "out.parquet"
    elif case == "file":
        out.write_text("mine")
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        extra = ["--rejects", tmp_path / "r.csv"]
    result = score(shared, source, "--output", out, "--engine", "ray", *extra)
    assert result.exit_code == 1, result.output
    expected = {"suffix": "without a file suffix", "file": "and this is a file", "foreign": "holds no manifest.json",
                "rejects": "leave --rejects out"}[case]
    assert expected in result.output
    if case == "foreign":
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_ray_missing_is_a_friendly_error(shared, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    source = write_tweets(tmp_path / "in.csv", 5)
    result = score(shared, source, "--output", tmp_path / "out", "--keep-cols", "id", "--engine", "ray")
    assert result.exit_code == 1
    assert "pip install 'tweetheads[ray]'" in result.output
    assert not (tmp_path / "out").exists()


def test_head_from_another_model_is_refused_before_any_work(shared, tmp_path):
    from heads import get_head

    other = Embedder("minilm", pooling="mean", cache_dir=shared["cache"]).load()  # no weights are loaded
    rng = np.random.default_rng(0)
    head = get_head("logistic", C=1.0).fit(rng.normal(size=(30, 384)), CLASSES * 10)
    head.save(tmp_path / "mean-head", fingerprint=other.fingerprint, model=other.description)
    source = write_tweets(tmp_path / "in.csv", 5)
    out = tmp_path / "out" / "out.csv"
    result = score(shared, source, "--output", out, "--keep-cols", "id", head=tmp_path / "mean-head")
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and message.startswith("Error: ")
    assert other.fingerprint[:12] in message and shared["fingerprint"][:12] in message
    assert "--pooling mean" in message
    assert not out.parent.exists()


@pytest.mark.parametrize("problem, expected", [
    ("column", "no text column 'tweet'; columns found: 'id', 'text', 'label'"),
    ("missing", "no such file or folder"),
    ("gzip", "cannot be read"),
    ("clash", "input column(s) 'label' clash with the columns score adds"),
    ("gold", "no label column 'sentiment' to report accuracy against"),
    ("columns", "differ from"),
    ("e2e", "--head e2e scores with a fine-tuned run's own classifier"),
])
def test_problems_stop_before_any_work_with_one_line(shared, tmp_path, problem, expected):
    source = write_tweets(tmp_path / "in.csv", 5)
    args = {"column": [source, "--text-col", "tweet", "--keep-cols", "id"],
            "missing": [tmp_path / "nope.csv"],
            "gzip": [tmp_path / "bad.csv.gz"],
            "clash": [source, "--prefix", ""],
            "gold": [source, "--label-col", "sentiment"],
            "columns": [source, tmp_path / "other.csv"],
            "e2e": [source, "--keep-cols", "id"]}[problem]
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    (tmp_path / "other.csv").write_text("text,id\nhello,1\n")
    out = tmp_path / "out" / "out.csv"
    result = score(shared, *args, "--output", out, head="e2e" if problem == "e2e" else None)
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and expected in message, message
    assert not out.parent.exists()
    if problem == "columns":
        assert str(source) in message and str(tmp_path / "other.csv") in message


def test_several_files_go_to_one_output_in_file_order(shared, tmp_path):
    first = write_tweets(tmp_path / "a.csv", 12, seed=1)
    second = write_tweets(tmp_path / "b.csv", 5, seed=2)
    out = tmp_path / "out.csv"
    result = score(shared, second, first, "--output", out, "--keep-cols", "text,id", "--chunk-rows", 5)
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    assert list(rows[0])[:2] == ["text", "id"]
    expected = read_csv(second) + read_csv(first)
    assert [(r["id"], r["text"]) for r in rows] == [(r["id"], r["text"]) for r in expected]


@pytest.mark.slow  # a two-step fine-tune: about 15 s on a 2-core CPU
def test_e2e_head_scores_with_the_runs_own_classifier(shared, tmp_path):
    from embed.finetune import FinetuneConfig, fine_tune
    from embed.runs import EndToEndClassifier

    train = write_tweets(tmp_path / "train.csv", 16, seed=3)
    run = tmp_path / "run"
    fine_tune(train, run, FinetuneConfig(model="minilm", max_steps=2, epochs=1, max_length=32, progress=False),
              cache_dir=shared["cache"])
    source = write_tweets(tmp_path / "in.csv", 12, seed=4)
    out = tmp_path / "out.parquet"
    result = score(shared, source, "--output", out, model=run, head="e2e")
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    texts = [r["text"] for r in read_csv(source)]
    vectors = Embedder(str(run), cache_dir=shared["cache"]).transform(texts)
    classifier = EndToEndClassifier(run)
    assert table.column("pred_label").to_pylist() == classifier.predict(vectors).tolist()
    proba = np.column_stack([table.column(f"pred_proba_{c}").to_numpy() for c in classifier.classes_])
    np.testing.assert_allclose(proba, classifier.predict_proba(vectors), atol=1e-6)
    assert set(table.column("pred_head").to_pylist()) == {f"e2e@{run}"}
    assert table.column("label").to_pylist() == [r["label"] for r in read_csv(source)]
    assert "against 'label': accuracy " in result.output  # the run's own label column, recorded at training
    # vectors pooled otherwise than the classifier was trained on are refused, with the fix
    refused = score(shared, source, "--output", tmp_path / "mean.parquet", "--pooling", "mean", model=run, head="e2e")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "fine-tuned on pooling 'cls' but the vectors given it have pooling 'mean'" in refused.output
    assert "drop --pooling so the run's own settings are used" in refused.output
    assert not (tmp_path / "mean.parquet").exists()


def test_jsonl_columns_keep_types_and_mixed_types_become_text(shared, tmp_path):
    import pyarrow.parquet as pq

    texts = [row["text"] for row in shared["rows"][:6]]
    meta = [5, 7, "x", None, None, None]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t, "meta": m}) + "\n"
                              for i, (t, m) in enumerate(zip(texts, meta))))
    config = ScoreConfig(chunk_rows=2)
    model = Embedder("minilm", cache_dir=shared["cache"])
    score_files(source, tmp_path / "out.parquet", model, shared["head"], config)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.field("id").type == "int64" and table.schema.field("meta").type == "string"
    assert table.column("meta").to_pylist() == ["5", "7", "x", None, None, None]
    score_files(source, tmp_path / "out.csv", model, shared["head"], config)
    assert [(r["id"], r["meta"]) for r in read_csv(tmp_path / "out.csv")] == [
        ("0", "5"), ("1", "7"), ("2", "x"), ("3", ""), ("4", ""), ("5", "")]


def _labelled(path: Path, rows: list[dict], gold_col: str, extra: list[tuple[str, str]] = ()) -> Path:
    """The sample rows with their gold label in ``gold_col``, plus ``extra`` (text, gold) rows."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", gold_col])
        for i, row in enumerate(rows):
            writer.writerow([i, row["text"], row["label"]])
        for j, (text, gold) in enumerate(extra, start=len(rows)):
            writer.writerow([j, text, gold])
    return path


def test_labelled_file_scores_with_no_flags_and_reports_accuracy(shared, tmp_path):
    from sklearn.metrics import accuracy_score, f1_score

    rows = shared["rows"]
    extra = [(rows[0]["text"], ""), (rows[1]["text"], " "), (rows[2]["text"], "Mixed")]
    source = _labelled(tmp_path / "eval.csv", rows, "label", extra)
    out = tmp_path / "scored.csv"
    # a head saved by hand records no label column: no flags, no accuracy, the gold column kept
    plain = score(shared, source, "--output", out)
    assert plain.exit_code == 0, plain.output
    assert "accuracy" not in plain.output
    scored = read_csv(out)
    assert len(scored) == len(rows) + 3
    assert list(scored[0]) == ["id", "text", "label", "pred_label", *PROBA, "pred_model", "pred_head"]
    assert [r["label"] for r in scored] == [r["label"] for r in rows] + ["", " ", "Mixed"]

    result = score(shared, source, "--output", out, "--label-col", "label", "--chunk-rows", 16)
    assert result.exit_code == 0, result.output
    scored = read_csv(out)[: len(rows)]
    gold, predicted = [r["label"] for r in scored], [r["pred_label"] for r in scored]
    line = result.output.strip().splitlines()[-1]
    assert line == (f"against 'label': accuracy {accuracy_score(gold, predicted):.4f}, macro-F1 "
                    f"{f1_score(gold, predicted, average='macro'):.4f} on {len(rows)} labelled rows (2 without a "
                    "gold label; 1 with a label the head does not know ('Mixed'); scored, not counted)")


def test_head_trained_by_train_head_scores_against_its_own_label_column(shared, tmp_path):
    rows = shared["rows"]
    train = _labelled(tmp_path / "train.csv", rows, "sentiment")
    head_dir = tmp_path / "heads" / "knn"
    trained = CliRunner().invoke(cli, ["train-head", "--head", "knn", "--model", "minilm", "--train", str(train),
                                       "--label-col", "sentiment", "--out", str(head_dir),
                                       "--cache-dir", str(shared["cache"])])
    assert trained.exit_code == 0, trained.output
    source = _labelled(tmp_path / "eval.csv", rows[:40], "sentiment")
    result = score(shared, source, "--output", tmp_path / "out.parquet", head=head_dir)
    assert result.exit_code == 0, result.output
    assert "against 'sentiment': accuracy " in result.output and "on 40 labelled rows" in result.output
    # a file without that column is scored without accuracy
    unlabelled = write_tweets(tmp_path / "unlabelled.csv", 10)
    result = score(shared, unlabelled, "--output", tmp_path / "u.csv", head=head_dir)
    assert result.exit_code == 0 and "against" not in result.output, result.output


def test_gold_tally_survives_a_crash_and_resume(shared, tmp_path, monkeypatch):
    import scoring.memo as module

    source = _labelled(tmp_path / "in.csv", shared["rows"] * 2, "label", [("ok", "Mixed")])
    config = ScoreConfig(chunk_rows=30, label_col="label")
    model = Embedder("minilm", cache_dir=shared["cache"])
    real = module.VectorMemo.__call__
    monkeypatch.setattr(module.VectorMemo, "__call__", crash_on_call(3, real))
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_files([source], tmp_path / "a.csv", model, shared["head"], config)
    monkeypatch.setattr(module.VectorMemo, "__call__", real)
    resumed = score_files([source], tmp_path / "a.csv", model, shared["head"], config)
    clean = score_files([source], tmp_path / "b.csv", model, shared["head"], config)
    assert resumed.resumed_chunks == 2
    assert resumed.gold.labelled == clean.gold.labelled == 240 and resumed.gold.unknown == 1
    np.testing.assert_array_equal(resumed.gold.confusion, clean.gold.confusion)
    assert resumed.line().splitlines()[1] == clean.line().splitlines()[1]


def test_gold_tally_matches_scikit_learn():
    from hypothesis import given, settings
    from hypothesis import strategies as st
    from sklearn.metrics import accuracy_score, f1_score

    from scoring.gold import GoldTally

    classes = ["a", "b", "c", "d"]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(classes + ["", "zz"]), st.integers(0, 3)), min_size=1, max_size=60),
           st.integers(1, 7))
    def check(pairs, chunk):
        tally = GoldTally("label", classes)
        for start in range(0, len(pairs), chunk):
            part = pairs[start:start + chunk]
            tally.add([g for g, _ in part], np.array([p for _, p in part]))
        known = [(g, classes[p]) for g, p in pairs if g in classes]
        assert tally.missing == sum(g == "" for g, _ in pairs) and tally.unknown == sum(g == "zz" for g, _ in pairs)
        if not known:
            assert tally.accuracy() is None and tally.macro_f1() is None
            return
        gold, predicted = zip(*known)
        assert tally.accuracy() == pytest.approx(accuracy_score(gold, predicted))
        assert tally.macro_f1() == pytest.approx(f1_score(gold, predicted, average="macro", zero_division=0))

    check()


def test_review_below_writes_the_unsure_rows_beside_the_output_and_counts_them(shared, tmp_path):
    """The shared head is trained on these very tweets (top probabilities 0.97-0.999), hence P = 0.99."""
    source = write_tweets(tmp_path / "in.csv", 120, seed=4)
    result = score(shared, source, "--output", tmp_path / "out.csv", "--review-below", 0.99, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    scored, review = read_csv(tmp_path / "out.csv"), read_csv(tmp_path / "out.review.csv")
    unsure = [row for row in scored if max(float(row[c]) for c in PROBA) < 0.99]
    assert 0 < len(unsure) < len(scored) == 120  # they stay in the main output
    assert review == unsure and summary["rows_review"] == len(unsure) and summary["review_below"] == 0.99
    assert summary["review"] == str(tmp_path / "out.review.csv")
    line = score(shared, source, "--output", tmp_path / "again.csv", "--review-below", 0.99).output
    assert f"{len(unsure)} of 120 scored rows have a top probability under 0.99 -> {tmp_path / 'again.review.csv'}" in line


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_review_file_survives_a_crash_and_resume_without_duplicates(shared, tmp_path, monkeypatch, name):
    import scoring.memo as module

    source = tweets_with_rejects(tmp_path / "in.csv", 300)
    config = ScoreConfig(chunk_rows=40, keep_cols=("id", "text"), review_below=0.99)
    model = Embedder("minilm", cache_dir=shared["cache"])
    real = module.VectorMemo.__call__
    monkeypatch.setattr(module.VectorMemo, "__call__", crash_on_call(4, real))
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_files([source], tmp_path / "a" / name, model, shared["head"], config)
    monkeypatch.setattr(module.VectorMemo, "__call__", real)
    with open(tmp_path / "a" / "out.review.csv.partial", "ab") as handle:
        handle.write(b"half,a,row")  # bytes after the last finished chunk are cut off on resume
    resumed = score_files([source], tmp_path / "a" / name, model, shared["head"], config)
    clean = score_files([source], tmp_path / "b" / name, model, shared["head"], config)
    assert resumed.resumed_chunks == 3 and resumed.rows_review == clean.rows_review > 0
    review = (tmp_path / "a" / "out.review.csv").read_bytes()
    assert review == (tmp_path / "b" / "out.review.csv").read_bytes()
    ids = [row["id"] for row in read_csv(tmp_path / "a" / "out.review.csv")]
    assert len(ids) == len(set(ids)) == resumed.rows_review


def test_review_below_refusals_say_what_to_do(shared, tmp_path):
    source = write_tweets(tmp_path / "in.csv", 10)
    for args, needle in ((("--review-below", 1.5), "1.5 is not in the range 0<x<=1"),
                         (("--review-below", 0.5, "--engine", "ray", "--output", tmp_path / "ray"),
                          "--review-below is written by the local engine only"),
                         (("--review", tmp_path / "r.csv"), "no threshold given; pass --review-below P"),
                         (("--review-below", 0.5, "--review", tmp_path / "r.parquet"), "the review file is CSV")):
        output = () if "--output" in args else ("--output", tmp_path / "out.csv")
        result = score(shared, source, *output, *args)
        assert result.exit_code != 0 and "Traceback" not in result.output and needle in result.output, result.output
    result = CliRunner().invoke(cli, ["score", str(source), "--model", "minilm", "--head", str(shared["head"]),
                                      "--output", "-", "--review-below", "0.5", "--cache-dir", str(shared["cache"])])
    assert result.exit_code == 2 and "pass --review FILE" in result.output
