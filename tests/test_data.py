"""Normalization, reading, label mapping and splitting: the pieces every stage stands on."""
from __future__ import annotations

import csv
import json

import pyarrow.csv as pacsv
import pytest

from embed.data import LabelMap, load_texts, read_table
from embed.errors import DataError
from embed.normalize import NORMALIZATION_VERSION, normalize_tweet, normalizer
from embed.split import SplitConfig, split_file


def test_normalize_mentions_links_and_space():
    assert normalize_tweet("RT @ScottWalker: see HTTP://t.co/ZSfF and www.Example.com\n now") == \
        "RT @user: see http and http now"
    assert normalize_tweet("mail me at a@b.com") == "mail me at a@b.com"  # not a mention
    assert normalize_tweet("@A @b_2") == "@user @user"
    assert NORMALIZATION_VERSION == "tweet-v1"
    identity, version = normalizer(False)
    assert identity(" @x ") == " @x " and version == "none"


def _csv(path, rows, header=("id", "text", "label")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_unknown_column_lists_the_columns(tmp_path):
    path = _csv(tmp_path / "a.csv", [(1, "hi", "Positive")])
    with pytest.raises(DataError, match=r"no text column 'tweet'; columns found: id, text, label"):
        load_texts(path, "tweet")


def test_empty_text_and_missing_label_name_the_rows(tmp_path):
    path = _csv(tmp_path / "a.csv", [(1, "ok", "Positive"), (2, "", "Negative"), (3, "  ", "Neutral")])
    with pytest.raises(DataError, match=r"2 empty or non-text cell\(s\) at data row\(s\) 2, 3"):
        load_texts(path)
    path = _csv(tmp_path / "b.csv", [(1, "ok", "Positive"), (2, "fine", "")])
    with pytest.raises(DataError, match=r"missing a value at data row\(s\) 2"):
        load_texts(path, label_col="label")


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown file type"):
        read_table(tmp_path / "x.xlsx")


def test_jsonl_tsv_and_parquet_read_the_same(tmp_path):
    rows = [{"text": "good day", "label": "Positive"}, {"text": "bad, day", "label": "Negative"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "a.tsv").write_text("text\tlabel\ngood day\tPositive\nbad, day\tNegative\n")
    table = read_table(tmp_path / "a.tsv")
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.tsv", "a.parquet"):
        loaded = load_texts(tmp_path / name, label_col="label")
        assert loaded.texts == ["good day", "bad, day"] and loaded.labels == ["Positive", "Negative"]


def test_label_map_sorted_and_unseen_labels_named(tmp_path):
    labels = LabelMap.from_labels(["Positive", "Negative", "Neutral", "Negative"])
    assert labels.names == ("Negative", "Neutral", "Positive")
    assert labels.encode(["Positive", "Negative"]) == [2, 0]
    with pytest.raises(DataError, match=r"'Mixed' at data row\(s\) 2"):
        labels.encode(["Positive", "Mixed"], "eval.csv")
    labels.save(tmp_path / "labels.json")
    assert LabelMap.load(tmp_path / "labels.json") == labels


def test_split_is_deterministic_and_keeps_columns(tmp_path):
    rows = [(i, f"tweet number {i % 40} @u{i}", ["Negative", "Neutral", "Positive"][i % 3]) for i in range(200)]
    path = _csv(tmp_path / "all.csv", rows)
    first = split_file(path, tmp_path / "s1", SplitConfig(eval_fraction=0.2, seed=7))
    second = split_file(path, tmp_path / "s2", SplitConfig(eval_fraction=0.2, seed=7))
    assert (first.train_rows, first.eval_rows) == (160, 40)
    assert first.train_path.read_bytes() == second.train_path.read_bytes()
    train, evals = pacsv.read_csv(first.train_path), pacsv.read_csv(first.eval_path)
    assert train.column_names == ["id", "text", "label"]
    assert sorted(train.column("id").to_pylist() + evals.column("id").to_pylist()) == list(range(200))
    # mentions differ per row, so only normalized texts repeat: the plain split leaks them
    assert first.eval_in_train > 0 and first.eval_exact_in_train == 0
    grouped = split_file(path, tmp_path / "g", SplitConfig(eval_fraction=0.2, seed=7, group_duplicates=True))
    assert grouped.eval_in_train == 0
    train_texts = {normalize_tweet(t) for t in pacsv.read_csv(grouped.train_path).column("text").to_pylist()}
    eval_texts = {normalize_tweet(t) for t in pacsv.read_csv(grouped.eval_path).column("text").to_pylist()}
    assert not train_texts & eval_texts
    assert grouped.train_rows + grouped.eval_rows == 200


@pytest.mark.data
def test_gop_split_gives_the_cards_sizes(gop_csv, tmp_path):
    result = split_file(gop_csv, tmp_path, SplitConfig(eval_fraction=0.2, seed=42))
    assert (result.train_rows, result.eval_rows) == (11096, 2775)
    assert result.eval_exact_in_train == 738
    original = read_table(gop_csv)
    train = read_table(result.train_path)
    assert train.column_names == original.column_names
    # every original cell survives the round trip, embedded newlines included
    by_id = {row["id"]: row for row in original.to_pylist()}
    for row in train.slice(0, 500).to_pylist():
        assert row == by_id[row["id"]]
