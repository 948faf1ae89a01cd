"""The Arrow fast path of ``score`` (scoring/blocks.py) against the line-accurate reader: same chunks, same bytes.

The reader (``iter_chunks(fast=False)``) is the authority. Here every input goes through both: the
fuzz corpus of ``tests/fuzz_files.py`` at the chunk level (rows, texts, rejects, counts, chunk
numbers), and messy, gzip, TSV, Parquet and mostly-clean files through ``score_files``, whose
output, rejects and review files must be the same bytes. Each comparison also checks that the fast
path was taken for some of the input, so a fast path that always handed over could not pass.
"""
from __future__ import annotations

import csv
import gzip
import io
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embed.encoder import Embedder
from scoring import blocks
from scoring.blocks import ArrowChunk
from scoring.output import csv_block, csv_bytes, csv_cells, float_cells
from scoring.blocks import iter_chunks
from scoring.score import ScoreConfig, score_files

from . import fuzz_files
from .conftest import sample_heads
from .test_score import messy_csv


def _chunks(path: Path, chunk_rows: int, fast: bool):
    try:
        chunks = list(iter_chunks([path], "text", chunk_rows, fast=fast))
    except Exception as exc:  # a refusal before any row: both paths must refuse alike
        return type(exc).__name__, str(exc), 0
    seen = [(c.index, c.rows_read, [list(r) for r in c.rows], list(c.texts),
             [(r.file, r.line, r.reason, r.raw) for r in c.rejects]) for c in chunks]
    return seen, None, sum(isinstance(c, ArrowChunk) for c in chunks)


@pytest.mark.parametrize("block_bytes", [64, 4 << 20])
def test_fast_chunks_are_the_line_readers_on_the_fuzz_corpus(tmp_path, monkeypatch, block_bytes):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", block_bytes)  # 64: many cuts, mixed chunks and hand-overs
    fast_kinds: Counter = Counter()
    for i in range(280):
        kind, path = fuzz_files.generate(3, i, tmp_path)
        for chunk_rows in (2, 4096):
            slow, error, _ = _chunks(path, chunk_rows, fast=False)
            fast, fast_error, arrow = _chunks(path, chunk_rows, fast=True)
            assert (fast, fast_error) == (slow, error), f"file {i} ({kind}), chunk_rows={chunk_rows}: {path}"
            fast_kinds[kind] += arrow > 0
    # the comparison means something only where the fast path read blocks itself
    assert {"line_endings", "quoted_newlines", "quotes", "bom", "gzip", "parquet"} <= {k for k, n in fast_kinds.items() if n}


def test_csv_cells_write_what_pythons_csv_writer_writes():
    rng = random.Random(0)
    alphabet = ["a", "b", ",", '"', "\n", " ", "é", "🔥", "\t", '""', "'", ";", "\\"]
    for _ in range(2000):
        width, n = rng.randint(2, 6), rng.randint(1, 6)
        rows = [["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(width)]
                for _ in range(n)]
        assert csv_block([csv_cells(pa.array([r[j] for r in rows])) for j in range(width)]) == csv_bytes(rows)


def test_float_cells_are_pythons_shortest_repr():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(600_000), rng.random(200_000) ** 12, rng.dirichlet([0.2] * 3, 50_000).ravel(),
                             rng.random(10_000) * 1e7, -rng.random(1000),
                             [0.0, 1.0, 0.5, 1e-4, 9.999e-5, 1e-6, 2.5e-7, 1e15 + 0.5, np.nan, -0.0, 5e-324]])
    expected = [str(v) for v in values]
    assert float_cells(values).to_pylist() == expected
    memo: dict = {}
    tail = values[-11:]  # 0.0, 1.0, -0.0, nan, ...
    repeated = np.concatenate([values[:5000], tail, -tail, -values[:5000], tail])  # -0.0 beside 0.0, nan twice
    assert float_cells(repeated, memo).to_pylist() == [str(v) for v in repeated]
    assert float_cells(repeated, memo).to_pylist() == [str(v) for v in repeated]  # now from the memo


@pytest.fixture(scope="module")
def shared(tmp_path_factory, minilm_path):
    return sample_heads(tmp_path_factory.mktemp("blocks"))


def _inputs(folder: Path, rows: list[dict]) -> dict[str, Path]:
    """Files the fast path must read as the reader does: messy, gzip, TSV, Parquet, clean with a late bad row."""
    folder.mkdir()
    texts = [row["text"] for row in rows]
    messy = folder / "messy.csv"
    messy_csv(messy, rows)
    gz = folder / "messy.csv.gz"
    gz.write_bytes(gzip.compress(messy.read_bytes()))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["id", "text", "label"])
    for i in range(3000):  # clean for 2,900 rows (CRLF, quoted commas and newlines), then an empty text
        text = texts[i % len(texts)] + ("\nsecond line" if i % 7 == 0 else "") + (", a comma" if i % 11 == 0 else "")
        writer.writerow([i, "" if i == 2900 else text, rows[i % len(rows)]["label"]])
    late = folder / "late_bad.csv"
    late.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    tsv = folder / "clean.tsv"
    tsv.write_text("id\ttext\n" + "".join(f"{i}\t{t.replace(chr(9), ' ')}\n" for i, t in enumerate(texts * 3)),
                   encoding="utf-8")
    parquet = folder / "typed.parquet"
    values = [texts[i % len(texts)] for i in range(2500)]
    values[2000] = None  # a null text: the reader rejects it, from that batch on the file is read by row
    pq.write_table(pa.table({"id": list(range(2500)), "text": values, "score": [i / 7 for i in range(2500)],
                             "tags": [[i, i + 1] for i in range(2500)]}), parquet, row_group_size=700)
    return {"messy": messy, "gzip": gz, "late": late, "tsv": tsv, "parquet": parquet}


@pytest.mark.parametrize("output", ["out.csv", "out.csv.gz", "out.parquet"])
def test_score_writes_the_same_bytes_with_and_without_the_fast_path(shared, tmp_path, monkeypatch, output):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 16 << 10)  # files of a few blocks: clean blocks beside others
    monkeypatch.setattr(blocks, "PARQUET_ROWS", 300)
    inputs = _inputs(tmp_path / "in", shared["rows"])
    arrow = {name: sum(isinstance(c, ArrowChunk) for c in iter_chunks([path], "text", 512, fast=True))
             for name, path in inputs.items()}
    assert arrow["late"] >= 5 and arrow["tsv"] >= 1 and arrow["parquet"] >= 3, arrow
    for name, path in inputs.items():
        written = {}
        for fast in (False, True):
            out = tmp_path / f"{name}-{fast}" / output
            config = ScoreConfig(chunk_rows=512, fast=fast, review_below=0.9, drift_check=False)
            summary = score_files([path], out, Embedder("minilm", cache_dir=shared["cache"]), shared["head"], config)
            assert summary.rows_read == summary.rows_scored + summary.rows_rejected
            written[fast] = [p.read_bytes() for p in (out, summary.rejects, summary.review)]
        assert written[True] == written[False], f"{name} -> {output}: the fast path wrote other bytes"


def test_line_reader_flag_writes_the_same_files(shared, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    source = tmp_path / "messy.csv"
    messy_csv(source, shared["rows"])
    outputs = []
    for flags in ([], ["--line-reader"]):
        out = tmp_path / ("line" if flags else "fast") / "out.csv"
        result = CliRunner().invoke(cli, ["score", str(source), "-o", str(out), "--model", "minilm", "--head",
                                          str(shared["head"]), "--cache-dir", str(shared["cache"]), *flags])
        assert result.exit_code == 0, result.output
        outputs.append((out.read_bytes(), out.with_name("out.rejects.csv").read_bytes()))
    assert outputs[0] == outputs[1] and outputs[0][1].count(b"\n") > 5


def test_truncation_verdicts_match_tokenizing_every_normalized_text(shared):
    """The raw-length bound (scoring/predict.py) only skips texts that cannot be cut, mentions included."""
    from embed.normalize import normalize_tweet
    from scoring.predict import Truncation

    rng = random.Random(1)
    texts = ["short tweet", "@a " * 130, "@ab " * 60, "word " * 300, "x" * 600, "🔥 " * 200, "a  b\n" * 80,
             "@verylongusername123 " * 50, "http://t.co/abcdefghij " * 40]  # cut raw, not once normalized
    texts += [" ".join(rng.choice(["@u", "word", "http://t.co/x", "🔥", "naïve"]) for _ in range(rng.randint(1, 200)))
              for _ in range(200)]
    embedder = shared["embedder"]
    encoder = embedder.load()
    tokenizer = encoder.ensure_tokenizer()
    ids = tokenizer([normalize_tweet(t) for t in texts], add_special_tokens=True)["input_ids"]
    expected = [len(row) > encoder.max_length for row in ids]
    assert Truncation(embedder)(texts).tolist() == expected
    assert 0 < sum(expected) < len(texts)


def test_each_input_is_resolved_once_with_a_row_estimate_from_bytes(tmp_path, monkeypatch):
    from scoring import reader
    from scoring.reader import InputFile, resolve_inputs

    small = tmp_path / "small.csv"
    small.write_text("id,text\n" + "".join(f"{i},tweet {i}\n" for i in range(100)))
    big = tmp_path / "big.tsv"
    big.write_text("id\ttext\n" + "".join(f"{i}\tsome tweet text number {i} with words\n" for i in range(40_000)))
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), tmp_path / "t.parquet")
    gz = tmp_path / "z.csv.gz"
    gz.write_bytes(gzip.compress(small.read_bytes()))
    files = resolve_inputs([str(tmp_path)], "text")
    found = {f.path.name: f for f in files}
    assert all(isinstance(f, InputFile) for f in files) and found["big.tsv"].format == "tsv"
    assert found["small.csv"].rows == 100 and found["t.parquet"].rows == 3 and found["z.csv.gz"].rows is None
    assert abs(found["big.tsv"].rows - 40_000) < 2_000  # scaled from three samples (rows grow longer here)
    assert found["big.tsv"].columns == ("id", "text") and found["big.tsv"].size == big.stat().st_size

    def no_second_look(*args):
        raise AssertionError("a resolved input's header was read again")

    monkeypatch.setattr(reader, "_header", no_second_look)
    for fast in (False, True):
        assert sum(c.rows_read for c in iter_chunks(files, "text", 1000, fast=fast)) == 100 + 40_000 + 3 + 100
