"""Train/eval split of a tweet table, deterministic for a seed, with every original column kept.

The default is a plain shuffled split (scikit-learn's ``train_test_split``), which on the GOP data
gives the reference card's 11,096 / 2,775 rows. Retweets make that split leaky, so the result
counts eval texts that also occur in train, and ``group_duplicates=True`` keeps every copy of a
normalized text on one side (``GroupShuffleSplit``) for an honest held-out estimate.
``stratify="sentiment"`` keeps each label's share the same on both sides (``train_test_split``'s
``stratify``); it cannot be combined with ``group_duplicates`` (scikit-learn has no splitter that
does both at a fraction: ``StratifiedGroupKFold`` splits into folds).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from .data import column, file_format, read_table, write_table
from .errors import DataError
from .normalize import normalize_tweet


@dataclass(frozen=True)
class SplitConfig:
    """How ``split_file`` splits: the eval share, the seed, the text column, and optionally duplicates kept on one
    side or a label column to stratify by.
    """

    eval_fraction: float = 0.2
    seed: int = 42
    text_col: str = "text"
    group_duplicates: bool = False
    stratify: str | None = None  # a label column whose shares both sides keep


@dataclass(frozen=True)
class SplitResult:
    """The two files ``split_file`` wrote, their row counts, and how many eval rows also occur in train."""

    train_path: Path
    eval_path: Path
    train_rows: int
    eval_rows: int
    eval_in_train: int  # eval rows whose normalized text also occurs in train
    eval_exact_in_train: int  # eval rows whose raw text also occurs in train


def split_file(path: str | Path, out_dir: str | Path, config: SplitConfig = SplitConfig()) -> SplitResult:
    """Split a CSV/Parquet file into ``out_dir/train`` and ``out_dir/eval`` (same format), seeded.

    Random rows by default; with ``stratify`` both sides keep the label shares; with ``group_duplicates``
    rows of the same normalized text stay on one side. Raises DataError for a bad fraction, too few rows,
    labels seen once, or both options at once.
    """
    if not 0.0 < config.eval_fraction < 1.0:
        raise DataError(f"eval fraction must be between 0 and 1, got {config.eval_fraction}")
    table = read_table(path)
    if table.num_rows < 2:
        raise DataError(f"{path}: {table.num_rows} data row(s); a split needs at least 2")
    texts = column(table, config.text_col, path, "text")
    keys = [normalize_tweet(t) if isinstance(t, str) else "" for t in texts]
    rows = np.arange(table.num_rows)
    if config.stratify is not None and config.group_duplicates:
        raise DataError("a split is either stratified by a label (--stratify) or keeps duplicate texts on one side "
                        "(--group-duplicates), not both; pick one")
    if config.stratify is not None:
        labels = [str(v).strip() if v is not None else "" for v in column(table, config.stratify, path, "label")]
        counts = {label: labels.count(label) for label in set(labels)}
        rare = sorted(label for label, n in counts.items() if n < 2)
        if rare:
            raise DataError(f"{path}: label(s) {', '.join(map(repr, rare))} of column {config.stratify!r} occur once; a "
                            "stratified split needs at least 2 rows of every label. Fix those rows or drop --stratify")
        try:
            train_idx, eval_idx = train_test_split(rows, test_size=config.eval_fraction, random_state=config.seed,
                                                   stratify=labels)
        except ValueError as exc:  # e.g. fewer eval rows than labels
            raise DataError(f"{path}: cannot stratify by {config.stratify!r} at --eval-fraction "
                            f"{config.eval_fraction} ({exc}); use a larger fraction or drop --stratify") from exc
    elif config.group_duplicates:
        splitter = GroupShuffleSplit(n_splits=1, test_size=config.eval_fraction, random_state=config.seed)
        train_idx, eval_idx = next(splitter.split(rows, groups=keys))
    else:
        train_idx, eval_idx = train_test_split(rows, test_size=config.eval_fraction, random_state=config.seed)
    train_keys = {keys[i] for i in train_idx}
    overlap = sum(1 for i in eval_idx if keys[i] in train_keys)
    train_texts = {texts[i] for i in train_idx}
    exact = sum(1 for i in eval_idx if texts[i] in train_texts)
    out_dir = Path(out_dir)
    ext = "." + file_format(path)
    train_path, eval_path = out_dir / f"train{ext}", out_dir / f"eval{ext}"
    write_table(table.take(np.sort(train_idx)), train_path)
    write_table(table.take(np.sort(eval_idx)), eval_path)
    return SplitResult(train_path, eval_path, len(train_idx), len(eval_idx), overlap, exact)
