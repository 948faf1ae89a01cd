"""How many distinct pairs of texts a contrastive fine-tune meets: length-grouped against random batches.

The contrastive objective's loss is over the pairs inside each batch, so the batches decide what it
learns from. ``finetune`` groups batches by length within shuffled windows of 50 batches (as the
Trainer's ``group_by_length`` does); a sample smaller than one window is then sorted into nearly the
same batches every epoch. This counts, for the few-labels samples of ``setfit_peer.py`` (the same
stratified rows, MiniLM's tokenizer on the normalized texts, ``finetune``'s own ``_batches`` with the
run's seed), the distinct in-batch pairs over all epochs both ways, and the pairs SetFit draws
(``num_iterations`` times 2 a text). No timing: counts only, a few seconds.

    python bench/batch_pairs.py                       # GOP, 128 per class, seeds 0-2, 32 a batch, 80 epochs
    python bench/batch_pairs.py --per-class 32 --epochs 40
"""
from __future__ import annotations

import argparse
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np

import common  # bench/ is on sys.path: run as `python bench/batch_pairs.py`
from setfit_peer import sample


def distinct_pairs(lengths: list[int], batch_size: int, epochs: int, seed: int, grouped: bool) -> int:
    from embed.finetune import _batches

    seen = set()
    for epoch in range(epochs):  # the seed finetune gives each epoch
        for batch in _batches(lengths, batch_size, seed + epoch, grouped):
            seen.update(combinations(sorted(batch.tolist()), 2))
    return len(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="gop")
    parser.add_argument("--per-class", type=int, default=128)
    parser.add_argument("--seeds", type=lambda s: tuple(int(x) for x in s.split(",")), default=(0, 1, 2))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=80)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from embed.data import load_texts
    from embed.normalize import normalize_tweet

    train_path, _, described = common.peer_data_files(args.data, Path(tempfile.mkdtemp(prefix="tweetheads-pairs-")))
    train = load_texts(train_path, "text", "sentiment")
    tokenizer = AutoTokenizer.from_pretrained(str(common.minilm_path()))
    print(f"{described}: {args.per_class} per class, {args.batch_size} a batch, {args.epochs} epochs")
    print("| seed | rows | length-grouped batches | random batches | SetFit (20 iterations x 2 a text) |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        rows = sample(np.asarray(train.labels), args.per_class, seed)
        lengths = [len(ids) for ids in tokenizer([normalize_tweet(train.texts[i]) for i in rows])["input_ids"]]
        grouped, random = (distinct_pairs(lengths, args.batch_size, args.epochs, seed, g) for g in (True, False))
        print(f"| {seed} | {len(rows)} | {grouped:,} | {random:,} | {20 * 2 * len(rows):,} |")


if __name__ == "__main__":
    main()
