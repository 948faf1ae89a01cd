"""A real fine-tune on the packaged MiniLM: loss goes down, artifacts load, resume is exact."""
from __future__ import annotations

import json

import numpy as np
import pytest

from embed.errors import TweetheadsError
from embed.finetune import FinetuneConfig, Interrupted, fine_tune
from embed.runs import RUN_MARKER, EndToEndClassifier

from .conftest import write_tweets

# fp32: the same training on every CPU (auto is bf16 on one with bf16 units; test_precision_choice tests auto)
QUICK = dict(model="minilm", lr=1e-4, train_batch_size=8, eval_batch_size=16, epochs=3, max_length=48,
             progress=False, save_every=4, precision="fp32")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm_path):
    tmp = tmp_path_factory.mktemp("ft")
    train = write_tweets(tmp / "train.csv", 32, seed=1)  # 4 steps an epoch, 12 in all
    evals = write_tweets(tmp / "eval.csv", 24, seed=2)
    metrics = fine_tune(train, tmp / "run", FinetuneConfig(**QUICK), eval_path=evals, cache_dir=tmp / "cache")
    return tmp, metrics


def test_loss_goes_down_and_metrics_are_written(trained):
    tmp, metrics = trained
    history = metrics["history"]
    assert [row["step"] for row in history] == [4, 8, 12]
    assert history[-1]["training_loss"] < history[0]["training_loss"]
    assert history[-1]["validation_loss"] < history[0]["validation_loss"]
    assert json.loads((tmp / "run" / "metrics.json").read_text())["history"] == history
    assert metrics["examples_per_second"] > 0
    # 12 steps: the default logs every step (about 50 points per run), and each epoch's logged losses
    # average to that epoch's training loss
    log = metrics["training_log"]
    assert metrics["log_every"] == 1 and [p["step"] for p in log] == list(range(1, 13))
    for epoch, row in enumerate(history):
        assert np.mean([p["training_loss"] for p in log[4 * epoch:4 * epoch + 4]]) == pytest.approx(row["training_loss"])
    assert log[0]["learning_rate"] > log[-1]["learning_rate"] >= 0  # the linear schedule, as logged


def test_log_every_averages_the_steps_since_the_last_point(tmp_path, minilm_path, capsys):
    train = write_tweets(tmp_path / "train.csv", 40, seed=4)
    evals = write_tweets(tmp_path / "eval.csv", 8, seed=5)
    # 5 steps an epoch, 10 in all; progress on, but stderr is no terminal here (as in a background run)
    config = FinetuneConfig(**{**QUICK, "epochs": 2, "log_every": 4, "progress": True})
    metrics = fine_tune(train, tmp_path / "run", config, eval_path=evals, cache_dir=tmp_path / "cache")
    log = metrics["training_log"]
    assert [p["step"] for p in log] == [4, 8, 10]  # and the last step, whatever the interval
    # where the bar cannot show, each log point and each evaluation is a plain line on stderr
    lines = capsys.readouterr().err.splitlines()
    said = [line.split(" (")[0] for line in lines if line.startswith("step ")]
    assert said == ["step 4/10", "step 8/10", "step 10/10"]
    assert f"training loss {log[0]['training_loss']:.4f}" in next(l for l in lines if l.startswith("step 4/10"))
    assert [l.split(":")[0] for l in lines if l.startswith("epoch ")] == ["epoch 1", "epoch 2"]
    sizes = [4, 4, 2]
    overall = sum(p["training_loss"] * n for p, n in zip(log, sizes)) / 10
    assert overall == pytest.approx(np.mean([row["training_loss"] for row in metrics["history"]]))
    with pytest.raises(TweetheadsError, match="log_every must be"):
        fine_tune(train, tmp_path / "bad", FinetuneConfig(**{**QUICK, "log_every": 0}))


def test_run_folder_artifacts_load(trained):
    from sentence_transformers import SentenceTransformer

    from embed.encoder import Embedder

    tmp, metrics = trained
    run = tmp / "run"
    card = (run / "README.md").read_text()
    assert "| Training Loss | Epoch | Step | Validation Loss | Accuracy |" in card
    assert "- learning_rate: 0.0001" in card and "- seed: 42" in card and "sha256" in card
    assert "- precision: fp32 (asked: fp32)" in card  # what it trained in (test_precision_choice: auto)
    assert json.loads((run / RUN_MARKER).read_text())["trained_precision"] == "fp32"
    assert json.loads((run / "labels.json").read_text())["labels"] == ["Negative", "Neutral", "Positive"]
    model = SentenceTransformer(str(run / "encoder"))
    texts = ["Loved the debate tonight", "What a waste of time"]
    # fp32 vectors (the default is bf16 on a CPU with bf16 units): CLS pooling, the same vectors
    ours, _ = Embedder(str(run), max_length=48, precision="fp32", cache_dir=None).embed(texts)
    np.testing.assert_allclose(model.encode(texts), ours, atol=1e-4)
    e2e = EndToEndClassifier(run)
    proba = e2e.predict_proba(ours)
    np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    # the end-to-end classifier on cached CLS vectors reproduces the fine-tune's own eval accuracy
    import csv

    with open(tmp / "eval.csv") as handle:
        rows = list(csv.DictReader(handle))
    vectors, _ = Embedder(str(run), max_length=48, precision="fp32", cache_dir=None).embed([r["text"] for r in rows])
    accuracy = np.mean(e2e.predict(vectors) == np.array([r["label"] for r in rows]))
    assert accuracy == pytest.approx(metrics["history"][-1]["accuracy"], abs=1e-9)


def test_interrupt_then_resume_matches_uninterrupted(trained, monkeypatch):
    from safetensors.numpy import load_file

    from embed.classifier import ClassifierHead

    tmp, _ = trained
    calls = {"n": 0}
    original = ClassifierHead.forward

    def flaky(self, cls):
        calls["n"] += 1
        if calls["n"] == 9 and self.training:  # Ctrl-C during step 7 (4 steps and an eval pass of 2 batches before)
            raise KeyboardInterrupt
        return original(self, cls)

    monkeypatch.setattr(ClassifierHead, "forward", flaky)
    config = FinetuneConfig(**QUICK)
    with pytest.raises(Interrupted, match="--resume"):
        fine_tune(tmp / "train.csv", tmp / "run2", config, eval_path=tmp / "eval.csv", cache_dir=tmp / "cache")
    before = json.loads((tmp / "run2" / "metrics.json").read_text())
    assert before["interrupted"] is True and before["steps"] == 6 and before["train_seconds"] > 0
    assert json.loads((tmp / "run2" / RUN_MARKER).read_text())["calibration"]["why"].startswith("interrupted at step 6")
    monkeypatch.setattr(ClassifierHead, "forward", original)
    with pytest.raises(TweetheadsError, match="pass --resume"):
        fine_tune(tmp / "train.csv", tmp / "run2", config, eval_path=tmp / "eval.csv", cache_dir=tmp / "cache")
    resumed = fine_tune(tmp / "train.csv", tmp / "run2", config, eval_path=tmp / "eval.csv",
                        resume=True, cache_dir=tmp / "cache")
    a, b = load_file(str(tmp / "run" / "classifier.safetensors")), load_file(str(tmp / "run2" / "classifier.safetensors"))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], atol=1e-6)
    assert resumed["history"][-1]["accuracy"] == pytest.approx(trained[1]["history"][-1]["accuracy"])
    # the finished run's calibration entry is the uninterrupted run's (24 eval rows: too few to fit a T, and said so)
    calibrations = [json.loads((tmp / name / RUN_MARKER).read_text())["calibration"] for name in ("run", "run2")]
    assert calibrations[0]["rows"] == 24 and "fewer than 50" in calibrations[0]["why"]
    nll = ("nll_before", "nll_after")
    assert {k: v for k, v in calibrations[1].items() if k not in nll} == {k: v for k, v in calibrations[0].items()
                                                                           if k not in nll}
    assert [calibrations[1][k] for k in nll] == pytest.approx([calibrations[0][k] for k in nll], abs=1e-5)
    # the logged training losses resume too: the same points as the uninterrupted run
    assert [p["step"] for p in resumed["training_log"]] == [p["step"] for p in trained[1]["training_log"]]
    np.testing.assert_allclose([p["training_loss"] for p in resumed["training_log"]],
                               [p["training_loss"] for p in trained[1]["training_log"]], atol=1e-5)
    # the time spent before the interruption is carried over, not lost
    assert resumed["train_seconds"] > before["train_seconds"] and resumed["examples_per_second"] > 0


def test_an_epoch_end_checkpoints_only_when_the_last_checkpoint_is_a_minute_old(tmp_path, minilm_path,
                                                                                  monkeypatch):
    """A few labelled rows make epochs of a step or two: a checkpoint at each would cost more than the
    steps. Every --save-every steps and the last step still checkpoint; an epoch's end only once the
    last checkpoint is EPOCH_SAVE_SECONDS old."""
    from embed import finetune

    saved = []
    real = finetune._Trainer.save_checkpoint
    monkeypatch.setattr(finetune._Trainer, "save_checkpoint", lambda self: (saved.append(self.step), real(self))[1])
    train = write_tweets(tmp_path / "train.csv", 16, seed=3)  # 2 steps an epoch
    config = FinetuneConfig(**{**QUICK, "epochs": 3, "save_every": 5})
    fine_tune(train, tmp_path / "a", config, cache_dir=tmp_path / "cache")
    assert saved == [5, 6]  # --save-every and the last step; no epoch end (steps 2 and 4)
    # (no --eval file: no temperature for the end-to-end probabilities, and the run says why)
    assert json.loads((tmp_path / "a" / RUN_MARKER).read_text())["calibration"]["why"].startswith("no --eval file")
    saved.clear()
    monkeypatch.setattr(finetune, "EPOCH_SAVE_SECONDS", 0.0)  # as if every epoch took a minute
    fine_tune(train, tmp_path / "b", config, cache_dir=tmp_path / "cache")
    assert saved == [2, 4, 5, 6]


def test_unseen_eval_label_is_refused_before_training(tmp_path, minilm_path):
    train = write_tweets(tmp_path / "train.csv", 16)
    evals = tmp_path / "eval.csv"
    evals.write_text("id,text,label\n1,hello there,Mixed\n")
    with pytest.raises(TweetheadsError, match="'Mixed' at data row"):
        fine_tune(train, tmp_path / "run", FinetuneConfig(**QUICK), eval_path=evals)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_defaults_are_the_cards_recipe():
    from click.testing import CliRunner

    from cli import cli

    config = FinetuneConfig()
    assert (config.model, config.lr, config.train_batch_size, config.eval_batch_size, config.seed) == \
        ("sentence-transformers/msmarco-distilbert-base-tas-b", 1e-6, 8, 8, 42)
    assert (config.adam_beta1, config.adam_beta2, config.adam_epsilon, config.warmup_steps, config.epochs) == \
        (0.9, 0.999, 1e-8, 0, 20)
    help_text = CliRunner().invoke(cli, ["finetune", "--help"]).output
    assert "default: 1e-06" in help_text and "default: 20" in help_text


def test_precision_choice(tmp_path, minilm_path, monkeypatch):
    """fp32 is the card's precision; auto trains in bf16 autocast on a CPU with bf16 units and in fp32 on
    one without (the capability check forced each way); fp16 needs CUDA's grad scaler."""
    import torch

    from embed import encoder as encoder_module
    from embed.finetune import _amp_dtype

    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)  # e.g. an AVX2-only CPU
    assert _amp_dtype(torch, "fp32", "cuda") is None and _amp_dtype(torch, "auto", "cpu") is None
    assert _amp_dtype(torch, "bf16", "cpu") is torch.bfloat16  # asked for: emulated there, but honoured
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: True)  # AMX or AVX512-BF16
    assert _amp_dtype(torch, "auto", "cpu") is torch.bfloat16
    assert _amp_dtype(torch, "fp32", "cpu") is None
    with pytest.raises(TweetheadsError, match="fp16 needs a CUDA device"):
        _amp_dtype(torch, "fp16", "cpu")
    with pytest.raises(TweetheadsError, match="expected one of auto, fp32, bf16, fp16"):
        _amp_dtype(torch, "int8", "cpu")
    train = write_tweets(tmp_path / "train.csv", 8, seed=3)  # one step (bf16 is emulated, slowly, without bf16 units)
    config = FinetuneConfig(**{**QUICK, "epochs": 1, "precision": "bf16", "device": "cpu"})
    metrics = fine_tune(train, tmp_path / "run", config, cache_dir=tmp_path / "cache")
    assert metrics["steps"] == 1 and np.isfinite(metrics["final"]["training_loss"])
    from embed.models import RUN_MARKER

    info = json.loads((tmp_path / "run" / RUN_MARKER).read_text())
    assert info["config"]["precision"] == "bf16" and info["trained_precision"] == "bf16"
    assert "- precision: bf16 (asked: bf16)" in (tmp_path / "run" / "README.md").read_text()
    monkeypatch.setattr(encoder_module, "cpu_has_bf16", lambda: False)  # auto falls back to fp32, and says so
    config = FinetuneConfig(**{**QUICK, "epochs": 1, "max_steps": 1, "precision": "auto", "device": "cpu"})
    fine_tune(train, tmp_path / "run-auto", config, cache_dir=tmp_path / "cache")
    info = json.loads((tmp_path / "run-auto" / RUN_MARKER).read_text())
    assert info["config"]["precision"] == "auto" and info["trained_precision"] == "fp32"
    assert "- precision: fp32 (asked: auto)" in (tmp_path / "run-auto" / "README.md").read_text()


def test_run_shipped_through_fp16_parts_loads_and_predicts_alike(trained, tmp_path):
    """scripts/ship_model.py: a run folder split into small parts and restored loads, checksummed anew."""
    from scripts.ship_model import pack, unpack
    from embed.encoder import Embedder
    from embed.models import RUN_MARKER
    from embed.runs import verify_run

    tmp, _ = trained
    parts = pack(tmp / "run", tmp_path / "parts", part_mib=0.25)  # over 100 parts: part100 sorts after part99
    assert len(parts) > 100 and all(p.stat().st_size <= 2**18 for p in parts)
    restored = unpack(tmp_path / "parts", tmp_path / "restored")
    info = json.loads((restored / RUN_MARKER).read_text())
    assert info["weights_roundtrip"] == "fp16"
    verify_run(restored)  # the checksums describe the restored files
    assert not (restored / "checkpoint").exists()  # optimizer state does not travel
    texts = ["Loved the debate tonight", "What a waste of time", "@user watching from home http"]
    before, _ = Embedder(str(tmp / "run"), max_length=48, cache_dir=None).embed(texts)
    after, _ = Embedder(str(restored), max_length=48, cache_dir=None).embed(texts)
    assert after.dtype == np.float32
    cosine = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert cosine.min() > 0.9999 and not np.array_equal(before, after)  # rounded, not lost
    np.testing.assert_array_equal(EndToEndClassifier(tmp / "run").predict(before),
                                  EndToEndClassifier(restored).predict(after))
    (tmp_path / "parts" / parts[-1].name).unlink()  # a missing last part is refused, not half-read
    with pytest.raises(SystemExit, match="incomplete"):
        unpack(tmp_path / "parts", tmp_path / "again")



def test_a_stale_checkpoint_old_does_not_stop_the_next_save(tmp_path, minilm_path, monkeypatch):
    """A kill during a save's clean-up leaves checkpoint.old/ beside a complete checkpoint/ (seen in a kill
    trial): the next save must still replace them."""
    from embed import finetune

    real = finetune._Trainer.save_checkpoint

    def save_then_leave_old(self):
        real(self)
        if self.step == 1:  # as if killed before the previous checkpoint's removal finished
            (self.run_dir / "checkpoint.old").mkdir()
            (self.run_dir / "checkpoint.old" / "left-over.bin").write_bytes(b"x")

    monkeypatch.setattr(finetune._Trainer, "save_checkpoint", save_then_leave_old)
    train = write_tweets(tmp_path / "train.csv", 16, seed=3)
    run = tmp_path / "run"
    config = FinetuneConfig(**{**QUICK, "epochs": 1, "save_every": 1})  # saves at step 1, then step 2 over it
    metrics = fine_tune(train, run, config, cache_dir=tmp_path / "cache")
    assert metrics["steps"] == 2
    assert json.loads((run / "checkpoint" / "progress.json").read_text())["step"] == 2
    assert not (run / "checkpoint.old").exists()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tas_b_shaped_distilbert_fine_tunes_and_reloads_with_768_d_cls(tmp_path, minilm_path, precision):
    """The card's architecture (DistilBERT, 768-d, CLS): a small random one trains a few steps in fp32
    and in bf16 autocast, reloads as a SentenceTransformer, and its vectors are the first token of the
    last hidden state, 768 wide."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer, DistilBertConfig, DistilBertModel

    from embed.encoder import Embedder
    from embed.models import RUN_MARKER

    folder = tmp_path / "tiny-tas-b"
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(dim=768, n_layers=2, n_heads=12, hidden_dim=1024)).save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(str(folder))  # same uncased vocabulary
    train = write_tweets(tmp_path / "train.csv", 16, seed=5)
    config = FinetuneConfig(**{**QUICK, "model": str(folder), "epochs": 1, "precision": precision, "device": "cpu"})
    metrics = fine_tune(train, tmp_path / "run", config, cache_dir=tmp_path / "cache")
    assert metrics["steps"] == 2 and np.isfinite(metrics["final"]["training_loss"])
    run = tmp_path / "run"
    assert json.loads((run / RUN_MARKER).read_text())["trained_precision"] == precision
    before = AutoModel.from_pretrained(str(folder)).state_dict()["transformer.layer.0.attention.q_lin.weight"]
    after = AutoModel.from_pretrained(str(run / "encoder")).state_dict()["transformer.layer.0.attention.q_lin.weight"]
    assert not torch.equal(before, after)  # it trained

    texts = ["Loved the debate tonight", "What a waste of time", "@user watching from home http"]
    model = SentenceTransformer(str(run / "encoder"), device="cpu")
    assert model.get_embedding_dimension() == 768
    ours, _ = Embedder(str(run), max_length=48, precision="fp32", cache_dir=None).embed(texts)
    assert ours.shape == (3, 768)
    tokenizer = AutoTokenizer.from_pretrained(str(run / "encoder"))
    bare = AutoModel.from_pretrained(str(run / "encoder")).eval()
    from embed.normalize import normalize_tweet

    normalized = [normalize_tweet(t) for t in texts]
    with torch.no_grad():
        batch = tokenizer(normalized, padding=True, truncation=True, max_length=48, return_tensors="pt")
        first_token = bare(**batch).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(ours, first_token, atol=1e-4)  # CLS: first token of the last hidden state
    np.testing.assert_allclose(model.encode(normalized), first_token, atol=1e-4)  # and the saved pooling is CLS


def test_pair_loss_is_setfits_cosine_loss_on_every_in_batch_pair():
    import torch

    from embed.finetune import _pair_loss

    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    target = torch.tensor([0, 0, 1])
    assert _pair_loss(torch, torch.stack([a, 3 * a, b]), target).item() == pytest.approx(0.0)  # cos 1 / cos 0
    # pair (0,1): same label at cos 0 (error 1); (0,2): other labels at cos 1 (error 1); (1,2): cos 0 (error 0)
    assert _pair_loss(torch, torch.stack([a, b, a]), torch.tensor([0, 0, 1])).item() == pytest.approx(2 / 3)
    one = _pair_loss(torch, a[None], torch.tensor([0]))
    assert one.item() == 0.0 and torch.isfinite(one)  # a last batch of one row: no pair, no NaN


def test_balanced_pairs_weigh_positive_and_negative_pairs_half_each():
    """SetFit's sampler draws one positive and one negative pair at a time; ``pairs="balanced"`` gives the
    two kinds equal weight however many of each a batch holds."""
    import torch

    from embed.finetune import _pair_loss

    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    # one positive pair (error 1) and two negative ones (errors 1 and 0): all 2/3, balanced 1/2 + 1/4
    cls, target = torch.stack([a, b, a]), torch.tensor([0, 0, 1])
    assert _pair_loss(torch, cls, target, "all").item() == pytest.approx(2 / 3)
    assert _pair_loss(torch, cls, target, "balanced").item() == pytest.approx(0.75)
    # a batch of one label has positive pairs only: their mean, not NaN from an empty negative mean
    same = _pair_loss(torch, torch.stack([a, b, a]), torch.tensor([1, 1, 1]), "balanced")
    assert same.item() == pytest.approx(2 / 3) and torch.isfinite(same)


def test_pairs_and_warmup_ratio_from_the_command_line(tmp_path, minilm_path, monkeypatch):
    """``finetune --pairs balanced --warmup-ratio R`` reaches the loss and the schedule (warm-up over
    ceil(R x steps), then linear decay to 0), and the run's card says both; bad values are refused."""
    from click.testing import CliRunner

    from cli import cli
    from embed import finetune as finetune_module

    seen = {}
    train_loop, pair_loss = finetune_module._Trainer.train, finetune_module._pair_loss

    def spy_train(self):
        seen["lr"] = [self.scheduler.lr_lambdas[0](s) for s in range(self.total_steps)]
        return train_loop(self)

    def spy_loss(torch, cls, target, pairs="all"):
        seen.setdefault("pairs", set()).add(pairs)
        return pair_loss(torch, cls, target, pairs)

    monkeypatch.setattr(finetune_module._Trainer, "train", spy_train)
    monkeypatch.setattr(finetune_module, "_pair_loss", spy_loss)
    train = write_tweets(tmp_path / "train.csv", 32, seed=5)
    result = CliRunner().invoke(cli, [
        "finetune", "--model", "minilm", "--train", str(train), "--out", str(tmp_path / "run"), "--epochs", "1",
        "--lr", "1e-4", "--max-length", "32", "--precision", "fp32", "--objective", "contrastive",
        "--pairs", "balanced", "--warmup-ratio", "0.5", "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert seen["pairs"] == {"balanced"}
    assert seen["lr"] == pytest.approx([0.5, 1.0, 1.0, 0.5])  # 4 steps: 2 of warm-up, then down to 0
    card = (tmp_path / "run" / "README.md").read_text()
    assert "- lr_scheduler_warmup_ratio: 0.5" in card and "- pairs: balanced" in card
    assert "- batches: drawn at random each epoch" in card  # no --group-by-length: contrastive's default
    with pytest.raises(TweetheadsError, match="expected one of all, balanced"):
        fine_tune(train, tmp_path / "bad", FinetuneConfig(**{**QUICK, "pairs": "hard"}))
    with pytest.raises(TweetheadsError, match=r"expected a share of the steps in \[0, 1\)"):
        fine_tune(train, tmp_path / "bad", FinetuneConfig(**{**QUICK, "warmup_ratio": 10}))


def test_contrastive_objective_lowers_the_pair_loss_and_keeps_an_end_to_end_head(tmp_path, minilm_path,
                                                                                  monkeypatch):
    """SetFit's objective: on the training texts the pair loss (cosine to 1 for the same label, 0 for
    others) falls well below the base model's; the encoder learns from it alone (the head's forward
    pass is detached), the classification head still learns, and the run says which objective it had."""
    import torch

    from embed.data import load_texts
    from embed.encoder import Embedder
    from embed.finetune import _pair_loss, _Trainer
    from embed.models import RUN_MARKER

    train = write_tweets(tmp_path / "train.csv", 24, seed=4)  # 3 batches an epoch: 24 steps in 8 epochs
    rows = load_texts(train, "text", "label")
    labels = np.asarray(rows.labels)
    codes = torch.as_tensor(np.unique(labels, return_inverse=True)[1])

    def pair_loss(model):
        X, _ = Embedder(model, backend="torch", precision="fp32", cache_dir=None).embed(rows.texts)
        return _pair_loss(torch, torch.as_tensor(X), codes).item(), X

    detached = []
    forward = _Trainer._forward
    monkeypatch.setattr(_Trainer, "_forward", lambda self, ids, detach_head=False: (
        detached.append(detach_head), forward(self, ids, detach_head))[1])
    config = FinetuneConfig(**{**QUICK, "objective": "contrastive", "epochs": 8})
    fine_tune(train, tmp_path / "run", config, cache_dir=tmp_path / "cache")
    assert detached == [True] * 24  # every training step: the head's loss does not reach the encoder
    base, _ = pair_loss("minilm")
    tuned, X = pair_loss(str(tmp_path / "run"))
    assert tuned < 0.5 * base, (base, tuned)
    assert np.mean(EndToEndClassifier(tmp_path / "run").predict(X) == labels) > 0.6  # the head learnt
    info = json.loads((tmp_path / "run" / RUN_MARKER).read_text())
    assert info["config"]["objective"] == "contrastive"
    assert "- objective: contrastive" in (tmp_path / "run" / "README.md").read_text()
    with pytest.raises(TweetheadsError, match="expected one of classify, contrastive"):
        fine_tune(train, tmp_path / "bad", FinetuneConfig(**{**QUICK, "objective": "triplet"}))


def test_the_head_forward_can_stop_the_gradient_at_the_cls_vectors(tmp_path, minilm_path):
    import torch

    from embed.data import load_texts
    from embed.finetune import _Trainer

    train = load_texts(write_tweets(tmp_path / "train.csv", 8, seed=5), "text", "label")
    trainer = _Trainer(FinetuneConfig(**QUICK), train, None, tmp_path / "run", tmp_path / "cache")
    for detach, encoder_learns in ((True, False), (False, True)):
        trainer.optimizer.zero_grad(set_to_none=True)
        logits, _ = trainer._forward(trainer.train_ids, detach_head=detach)
        torch.nn.functional.cross_entropy(logits, torch.as_tensor(trainer.train_y)).backward()
        assert any(p.grad is not None for p in trainer.encoder.parameters()) == encoder_learns
        assert all(p.grad is not None for p in trainer.head.parameters())


def test_mean_pooling_run_trains_on_token_means_and_embeds_with_its_own_pooling(tmp_path, minilm_path):
    """``--pooling mean``: the run records it, its encoder folder pools the same way, ``Embedder`` with
    the default ``auto`` pools as the run was trained (CLS for every other model), the end-to-end
    classifier on those vectors reproduces the run's own eval accuracy, and CLS vectors are refused."""
    from sentence_transformers import SentenceTransformer

    from embed.encoder import Embedder
    from embed.errors import ModelError
    from embed.models import RUN_MARKER

    train = write_tweets(tmp_path / "train.csv", 24, seed=6)  # 3 steps and an eval pass: all this test reads
    evals = write_tweets(tmp_path / "eval.csv", 16, seed=7)
    run = tmp_path / "run"
    metrics = fine_tune(train, run, FinetuneConfig(**{**QUICK, "pooling": "mean", "epochs": 1}), eval_path=evals,
                        cache_dir=tmp_path / "cache")
    assert metrics["steps"] == 3 and len(metrics["history"]) == 1
    assert json.loads((run / RUN_MARKER).read_text())["config"]["pooling"] == "mean"
    card = (run / "README.md").read_text()
    assert "- pooling: mean" in card and "with mean pooling" in card and "the mean of the token vectors" in card
    import csv

    with open(evals) as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["text"] for r in rows]
    auto = Embedder(str(run), max_length=48, precision="fp32", cache_dir=None)  # pooling auto; fp32 as the run
    assert auto.load().description["pooling"] == "mean"
    vectors, _ = auto.embed(texts)
    from embed.normalize import normalize_tweet

    saved = SentenceTransformer(str(run / "encoder")).encode([normalize_tweet(t) for t in texts])
    np.testing.assert_allclose(saved, vectors, atol=1e-4)  # the saved folder pools as the run did
    cls, _ = Embedder(str(run), pooling="cls", max_length=48, cache_dir=None).embed(texts)
    assert np.abs(cls - vectors).max() > 0.1  # a different vector, not the same one relabelled
    e2e = EndToEndClassifier(run)
    accuracy = np.mean(e2e.predict(vectors) == np.array([r["label"] for r in rows]))
    assert accuracy == pytest.approx(metrics["history"][-1]["accuracy"], abs=1e-9)
    e2e.check_vectors(auto.load().description)
    with pytest.raises(ModelError, match="fine-tuned on pooling 'mean' but the vectors given it have pooling 'cls'"):
        e2e.check_vectors(Embedder(str(run), pooling="cls", max_length=48, cache_dir=None).load().description)
    assert Embedder("minilm", cache_dir=None).load().description["pooling"] == "cls"  # other models: CLS
    # what the training steps see: the token mean of the base model's last hidden state, as `embed --pooling mean`
    from embed.data import load_texts
    from embed.finetune import _Trainer

    few = load_texts(write_tweets(tmp_path / "few.csv", 6, seed=8), "text", "label")
    trainer = _Trainer(FinetuneConfig(**{**QUICK, "pooling": "mean"}), few, None, tmp_path / "unit", tmp_path / "cache")
    trainer.encoder.eval()  # no dropout, to compare with the embedder's vectors
    _, seen = trainer._forward(trainer.train_ids)
    base = {p: Embedder("minilm", pooling=p, max_length=48, backend="torch", precision="fp32", cache_dir=None)
            for p in ("mean", "cls")}
    np.testing.assert_allclose(seen.detach().numpy(), base["mean"].embed(few.texts)[0], atol=1e-4)
    assert np.abs(seen.detach().numpy() - base["cls"].embed(few.texts)[0]).max() > 0.1
    with pytest.raises(TweetheadsError, match="pooling 'max': expected one of cls, mean"):
        fine_tune(train, tmp_path / "bad", FinetuneConfig(**{**QUICK, "pooling": "max"}))


def test_length_grouping_gives_a_small_sample_the_same_batches_every_epoch_and_random_batches_do_not():
    """Why contrastive runs draw random batches: a sample inside one 50-batch window is sorted by length
    into nearly the same batches each epoch, so the pair loss meets few distinct pairs."""
    from itertools import combinations

    from embed.finetune import _batches

    lengths = list(np.random.default_rng(0).integers(8, 60, size=384))

    def pairs(group):
        return {pair for epoch in range(20) for batch in _batches(lengths, 32, epoch, group)
                for pair in combinations(sorted(batch.tolist()), 2)}

    assert len(pairs(False)) > 4 * len(pairs(True))
    for group in (True, False):  # each epoch every row once, either way
        assert sorted(np.concatenate(_batches(lengths, 32, 3, group)).tolist()) == list(range(384))


def _spy_batches(monkeypatch) -> list:
    """The ``group_by_length`` of each ``_batches`` call from here on (one call an epoch), in order."""
    from embed import finetune as finetune_module

    seen, batches = [], finetune_module._batches
    monkeypatch.setattr(finetune_module, "_batches",
                        lambda lengths, size, seed, group: (seen.append(group), batches(lengths, size, seed, group))[1])
    return seen


@pytest.mark.parametrize("objective, asked, grouped", [("classify", None, True), ("contrastive", None, False),
                                                       ("contrastive", True, True), ("classify", False, False)])
def test_batches_default_to_grouped_for_classify_and_random_for_contrastive(tmp_path, minilm_path, monkeypatch,
                                                                            objective, asked, grouped):
    seen = _spy_batches(monkeypatch)
    train = write_tweets(tmp_path / "train.csv", 8, seed=8)  # one step: only the batches drawn are looked at
    config = FinetuneConfig(**{**QUICK, "objective": objective, "group_by_length": asked, "epochs": 1})
    assert fine_tune(train, tmp_path / "run", config, cache_dir=tmp_path / "cache")["steps"] == 1
    assert seen == [grouped]
    assert json.loads((tmp_path / "run" / RUN_MARKER).read_text())["config"]["group_by_length"] is grouped
    card = (tmp_path / "run" / "README.md").read_text()
    assert ("- batches: grouped by length" if grouped else "- batches: drawn at random each epoch") in card


def test_a_resumed_run_keeps_the_batches_it_started_with(tmp_path, minilm_path, monkeypatch):
    """A resume without --group-by-length draws the batches its checkpoint was drawing; a checkpoint written
    before the choice was recorded was length-grouped (the only kind then), so it goes on grouped."""
    import shutil

    from embed.classifier import ClassifierHead

    calls = {"n": 0}
    original = ClassifierHead.forward

    def flaky(self, cls):
        calls["n"] += 1
        if calls["n"] == 3 and self.training:  # Ctrl-C during step 3 of 4
            raise KeyboardInterrupt
        return original(self, cls)

    monkeypatch.setattr(ClassifierHead, "forward", flaky)
    train = write_tweets(tmp_path / "train.csv", 16, seed=10)
    # the Ctrl-C writes the step-2 checkpoint the resumes start from (no --save-every checkpoints needed)
    config = FinetuneConfig(**{**QUICK, "objective": "contrastive", "epochs": 2})
    with pytest.raises(Interrupted):
        fine_tune(train, tmp_path / "new", config, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(ClassifierHead, "forward", original)
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    progress = tmp_path / "old" / "checkpoint" / "progress.json"
    saved = json.loads(progress.read_text())
    assert saved["step"] == 2 and saved["group_by_length"] is False  # the contrastive default, recorded with it
    del saved["group_by_length"]
    progress.write_text(json.dumps(saved))
    seen = _spy_batches(monkeypatch)
    for run, grouped in (("new", False), ("old", True)):
        seen.clear()
        fine_tune(train, tmp_path / run, config, resume=True, cache_dir=tmp_path / "cache")
        assert seen == [grouped], run
        assert json.loads((tmp_path / run / RUN_MARKER).read_text())["config"]["group_by_length"] is grouped
