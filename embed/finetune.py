"""Stage one, phase one: fine-tune the whole encoder plus a classification head on the CLS token
(or, with ``pooling="mean"``, on the token mean).

Defaults are the reference card's recipe (lr 1e-6, batch 8/8, seed 42, Adam (0.9, 0.999, 1e-8),
linear decay with no warm-up, 20 epochs, evaluation every epoch). Batches are padded per batch
(dynamic padding) and, for the classify objective, grouped by length within shuffled mega-batches as
Hugging Face's ``group_by_length`` does, so a CPU run wastes little time on padding. The contrastive
objective draws its batches at random each epoch instead: its pairs are the batches, and a sample
smaller than one mega-batch would be sorted into nearly the same batches every epoch (384 rows at 32 a
batch: about 11,500 distinct pairs over 80 epochs against 73,440). On a GPU the forward pass
runs under autocast (bf16 where supported, else fp16 with a grad scaler).

``objective="contrastive"`` trains the encoder as SetFit trains its body, for a few labelled rows:
every pair of CLS vectors in a batch, their cosine similarity regressed to 1 for the same label and
0 for different ones (SetFit's ``CosineSimilarityLoss``, on all in-batch pairs instead of sampled
ones); the classification head learns from the same vectors with the gradient stopped, so the
encoder moves by the pair loss alone and the run still has its end-to-end classifier.
``pooling="mean"`` trains on the mean of the token vectors instead of CLS (SetFit's pooling, and
that of most sentence-transformers models); the run records it, and ``Embedder(pooling="auto")``
pools the run's vectors the same way.

With an eval file, the finished run calibrates its end-to-end probabilities (``calibrate="temperature"``,
the default): a temperature (``heads.calibration.fit_temperature``, the heads' own fit by log-loss) is
fitted on the final model's probabilities of the eval file's rows, the run's validation split (Guo et
al. fit on validation), and recorded in ``tweetheads_run.json`` with the file's path, sha256 and rows;
``EndToEndClassifier`` applies it (see ``runs.py``). Without an eval file the run has no temperature
and says why (it trains on every row of the training file, so no other rows are held out).

A checkpoint (weights, optimizer, scheduler, RNG state, step) is written every ``save_every``
steps, at the end of an epoch when the last one is ``EPOCH_SAVE_SECONDS`` old or more (an epoch of a
few labelled rows is a step or two, and a checkpoint of MiniLM takes about a second to write), at
the last step and on Ctrl-C; ``resume=True`` continues from it and, on the same
device, reaches the same weights as an uninterrupted run. Not here: distributed training.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from fileio import fsync_file, sha256_file, write_atomic
from heads.calibration import METHODS as CALIBRATIONS

from .backends import POOLINGS, pool
from .data import LabelMap, load_texts
from .errors import TweetheadsError
from .models import DEFAULT_MODEL, PRECISIONS, RUN_MARKER, base_model_id, load_encoder, max_seq_length, resolve_model
from .normalize import normalizer
from .runs import CLASSIFIER_FILE, ENCODER_DIR, LABELS_FILE, artifact_digests, save_encoder


OBJECTIVES = ("classify", "contrastive")
PAIRS = ("all", "balanced")


@dataclass(frozen=True)
class FinetuneConfig:
    """Every value of a fine-tune: the model, the optimizer and schedule, the objective and pooling, data columns,
    device and precision, checkpoints and logging. The defaults are the reference card's recipe; ``RECIPES``
    names other presets. Values are checked when the config is made (``__post_init__``).
    """

    model: str = DEFAULT_MODEL
    recipe: str = "card"  # the preset the other defaults came from (RECIPES), recorded in the run
    lr: float = 1e-6
    train_batch_size: int = 8
    eval_batch_size: int = 8
    seed: int = 42
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # warm-up as a share of the steps (SetFit: 0.1), used when warmup_steps is 0
    epochs: float = 20
    max_steps: int | None = None
    max_train_rows: int | None = None
    max_length: int | None = None  # None: the model's own max_seq_length
    dropout: float = 0.2
    objective: str = "classify"  # classify: cross-entropy through the head (the card's); or contrastive
    pooling: str = "cls"  # cls: the first token (the card's); or mean of the tokens
    pairs: str = "all"  # contrastive: all (every in-batch pair, mean) or balanced (positives and negatives weigh half each)
    # batches grouped by length within shuffled windows (less padding); None: grouped for classify, drawn at random
    # for contrastive, whose pairs are the batches (a sample within one window would meet the same batches each epoch)
    group_by_length: bool | None = None
    normalize: bool = True
    text_col: str = "text"
    label_col: str = "label"
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 (else fp16) autocast on a GPU, bf16 on a CPU with bf16 units, else fp32
    save_every: int = 500
    log_every: int | None = None  # training loss every N steps; None: total_steps // 50 (about 50 points)
    progress: bool = True
    calibrate: str = "temperature"  # temperature: T fitted on the eval file at the end (runs.py applies it); none

    def __post_init__(self) -> None:
        """Reject values no run could use, when the config is made (before any model or data is read)."""
        if self.objective not in OBJECTIVES:
            raise TweetheadsError(f"objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        if self.pairs not in PAIRS:
            raise TweetheadsError(f"pairs {self.pairs!r}: expected one of {', '.join(PAIRS)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise TweetheadsError(f"warmup_ratio {self.warmup_ratio}: expected a share of the steps in [0, 1), "
                                  "e.g. 0.1 (SetFit's)")
        if self.pooling not in POOLINGS:
            raise TweetheadsError(f"pooling {self.pooling!r}: expected one of {', '.join(POOLINGS)}")
        if self.calibrate not in CALIBRATIONS:
            raise TweetheadsError(f"calibrate {self.calibrate!r}: expected one of {', '.join(CALIBRATIONS)}")
        if self.log_every is not None and (not isinstance(self.log_every, int) or self.log_every < 1):
            raise TweetheadsError(f"log_every must be a whole number of steps of at least 1, got {self.log_every!r}")


def _amp_dtype(torch, precision: str, device: str):
    """The autocast dtype for ``precision`` on ``device`` (None: plain fp32).

    ``auto``: bf16 on a GPU that has it, else fp16; on a CPU bf16 where it has bf16 units (AMX or
    AVX512-BF16: MiniLM trained 1.4x faster there, its accuracy within the seed spread of fp32, see
    BENCHMARKS.md "Fine-tuning"), else fp32 (torch would emulate bf16, several times slower).
    """
    from .encoder import cpu_has_bf16

    if precision not in PRECISIONS:
        raise TweetheadsError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    cuda = device.startswith("cuda")
    if precision == "fp32" or (precision == "auto" and not cuda and not cpu_has_bf16()):
        return None
    if precision == "auto":
        if not cuda:
            return torch.bfloat16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and not cuda:
        raise TweetheadsError("precision fp16 needs a CUDA device (the grad scaler is CUDA-only); "
                              "use --precision bf16 or fp32 on the CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


# Named presets: the values that differ from FinetuneConfig's defaults (the card's recipe). ``setfit``
# is SetFit's recipe inside ours, measured to tie SetFit at 8 and 32 labelled tweets a class and to
# lead it on all GOP labels at a third of its training time (BENCHMARKS.md, "Few labels").
RECIPES = {
    "card": {},
    "setfit": {"objective": "contrastive", "pooling": "mean", "train_batch_size": 32, "epochs": 40, "lr": 2e-5},
}


def recipe_config(recipe: str = "card", **given) -> FinetuneConfig:
    """A FinetuneConfig from a preset, with ``given`` values (the options a user set) over it."""
    if recipe not in RECIPES:
        raise TweetheadsError(f"unknown recipe {recipe!r}; expected one of: {', '.join(RECIPES)}")
    return FinetuneConfig(**{**RECIPES[recipe], **given, "recipe": recipe})
EPOCH_SAVE_SECONDS = 60.0  # an epoch's end checkpoints only when the last checkpoint is this old


def _pair_loss(torch, cls, target, pairs: str = "all"):
    """SetFit's CosineSimilarityLoss over every pair in the batch: cos(a, b) regressed to 1 (same label) or 0.

    ``pairs="all"``: the mean over every pair (at 3 balanced classes about a third are positive).
    ``"balanced"``: the mean over the positive pairs and the mean over the negative ones, half each, the
    mix SetFit's sampler draws (one positive and one negative pair a sentence and iteration); a batch
    with only one kind of pair falls back to that kind's mean.
    """
    if len(target) < 2:
        return cls.sum() * 0.0  # a last batch of one row has no pair
    z = torch.nn.functional.normalize(cls, dim=1)
    i, j = torch.triu_indices(len(target), len(target), 1, device=cls.device)
    same = (target[i] == target[j]).float()
    errors = ((z[i] * z[j]).sum(1) - same) ** 2
    if pairs == "all":
        return errors.mean()
    kinds = [errors[same == k].mean() for k in (1.0, 0.0) if bool((same == k).any())]
    return sum(kinds) / len(kinds)


class Interrupted(TweetheadsError):
    """Training stopped by Ctrl-C after writing a usable checkpoint."""


def _load_failure(exc: Exception) -> str:
    """One line on why torch.load refused a file, without torch's advice to turn weights_only off."""
    text = str(exc)
    refused = re.search(r"WeightsUnpickler error: ([^.\n]*)", text)
    if refused:
        return f"it holds pickled objects other than tensors: {refused.group(1).strip()}"
    lines = text.strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _write_failure(exc: BaseException) -> str:
    """One line on why a write failed (torch.save wraps the OSError in a RuntimeError)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _batches(lengths: list[int], batch_size: int, seed: int, group_by_length: bool) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    if group_by_length:
        mega = batch_size * 50
        lens = np.asarray(lengths)
        order = np.concatenate([chunk[np.argsort(-lens[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, math.ceil(len(order) / mega)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length and len(batches) > 1:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class _Trainer:
    def __init__(self, config: FinetuneConfig, train, eval_data, run_dir: Path, cache_dir):
        import torch

        from .classifier import ClassifierHead
        from .encoder import pick_device

        self.batches_asked = config.group_by_length  # None: the objective's default (a resume keeps the run's own)
        if config.group_by_length is None:  # resolved here, so the run folder records which batches it drew
            config = replace(config, group_by_length=config.objective != "contrastive")
        self.torch, self.config, self.run_dir = torch, config, run_dir  # config: checked by its __post_init__
        self.device = pick_device(config.device)
        self.source = resolve_model(config.model, cache_dir)
        torch.manual_seed(config.seed)
        self.encoder, self.tokenizer = load_encoder(self.source)
        self.max_length = int(config.max_length or max_seq_length(self.source.path))
        self.labels = LabelMap.from_labels(train.labels)
        dim = int(self.encoder.config.hidden_size)
        self.head = ClassifierHead(dim, len(self.labels.names), config.dropout)
        for layer in (self.head.pre_classifier, self.head.classifier):  # as transformers initialises it
            torch.nn.init.normal_(layer.weight, std=0.02)
            torch.nn.init.zeros_(layer.bias)
        self.encoder.to(self.device)
        self.head.to(self.device)
        norm, self.norm_version = normalizer(config.normalize)
        self.train_ids = self._tokenize([norm(t) for t in train.texts])
        self.train_y = np.asarray(self.labels.encode(train.labels, train.path))
        self.eval_ids = self._tokenize([norm(t) for t in eval_data.texts]) if eval_data else None
        self.eval_y = np.asarray(self.labels.encode(eval_data.labels, eval_data.path)) if eval_data else None
        self.steps_per_epoch = math.ceil(len(self.train_ids) / config.train_batch_size)
        total = int(math.ceil(config.epochs * self.steps_per_epoch))
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        params = list(self.encoder.parameters()) + list(self.head.parameters())
        adam = dict(lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon,
                    weight_decay=config.weight_decay)
        try:  # the fused kernel (the HF Trainer's default): one pass over all parameters per step
            self.optimizer = torch.optim.AdamW(params, fused=True, **adam)
        except (RuntimeError, TypeError, ValueError):  # a torch or device without it
            self.optimizer = torch.optim.AdamW(params, **adam)
        # linear decay to 0 at the last step (max_steps, when given, sets the horizon as in HF Trainer)
        end = self.total_steps
        warm = config.warmup_steps or int(math.ceil(config.warmup_ratio * end))
        span = max(1, end - warm)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (end - s) / span))
        self.amp_dtype = _amp_dtype(torch, config.precision, self.device)
        # what it really trains in, recorded in the run folder and its model card ("auto" is only the request)
        self.trained_precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.log_every = config.log_every or max(1, self.total_steps // 50)
        self.step, self.history, self.epoch_losses = 0, [], []
        self.training_log, self.log_losses = [], []  # (step, mean loss since the last point), losses not yet logged
        self.plain_progress = False  # set by train(): True where the progress bar cannot show
        self.examples, self.train_seconds, self.data_files = 0, 0.0, {}
        self.rng_state = torch.get_rng_state()

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length,
                              return_attention_mask=False)["input_ids"]

    def _forward(self, ids: list[list[int]], detach_head: bool = False):
        """``(logits, vectors)``, the vectors pooled as ``config.pooling``; with ``detach_head`` the head's
        gradient stops at the vectors."""
        padded = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        input_ids = padded["input_ids"].to(self.device)
        mask = padded["attention_mask"].to(self.device)
        with self.torch.autocast(self.device.split(":")[0], dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            hidden = self.encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
            vectors = pool(hidden, mask, self.config.pooling)
            logits = self.head(vectors.detach() if detach_head else vectors)
        return logits.float(), vectors.float()

    def evaluate(self) -> tuple[float, float]:
        torch = self.torch
        self.encoder.eval(), self.head.eval()
        order = np.argsort([len(x) for x in self.eval_ids], kind="stable")
        losses, correct = 0.0, 0
        every = np.zeros((len(order), len(self.labels.names)), dtype=np.float32)  # in eval-file row order
        with torch.inference_mode():
            for i in range(0, len(order), self.config.eval_batch_size):
                rows = order[i:i + self.config.eval_batch_size]
                logits, _ = self._forward([self.eval_ids[r] for r in rows])
                target = torch.as_tensor(self.eval_y[rows], device=self.device)
                losses += torch.nn.functional.cross_entropy(logits, target, reduction="sum").item()
                correct += int((logits.argmax(1) == target).sum())
                every[rows] = logits.cpu().numpy()
        self.encoder.train(), self.head.train()
        self.eval_logits = (self.step, every)  # the calibration of the finished run is fitted on the last ones
        return losses / len(order), correct / len(order)

    def calibration(self, interrupted: bool) -> dict:
        """``tweetheads_run.json``'s ``calibration``: a temperature fitted on the final model's probabilities of
        the eval file's rows (``heads.calibration.fit_temperature``) with what it was fitted on, or why none."""
        from heads.calibration import MIN_ROWS, fit_temperature

        if self.config.calibrate == "none":
            return {"method": "none", "why": "--calibrate none: the probabilities are the classifier's softmax"}
        if self.eval_ids is None:
            return {"method": "none", "why": "no --eval file: the temperature is fitted on the eval file's rows "
                                             "(the run trains on every row of --train)"}
        if interrupted:
            return {"method": "none", "why": f"interrupted at step {self.step} of {self.total_steps}: the "
                                             "temperature is fitted when the run finishes (--resume)"}
        if getattr(self, "eval_logits", (None,))[0] != self.step:  # a finished run resumed: no step, no eval yet
            self.evaluate()
        logits = self.eval_logits[1].astype(np.float64)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        fitted = fit_temperature(weights / weights.sum(axis=1, keepdims=True), self.eval_y)
        entry = {**fitted.to_json(), "fitted_on": self.data_files["eval"]}
        if fitted.rows < MIN_ROWS:
            entry["why"] = f"{fitted.rows} eval rows are fewer than {MIN_ROWS}: no temperature fitted (T = 1)"
        elif fitted.temperature == 1.0 and fitted.smoothing == 0.0:
            entry["why"] = "no temperature lowered the eval rows' log-loss (T = 1)"
        return entry

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        from safetensors.torch import save_file

        torch = self.torch
        final, tmp = self.run_dir / "checkpoint", self.run_dir / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            save_file({k: v.contiguous() for k, v in self.encoder.state_dict().items()},
                      str(tmp / "encoder.safetensors"))
            save_file(self.head.state_dict(), str(tmp / "head.safetensors"))
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "scaler": self.scaler.state_dict(), "rng": self.rng_state}, tmp / "state.pt")
            (tmp / "progress.json").write_text(json.dumps({"step": self.step, "history": self.history,
                                                           "epoch_losses": self.epoch_losses,
                                                           "training_log": self.training_log,
                                                           "log_losses": self.log_losses,
                                                           "examples": self.examples,
                                                           "train_seconds": self.train_seconds,
                                                           "group_by_length": self.config.group_by_length}))
            for path in tmp.iterdir():
                fsync_file(path)
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            reason = _write_failure(exc)
            free = shutil.disk_usage(self.run_dir).free
            if not isinstance(exc, OSError) and free < 16 << 20:
                reason = f"No space left on device: {free >> 20} MiB free there; torch said: {reason}"
            shutil.rmtree(tmp, ignore_errors=True)  # give back the space the half-written checkpoint took
            kept = (f"the previous checkpoint ({final}) is intact: free disk space and rerun the same command with "
                    "--resume" if (final / "progress.json").exists() else
                    "no earlier checkpoint exists: free disk space and rerun the same command")
            raise TweetheadsError(f"cannot write the step-{self.step} checkpoint in {self.run_dir} ({reason}); "
                                  f"{kept}") from None
        old = self.run_dir / "checkpoint.old"
        if final.exists():
            # a run killed during the last save's clean-up leaves a stale checkpoint.old beside a complete
            # checkpoint/; a folder cannot be renamed over a non-empty one, so it goes first
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        self.saved_at = time.monotonic()

    def load_checkpoint(self) -> None:
        from safetensors.torch import load_file

        torch, folder = self.torch, self.run_dir / "checkpoint"
        if not (folder / "progress.json").exists() and (self.run_dir / "checkpoint.old" / "progress.json").exists():
            folder = self.run_dir / "checkpoint.old"  # killed between save_checkpoint's two renames
        if not (folder / "progress.json").exists():
            raise TweetheadsError(f"{folder}: no checkpoint to resume from; run without --resume")
        self.encoder.load_state_dict(load_file(str(folder / "encoder.safetensors"), device=self.device))
        self.head.load_state_dict(load_file(str(folder / "head.safetensors"), device=self.device))
        try:  # weights_only: a pickled object other than tensors and plain containers is refused, never run
            state = torch.load(folder / "state.pt", weights_only=True, map_location=self.device)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError: all mean a bad file
            raise TweetheadsError(f"{folder / 'state.pt'}: refusing to resume from it ({_load_failure(exc)}); "
                                  f"delete {folder} and finetune again without --resume") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        progress = json.loads((folder / "progress.json").read_text())
        self.step, self.history, self.epoch_losses = progress["step"], progress["history"], progress["epoch_losses"]
        self.training_log, self.log_losses = progress.get("training_log", []), progress.get("log_losses", [])
        # timing so far (absent in checkpoints written before it was recorded)
        self.examples, self.train_seconds = progress.get("examples", 0), progress.get("train_seconds", 0.0)
        if self.batches_asked is None:  # the batches the run started with (checkpoints before the key: grouped)
            self.config = replace(self.config, group_by_length=bool(progress.get("group_by_length", True)))

    # -- the loop ----------------------------------------------------------------------------------
    def train(self) -> None:
        from tqdm.auto import tqdm

        torch, config = self.torch, self.config
        self.encoder.train(), self.head.train()
        lengths = [len(x) for x in self.train_ids]
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="fine-tuning",
                   disable=None if config.progress else True, dynamic_ncols=True)
        # no terminal (a background run writing to a log file): plain lines at each log point instead
        self.plain_progress = bool(config.progress and bar.disable)
        contrastive = config.objective == "contrastive"
        self.saved_at = time.monotonic()  # the start counts as a save: nothing to lose yet
        try:
            while self.step < self.total_steps:
                epoch = self.step // self.steps_per_epoch
                batches = _batches(lengths, config.train_batch_size, config.seed + epoch, config.group_by_length)
                for batch in batches[self.step - epoch * self.steps_per_epoch:]:
                    tick = time.perf_counter()
                    self.rng_state = torch.get_rng_state()  # a checkpoint replays this step's dropout exactly
                    logits, cls = self._forward([self.train_ids[i] for i in batch], detach_head=contrastive)
                    target = torch.as_tensor(self.train_y[batch], device=self.device)
                    loss = torch.nn.functional.cross_entropy(logits, target)
                    if contrastive:  # the encoder learns from the pairs; the head, on stopped vectors, from its loss
                        loss = loss + _pair_loss(torch, cls, target, config.pairs)
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(loss).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.scheduler.step()
                    self.step += 1
                    self.epoch_losses.append(float(loss.item()))
                    self.rng_state = torch.get_rng_state()
                    self.examples += len(batch)
                    self.train_seconds += time.perf_counter() - tick
                    self._log(self.epoch_losses[-1])
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(self.epoch_losses[-50:]):.4f}", epoch=f"{self.step / self.steps_per_epoch:.2f}")
                    if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                        self._end_epoch()
                    epoch_end = self.step % self.steps_per_epoch == 0
                    if self.step % config.save_every == 0 or self.step == self.total_steps or (
                            epoch_end and time.monotonic() - self.saved_at >= EPOCH_SAVE_SECONDS):
                        self.save_checkpoint()
                    if self.step >= self.total_steps:
                        break
        except KeyboardInterrupt:
            bar.close()
            self.save_checkpoint()
            self.write_run(interrupted=True)
            raise Interrupted(f"interrupted at step {self.step}/{self.total_steps}; checkpoint saved in "
                              f"{self.run_dir / 'checkpoint'}; continue with the same command plus --resume") from None
        bar.close()

    def _log(self, loss: float) -> None:
        """Every ``log_every`` steps (and at the last), the mean training loss since the previous point."""
        self.log_losses.append(loss)
        if self.step % self.log_every == 0 or self.step == self.total_steps:
            self.training_log.append({"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                                      "training_loss": float(np.mean(self.log_losses)),
                                      "learning_rate": float(self.scheduler.get_last_lr()[0])})
            self.log_losses = []
            if self.plain_progress:
                self._say(self.training_log[-1])

    def _say(self, point: dict) -> None:
        rate = self.examples / max(self.train_seconds, 1e-9)
        left = (self.total_steps - self.step) * self.config.train_batch_size / max(rate, 1e-9)
        print(f"step {self.step}/{self.total_steps} (epoch {point['epoch']:.2f}): training loss "
              f"{point['training_loss']:.4f}, {rate:.1f} examples/s, about {left / 60:.0f} min of steps left",
              file=sys.stderr, flush=True)

    def _end_epoch(self) -> None:
        row = {"epoch": round(self.step / self.steps_per_epoch, 4), "step": self.step,
               "training_loss": float(np.mean(self.epoch_losses)) if self.epoch_losses else None}
        if self.eval_ids is not None:
            row["validation_loss"], row["accuracy"] = self.evaluate()
        self.history.append(row)
        if self.plain_progress and self.eval_ids is not None:
            print(f"epoch {row['epoch']:g}: validation loss {row['validation_loss']:.4f}, accuracy "
                  f"{row['accuracy']:.4f}", file=sys.stderr, flush=True)
        self.epoch_losses = []

    def write_run(self, *, interrupted: bool) -> dict:
        from safetensors.torch import save_file

        from .model_card import write_model_card

        run_dir, config = self.run_dir, self.config
        base = base_model_id(self.source)  # the real hub id (an alias's repo), for the cards; None: a local folder
        save_encoder(self.encoder, self.tokenizer, run_dir / ENCODER_DIR, self.max_length, config.pooling,
                     base_model=base, name=run_dir.name)
        save_file({k: v.detach().float().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(run_dir / CLASSIFIER_FILE))
        self.labels.save(run_dir / LABELS_FILE)
        metrics = {"history": self.history, "training_log": self.training_log, "log_every": self.log_every,
                   "steps": self.step, "total_steps": self.total_steps,
                   "steps_per_epoch": self.steps_per_epoch, "interrupted": interrupted,
                   "final": self.history[-1] if self.history else None,
                   "train_seconds": self.train_seconds,
                   "examples_per_second": self.examples / self.train_seconds if self.train_seconds else None}
        write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        info_path = run_dir / RUN_MARKER
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        info.update({"format": "tweetheads-run/1", "config": asdict(config), "base_model": config.model,
                     "base_model_id": base, "base_model_license": _card_license(self.source.path),
                     "base_model_path": str(self.source.path), "labels": list(self.labels.names),
                     "max_length": self.max_length, "normalization": self.norm_version, "device": self.device,
                     "trained_precision": self.trained_precision, "interrupted": interrupted})
        info["data"] = self.data_files
        info["calibration"] = self.calibration(interrupted)  # applied by runs.EndToEndClassifier
        info["files"] = artifact_digests(run_dir)  # verified whenever the run is loaded
        write_atomic(info_path, json.dumps(info, indent=2) + "\n")  # a kill mid-write leaves the old one
        write_model_card(run_dir, info, metrics)
        return metrics


def _card_license(folder: Path) -> str | None:
    """The license the base model's own card declares (a fine-tune inherits it), if it has one."""
    card = Path(folder) / "README.md"
    try:
        from huggingface_hub import metadata_load

        value = (metadata_load(card) or {}).get("license") if card.is_file() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) else None


def fine_tune(train_path: str | Path, run_dir: str | Path, config: FinetuneConfig = FinetuneConfig(),
              eval_path: str | Path | None = None, resume: bool = False, cache_dir=None) -> dict:
    """Fine-tune and write RUN_DIR; returns the metrics dict (also in ``RUN_DIR/metrics.json``)."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoint").exists() and not resume:
        raise TweetheadsError(f"{run_dir} already holds a run with a checkpoint; pass --resume to continue it "
                              "or choose another --out")
    train = load_texts(train_path, config.text_col, config.label_col, config.max_train_rows)
    eval_data = load_texts(eval_path, config.text_col, config.label_col) if eval_path else None
    if len(set(train.labels)) < 2:
        raise TweetheadsError(f"{train_path}: column {config.label_col!r} holds one label only; need two or more")
    run_dir.mkdir(parents=True, exist_ok=True)
    data_files = {"train": {"path": str(train_path), "sha256": sha256_file(Path(train_path)), "rows": len(train.texts)}}
    if eval_path:
        data_files["eval"] = {"path": str(eval_path), "sha256": sha256_file(Path(eval_path)), "rows": len(eval_data.texts)}
    trainer = _Trainer(config, train, eval_data, run_dir, cache_dir)
    trainer.data_files = data_files
    if resume:
        trainer.load_checkpoint()
    trainer.train()
    return trainer.write_run(interrupted=False)
