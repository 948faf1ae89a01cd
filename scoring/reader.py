"""Streaming reader for messy tweet files: every record becomes a good row or a reject.

``score`` labels millions of rows with bounded memory and resumes from its last finished chunk, so
this module reads CSV, TSV, JSONL/NDJSON and Parquet files (each optionally ``.gz``) in fixed-size
chunks and never stops on a bad row.

- :func:`expand_inputs` turns files, folders and glob patterns into a sorted list of files.
- :func:`check_inputs` opens every file before any row is read: readable, a header, the text
  column present. Anything that should stop the run before work starts is a :class:`DataError`.
- :func:`iter_chunks` yields :class:`Chunk` objects. Chunk ``k`` of a file always holds the same
  ``chunk_rows`` records (the last chunk of a file may hold fewer); a chunk never spans two files
  and ``index`` counts chunks across all files from 0, so a resumed run skips chunks by index.

Records. Every record read is either a good row or a :class:`Reject`, so a chunk's ``rows_read``
is exactly ``len(rows) + len(rejects)``. Blank lines (nothing but whitespace and the line ending)
are not records in any text format: they are skipped, are not counted in ``rows_read``, and still
count for line numbers. A file with a header and no records yields no chunk. Reject reasons, the
first that applies wins:

``line longer than N characters``
    one physical line over ``FIELD_LIMIT`` characters (bytes for JSONL); the rest of that line is
    skipped without being held in memory, so a file with no newlines cannot exhaust memory.
``unterminated quote`` (CSV/TSV)
    a field opens with ``"`` and no closing quote follows before the end of the file. The csv
    parser reads on to the end of the file looking for it, so everything from that record's first
    line to the end of the file becomes ONE reject (``line`` = where the record starts, ``raw`` =
    its first characters); rows after the stray quote are not scored, and the reject points at the
    line to fix. If the quoted field grows past ``FIELD_LIMIT`` first, the record is rejected as
    ``field longer than N characters`` instead and reading restarts on the next physical line
    (the lines that follow are then read as ordinary records, good or rejected).
``NUL byte``
    the record contains ``\\x00`` (for JSONL/Parquet: any string in the record).
``invalid UTF-8``
    the record's bytes are not valid UTF-8 (JSONL: also ``\\ud800``-style lone surrogate escapes).
``invalid JSON``
    a JSONL line that does not parse, or parses to something other than an object.
``ragged row: expected N columns, found M`` / ``ragged row: keys differ from the first row``
    CSV/TSV rows whose field count differs from the header; JSONL objects whose key set differs
    from the first valid object's (columns are that object's keys; extra or missing keys would
    otherwise be dropped or invented silently).
``empty text``
    the text cell is empty, only whitespace, or null.
``text is not a string``
    a JSONL/Parquet text value that is a number, list, bytes, ...
``unreadable: ...``
    the file could not be read to its end (truncated ``.gz``, I/O error); one reject at the line
    after the last one read, and reading moves on to the next file.

Good rows keep every input cell unchanged (CSV/TSV cells are strings; JSONL and Parquet cells are
Python objects); embedded newlines and doubled quotes inside quoted CSV fields are good and the
text keeps its newline. A reject's ``raw`` is the record's text cut to ``RAW_LIMIT`` characters,
line ending removed, invalid bytes written as ``\\xNN`` and NUL as ``\\x00``, so it can be written
to a UTF-8 CSV. Line numbers are 1-based physical lines: CSV/TSV lines end at ``\\n``, ``\\r\\n``
or ``\\r`` (CRLF, LF and mixed endings all work); JSONL lines end at ``\\n``; Parquet uses the
1-based row number. A UTF-8 BOM at the start of a file is dropped.

Why Python's ``csv`` module and not pyarrow's CSV reader: pyarrow parses a whole block at a time
and either fails the block or skips bad rows without saying which physical line they were on. Here
the text is decoded with ``errors="surrogateescape"`` so invalid bytes survive as lone surrogates
and can be found per record; the parser pulls one physical line at a time, so tracking
``reader.line_num`` gives each record's exact first line, and each record gets its own verdict.
This reader is the authority on every record; ``score`` reads clean CSV/TSV and Parquet blocks
through Arrow instead (:func:`scoring.blocks.iter_chunks`), where the chunks come out the same,
and hands every block with anything to reject or count to this reader.

``csv.field_size_limit`` is set process-wide to ``FIELD_LIMIT`` (64 Mi characters) when a CSV/TSV
file is opened, so 100 KB tweets and longer fields are read instead of raising.
"""
from __future__ import annotations

import codecs
import csv
import glob
import gzip
import io
import json
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Union

import pyarrow.parquet as pq

from embed.data import FORMATS, file_format
from embed.errors import DataError

RAW_LIMIT = 200
_SAMPLE = 1 << 16  # bytes read to estimate a text file's rows
FIELD_LIMIT = 64 * 1024 * 1024
DELIMITERS = {"csv": ",", "tsv": "\t"}

_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of invalid UTF-8
_SURROGATES = re.compile("[\ud800-\udfff]")
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_READ_ERRORS = (OSError, EOFError, zlib.error)
_TYPES = "/".join(sorted(FORMATS))

# (line, row or None, reason or None, raw): one per record; raw is str, bytes or a list of lines.
Raw = Union[str, bytes, list, None]
Record = tuple[int, Union[list, None], Union[str, None], Raw]


@dataclass(frozen=True)
class Reject:
    """A record that was read but cannot be scored, with where it is and why."""

    file: Path
    line: int
    reason: str
    raw: str


@dataclass
class Chunk:
    """Up to ``chunk_rows`` consecutive records of one file: its good rows and its rejects."""

    file: Path
    columns: list[str]
    rows: list[list]
    texts: list[str]
    lines: list[int]
    rejects: list[Reject]
    index: int
    rows_read: int


def name_list(names, limit: int = 20) -> str:
    """Column names for a message: the first ``limit`` quoted, then how many more (a file may have 10^5)."""
    names = list(names)
    shown = ", ".join(map(repr, names[:limit]))
    return shown + (f", ... ({len(names):,} in all)" if len(names) > limit else "")


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their supported files, sorted) and glob patterns, in order, each file once.

    Folders are not searched recursively and skip hidden files (``.name``); glob matches that are
    folders or unsupported types are skipped (``recursive=True``, so ``data/**/*.csv`` works).
    """
    if not inputs:
        raise DataError(f"no inputs given; pass one or more {_TYPES} files, folders or glob patterns")
    found: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.iterdir() if not p.name.startswith(".") and _supported(p))
            if not matches:
                raise DataError(f"{item}: folder holds no {_TYPES} files (optionally .gz); point at the files")
        elif path.is_file():
            file_format(path)
            matches = [path]
        elif glob.has_magic(item):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if _supported(Path(m)))
            if not matches:
                raise DataError(
                    f"{item}: pattern matched no {_TYPES} files; check it (quote it so the shell leaves it alone)"
                )
        else:
            raise DataError(f"{item}: no such file or folder; check the path")
        for match in matches:
            key = match.resolve()
            if key not in seen:
                seen.add(key)
                found.append(match)
    return found


@dataclass(frozen=True)
class InputFile:
    """One input as :func:`inspect_file` found it: what the plan, the progress bar and every reader take.

    ``rows`` is an estimate for the progress bar: Parquet's exact row count, an uncompressed text
    file's size over the mean bytes per line of its first ``_SAMPLE`` bytes, None for ``.gz``.
    """

    path: Path
    format: str  # csv, tsv, jsonl or parquet
    compressed: bool  # .gz
    columns: tuple[str, ...]
    size: int  # bytes on disk
    mtime_ns: int
    rows: int | None = None


def inspect_file(path: Path, text_col: str = "text") -> InputFile:
    """Open one file once: format, header and text column checked (DataError), size and a row estimate."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path")
    fmt = file_format(path)
    columns, rows = _header(path, fmt)
    if text_col not in columns:
        raise DataError(
            f"{path}: no text column {text_col!r}; columns found: {name_list(columns)}. "
            "Pick one with --text-col."
        )
    if columns.count(text_col) > 1:
        raise DataError(f"{path}: the header names column {text_col!r} more than once; rename the others")
    stat = path.stat()
    if rows is None and not _gz(path):
        rows = _estimate_lines(path, stat.st_size) - (fmt in DELIMITERS)
    return InputFile(path, fmt, _gz(path), tuple(columns), stat.st_size, stat.st_mtime_ns, rows)


def resolve_inputs(inputs: list[str], text_col: str = "text") -> list[InputFile]:
    """:func:`expand_inputs`, then :func:`inspect_file` on each file: every input resolved once."""
    return [inspect_file(path, text_col) for path in expand_inputs(inputs)]


def check_inputs(paths: list[Path], text_col: str = "text") -> dict[Path, list[str]]:
    """Open every file before any row is read; return each file's columns or raise DataError."""
    if not paths:
        raise DataError("no input files to read; pass at least one file")
    return {Path(p): list(inspect_file(Path(p), text_col).columns) for p in paths}


def _estimate_lines(path: Path, size: int) -> int:
    """Lines in an uncompressed file: counted when it fits in one sample, else scaled from three samples
    (its start, middle and end), so the estimate takes three small reads whatever the file's size."""
    with open(path, "rb") as handle:
        if size <= _SAMPLE:
            data = handle.read()
            return data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))
        width, newlines = _SAMPLE // 3, 0
        for at in (0, size // 2, size - width):
            handle.seek(at)
            newlines += handle.read(width).count(b"\n")
    return max(1, round(newlines * size / (3 * width)))


def iter_chunks(paths: list, text_col: str = "text", chunk_rows: int = 4096) -> Iterator[Chunk]:
    """Check every file now (DataError), then stream deterministic chunks of ``chunk_rows`` records.

    ``paths`` are paths or :class:`InputFile` records (those are not opened again before reading).
    :func:`scoring.blocks.iter_chunks` gives the same chunks, clean blocks read through Arrow.
    """
    return _chunks(as_files(paths, text_col, chunk_rows), text_col, chunk_rows)


def as_files(paths: list, text_col: str, chunk_rows: int) -> list[InputFile]:
    """``paths`` as InputFile records (paths are inspected now: DataError); checks ``chunk_rows``."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    files = [p if isinstance(p, InputFile) else inspect_file(Path(p), text_col) for p in paths]
    if not files:
        raise DataError("no input files to read; pass at least one file")
    return files


def _chunks(files: list[InputFile], text_col: str, chunk_rows: int) -> Iterator[Chunk]:
    index = 0
    for file in files:
        index = yield from file_chunks(file, text_col, chunk_rows, index)


def file_chunks(file: InputFile, text_col: str, chunk_rows: int, index: int, skip: int = 0,
                chunk: Chunk | None = None) -> Iterator[Chunk]:
    """One file's chunks from chunk number ``index``; returns the next file's first chunk number.

    ``skip`` records are passed over first (read, not yielded: a caller that already has them), and
    ``chunk``, when given, is the partly filled chunk they belong to, which the next records fill up.
    """
    path, columns = file.path, list(file.columns)
    at = columns.index(text_col)
    for record in _records(path, file.format, columns, chunk_rows):
        if skip:
            skip -= 1
            continue
        if chunk is None:
            chunk = Chunk(path, list(columns), [], [], [], [], index, 0)
        add_record(chunk, record, at)
        if chunk.rows_read == chunk_rows:
            yield chunk
            index += 1
            chunk = None
    if chunk is not None:
        yield chunk
        index += 1
    return index


def add_record(chunk: Chunk, record: Record, at: int) -> None:
    """Put one record into ``chunk``: a good row, or a reject with its reason (text column at ``at``)."""
    line, row, reason, raw = record
    columns = chunk.columns
    if reason is None:
        if len(row) != len(columns):
            reason = f"ragged row: expected {len(columns)} columns, found {len(row)}"
        else:
            text = row[at]
            if isinstance(text, str) and text and not text.isspace():
                chunk.rows.append(row)
                chunk.texts.append(text)
                chunk.lines.append(line)
            elif text is None or isinstance(text, str):
                reason = "empty text"
            else:
                reason = "text is not a string"
    if reason is not None:
        if raw is None:  # Parquet: show the row as JSON
            raw = json.dumps(dict(zip(columns, row)), ensure_ascii=False, default=str)
        chunk.rejects.append(Reject(chunk.file, line, reason, _safe(raw)))
    chunk.rows_read += 1


def _supported(path: Path) -> bool:
    try:
        file_format(path)
    except DataError:
        return False
    return path.is_file()


def _gz(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _header(path: Path, fmt: str) -> tuple[list[str], int | None]:
    """Column names (the first CSV/TSV record, the first valid JSONL object's keys, the Parquet schema)
    and, for Parquet, the row count (None for the text formats)."""
    if fmt == "parquet":
        try:
            with _parquet(path) as parquet:
                return list(parquet.schema_arrow.names), parquet.metadata.num_rows
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"{path}: cannot be read as Parquet ({_first_line(exc)}); check the file") from exc
    records = _csv_records(path, DELIMITERS[fmt]) if fmt in DELIMITERS else _jsonl_objects(path)
    try:
        for line, row, reason, _ in records:
            if reason is not None and reason.startswith("unreadable"):
                raise DataError(f"{path}: cannot be read ({reason}); check the file and its compression")
            if fmt != "jsonl":
                if reason is not None:
                    raise DataError(
                        f"{path}: line {line}: the header has a problem ({reason}); "
                        "the first line must hold the column names, as UTF-8 text"
                    )
                return row, None
            if reason is None:
                return list(row), None
    finally:
        records.close()
    if fmt == "jsonl":
        raise DataError(f"{path}: no line holds a JSON object; expected one JSON object per line (JSON Lines)")
    raise DataError(f"{path}: the file is empty; expected a header line with column names")


def _records(path: Path, fmt: str, columns: list[str], chunk_rows: int) -> Iterator[Record]:
    if fmt == "parquet":
        yield from _parquet_records(path, chunk_rows)
    elif fmt == "jsonl":
        keys = set(columns)
        for line, obj, reason, raw in _jsonl_objects(path):
            if reason is None and obj.keys() != keys:
                reason = "ragged row: keys differ from the first row"
            yield line, None if reason else [obj[key] for key in columns], reason, raw
    else:
        records = _csv_records(path, DELIMITERS[fmt])
        next(records, None)  # the header, checked by check_inputs
        yield from records


class _Overlong(Exception):
    """A physical line over ``FIELD_LIMIT`` characters: its record is rejected, reading goes on after it."""


class _Lines:
    """Feeds csv.reader one physical line at a time and notes what the current record's lines held.

    csv.reader asks for lines only until its record is complete, so between two ``next(reader)``
    calls the lines seen here are exactly that record's lines. A line over ``FIELD_LIMIT``
    characters is never handed to csv: its rest is skipped (1 MiB at a time, so memory stays at one
    limit's worth) and ``_Overlong`` is raised through ``next(reader)``; the caller rejects the
    record and starts a fresh csv.reader on the next line, so a quote the long line opened cannot
    swallow the lines after it.
    """

    def __init__(self, handle: IO[str]):
        self.readline = handle.readline
        self.exhausted = False
        self.reset()

    def reset(self) -> None:
        self.head: list[str] = []
        self.head_len = 0
        self.nul = self.bad_bytes = False

    def problem(self) -> str | None:
        if self.nul:
            return "NUL byte"
        if self.bad_bytes:
            return "invalid UTF-8"
        return None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.readline(FIELD_LIMIT)
        if not line:
            self.exhausted = True
            raise StopIteration
        if self.head_len < RAW_LIMIT:
            self.head.append(line[:RAW_LIMIT])
            self.head_len += len(line)
        if len(line) == FIELD_LIMIT and line[-1] not in "\r\n":
            while (rest := self.readline(1 << 20)) and rest[-1] not in "\r\n":
                pass
            raise _Overlong
        if "\x00" in line:  # Python < 3.11 csv raises on NUL; the record is rejected anyway
            self.nul = True
            line = line.replace("\x00", " ")
        if not line.isascii() and _ESCAPED_BYTES.search(line):
            self.bad_bytes = True
        return line


def _csv_records(path: Path | None, delimiter: str, data: bytes | None = None, first_line: int = 1,
                 bom: bool = True) -> Iterator[Record]:
    """Every non-blank record of a CSV/TSV file, the header included, with a reason when it is bad.

    ``data``: read these bytes instead of the file, their first line being line ``first_line`` of it
    (a block of a file that starts at a record; ``bom``: it is the file's start, so a BOM is dropped).
    """
    csv.field_size_limit(FIELD_LIMIT)
    line = first_line
    encoding = "utf-8-sig" if bom else "utf-8"
    try:
        if data is not None:
            opened = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="surrogateescape", newline="")
        else:
            opened = (gzip.open if _gz(path) else open)(path, "rt", encoding=encoding, errors="surrogateescape",
                                                         newline="")
        with opened as handle:
            lines = _Lines(handle)
            reader, before = csv.reader(lines, delimiter=delimiter), first_line - 1  # lines before this reader's
            while True:
                lines.reset()
                line = before + reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except _Overlong:
                    yield line, None, f"line longer than {FIELD_LIMIT} characters", lines.head
                    before += reader.line_num + 1  # the long line itself was never counted by csv
                    reader = csv.reader(lines, delimiter=delimiter)
                    continue
                except csv.Error as exc:
                    reason = lines.problem()
                    if reason is None:
                        reason = (f"field longer than {FIELD_LIMIT} characters" if "field larger" in str(exc)
                                  else f"unreadable record ({exc})")
                    yield line, None, reason, lines.head
                    continue
                reason = lines.problem()
                if reason is None and lines.exhausted:
                    reason = "unterminated quote"
                if fields or reason:
                    yield line, fields, reason, lines.head
    except _READ_ERRORS as exc:
        yield line, None, f"unreadable: {_first_line(exc)}", ""


def _jsonl_objects(path: Path) -> Iterator[Record]:
    """Every non-blank line of a JSONL file: a dict when good, else None and a reason."""
    line = 0
    try:
        opener = gzip.open if _gz(path) else open
        with opener(path, "rb") as handle:
            readline = handle.readline
            while data := readline(FIELD_LIMIT + 1):
                line += 1
                if line == 1 and data.startswith(codecs.BOM_UTF8):
                    data = data[len(codecs.BOM_UTF8):]
                obj, reason = None, None
                if len(data) > FIELD_LIMIT and not data.endswith(b"\n"):
                    reason = f"line longer than {FIELD_LIMIT} characters"
                    data = data[:RAW_LIMIT]  # only the start is shown in the rejects file
                    while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):  # skip the rest, 1 MiB at a time
                        pass
                elif not data.strip():
                    continue
                elif b"\x00" in data:
                    reason = "NUL byte"
                else:
                    obj, reason = _parse_json(data)
                yield line, obj, reason, data
    except _READ_ERRORS as exc:
        yield line + 1, None, f"unreadable: {_first_line(exc)}", ""


def _parse_json(data: bytes) -> tuple[dict | None, str | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid UTF-8"
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return None, "invalid JSON"
    if not isinstance(obj, dict):
        return None, "invalid JSON"
    if _RISKY_ESCAPE.search(text):  # \u0000 or a surrogate escape: look at every string
        stack: list = [obj]
        while stack:
            value = stack.pop()
            if isinstance(value, str):
                if "\x00" in value:
                    return None, "NUL byte"
                if _SURROGATES.search(value):
                    return None, "invalid UTF-8"
            elif isinstance(value, dict):
                stack.extend(value.keys())
                stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
    return obj, None


@contextmanager
def _parquet(path: Path) -> Iterator[pq.ParquetFile]:
    """``ParquetFile``, closed afterwards; ``.parquet.gz`` is read through a seekable gzip stream."""
    if _gz(path):
        with gzip.open(path, "rb") as handle, pq.ParquetFile(handle) as parquet:
            yield parquet
    else:
        with pq.ParquetFile(path) as parquet:
            yield parquet


def _parquet_records(path: Path, chunk_rows: int) -> Iterator[Record]:
    number = 0
    try:
        with _parquet(path) as parquet:
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                yield from batch_records(batch, number)
                number += batch.num_rows
    except Exception as exc:  # pyarrow raises several types for a damaged file
        yield number + 1, None, f"unreadable: {_first_line(exc)}", ""


def batch_records(batch, number: int) -> Iterator[Record]:
    """The records of one Parquet record batch whose first row is row ``number + 1`` of its file."""
    for values in zip(*(column.to_pylist() for column in batch.columns)):
        number += 1
        row = list(values)
        nul = any(isinstance(v, str) and "\x00" in v for v in row)
        yield number, row, "NUL byte" if nul else None, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:RAW_LIMIT]


def _safe(raw: Raw) -> str:
    """The record's first characters, printable into a UTF-8 CSV: bad bytes as \\xNN, NUL as \\x00."""
    if isinstance(raw, bytes):
        text = raw[: RAW_LIMIT * 4].decode("utf-8", "backslashreplace")
    else:
        if isinstance(raw, list):
            raw = "".join(raw)
        raw = raw[:RAW_LIMIT]
        try:
            data = raw.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = raw.encode("utf-8", "backslashreplace")
        text = data.decode("utf-8", "backslashreplace")
    return text.rstrip("\r\n").replace("\x00", "\\x00")[:RAW_LIMIT]
