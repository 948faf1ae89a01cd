"""Clean data at Arrow speed: CSV/TSV and Parquet read in Arrow blocks, the line-accurate reader for the rest.

:func:`fast_chunks` yields the same chunks as :func:`scoring.reader.iter_chunks` (chunk ``k`` of a
file holds the same records, with the same cells and the same rejects, and ``index`` counts across
files), but a chunk of clean rows is an :class:`ArrowChunk`: its cells stay in a ``pyarrow.Table``
that the writer formats column by column (:func:`scoring.output.csv_block`) instead of row by row.

The line-accurate reader stays the authority. A CSV/TSV file is cut into blocks of about
``BLOCK_BYTES``, each ending after a line end outside quotes (by quote parity). A block is read by
pyarrow when it is clean:

- pyarrow parsed it with every cell a string (it raises on invalid UTF-8 and on a row with another
  number of fields than the header: ragged rows, and whitespace-only lines, which Python's csv
  reads as a one-field row);
- no cell holds NUL or ``\r`` (the latter so that the output's quoting rule for it stays the
  row-by-row writer's), and no text cell is empty or only separators, control and format
  characters (a superset of what ``str.isspace`` calls whitespace, so no empty-text reject is missed);
- the block does not end inside a quoted field: pyarrow, unlike the reader, takes an unterminated
  quote to the end of its input silently, so a sentinel row is appended and must come back as a row.

Any other block goes through the reader on its own bytes, from the block's first line number, so
its rejects carry the reader's reasons, lines and raw text. If the reader finds such a block ending
inside a quoted field (a stray quote made the parity cut wrong), the rest of the file goes through
the reader from that block on. A file whose header names a column twice, or 16 MiB with no line end
outside quotes, is read by the reader too. Parquet: a batch of ``PARQUET_ROWS`` rows is clean when the
text column is a string column with no null or blank text and no string cell holds NUL; other
batches become the reader's records (row numbers kept). JSONL is always read line by line
(``json.loads`` decides what a cell is; pyarrow's JSON reader infers types of its own).

Grammar. pyarrow's CSV parser and Python's ``csv`` agree on every case the reader's tests and the
fuzz corpus hold (a quote inside an unquoted field is kept, text after a closing quote is appended,
doubled quotes, newlines and CRLF inside quotes, blank lines skipped, a BOM dropped);
``tests/test_blocks.py`` compares the two paths chunk by chunk on the fuzz corpus (with 64-byte
blocks as well, so cuts, mixed chunks and hand-overs are exercised) and ``score``'s output, rejects
and review files byte for byte on messy, gzip, TSV, Parquet and mostly-clean inputs.
"""
from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import reader
from .reader import DELIMITERS, Chunk, InputFile, _csv_records, _parquet, add_record, as_files, batch_records, file_chunks

BLOCK_BYTES = 4 << 20  # CSV/TSV are parsed this many bytes at a time
PARQUET_ROWS = 1 << 16  # Parquet is read this many rows at a time
_SENTINEL = "\x01tweetheads-end-of-file\x01"
_BLANK = r"^[\p{Z}\p{Cc}\p{Cf}]*$"  # empty, or separators/control/format characters only
_STRING_TYPES = (pa.string(), pa.large_string())


class ArrowChunk:
    """A chunk of clean rows whose cells are a ``pyarrow.Table`` (columns as in the file).

    Has the attributes of :class:`scoring.reader.Chunk`; ``rows`` and ``texts`` are built from the
    table on first use (only a consumer that needs Python rows pays for them), ``lines`` is None
    (good rows' line numbers are not tracked here) and ``rejects`` is empty.
    """

    def __init__(self, file: Path, columns: list[str], table: pa.Table, text_col: str, index: int):
        self.file, self.columns, self.table, self.index = file, columns, table, index
        self.text_col = text_col
        self.rows_read = table.num_rows
        self.rejects: list = []
        self.lines = None
        self._rows: list | None = None
        self._texts: list | None = None

    @property
    def text_array(self) -> pa.Array:
        """The text column as one Arrow array."""
        return self.table.column(self.columns.index(self.text_col)).combine_chunks()

    @property
    def texts(self) -> list[str]:
        """The text cells as Python strings."""
        if self._texts is None:
            self._texts = self.text_array.to_pylist()
        return self._texts

    @property
    def rows(self) -> list[list]:
        """The rows as lists of cells (as the line-accurate reader gives them)."""
        if self._rows is None:
            self._rows = [list(row) for row in zip(*(column.to_pylist() for column in self.table.columns))]
        return self._rows

    def as_chunk(self) -> Chunk:
        """The same rows as a plain :class:`Chunk` (line numbers 0: not tracked), to be filled up by the reader."""
        return Chunk(self.file, list(self.columns), self.rows, self.texts, [0] * self.rows_read, [], self.index,
                     self.rows_read)


def iter_chunks(paths: list, text_col: str = "text", chunk_rows: int = 4096, fast: bool = True
                ) -> Iterator[Chunk | ArrowChunk]:
    """:func:`scoring.reader.iter_chunks` (the same checks and chunks), clean blocks read through Arrow;
    ``fast=False``: every record through the line-accurate reader."""
    files = as_files(paths, text_col, chunk_rows)
    return fast_chunks(files, text_col, chunk_rows) if fast else reader.iter_chunks(files, text_col, chunk_rows)


def fast_chunks(files: list[InputFile], text_col: str, chunk_rows: int) -> Iterator[Chunk | ArrowChunk]:
    """:func:`scoring.reader.iter_chunks`' chunks, clean ones read as Arrow blocks."""
    index = 0
    for file in files:
        if file.format in DELIMITERS and len(set(file.columns)) == len(file.columns):
            pieces = _csv_pieces(file, list(file.columns).index(text_col))
        elif file.format == "parquet":
            pieces = _parquet_pieces(file, text_col)
        else:
            index = yield from file_chunks(file, text_col, chunk_rows, index)
            continue
        index = yield from _assemble(file, pieces, text_col, chunk_rows, index)


class Handover:
    """From record ``done`` of the file on, the line-accurate reader reads it all (nothing more here)."""

    def __init__(self, done: int):
        self.done = done


def _assemble(file: InputFile, pieces, text_col: str, chunk_rows: int, index: int) -> Iterator[Chunk | ArrowChunk]:
    """Cut a file's pieces (clean Arrow tables, lists of the reader's records, a Handover) into chunks."""
    columns, at = list(file.columns), list(file.columns).index(text_col)
    pending: list[pa.Table] = []  # clean rows not yet in a chunk (an Arrow chunk while no record joins them)
    held = 0
    plain: Chunk | None = None  # a chunk that records joined: filled row by row

    def to_plain() -> Chunk:
        nonlocal pending, held
        chunk = (ArrowChunk(file.path, columns, pa.concat_tables(pending), text_col, index).as_chunk() if held
                 else Chunk(file.path, list(columns), [], [], [], [], index, 0))
        pending, held = [], 0
        return chunk

    for piece in pieces:
        if isinstance(piece, Handover):
            rest = plain if plain is not None else (to_plain() if held else None)
            return (yield from file_chunks(file, text_col, chunk_rows, index, skip=piece.done, chunk=rest))
        if isinstance(piece, list):  # the reader's records of a block that is not clean
            for record in piece:
                if plain is None:
                    plain = to_plain()
                add_record(plain, record, at)
                if plain.rows_read == chunk_rows:
                    yield plain
                    index += 1
                    plain = None
            continue
        if plain is not None:  # clean rows after records: top up the plain chunk first
            take = piece.slice(0, chunk_rows - plain.rows_read)
            head = ArrowChunk(file.path, columns, take, text_col, index)
            plain.rows += head.rows
            plain.texts += head.texts
            plain.lines += [0] * take.num_rows
            plain.rows_read += take.num_rows
            piece = piece.slice(take.num_rows)
            if plain.rows_read == chunk_rows:
                yield plain
                index += 1
                plain = None
            else:
                continue
        pending.append(piece)
        held += piece.num_rows
        while held >= chunk_rows:
            table = pa.concat_tables(pending)
            yield ArrowChunk(file.path, columns, table.slice(0, chunk_rows), text_col, index)
            index += 1
            rest = table.slice(chunk_rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if plain is not None:
        yield plain
        index += 1
    elif held:
        yield ArrowChunk(file.path, columns, pa.concat_tables(pending), text_col, index)
        index += 1
    return index


# -- CSV / TSV --------------------------------------------------------------------------------------
def _lines_in(data: bytes) -> int:
    """Physical lines ended in ``data`` as the reader counts them (``\n``, ``\r\n`` or ``\r``)."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _cut(data: bytes) -> int:
    """Where the last line outside quotes (by quote parity) ends in ``data``; 0 where none does."""
    start = max(0, len(data) - (1 << 16))
    while True:
        view = np.frombuffer(data, np.uint8)[start:]
        parity = (data.count(b'"', 0, start) + np.cumsum(view == 34)) & 1
        ends = np.flatnonzero((view == 10) & (parity == 0))
        if len(ends):
            return start + int(ends[-1]) + 1
        if start == 0:
            return 0
        start = 0


def _csv_pieces(file: InputFile, text_at: int):
    """A CSV/TSV file in blocks of about ``BLOCK_BYTES``, each cut after a line end outside quotes.

    A block pyarrow parses to rows that pass :func:`_clean_csv` and that end with the sentinel row
    (so the block did not end inside a quoted field) is yielded as a table. Any other block goes
    through the reader on its own bytes, starting at the block's first line; if the reader finds
    the block ending inside a quoted field (the cut was not at a record's end: a stray quote made
    the parity wrong), the rest of the file goes to the reader (a Handover).
    """
    import pyarrow.csv as pcsv

    delimiter, columns = DELIMITERS[file.format], list(file.columns)
    sentinel = ("\n" + delimiter.join([_SENTINEL] * len(columns)) + "\n").encode()
    parse = pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    convert = pcsv.ConvertOptions(column_types={name: pa.string() for name in columns}, strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
    done, line, first, buffer, eof = 0, 1, True, b"", False
    try:
        handle = (gzip.open if file.compressed else open)(file.path, "rb")
    except OSError:
        yield Handover(0)
        return
    with handle:
        while True:
            size = 0
            while not eof:  # fill the buffer until a block can be cut from it (or the file ends)
                if len(buffer) >= BLOCK_BYTES:
                    size = _cut(buffer)
                    if size or len(buffer) > 4 * BLOCK_BYTES:
                        break
                try:
                    data = handle.read(BLOCK_BYTES)
                except (OSError, EOFError, ValueError, zlib.error):  # a damaged .gz: the reader says where
                    yield Handover(done)
                    return
                eof = not data
                buffer += data
            if eof:
                size = len(buffer)
            if not buffer:
                return
            if size == 0:  # 16 MiB and no line end outside quotes: the reader decides what that is
                yield Handover(done)
                return
            block, buffer = buffer[:size], buffer[size:]
            final = eof and not buffer
            table = None
            if b"\x00" not in block:
                options = pcsv.ReadOptions(block_size=len(block) + len(sentinel) + 1,
                                           column_names=None if first else columns)
                try:
                    table = pcsv.read_csv(io.BytesIO(block + sentinel), read_options=options, parse_options=parse,
                                          convert_options=convert)
                except (pa.ArrowException, ValueError):
                    table = None
                if table is not None and (table.column_names != columns or table.num_rows == 0
                                          or table.column(0)[table.num_rows - 1].as_py() != _SENTINEL):
                    table = None
                if table is not None:
                    table = table.slice(0, table.num_rows - 1)
                    if not _clean_csv(table, text_at):
                        table = None
            if table is not None:
                if table.num_rows:
                    yield table
                done += table.num_rows
            else:
                records = list(_csv_records(None, delimiter, data=block, first_line=line, bom=first))
                if first:
                    records = records[1:]  # the header, checked by inspect_file
                if not final and records and records[-1][2] == "unterminated quote":
                    yield Handover(done)
                    return
                yield records
                done += len(records)
            line += _lines_in(block)
            first = False


def _clean_csv(table: pa.Table, text_at: int) -> bool:
    """Every cell a string without NUL or CR, and no blank text."""
    for column in table.columns:
        if column.type not in _STRING_TYPES or column.null_count:
            return False
        if pc.any(pc.match_substring_regex(column, "[\\x00\\r]")).as_py():
            return False
    if pc.any(pc.match_substring_regex(table.column(text_at), _BLANK)).as_py():
        return False
    return True


# -- Parquet ----------------------------------------------------------------------------------------
def _parquet_pieces(file: InputFile, text_col: str):
    """A Parquet file's batches: clean ones as tables, others as the reader's records (row numbers kept)."""
    done = 0
    try:
        with _parquet(file.path) as parquet:
            schema = parquet.schema_arrow
            if list(schema.names) != list(file.columns) or schema.field(text_col).type not in _STRING_TYPES:
                yield Handover(0)
                return
            strings = [i for i, field in enumerate(schema) if field.type in _STRING_TYPES]
            text_at = list(file.columns).index(text_col)
            for batch in parquet.iter_batches(batch_size=PARQUET_ROWS):
                text = batch.column(text_at)
                if text.null_count or pc.any(pc.match_substring_regex(text, _BLANK)).as_py() or any(
                        pc.any(pc.match_substring(batch.column(i), "\x00")).as_py() for i in strings):
                    yield list(batch_records(batch, done))
                else:
                    yield pa.Table.from_batches([batch])
                done += batch.num_rows
    except Exception:  # pyarrow raises several types for a damaged file: the reader says which row
        yield Handover(done)
