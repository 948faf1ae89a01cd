"""``Predictor`` and ``tweetheads predict`` on the packaged MiniLM: same answers as ``score``, same refusals.

One module-scoped cache holds the sample tweets' vectors and a logistic head trained on them, as in
tests/test_score.py; a tiny fine-tuned run covers ``head="e2e"``.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from embed.encoder import Embedder
from embed.errors import DataError, ModelError
from heads import HeadError
from scoring.predictor import Predictor
from scoring.score import ScoreConfig, score_files

from .conftest import REPO, sample_heads, write_tweets

TEXTS = ["What a great debate tonight!", "Worst moderators ever, total disaster", "Who won? Not sure yet."]


@pytest.fixture(scope="module")
def shared(tmp_path_factory, minilm_path):
    return sample_heads(tmp_path_factory.mktemp("predict"), other=True)


def _predictor(shared, head=None, model="minilm") -> Predictor:
    return Predictor.load(model, head or shared["head"], cache_dir=shared["cache"])


def test_predictions_equal_scores_for_the_same_texts(shared, tmp_path):
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as handle:
        csv.writer(handle).writerows([["text"], *[[t] for t in TEXTS]])
    score_files([source], tmp_path / "out.csv", Embedder("minilm", cache_dir=shared["cache"]), shared["head"],
                ScoreConfig())
    with open(tmp_path / "out.csv", newline="") as handle:
        scored = list(csv.DictReader(handle))
    p = _predictor(shared)
    proba = p.predict_proba(TEXTS)
    assert proba.shape == (3, 3) and p.classes_.tolist() == ["Negative", "Neutral", "Positive"]
    assert p.predict(TEXTS).tolist() == [row["pred_label"] for row in scored]
    expected = np.array([[float(row[f"pred_proba_{c}"]) for c in p.classes_] for row in scored])
    np.testing.assert_array_equal(proba, expected)  # score writes the shortest text that reads back exactly
    assert p.model_id == scored[0]["pred_model"]


def test_one_string_gives_one_label_and_call_is_predict(shared):
    p = _predictor(shared)
    assert p(TEXTS[0]) == p.predict([TEXTS[0]])[0] and isinstance(p(TEXTS[0]), str)
    assert p.predict_proba(TEXTS[0]).shape == (3,)
    assert p(TEXTS).tolist() == p.predict(TEXTS).tolist()
    assert abs(p.predict_proba(TEXTS[1]).sum() - 1) < 1e-9


def test_texts_go_through_the_cache(shared):
    p = _predictor(shared)
    fresh = [f"a tweet nobody wrote before {np.random.default_rng().integers(1 << 40)}"]
    assert p.predict_counted(fresh)[2] == 1
    again = _predictor(shared)  # another Predictor, the same cache folder: nothing encoded twice
    assert again.predict_counted(fresh)[2] == 0


def test_a_head_of_another_model_is_refused_with_scores_message(shared, tmp_path):
    with pytest.raises(HeadError) as from_predictor:
        _predictor(shared, head=shared["other"])
    message = str(from_predictor.value)
    assert "another-384-d-model" in message and str(shared["other"]) in message
    source = write_tweets(tmp_path / "in.csv", 5)
    with pytest.raises(HeadError) as from_score:
        score_files([source], tmp_path / "out.csv", Embedder("minilm", cache_dir=shared["cache"]), shared["other"])
    assert str(from_score.value) == message


def test_empty_and_non_text_inputs_are_refused_by_position(shared):
    p = _predictor(shared)
    with pytest.raises(DataError, match="text 1 is empty"):
        p.predict(["fine", "   "])
    with pytest.raises(DataError, match="text 0 is int"):
        p.predict([3])
    assert p.predict([]).shape == (0,)


def test_a_model_without_a_classifier_needs_a_head(shared):
    with pytest.raises(ModelError, match="no classifier of its own; pass a head folder"):
        Predictor.load("minilm", cache_dir=shared["cache"])
    with pytest.raises(ModelError, match="--model must be a run folder"):
        Predictor.load("minilm", "e2e", cache_dir=shared["cache"])


@pytest.mark.slow
def test_a_run_folder_predicts_with_its_own_classifier(tmp_path, minilm_path):
    from embed.finetune import FinetuneConfig, fine_tune
    from embed.runs import EndToEndClassifier

    train = write_tweets(tmp_path / "train.csv", 24, seed=1)
    fine_tune(train, tmp_path / "run", FinetuneConfig(model="minilm", max_steps=2, max_length=32, progress=False,
                                                      precision="fp32"), cache_dir=tmp_path / "cache")
    p = Predictor.load(tmp_path / "run", cache_dir=tmp_path / "cache")  # head left out: the run's own
    assert p.head.spec[0] == "e2e" and p.info()["head_kind"] == "e2e"
    vectors, _ = Embedder(str(tmp_path / "run"), cache_dir=tmp_path / "cache").embed(TEXTS)
    np.testing.assert_allclose(p.predict_proba(TEXTS), EndToEndClassifier(tmp_path / "run").predict_proba(vectors),
                               rtol=1e-6)


# -- the command line ---------------------------------------------------------------------------------
def _run(shared, *args, stdin=None, head=None):
    argv = ["predict", "--model", "minilm", "--head", str(head or shared["head"]), "--cache-dir", str(shared["cache"]),
            *map(str, args)]
    return CliRunner().invoke(cli, argv, input=stdin)


def _jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_cli_arguments_give_jsonl_when_piped_matching_the_predictor(shared):
    result = _run(shared, *TEXTS)
    assert result.exit_code == 0, result.output
    rows = _jsonl(result.output)
    p = _predictor(shared)
    assert [r["text"] for r in rows] == TEXTS
    assert [r["label"] for r in rows] == p.predict(TEXTS).tolist()
    assert set(rows[0]) == {"text", "label", "proba", "truncated"} and list(rows[0]["proba"]) == p.classes_.tolist()
    np.testing.assert_allclose([list(r["proba"].values()) for r in rows], p.predict_proba(TEXTS))


def test_cli_reads_stdin_lines_and_prints_a_table_when_asked(shared):
    result = _run(shared, "--table", "-", stdin="what a debate\nso boring\n")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["label", "proba", "text"] and len(lines) == 3
    assert lines[1].endswith("what a debate") and lines[1].split()[0] in ("Negative", "Neutral", "Positive")


def test_cli_reads_a_jsonl_file_column(shared, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "tweet": t}) + "\n" for i, t in enumerate(TEXTS)))
    result = _run(shared, "--input", source, "--text-col", "tweet", "--json")
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in _jsonl(result.output)] == TEXTS


@pytest.mark.parametrize("args, stdin, message", [
    (("fine", " "), None, "argument 2 is empty"),
    (("-",), "fine\n\nalso fine\n", "stdin line 2 is empty"),
    (("-",), "", "no texts on stdin"),
    ((), None, "give texts to classify"),
])
def test_cli_empty_texts_are_named(shared, args, stdin, message):
    result = _run(shared, *args, stdin=stdin)
    assert result.exit_code != 0 and message in result.output, result.output


def test_cli_refuses_a_head_of_another_model(shared):
    result = _run(shared, "hello", head=shared["other"])
    assert result.exit_code == 1 and "another-384-d-model" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_cli_on_the_openvino_path_imports_neither_torch_nor_transformers(shared):
    """``predict`` with an export on disk runs without torch and transformers (their imports are seconds here)."""
    _run(shared, "warm the export")  # converts MiniLM once for this cache (torch is imported for that)
    code = ("import sys; from cli import main; sys.argv = ['tweetheads', 'predict', '--model', 'minilm', '--head', "
            f"{str(shared['head'])!r}, '--cache-dir', {str(shared['cache'])!r}, '--backend', 'openvino', "
            "'a brand new tweet about taxes']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('IMPORTED', sorted(m for m in ('torch', 'transformers', 'faiss', 'lightgbm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "IMPORTED []", done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[0])["label"] in ("Negative", "Neutral", "Positive")
