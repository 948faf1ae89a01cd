"""Crash-safe, resumable output files for ``score``: written chunk by chunk, finished by a rename.

While a run is going, only files beside the output change (``OUT`` itself appears at the end)::

    OUT.partial                  CSV: the header and every finished chunk's rows
                                 (``.csv.gz``: one gzip member per chunk, mtime 0, so bytes repeat)
    OUT.parts/part-NNNNNNNN.parquet
                                 Parquet: one small file per finished chunk (index NNNNNNNN)
    REJECTS.partial              the rejects CSV, the same way as a CSV output
    OUT.progress.json            the command's identity hash, the last finished chunk, the byte
                                 length of each partial CSV, the number of Parquet parts, counts

After each chunk the data files are flushed and fsynced, and only then is the progress file
replaced atomically (temp file, fsync, ``os.replace``): whatever the progress file says is on
disk. A rerun with the same identity truncates each partial CSV to its recorded length (bytes
appended after the last recorded chunk are dropped), deletes Parquet parts past the recorded
chunk, and carries on with the next chunk. At the end the Parquet parts are combined into one
file (one row group per part, column types unified across parts) and everything is renamed into
place, so the result is byte for byte the file an uninterrupted run writes.

Why one file per chunk for Parquet: a Parquet file's footer is written last, so a half-written
file cannot be reopened for appending; small finished files can always be read back.
Left out: a lock against two runs writing the same output at once.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embed.data import file_format
from fileio import atomic_path, fsync_dir, write_atomic

PROGRESS_VERSION = 1


def sibling(path: Path, suffix: str) -> Path:
    """``path`` with ``suffix`` added to its name, in the same folder (``out.csv`` -> ``out.csv.partial``)."""
    return path.with_name(path.name + suffix)


class Progress:
    """``OUT.progress.json``: what the last finished chunk left on disk, for one command identity."""

    def __init__(self, path: Path, identity: str):
        self.path = path
        self.identity = identity

    def load(self) -> dict | None:
        """The saved state when it belongs to this command, else None (missing, damaged, other command)."""
        try:
            state = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("version") != PROGRESS_VERSION \
                or state.get("identity") != self.identity:
            return None
        return state

    def save(self, state: dict) -> None:
        """Write ``state`` (with the format version and this command's identity) atomically."""
        state = {"version": PROGRESS_VERSION, "identity": self.identity, **state}
        write_atomic(self.path, json.dumps(state, indent=1))  # no folder fsync: an older progress file is valid too

    def remove(self) -> None:
        """Delete the progress file and any temporary file left beside it."""
        self.path.unlink(missing_ok=True)
        sibling(self.path, ".tmp").unlink(missing_ok=True)


class CsvOutput:
    """A CSV file appended to chunk by chunk as ``FINAL.partial``; ``finish`` renames it to FINAL."""

    def __init__(self, final: Path, header: list[str], key: str):
        self.final = final
        self.key = key  # its byte length's name in the progress file
        self.partial = sibling(final, ".partial")
        self.header = header
        self.compress = final.name.lower().endswith(".gz")
        self.handle = None
        self.dirty = False

    def start(self) -> None:
        """Begin a new ``FINAL.partial`` (replacing any) and write the header."""
        self.handle = open(self.partial, "wb")
        self.append([self.header])

    def resume(self, state: dict) -> bool:
        """Reopen ``FINAL.partial`` cut back to the length ``state`` recorded; False where it is missing or shorter."""
        size = state.get(self.key)
        if not isinstance(size, int) or not self.partial.is_file() or self.partial.stat().st_size < size:
            return False
        self.handle = open(self.partial, "r+b")
        self.handle.truncate(size)
        self.handle.seek(size)
        return True

    def append(self, rows: list[list]) -> None:
        """Write ``rows`` at the end (each call as its own gzip member for ``.gz``); not yet fsynced."""
        if rows:
            self.append_bytes(csv_bytes(rows))

    def append_bytes(self, data: bytes) -> None:
        """Write CSV lines already formatted (:func:`csv_block`), as :meth:`append` writes rows."""
        if not data:
            return
        self.handle.write(gzip.compress(data, compresslevel=6, mtime=0) if self.compress else data)
        self.dirty = True

    def state(self) -> dict:
        """Flush and fsync what was appended; ``{key: byte length}`` for the progress file."""
        if self.dirty:
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.dirty = False
        return {self.key: self.handle.tell()}

    def finish(self) -> None:
        """Make everything durable, close, and rename ``FINAL.partial`` to FINAL."""
        self.state()
        self.close()
        os.replace(self.partial, self.final)

    def close(self) -> None:
        """Close the file if open (it stays ``.partial``)."""
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def discard(self) -> None:
        """Close and delete ``FINAL.partial``."""
        self.close()
        self.partial.unlink(missing_ok=True)


def csv_bytes(rows: list[list]) -> bytes:
    """Rows as CSV (``\n`` line ends, quoted where needed), UTF-8 with invalid bytes kept as they came.

    Python's csv writer quotes a field holding the line terminator but not one holding a bare
    ``\r``, which every CSV reader then takes for a line end; a row with such a field is written
    with every field quoted, so it reads back as the same cells.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    text = buffer.getvalue()
    if "\r" in text:
        buffer = io.StringIO()
        minimal = csv.writer(buffer, lineterminator="\n")
        quoted = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in rows:
            (quoted if any(isinstance(cell, str) and "\r" in cell for cell in row) else minimal).writerow(row)
        text = buffer.getvalue()
    return text.encode("utf-8", "surrogateescape")


_NEEDS_QUOTES = '[,"\n]'  # what Python's csv writer (QUOTE_MINIMAL, "\n" line ends) quotes a field for


def csv_cells(values: pa.Array) -> pa.Array:
    """String cells as :func:`csv_bytes` writes them: a cell holding ``,``, ``"`` or ``\n`` quoted, quotes doubled.

    No cell may hold ``\r`` (``csv_bytes`` quotes such a row's every field; callers check first).
    """
    values = values.cast(pa.string()) if values.type != pa.string() else values
    need = pc.match_substring_regex(values, _NEEDS_QUOTES)
    if not pc.any(need).as_py():
        return values
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(need, quoted, values)


def float_cells(values: np.ndarray, memo: dict | None = None) -> pa.Array:
    """float64 values as ``str(value)`` writes them (Python's shortest repr), Arrow's cast doing most of them.

    Arrow's cast gives the same shortest digits where Python writes positional notation and the value
    is not whole (1e-4 <= v < 1e6; checked on 10^6 values in tests/test_blocks.py, and to 1e15);
    elsewhere (1.0, 0.0, 9.6e-05, nan, negatives) Python's ``repr`` writes it, remembered in ``memo``
    (keyed by the value's bits, so 0.0 and -0.0 stay apart; cleared past ``_FLOAT_MEMO`` entries).
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    cells = pc.cast(pa.array(values), pa.string())
    odd = ~((values >= 1e-4) & (values < 1e6)) | (values == np.floor(values))
    if odd.any():
        picked = values[odd]
        if memo is None:
            texts = list(map(repr, picked.tolist()))
        else:
            if len(memo) > _FLOAT_MEMO:
                memo.clear()
            get = memo.get
            texts = [get(bits) or memo.setdefault(bits, repr(value))
                     for bits, value in zip(picked.view(np.int64).tolist(), picked.tolist())]
        cells = pc.replace_with_mask(cells, pa.array(odd), pa.array(texts, type=pa.string()))
    return cells


_FLOAT_MEMO = 1 << 17


def csv_block(columns: list) -> bytes:
    """Rows of cells already passed through :func:`csv_cells` (arrays, or scalars repeated) as CSV bytes."""
    lines = pc.binary_join_element_wise(*columns, ",")  # at least one column must be an array
    if len(lines) == 0:
        return b""
    lines = pc.binary_join_element_wise(lines, pa.scalar(""), "\n")  # each line, "\n" and nothing
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:lines.offset + len(lines) + 1]
    return lines.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]


class ParquetOutput:
    """One Parquet file per finished chunk in ``FINAL.parts/``, combined into FINAL by ``finish``."""

    def __init__(self, final: Path, empty_schema: pa.Schema):
        self.final = final
        self.folder = sibling(final, ".parts")
        self.empty_schema = empty_schema  # used when no chunk had a good row
        self.parts = 0

    def _part(self, index: int) -> Path:
        return self.folder / f"part-{index:08d}.parquet"

    def _existing(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.folder.glob("part-*.parquet"):
            try:
                found.append((int(path.name[5:-8]), path))
            except ValueError:
                continue
        return sorted(found)

    def start(self) -> None:
        """Begin with an empty ``FINAL.parts/`` folder (any earlier parts deleted)."""
        self.discard()
        self.folder.mkdir(parents=True)
        self.parts = 0

    def resume(self, state: dict) -> bool:
        """Keep the parts of the chunks ``state`` records as finished and delete later ones; False where
        there is no parts folder, no recorded count, or not as many parts as recorded.
        """
        if not self.folder.is_dir() or not isinstance(state.get("parts"), int):
            return False
        kept = 0
        for index, path in self._existing():
            if index > state["chunk"]:
                path.unlink()  # written, but the chunk was never recorded as finished
            else:
                kept += 1
        self.parts = kept
        return kept == state["parts"]

    def append(self, index: int, table: pa.Table) -> None:
        """Write chunk ``index``'s rows as one part file (atomically); an empty table writes nothing."""
        if table.num_rows == 0:
            return
        with atomic_path(self._part(index)) as tmp:
            pq.write_table(table, tmp)
        self.parts += 1

    def state(self) -> dict:
        """Fsync the parts folder; ``{"parts": count}`` for the progress file."""
        fsync_dir(self.folder)
        return {"parts": self.parts}

    def finish(self) -> None:
        """Combine the parts, in chunk order and under one unified schema, into FINAL; then delete the parts."""
        parts = [path for _, path in self._existing()]
        schema = unify_schemas([pq.read_schema(p) for p in parts]) if parts else self.empty_schema
        with atomic_path(self.final, durable=True) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            for path in parts:
                writer.write_table(conform(pq.read_table(path), schema))
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        """Nothing to close: each part is written and closed by ``append``."""
        pass

    def discard(self) -> None:
        """Delete ``FINAL.parts/``."""
        shutil.rmtree(self.folder, ignore_errors=True)


def parquet_schema(path: Path) -> pa.Schema:
    """A Parquet file's Arrow schema (``.parquet.gz`` through a gzip stream)."""
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "rb") as handle:
            return pq.read_schema(handle)
    return pq.read_schema(path)


def as_text(value):
    """A cell as CSV text: strings unchanged, None empty, numbers/lists/dicts as JSON, others str()."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float, list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def arrow_column(values: list, type_hint: pa.DataType | None = None) -> pa.Array:
    """Cells as an Arrow array: of ``type_hint`` when given, else inferred; mixed types become text."""
    try:
        return pa.array(values, type=type_hint)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return pa.array([as_text(v) for v in values], type=pa.string())


def _common_type(types: list[pa.DataType]) -> pa.DataType:
    known: list[pa.DataType] = []
    for kind in types:
        if kind != pa.null() and kind not in known:
            known.append(kind)
    if not known:
        return pa.null()
    if len(known) == 1:
        return known[0]
    try:
        return pa.unify_schemas([pa.schema([pa.field("c", kind)]) for kind in known],
                                promote_options="permissive").field("c").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, NotImplementedError):
        return pa.string()


def unify_schemas(schemas: list[pa.Schema]) -> pa.Schema:
    """Column by column: the one type all parts share, else a promotion (int64 -> double), else text."""
    first = schemas[0]
    return pa.schema([pa.field(name, _common_type([s.field(i).type for s in schemas]))
                      for i, name in enumerate(first.names)])


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema`` column by column; a column that becomes a string is rendered as text."""
    columns = []
    for column, field in zip(table.columns, schema):
        if column.type != field.type:
            if field.type == pa.string():
                column = pa.array([as_text(v) for v in column.to_pylist()], type=pa.string())
            else:
                column = column.cast(field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _same_column(column: pa.ChunkedArray, hint: pa.DataType | None) -> pa.Array:
    """An Arrow chunk's column as ``arrow_column`` builds it from the rows: itself where its type is plain."""
    kind = column.type
    if hint is not None and kind == hint and (pa.types.is_string(kind) or pa.types.is_large_string(kind) or
                                              pa.types.is_integer(kind) or pa.types.is_floating(kind) or
                                              pa.types.is_boolean(kind)):
        return column.combine_chunks()
    return arrow_column(column.to_pylist(), hint)


REJECT_COLUMNS = ["file", "line", "reason", "raw"]


def reject_rows(chunk) -> list[list]:
    """A chunk's rejects as rows of the rejects file (``REJECT_COLUMNS``)."""
    return [[str(r.file), r.line, r.reason, r.raw] for r in chunk.rejects]


class RowFormatter:
    """A chunk's good rows plus the predictions as output rows: CSV cells or an Arrow table.

    Holds only names, classes and per-file Arrow type hints, so it pickles: both engines format
    with it, the local one in the driver and the Ray one in the workers, so their output agrees.
    """

    def __init__(self, kept: list[str], columns: list[str], classes: list, model_id: str, head_id: str):
        self.kept, self.columns, self.classes = list(kept), list(columns), np.asarray(classes)
        self.ids = [model_id, head_id]
        self.hints: dict[Path, dict] = {}
        self._float_text: dict[int, str] = {}  # float_cells' memo of repr texts (by the value's bits)
        self._fixed: tuple | None = None  # csv_lines' label and id cells, made on first use
        self._key: tuple | None = None  # the chunk columns _at was computed for
        self._at: list[int] = []

    def labels(self, picked: np.ndarray) -> np.ndarray:
        """The class names of the picked class indexes."""
        return self.classes[picked]

    def _positions(self, columns: list[str]) -> list[int]:
        """Where each kept column is in a chunk's columns (a dict, so 10^5 columns cost no more than 10)."""
        key = tuple(columns)
        if self._key != key:
            where = {}
            for i, name in enumerate(columns):
                where.setdefault(name, i)
            self._key, self._at = key, [where[name] for name in self.kept]
        return self._at

    def rows(self, chunk, picked: np.ndarray, proba: np.ndarray) -> list[list]:
        """A chunk's output rows as CSV cells: the kept columns, the label, each probability, the model and head ids."""
        at = self._positions(chunk.columns)
        return [[as_text(row[i]) for i in at] + [str(label)] + [str(p) for p in probs] + self.ids
                for row, label, probs in zip(chunk.rows, self.labels(picked), proba)]

    def csv_lines(self, chunk, picked: np.ndarray, proba: np.ndarray, take: np.ndarray | None = None) -> bytes | None:
        """The bytes ``csv_bytes(self.rows(...))`` writes, formatted column by column from an Arrow chunk
        (``take``: only those rows); None where that cannot be done exactly (not an Arrow chunk, a
        cell holding ``\r``, probabilities that are not float64), so the caller formats row by row."""
        table = getattr(chunk, "table", None)
        if table is None or proba.dtype != np.float64:
            return None
        at = self._positions(chunk.columns)
        if take is not None:
            table, picked, proba = table.take(pa.array(take)), picked[take], proba[take]
        cells = []
        for i in at:
            column = table.column(i).combine_chunks()
            if column.type not in (pa.string(), pa.large_string()):  # Parquet numbers, lists, ...: as rows() has them
                column = pc.fill_null(pa.array([as_text(v) for v in column.to_pylist()], type=pa.string()), "")
            elif column.null_count:
                column = pc.fill_null(column, "")
            if pc.any(pc.match_substring(column, "\r")).as_py():
                return None
            cells.append(csv_cells(column))
        if self._fixed is None:  # the class names and the two ids as cells, once (None: one holds "\r")
            labels = csv_cells(pa.array([str(c) for c in self.classes], type=pa.string()))
            ids = csv_cells(pa.array(self.ids, type=pa.string()))
            clean = not any(pc.any(pc.match_substring(a, "\r")).as_py() for a in (labels, ids))
            self._fixed = (labels, ids) if clean else ()
        if not self._fixed:
            return None
        labels, ids = self._fixed
        cells.append(labels.take(pa.array(picked)))
        cells += [float_cells(proba[:, j], self._float_text) for j in range(proba.shape[1])]
        cells += [ids[0], ids[1]]
        return csv_block(cells)

    def table(self, chunk, picked: np.ndarray, proba: np.ndarray) -> pa.Table:
        """The same output as an Arrow table, with the kept columns' types hinted from the input file."""
        hints = self._hints(chunk.file)
        at = self._positions(chunk.columns)
        source = getattr(chunk, "table", None)
        if source is not None:  # an Arrow chunk: columns of plain types as they are, others as rows() has them
            arrays = [_same_column(source.column(i), hints[name]) for name, i in zip(self.kept, at)]
        else:
            arrays = [arrow_column([row[i] for row in chunk.rows], hints[name]) for name, i in zip(self.kept, at)]
        arrays.append(pa.array(self.labels(picked).tolist(), type=self._label_type()))
        arrays += [pa.array(proba[:, j].astype(np.float64)) for j in range(proba.shape[1])]
        arrays += [pa.array([value] * len(chunk.rows), type=pa.string()) for value in self.ids]
        return pa.Table.from_arrays(arrays, names=self.columns)

    def gold_cells(self, chunk, column: str) -> list:
        """The chunk's gold cells of ``column`` (None for each row when its file has no such column)."""
        at = chunk.columns.index(column) if column in chunk.columns else None
        if at is not None and getattr(chunk, "table", None) is not None:
            return chunk.table.column(at).to_pylist()
        return [None if at is None else row[at] for row in chunk.rows]

    def _hints(self, path: Path) -> dict:
        """Arrow types for the kept columns of one input file: strings for CSV/TSV, Parquet's own."""
        if path not in self.hints:
            fmt = file_format(path)
            if fmt == "parquet":
                schema = parquet_schema(path)
                types = {}
                for field in schema:
                    types.setdefault(field.name, field.type)
                self.hints[path] = {c: types[c] for c in self.kept}
            else:
                self.hints[path] = {c: pa.string() if fmt in ("csv", "tsv") else None for c in self.kept}
        return self.hints[path]

    def _label_type(self) -> pa.DataType:
        return pa.string() if self.classes.dtype.kind in "US" else pa.from_numpy_dtype(self.classes.dtype)

    def empty_schema(self, path: Path) -> pa.Schema:
        """The output schema when no chunk has a good row (JSONL columns: strings)."""
        hints = self._hints(path)
        fields = [pa.field(c, hints[c] or pa.string()) for c in self.kept]
        fields.append(pa.field(self.columns[len(self.kept)], self._label_type()))
        fields += [pa.field(c, pa.float64()) for c in self.columns[len(self.kept) + 1:-2]]
        fields += [pa.field(c, pa.string()) for c in self.columns[-2:]]
        return pa.schema(fields)
