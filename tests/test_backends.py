"""Backends and the portability policy: OpenVINO by default on a CPU, torch as the clean fallback,
and a head used with vectors of the same weights computed another way when its probe agrees."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import embed.encoder as encoder_module
from embed.encoder import Embedder
from embed.errors import ModelError
from heads import HeadError, LogisticHead, load_head

openvino = pytest.importorskip("openvino", reason="openvino is a dependency; install the project")


@pytest.fixture(scope="module")
def texts():
    with open(Path(__file__).resolve().parents[1] / "embed" / "samples" / "tweets.csv") as handle:
        rows = list(csv.DictReader(handle))
    return [row["text"] for row in rows], [row["label"] for row in rows]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_openvino_vectors_equal_torch_and_have_their_own_fingerprint(minilm_path, texts, pooling):
    sample = texts[0][:24] + ["word " * 400]  # one text cut at max_length: dynamic shapes
    torch_e = Embedder("minilm", backend="torch", precision="fp32", pooling=pooling, cache_dir=None, batch_size=8)
    ov_e = Embedder("minilm", backend="openvino", precision="fp32", pooling=pooling, cache_dir=None, batch_size=8)
    ref, _ = torch_e.embed(sample)
    got, _ = ov_e.embed(sample)
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert ov_e.load().fingerprint != torch_e.load().fingerprint  # the cache keeps them apart
    assert ov_e.load().description["model_fingerprint"] == torch_e.load().description["model_fingerprint"]
    assert ov_e.load().description["backend"] == "openvino"


def test_the_export_is_kept_beside_the_store_and_read_back(minilm_path, texts, tmp_path, monkeypatch):
    import embed.backends as backends
    from embed.normalize import normalize_tweet

    sample = [normalize_tweet(t) for t in texts[0][:10]]  # encode_new below takes normalized texts
    first, stats = Embedder("minilm", backend="openvino", precision="fp32", cache_dir=tmp_path).embed(sample)
    exports = list((tmp_path / "exports").glob("openvino-*/model.xml"))
    assert len(exports) == 1 and stats.encoded == 10

    def no_export(*args, **kwargs):
        raise AssertionError("converted again although the export is on disk")

    monkeypatch.setattr(backends, "convert", no_export)
    monkeypatch.setattr(encoder_module, "_IN_MEMORY", {})
    again, _ = Embedder("minilm", backend="openvino", precision="fp32", cache_dir=tmp_path).encode_new(sample)
    np.testing.assert_allclose(again, first, atol=1e-6)
    # a damaged export is converted again rather than loaded
    monkeypatch.undo()
    exports[0].write_text("<not a model")
    redone, _ = Embedder("minilm", backend="openvino", precision="fp32", cache_dir=tmp_path).encode_new(sample)
    np.testing.assert_allclose(redone, first, atol=1e-6)
    assert list(p.name for p in (tmp_path / "exports").iterdir()) == [exports[0].parent.name]  # no temporaries left


def test_auto_falls_back_cleanly(minilm_path, monkeypatch):
    """No flags: OpenVINO fp32 here; bf16 only with bf16 units; torch without OpenVINO or on a GPU."""
    from embed.backends import pick_backend

    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)  # the capability check forced off
    enc = Embedder("minilm", cache_dir=None).load()
    assert (enc.backend, enc.precision) == ("openvino", "fp32")
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: True)
    enc = Embedder("minilm", cache_dir=None).load()
    assert (enc.backend, enc.precision) == ("openvino", "bf16")
    monkeypatch.setenv("TWEETHEADS_NO_OPENVINO", "1")  # as if openvino were not installed
    enc = Embedder("minilm", cache_dir=None).load()
    assert (enc.backend, enc.precision) == ("torch", "bf16")
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)
    plain = Embedder("minilm", cache_dir=None).load()
    assert (plain.backend, plain.precision) == ("torch", "fp32")
    assert plain.fingerprint == Embedder("minilm", backend="torch", precision="fp32", cache_dir=None).load().fingerprint
    monkeypatch.delenv("TWEETHEADS_NO_OPENVINO")
    assert pick_backend("auto", "cuda", "fp16", True) == "torch"
    assert pick_backend("auto", "cpu", "bf16", False) == "torch"  # OpenVINO would quietly compute in f32
    with pytest.raises(ModelError, match="needs a CPU with bf16 units"):
        pick_backend("openvino", "cpu", "bf16", False)
    with pytest.raises(ModelError, match="not fp16"):
        pick_backend("openvino", "cpu", "fp16", False)
    with pytest.raises(ModelError, match="CPU only"):
        pick_backend("openvino", "cuda", "fp32", False)
    with pytest.raises(ModelError, match="backend must be one of"):
        pick_backend("onnx", "cpu", "fp32", False)


def test_auto_uses_torch_where_the_model_does_not_convert(minilm_path, texts, tmp_path, monkeypatch, capsys):
    """An architecture OpenVINO's converter fails on: ``auto`` says so, encodes with torch, and remembers."""
    import embed.backends as backends
    from click.testing import CliRunner

    from cli import cli

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operation aten::made_up")

    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(backends, "convert", broken)
    monkeypatch.setattr(encoder_module, "_IN_MEMORY", {})
    monkeypatch.setattr(backends, "_FAILED", {})
    sample = texts[0][:12]
    embedder = Embedder("minilm", cache_dir=tmp_path)
    got, stats = embedder.embed(sample)
    assert embedder.load().backend == "torch" and stats.encoded > 0
    plain = Embedder("minilm", backend="torch", precision="fp32", cache_dir=None)
    np.testing.assert_allclose(got, plain.embed(sample)[0], atol=1e-6)
    assert embedder.load().fingerprint == plain.load().fingerprint  # the store is torch's own
    err = capsys.readouterr().err
    assert "could not convert 'minilm'" in err and "aten::made_up" in err and "torch fp32" in err
    marker = next((tmp_path / "exports").glob("openvino-*.failed.json"))
    assert "aten::made_up" in marker.read_text()

    # the next process does not try again (nothing in memory: the marker decides)
    def tried(*args, **kwargs):
        raise AssertionError("converted again although it failed before")

    monkeypatch.setattr(backends, "convert", tried)
    monkeypatch.setattr(backends, "_FAILED", {})
    again = Embedder("minilm", cache_dir=tmp_path)
    assert again.load().backend == "torch" and again.embed(sample)[1].encoded == 0
    assert "could not convert" in CliRunner().invoke(cli, ["cache", "info", "--cache-dir", str(tmp_path)]).output
    # without a cache the failure is remembered in memory; an explicit --backend openvino is an error
    monkeypatch.setattr(backends, "convert", broken)
    assert Embedder("minilm", cache_dir=None).load().backend == "torch"
    monkeypatch.setattr(backends, "convert", tried)
    assert Embedder("minilm", cache_dir=None).load().backend == "torch"
    monkeypatch.setattr(backends, "convert", broken)
    with pytest.raises(ModelError, match=r"could not convert 'minilm' \(RuntimeError: unsupported.*--backend torch"):
        Embedder("minilm", backend="openvino", precision="fp32", cache_dir=None).embed(sample)


@pytest.fixture(scope="module")
def trained_head(minilm_path, texts, tmp_path_factory):
    """A logistic head on torch fp32 vectors, saved with its probe."""
    from comparison.train_head import HeadConfig, fit_head

    folder = tmp_path_factory.mktemp("head")
    data = folder / "train.csv"
    with open(data, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(*texts))
    embedder = Embedder("minilm", backend="torch", precision="fp32", cache_dir=folder / "cache")
    fit_head(embedder, data, folder / "head", HeadConfig(head="logistic"))
    return folder


def test_a_head_keeps_a_probe_and_accepts_vectors_that_agree(trained_head, texts):
    head = load_head(trained_head / "head")
    probe_texts, probe_vectors = head.probe_
    assert len(probe_texts) == 64 and len(set(probe_texts)) == 64 and probe_vectors.shape == (64, 384)
    torch_e = Embedder("minilm", backend="torch", precision="fp32", cache_dir=trained_head / "cache")
    np.testing.assert_array_equal(probe_vectors, torch_e.embed(probe_texts)[0])
    assert head.check_fingerprint(torch_e.load().fingerprint, torch_e.load().description) is None
    for other in (Embedder("minilm", backend="openvino", precision="fp32", cache_dir=None),
                  Embedder("minilm", backend="torch", precision="bf16", cache_dir=None)):
        enc = other.load()
        with pytest.raises(HeadError, match="not comparable"):  # without a way to embed the probe: refused
            head.check_fingerprint(enc.fingerprint, enc.description)
        measured = head.check_fingerprint(enc.fingerprint, enc.description, embed=lambda t: other.embed(t)[0])
        assert measured["min_cosine"] >= 0.995 and measured["probe_texts"] == 64
        assert measured["used_with"] == f"{enc.backend}/{enc.precision}"


def test_vectors_that_disagree_or_another_model_are_refused(trained_head, texts):
    head = load_head(trained_head / "head")
    other = Embedder("minilm", backend="openvino", precision="fp32", cache_dir=None)
    enc = other.load()
    rng = np.random.default_rng(0)

    def drifted(batch):  # the same weights computed badly: like an int8 path that lost accuracy
        vectors = other.embed(batch)[0]
        # every cosine stays above the cosine bar: the head's own predictions are what refuse it
        return vectors + rng.normal(scale=0.1 * np.abs(vectors).mean(), size=vectors.shape).astype(np.float32)

    with pytest.raises(HeadError, match=r"lowest cosine to the training vectors is 0\.99[5-9]\d+.*\b\d\d?% of the head's "
                       r"predictions agree \(accepted: at least 98%\)\. Embed with --backend torch --precision fp32"):
        head.check_fingerprint(enc.fingerprint, enc.description, embed=drifted)
    mean = Embedder("minilm", backend="openvino", precision="fp32", pooling="mean", cache_dir=None)
    with pytest.raises(HeadError, match="not comparable"):  # other pooling: another model, no probe can help
        head.check_fingerprint(mean.load().fingerprint, mean.load().description, embed=lambda t: mean.embed(t)[0])


def test_the_probe_travels_with_the_head_and_is_checked(trained_head, tmp_path):
    import shutil

    from heads.base import PROBE_FILE

    copy = tmp_path / "head"
    shutil.copytree(trained_head / "head", copy)
    head = load_head(copy)
    refit = LogisticHead().fit(head.probe_[1], ["Negative", "Positive"] * 32)
    assert refit.probe_ is None  # a refit head forgets the old probe
    data = bytearray((copy / PROBE_FILE).read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"
    (copy / PROBE_FILE).write_bytes(bytes(data))
    with pytest.raises(HeadError, match=r"probe\.npy: sha256 [0-9a-f]{12}… does not match [0-9a-f]{12}… recorded in head\.json"):
        load_head(copy)


def test_score_uses_a_torch_trained_head_with_the_default_backend(trained_head, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    data = trained_head / "train.csv"
    common = ["score", str(data), "--model", "minilm", "--head", str(trained_head / "head"),
              "--cache-dir", str(trained_head / "cache")]
    runner = CliRunner()
    plain = runner.invoke(cli, common + ["--output", str(tmp_path / "torch.csv"), "--backend", "torch",
                                         "--precision", "fp32"])
    assert plain.exit_code == 0, plain.output
    assert "note:" not in plain.output
    default = runner.invoke(cli, common + ["--output", str(tmp_path / "default.csv")])
    assert default.exit_code == 0, default.output
    from embed.encoder import cpu_has_bf16

    default_variant = "openvino/bf16" if cpu_has_bf16() else "openvino/fp32"  # the default on this CPU
    assert f"trained on torch/fp32 vectors and is used with {default_variant}" in default.output
    with open(tmp_path / "torch.csv") as a, open(tmp_path / "default.csv") as b:
        labels_a = [row["pred_label"] for row in csv.DictReader(a)]
        labels_b = [row["pred_label"] for row in csv.DictReader(b)]
    assert len(labels_a) == 120 and np.mean(np.array(labels_a) == np.array(labels_b)) >= 0.98


def test_a_head_trained_in_bf16_scores_on_a_cpu_without_bf16_units(trained_head, tmp_path, monkeypatch):
    """The portability case: a head fitted on bf16 vectors (the default on a CPU with AMX) is used where
    the capability check finds no bf16 units, so the default computes fp32: the probe accepts it."""
    from click.testing import CliRunner

    from cli import cli
    from comparison.train_head import HeadConfig, fit_head

    data = trained_head / "train.csv"
    bf16 = Embedder("minilm", backend="torch", precision="bf16", cache_dir=tmp_path / "cache")
    fit_head(bf16, data, tmp_path / "head", HeadConfig(head="logistic"))
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)  # a CPU without AMX or AVX512-BF16
    result = CliRunner().invoke(cli, ["score", str(data), "--model", "minilm", "--head", str(tmp_path / "head"),
                                      "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    assert "trained on torch/bf16 vectors and is used with openvino/fp32" in result.output
    with open(tmp_path / "out.csv") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 120


def test_a_head_from_before_backends_is_refused_with_the_flag_that_fixes_it(trained_head, tmp_path):
    """Heads written before backends existed have no probe and no backend in their model description."""
    import json
    import shutil

    from click.testing import CliRunner

    from cli import cli
    from heads.base import PROBE_FILE

    old = tmp_path / "old-head"
    shutil.copytree(trained_head / "head", old)
    config = json.loads((old / "head.json").read_text())
    for key in ("backend", "model_fingerprint"):
        del config["model"][key]
    del config["probe"]
    (old / "head.json").write_text(json.dumps(config))
    (old / PROBE_FILE).unlink()
    common = ["score", str(trained_head / "train.csv"), "--model", "minilm", "--head", str(old),
              "--cache-dir", str(trained_head / "cache")]
    refused = CliRunner().invoke(cli, common + ["--output", str(tmp_path / "a.csv")])
    assert refused.exit_code != 0
    assert "backend 'torch' (this run: 'openvino')" in refused.output
    assert "rerun with" in refused.output and "--backend torch" in refused.output.split("rerun with")[1]
    fixed = CliRunner().invoke(cli, common + ["--output", str(tmp_path / "b.csv"), "--backend", "torch",
                                              "--precision", "fp32"])
    assert fixed.exit_code == 0, fixed.output


def _tiny_mpnet():
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=514)
    import torch

    torch.manual_seed(0)
    return MPNetModel(config).eval()


def test_mpnet_buckets_are_traced_as_an_exact_integer_table(minilm_path):
    """MPNet's relative-position buckets come from a float log truncated to an integer; OpenVINO at
    bf16 would run that log in bf16 and move bucket boundaries. The export gathers from a table of
    the exact buckets instead: the same vectors in torch, and no Log left in the graph."""
    import torch
    from transformers import AutoTokenizer

    import embed.backends as backends

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    model = _tiny_mpnet()
    original = type(model.encoder).relative_position_bucket
    every = torch.arange(-513, 514)
    batch = tokenizer(["a short tweet", "a much longer tweet " * 30], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).last_hidden_state
        converted = backends.convert(model, tokenizer, "cls")  # patches ``model`` in place
        after = model(**batch).last_hidden_state
    assert torch.equal(model.encoder.relative_position_bucket(every), original(every))
    assert torch.equal(before, after)
    ops = {op.get_type_name() for op in converted.get_ops()}
    assert "Log" not in ops, "the float bucket path was traced into the OpenVINO graph"
    compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()})[0]
    np.testing.assert_allclose(got, before[:, 0].numpy(), atol=1e-5)


_FIRST_RUN = """
import sys
from embed.encoder import Embedder
vectors, stats = Embedder("minilm", backend="openvino", precision="fp32", cache_dir=sys.argv[1]).embed(
    ["a first tweet", "and another one"])
heavy = sorted(name for name in ("torch", "transformers") if name in sys.modules)
print(stats.encoded, vectors.shape, "imported:", " ".join(heavy) or "none")
"""


def test_a_plain_berts_first_run_writes_its_graph_without_torch(minilm_path, tmp_path):
    """MiniLM (a plain BERT) is written as an OpenVINO graph from its safetensors: a fresh cache folder's
    first run makes the export without importing torch or transformers (the 4-7 s a first run used to pay
    for tracing), and the vectors equal torch's (``test_openvino_vectors_equal_torch_...`` above)."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _FIRST_RUN, str(tmp_path)], cwd=repo, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "(2,", "384)", "imported:", "none"], done.stdout
    assert len(list((tmp_path / "exports").glob("openvino-*/model.xml"))) == 1


def test_a_model_that_is_not_a_plain_bert_is_traced(minilm_path, tmp_path):
    """``ov_graph.build`` says why it will not write a model (here MPNet), and ``convert`` traces it instead."""
    import torch
    from transformers import AutoTokenizer

    import embed.backends as backends
    from embed.ov_graph import NotBuildable, build

    model = _tiny_mpnet()
    model.save_pretrained(str(tmp_path / "mpnet"))
    with pytest.raises(NotBuildable, match="model_type is 'mpnet'"):
        build(tmp_path / "mpnet", "cls")
    (tmp_path / "bert").mkdir()  # a BERT config with its weights in pytorch_model.bin only
    (tmp_path / "bert" / "config.json").write_text((Path(minilm_path) / "config.json").read_text())
    with pytest.raises(NotBuildable, match="no model.safetensors"):
        build(tmp_path / "bert", "cls")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    batch = tokenizer(["a short tweet", "a longer tweet " * 20], padding=True, return_tensors="pt")
    converted = backends.convert(lambda: model, lambda: tokenizer, "cls", folder=tmp_path / "mpnet")
    with torch.no_grad():
        want = model(**batch).last_hidden_state[:, 0].numpy()
    compiled = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_bert_saved_inside_a_task_model_is_built_from_its_prefixed_weights(minilm_path, tmp_path):
    """A BERT saved as e.g. ``BertForSequenceClassification`` keeps its encoder under ``bert.``: the same graph."""
    import json

    from safetensors.numpy import load_file, save_file

    from embed.ov_graph import build

    plain = Path(minilm_path)
    (tmp_path / "task").mkdir()
    config = json.loads((plain / "config.json").read_text())
    (tmp_path / "task" / "config.json").write_text(json.dumps({**config,
                                                               "architectures": ["BertForSequenceClassification"]}))
    weights = load_file(str(plain / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in weights.items()} | {"classifier.weight": np.zeros((2, 384), np.float32)},
              str(tmp_path / "task" / "model.safetensors"))
    ids = np.array([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    core = openvino.Core()
    want, got = (core.compile_model(build(folder, "mean"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(
        {"input_ids": ids, "attention_mask": mask})[0] for folder in (plain, tmp_path / "task"))
    np.testing.assert_array_equal(got, want)
