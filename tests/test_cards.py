"""Hub-format cards for runs and heads, the encoder saved by sentence-transformers, and the shipped probe.

Every card is parsed with ``huggingface_hub`` (``ModelCard.load`` and ``metadata_load``) and its
fields compared with what the run or head measured; no card may hold a path of this machine.
The runs are tiny real fine-tunes of the packaged MiniLM (tests/artifacts.py).
"""
from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from huggingface_hub import ModelCard, metadata_load

from embed.encoder import Embedder
from embed.models import ALIASES
from embed.probe import PROBE_SET, shipped_probe
from heads import load_head

from .artifacts import artifact, local_paths, paths_in
from .conftest import SAMPLE

MINILM = ALIASES["minilm"]
TEXTS = ["Loved the debate tonight", "What a waste of time, honestly", "ok", "the moderators asked about taxes"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, minilm_path):
    return artifact(tmp_path_factory, "run-cls")


@pytest.fixture(scope="module")
def head(tmp_path_factory, minilm_path):
    return artifact(tmp_path_factory, "head")


def _model_index_value(meta: dict, metric: str) -> float:
    (entry,) = meta["model-index"]
    return next(m["value"] for r in entry["results"] for m in r["metrics"] if m["type"] == metric)


def test_the_run_card_is_a_hub_card_with_what_the_run_measured(run, tmp_path_factory):
    meta = metadata_load(run / "README.md")
    card = ModelCard.load(run / "README.md")
    metrics = json.loads((run / "metrics.json").read_text())
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert meta["base_model"] == card.data.base_model == MINILM  # the alias minilm, as the repo it stands for
    assert meta["library_name"] == "sentence-transformers" and meta["pipeline_tag"] == "text-classification"
    assert meta["labels"] == labels == ["Negative", "Neutral", "Positive"]
    assert meta["license"] == "apache-2.0"  # inherited from the base model's own card
    assert _model_index_value(meta, "accuracy") == metrics["final"]["accuracy"]
    assert card.data.eval_results[0].metric_value == metrics["final"]["accuracy"]
    assert "tweetheads" in meta["tags"]
    text = (run / "README.md").read_text()
    for part in ("| Training Loss | Epoch | Step | Validation Loss | Accuracy |", "## Intended use and limitations",
                 "political", "Predictor.load(", "tweetheads predict --model", "--head e2e", "- learning_rate: 0.0001",
                 "`train.csv` (24 rows, sha256", "`eval.csv` (16 rows"):
        assert part in text, part
    assert paths_in(text, local_paths(tmp_path_factory)) == []


def test_the_head_card_is_a_hub_card_with_what_the_head_measured(head, run, tmp_path_factory):
    meta = metadata_load(head / "README.md")
    ModelCard.load(head / "README.md")  # parses as a card too
    report = json.loads((head / "train_report.json").read_text())
    saved = load_head(head)
    assert meta["base_model"] == MINILM  # the run's base: the run itself is a local folder
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["labels"] == saved.classes_.tolist()
    assert _model_index_value(meta, "accuracy") == report["accuracy"]
    assert _model_index_value(meta, "f1") == report["macro_f1"]
    assert meta["tweetheads"]["encoder_fingerprint"] == saved.fingerprint_
    assert meta["tweetheads"]["encoder"] == run.name
    text = (head / "README.md").read_text()
    low, high = report["accuracy_ci95"]
    assert low <= report["accuracy"] <= high and f"interval {low:.4f}-{high:.4f}" in text
    for part in ("`train.csv` (24 rows", "Chosen hyperparameter: C=", "Predictor.load(", "--head", "political",
                 "holds no training text"):
        assert part in text, part
    assert paths_in(text, local_paths(tmp_path_factory)) == []


def test_the_head_card_says_how_its_probabilities_are_calibrated(head, tmp_path):
    """A head on 600 rows (a 60-row holdout: enough for a temperature) and the 24-row artifact head (too few)."""
    from .conftest import invoke_cli, write_tweets

    calibrated = tmp_path / "calibrated"
    invoke_cli("train-head", "--head", "logistic", "--model", "minilm", "--train",
               write_tweets(tmp_path / "train.csv", 600, seed=1), "--eval", write_tweets(tmp_path / "eval.csv", 120),
               "-o", calibrated, "--cache-dir", tmp_path / "cache", "-q")
    saved, report = load_head(calibrated), json.loads((calibrated / "train_report.json").read_text())
    T = saved.calibration_.temperature
    assert T != 1.0 and report["calibration_ece"]["holdout"]["rows"] == 60
    meta, card = metadata_load(calibrated / "README.md"), ModelCard.load(calibrated / "README.md")
    assert meta["tweetheads"]["calibration"] == {"method": "temperature", "temperature": T,
                                                 "smoothing": saved.calibration_.smoothing, "rows": 60}
    assert "## Calibration" in card.text and f"T = {T:.3f}" in card.text and "60 held-out rows" in card.text
    for where in ("holdout", "eval"):
        ece = report["calibration_ece"][where]
        assert f"| {ece['rows']} | {ece['ece_before']:.4f} | {ece['ece_after']:.4f} |" in card.text, where
    few = ModelCard.load(head / "README.md")
    assert metadata_load(head / "README.md")["tweetheads"]["calibration"]["temperature"] == 1.0
    assert "none was applied: 3 held-out rows are too few" in few.text


def test_the_path_check_finds_a_path(tmp_path_factory):
    """The grep the card tests rely on: a card with this machine's path in it is caught."""
    text = f"data: `{artifact(tmp_path_factory, 'data') / 'train.csv'}`"
    assert paths_in(text, local_paths(tmp_path_factory))


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sentence_transformers_loads_the_encoder_with_the_runs_pooling(tmp_path_factory, minilm_path, pooling):
    from sentence_transformers import SentenceTransformer

    run = artifact(tmp_path_factory, f"run-{pooling}")
    encoder = run / "encoder"
    assert (encoder / "config_sentence_transformers.json").is_file()
    assert metadata_load(encoder / "README.md")["base_model"] == MINILM  # sentence-transformers' own card
    model = SentenceTransformer(str(encoder), device="cpu")
    assert model[1].get_config_dict()["pooling_mode"] == pooling
    ours, _ = Embedder(str(run), backend="torch", precision="fp32", cache_dir=None).embed(TEXTS)
    np.testing.assert_allclose(model.encode(TEXTS), ours, atol=2e-5, rtol=1e-4)


def test_a_run_with_the_old_encoder_layout_still_loads(tmp_path, tmp_path_factory, minilm_path):
    """Runs written before sentence-transformers saved the encoder: save_pretrained plus hand-written modules."""
    from embed.runs import RUN_MARKER, artifact_digests

    run = artifact(tmp_path_factory, "run-cls")
    old = tmp_path / "old-run"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("checkpoint"))
    shutil.rmtree(old / "encoder")
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(str(run / "encoder")).save_pretrained(str(old / "encoder"), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(run / "encoder")).save_pretrained(str(old / "encoder"))
    (old / "encoder" / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (old / "encoder" / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    (old / "encoder" / "1_Pooling").mkdir()
    (old / "encoder" / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    info = json.loads((old / RUN_MARKER).read_text())
    info.update(base_model="minilm", files=artifact_digests(old))
    del info["base_model_id"]
    (old / RUN_MARKER).write_text(json.dumps(info))
    new_vectors, _ = Embedder(str(run), backend="torch", precision="fp32", cache_dir=None).embed(TEXTS)
    old_vectors, _ = Embedder(str(old), backend="torch", precision="fp32", cache_dir=None).embed(TEXTS)
    np.testing.assert_allclose(old_vectors, new_vectors, atol=1e-6)
    from embed.model_card import write_model_card

    write_model_card(old, info, json.loads((old / "metrics.json").read_text()))  # an old run's card, rewritten
    assert metadata_load(old / "README.md")["base_model"] == MINILM  # its alias mapped to the repo


def _files_containing(folder, texts) -> dict:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = [t for t in texts if t.encode() in data or json.dumps(t)[1:-1].encode() in data]
            if hits:
                found[path.name] = hits
    return found


def test_a_default_head_holds_none_of_its_training_texts(head, tmp_path_factory):
    data = artifact(tmp_path_factory, "data")
    with open(data / "train.csv", newline="") as handle:
        training = sorted({row["text"] for row in csv.DictReader(handle)})
    assert len(training) >= 20
    assert _files_containing(head, training) == {}
    saved = load_head(head)
    assert saved.probe_source_ == "shipped" and saved.probe_[0] == shipped_probe()
    assert json.loads((head / "head.json").read_text())["probe"]["source"] == "shipped"


def test_probe_from_train_keeps_training_texts_and_the_search_finds_them(tmp_path, tmp_path_factory, minilm_path):
    """The flag that keeps the old behaviour; it also shows the search above finds texts where they are."""
    from click.testing import CliRunner

    from cli import cli

    data, run = artifact(tmp_path_factory, "data"), artifact(tmp_path_factory, "run-cls")
    result = CliRunner().invoke(cli, [
        "train-head", "--head", "logistic", "--model", str(run), "--train", str(data / "train.csv"),
        "--output", str(tmp_path / "head"), "--backend", "torch", "--precision", "fp32", "--probe-from-train",
        "--cache-dir", str(tmp_path_factory.getbasetemp() / "artifacts-cache"), "-q"])
    assert result.exit_code == 0, result.output
    with open(data / "train.csv", newline="") as handle:
        training = sorted({row["text"] for row in csv.DictReader(handle)})
    found = _files_containing(tmp_path / "head", training)
    assert set(found) == {"head.json"} and len(found["head.json"]) == len(training)
    assert load_head(tmp_path / "head").probe_source_ == "train"
    assert "carries part of its training data" in (tmp_path / "head" / "README.md").read_text()


def test_a_head_saved_before_the_shipped_probe_still_loads(head, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(head, old)
    config = json.loads((old / "head.json").read_text())
    del config["probe"]["source"]  # what heads wrote before: training texts, no source
    (old / "head.json").write_text(json.dumps(config))
    loaded = load_head(old)
    assert loaded.probe_source_ == "train" and len(loaded.probe_[0]) == 64


def test_the_shipped_probe_is_64_texts_none_of_them_a_sample_tweet():
    texts = shipped_probe()
    assert len(texts) == len(set(texts)) == 64 and PROBE_SET.name == "probe.csv"
    with open(SAMPLE, newline="") as handle:
        samples = {row["text"] for row in csv.DictReader(handle)}
    assert not samples & set(texts)
    assert any("@user" in t for t in texts) and any("http" in t for t in texts)
    assert max(len(t.split()) for t in texts) > 40
