"""scoring/reader.py: messy files become good rows and rejects, exactly, in deterministic chunks."""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embed.errors import DataError
from scoring import reader
from scoring.reader import Chunk, check_inputs, expand_inputs, iter_chunks

LONG = "long " * 20_000  # 100 KB text
MESSY = b"".join([
    b"\xef\xbb\xbfid,text,lang\r\n",          # 1  header after a BOM, CRLF
    b"1,hello world,en\r\n",                   # 2  good
    b"2,,en\n",                                # 3  empty text (missing cell)
    b"3,   ,en\n",                             # 4  empty text (blank)
    b"4,caf\xe9 in latin-1,fr\n",              # 5  invalid UTF-8
    b"5,nul\x00here,en\n",                     # 6  NUL byte
    b"6,too,many,en\n",                        # 7  ragged: 4 columns
    b"7,too few\n",                            # 8  ragged: 2 columns
    b'8,"two\r\nlines, ""quoted""",en\r\n',    # 9-10 good: embedded CRLF, comma, doubled quotes
    b"\n",                                     # 11 blank line: not a record
    b"9," + LONG.encode() + b",en\n",          # 12 good, 100 KB
    "10,ünïcödé 😀,es\r".encode(),             # 13 good, old-Mac CR line ending
    b"11,last line without newline,en",        # 14 good
])
GOOD = [
    (2, ["1", "hello world", "en"]),
    (9, ["8", 'two\r\nlines, "quoted"', "en"]),
    (12, ["9", LONG, "en"]),
    (13, ["10", "ünïcödé 😀", "es"]),
    (14, ["11", "last line without newline", "en"]),
]
REJECTS = [
    (3, "empty text", "2,,en"),
    (4, "empty text", "3,   ,en"),
    (5, "invalid UTF-8", "4,caf\\xe9 in latin-1,fr"),
    (6, "NUL byte", "5,nul\\x00here,en"),
    (7, "ragged row: expected 3 columns, found 4", "6,too,many,en"),
    (8, "ragged row: expected 3 columns, found 2", "7,too few"),
]


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read(paths, **kwargs) -> list[Chunk]:
    return list(iter_chunks([Path(p) for p in paths], **kwargs))


def good(chunks):
    return [(line, row) for c in chunks for line, row in zip(c.lines, c.rows)]


def rejects(chunks):
    return [(r.line, r.reason) for c in chunks for r in c.rejects]


def check_invariants(chunks, chunk_rows):
    """What every chunk of any input must satisfy."""
    for i, chunk in enumerate(chunks):
        assert chunk.rows_read == len(chunk.rows) + len(chunk.rejects) >= 1
        assert chunk.rows_read <= chunk_rows
        assert len(chunk.rows) == len(chunk.texts) == len(chunk.lines)
        last_of_file = i + 1 == len(chunks) or chunks[i + 1].file != chunk.file
        assert last_of_file or chunk.rows_read == chunk_rows
        assert chunk.index == i
        for row, text in zip(chunk.rows, chunk.texts):
            assert len(row) == len(chunk.columns) and isinstance(text, str) and text.strip()
            assert "\x00" not in "".join(map(str, row))
            "".join(map(str, row)).encode("utf-8")  # no lone surrogates left in good rows
        for reject in chunk.rejects:
            assert len(reject.raw) <= reader.RAW_LIMIT and "\x00" not in reject.raw
            reject.raw.encode("utf-8")
        lines = sorted(chunk.lines + [r.line for r in chunk.rejects])
        assert len(set(lines)) == len(lines)


@pytest.fixture
def messy(tmp_path) -> Path:
    return write(tmp_path / "messy.csv", MESSY)


def test_messy_csv_exact_good_rows_and_rejects(messy):
    chunks = read([messy])
    assert good(chunks) == GOOD
    assert [(r.line, r.reason, r.raw) for c in chunks for r in c.rejects] == REJECTS
    assert [c.columns for c in chunks] == [["id", "text", "lang"]]
    assert chunks[0].texts == [row[1] for _, row in GOOD]
    assert chunks[0].rows_read == len(GOOD) + len(REJECTS) == 11
    assert all(r.file == messy for r in chunks[0].rejects)
    check_invariants(chunks, 4096)


def test_chunks_are_deterministic_and_respect_chunk_rows(messy, tmp_path):
    other = write(tmp_path / "other.csv", b"id,text,lang\n1,a,en\n2,b,en\n")
    first = read([messy, other], chunk_rows=3)
    assert first == read([messy, other], chunk_rows=3)
    assert [(c.file.name, c.index, c.rows_read) for c in first] == [
        ("messy.csv", 0, 3), ("messy.csv", 1, 3), ("messy.csv", 2, 3), ("messy.csv", 3, 2), ("other.csv", 4, 2)
    ]
    check_invariants(first, 3)
    assert good(first[:4]) == GOOD and rejects(first[:4]) == [(line, why) for line, why, _ in REJECTS]


def test_unterminated_quote_rejects_the_rest_of_the_file(tmp_path):
    path = write(tmp_path / "u.csv", b'id,text\n1,fine\n2,"never closed\n3,swallowed\n4,also swallowed\n')
    [chunk] = read([path])
    assert good([chunk]) == [(2, ["1", "fine"])]
    [reject] = chunk.rejects
    assert (reject.line, reject.reason) == (3, "unterminated quote")
    assert reject.raw == '2,"never closed\n3,swallowed\n4,also swallowed'
    assert chunk.rows_read == 2


def test_oversized_field_and_line_are_rejected_and_reading_goes_on(tmp_path, monkeypatch):
    limit = csv.field_size_limit()
    monkeypatch.setattr(reader, "FIELD_LIMIT", 1000)
    try:
        path = write(tmp_path / "big.csv", b'id,text\n1,"opens' + b"\nyyyyyyyyy" * 200 + b'\n2,after\n')
        chunks = read([path])
        assert rejects(chunks)[0] == (2, "field longer than 1000 characters")
        assert good(chunks)[-1] == (203, ["2", "after"])
        check_invariants(chunks, 4096)
        path = write(tmp_path / "wide.csv", b"id,text\n1," + b"z" * 3000 + b"\n2,ok\n")
        chunks = read([path])
        assert rejects(chunks) == [(2, "line longer than 1000 characters")]
        assert good(chunks) == [(3, ["2", "ok"])]
        # an overlong line that opens a quote and closes it past the limit: the next line is read again
        path = write(tmp_path / "quoted.csv", b'id,text\n1,"' + b"q" * 3000 + b'"\n2,after\n3,"x\ny"\n')
        chunks = read([path])
        assert rejects(chunks) == [(2, "line longer than 1000 characters")]
        assert good(chunks) == [(3, ["2", "after"]), (4, ["3", "x\ny"])]
        assert len(chunks[0].rejects[0].raw) <= reader.RAW_LIMIT
        # inside a quoted field that started on an earlier line: the record is the reject
        path = write(tmp_path / "inside.csv", b'id,text\n1,"starts\n' + b"w" * 3000 + b'"\n2,next\n')
        chunks = read([path])
        assert rejects(chunks) == [(2, "line longer than 1000 characters")]
        assert good(chunks) == [(4, ["2", "next"])]
        check_invariants(chunks, 4096)
    finally:
        csv.field_size_limit(limit)


def test_gzip_reads_like_plain(messy, tmp_path):
    path = write(tmp_path / "messy.csv.gz", gzip.compress(MESSY))
    chunks = read([path], chunk_rows=5)
    assert good(chunks) == GOOD and rejects(chunks) == rejects(read([messy]))


def test_truncated_gzip_ends_with_one_unreadable_reject(tmp_path):
    rows = "".join(f"{i},tweet number {i} {i * 7919 % 1000},en\n" for i in range(5000))
    data = gzip.compress(("id,text,lang\n" + rows).encode())
    chunks = read([write(tmp_path / "cut.csv.gz", data[: len(data) // 2])])
    check_invariants(chunks, 4096)
    last = chunks[-1].rejects[-1]
    assert last.reason.startswith("unreadable: ") and 0 < len(good(chunks)) < 5000


def test_tsv(tmp_path):
    path = write(tmp_path / "t.tsv", b'id\ttext\tlang\n1\thello, world\ten\n2\t\ten\n3\t"tab\there"\ten\n')
    chunks = read([path])
    assert good(chunks) == [(2, ["1", "hello, world", "en"]), (4, ["3", "tab\there", "en"])]
    assert rejects(chunks) == [(3, "empty text")]


def test_jsonl_good_and_bad_lines(tmp_path):
    lines = [
        b"not json at all",                                      # 1 before the first object
        b'{"id": 1, "text": "good one", "lang": "en"}',          # 2 good: defines the columns
        b"",                                                     # 3 blank: not a record
        b'{"id": 2, "text": "broken"',                           # 4
        b"[1, 2]",                                               # 5
        b'{"id": 3, "text": null, "lang": "en"}',                # 6
        b'{"id": 4, "text": 42, "lang": "en"}',                  # 7
        b'{"id": 5, "text": "extra", "lang": "en", "x": 1}',     # 8
        b'{"id": 6, "text": "caf\xe9", "lang": "fr"}',           # 9
        b'{"id": 7, "text": "nul \\u0000", "lang": "en"}',       # 10
        b'{"lang": "de", "id": 8, "text": "order differs"}\r',   # 11 good, CRLF
        b'{"id": 9, "text": "emoji \\ud83d\\ude00", "lang": "en"}',  # 12 good
        b'{"id": 10, "text": "lone \\ud83d", "lang": "en"}',     # 13
    ]
    path = write(tmp_path / "t.jsonl", b"\n".join(lines) + b"\n")
    chunks = read([path], chunk_rows=4)
    check_invariants(chunks, 4)
    assert chunks[0].columns == ["id", "text", "lang"]
    assert good(chunks) == [(2, [1, "good one", "en"]), (11, [8, "order differs", "de"]), (12, [9, "emoji 😀", "en"])]
    assert rejects(chunks) == [
        (1, "invalid JSON"), (4, "invalid JSON"), (5, "invalid JSON"), (6, "empty text"),
        (7, "text is not a string"), (8, "ragged row: keys differ from the first row"),
        (9, "invalid UTF-8"), (10, "NUL byte"), (13, "invalid UTF-8"),
    ]
    assert chunks[0].rejects[0].raw == "not json at all"


def test_parquet_null_and_blank_text(tmp_path):
    table = pa.table({"id": [1, 2, 3, 4, 5], "text": ["good", None, "  ", "also good", "nul\x00"], "p": [0.5] * 5})
    pq.write_table(table, tmp_path / "t.parquet")
    write(tmp_path / "t.parquet.gz", gzip.compress((tmp_path / "t.parquet").read_bytes()))
    for name in ("t.parquet", "t.parquet.gz"):
        chunks = read([tmp_path / name], chunk_rows=2)
        check_invariants(chunks, 2)
        assert good(chunks) == [(1, [1, "good", 0.5]), (4, [4, "also good", 0.5])]
        assert rejects(chunks) == [(2, "empty text"), (3, "empty text"), (5, "NUL byte")]
        assert chunks[0].rejects[0].raw == '{"id": 2, "text": null, "p": 0.5}'
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    assert rejects(read([tmp_path / "ints.parquet"])) == [(1, "text is not a string"), (2, "text is not a string")]


def test_folder_and_glob_expansion(tmp_path):
    for name in ("b.csv", "a.jsonl", "c.tsv.gz", "notes.txt", ".hidden.csv", "sub/d.csv"):
        write(tmp_path / "in" / name, b"")
    folder = tmp_path / "in"
    assert [p.name for p in expand_inputs([str(folder)])] == ["a.jsonl", "b.csv", "c.tsv.gz"]
    assert [p.name for p in expand_inputs([str(folder / "*.csv"), str(folder / "**" / "*.csv")])] == ["b.csv", "d.csv"]
    assert expand_inputs([str(folder / "b.csv"), str(folder)])[0].name == "b.csv"  # each file once, first place
    with pytest.raises(DataError, match=r"\*\.parquet: pattern matched no"):
        expand_inputs([str(folder / "*.parquet")])
    with pytest.raises(DataError, match="notes.txt: unknown file type"):
        expand_inputs([str(folder / "notes.txt")])
    with pytest.raises(DataError, match="folder holds no"):
        expand_inputs([str(write(tmp_path / "empty" / "x.txt", b"").parent)])


def test_missing_file_and_missing_text_column(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file or folder"):
        expand_inputs([str(tmp_path / "nope.csv")])
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        check_inputs([tmp_path / "nope.csv"])
    path = write(tmp_path / "t.csv", b"id,body\n1,hello\n")
    with pytest.raises(DataError, match=r"no text column 'text'; columns found: 'id', 'body'\. Pick one with --text-col"):
        iter_chunks([path])
    assert check_inputs([path], text_col="body") == {path: ["id", "body"]}


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.csv", b"", "the file is empty"),
        ("blank.csv", b"\n\r\n", "the file is empty"),
        ("latin.csv", b"t\xe9xt\n1\n", "line 1: the header has a problem \\(invalid UTF-8\\)"),
        ("fake.csv.gz", b"id,text\n", "cannot be read"),
        ("none.jsonl", b"[1]\n\n", "no line holds a JSON object"),
        ("bad.parquet", b"PAR1 not really", "cannot be read as Parquet"),
    ],
)
def test_unusable_files_stop_before_any_work(tmp_path, name, data, message):
    with pytest.raises(DataError, match=message):
        check_inputs([write(tmp_path / name, data)])


def test_header_only_file_yields_no_chunks(tmp_path):
    assert read([write(tmp_path / "h.csv", b"id,text\r\n\r\n")]) == []


# Property tests: random records never crash the reader and are all accounted for.

CHARS = st.one_of(
    st.characters(codec="utf-8"),
    st.sampled_from(list('",\n\r\x00 \t') + ["\r\n", "é", "😀"]),
    st.sampled_from(["\udcff", "\udcc3", "\udca9", "\udc80"]),  # written as raw (invalid) bytes
)
CELLS = st.lists(st.lists(st.lists(CHARS, max_size=8).map("".join), max_size=4), max_size=10)
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_ESCAPED = re.compile("[\udc80-\udcff]")


def read_bytes(data: bytes, chunk_rows: int) -> list[Chunk]:
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "p.csv", data)
        return list(iter_chunks([path], chunk_rows=chunk_rows))


@SETTINGS
@given(rows=CELLS, crlf=st.booleans(), chunk_rows=st.integers(1, 4))
def test_property_written_csv_round_trips(rows, crlf, chunk_rows):
    # csv.writer only quotes \r when it is in the line terminator, so LF files quote every field.
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n",
                        quoting=csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL)
    writer.writerow(["id", "text", "x"])
    expected_good, expected_rejects = [], []
    for row in rows:
        line = len(re.findall(r"\r\n|\r|\n", buffer.getvalue())) + 1
        writer.writerow(row)
        if not row:
            continue  # a blank line, not a record
        cells = [c.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape") for c in row]
        if any("\x00" in c for c in cells):
            expected_rejects.append((line, "NUL byte"))
        elif any(_ESCAPED.search(c) for c in cells):
            expected_rejects.append((line, "invalid UTF-8"))
        elif len(cells) != 3:
            expected_rejects.append((line, f"ragged row: expected 3 columns, found {len(cells)}"))
        elif not cells[1].strip():
            expected_rejects.append((line, "empty text"))
        else:
            expected_good.append((line, cells))
    chunks = read_bytes(buffer.getvalue().encode("utf-8", "surrogateescape"), chunk_rows)
    check_invariants(chunks, chunk_rows)
    assert good(chunks) == expected_good
    assert rejects(chunks) == expected_rejects


@SETTINGS
@given(
    pieces=st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(
        [b'"', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xef\xbb\xbf", "é".encode(), b"text"]
    )), max_size=30),
    header=st.booleans(),
    chunk_rows=st.integers(1, 4),
)
def test_property_random_bytes_never_crash(pieces, header, chunk_rows):
    data = (b"id,text,x\n" if header else b"") + b"".join(pieces)
    try:
        chunks = read_bytes(data, chunk_rows)
    except DataError:
        assert not header  # only a broken or missing header may stop the run
        return
    check_invariants(chunks, chunk_rows)
    physical_lines = len(re.findall(rb"\r\n|\r|\n", data)) + 1
    assert sum(c.rows_read for c in chunks) <= physical_lines


@SETTINGS
@given(lines=st.lists(st.one_of(
    st.binary(max_size=20),
    st.fixed_dictionaries({"text": st.one_of(st.none(), st.integers(), st.lists(CHARS, max_size=6).map("".join))}).map(
        lambda d: json.dumps(d).encode()),
), max_size=12), chunk_rows=st.integers(1, 4))
def test_property_random_jsonl_never_crashes(lines, chunk_rows):
    data = b'{"text": "first"}\n' + b"\n".join(lines)
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder) / "p.jsonl", data)
        chunks = list(iter_chunks([path], chunk_rows=chunk_rows))
    check_invariants(chunks, chunk_rows)
    assert sum(c.rows_read for c in chunks) == sum(1 for line in data.split(b"\n") if line.strip())
