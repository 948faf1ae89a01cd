"""Reading labelled and unlabelled tweet tables (CSV, TSV, JSONL, Parquet; ``.gz`` accepted).

Every cell of a CSV/TSV is read as a string, so a file written back (``split``) keeps its columns
exactly. Problems are raised as :class:`DataError` naming the file, the column or the rows and
what to do; no row is ever dropped silently. Streaming, row-level rejects for messy files live in
``scoring/reader.py``; this module is for training and embedding inputs that must be clean.
"""
from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from fileio import atomic_path

from .errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def file_format(path: str | Path) -> str:
    """Format of a file by its extension (``.gz`` is looked through)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise DataError(
            f"{path}: unknown file type; expected one of {', '.join(sorted(FORMATS))} (optionally .gz)"
        )
    return fmt


def _header(path: Path, delimiter: str) -> list[str]:
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
        return next(csv.reader(handle, delimiter=delimiter), [])


def read_table(path: str | Path) -> pa.Table:
    """Read a whole table; CSV/TSV cells as strings. Raises DataError for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the path (a CSV, TSV, JSONL or Parquet file)")
    fmt = file_format(path)
    try:
        if fmt in ("csv", "tsv"):
            delimiter = "\t" if fmt == "tsv" else ","
            names = _header(path, delimiter)
            if not names:
                raise DataError(f"{path}: the file is empty; expected a header line with column names")
            return pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
        if fmt == "jsonl":
            return pajson.read_json(path)
        return pq.read_table(path)
    except DataError:
        raise
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{path}: cannot be read as {fmt.upper()} ({first}); for messy files use `score`, "
            "which writes bad rows to a rejects file"
        ) from exc


def _rows_text(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(r + 1) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"{shown}{more}"


def column(table: pa.Table, name: str, path: str | Path, role: str) -> list:
    """Values of one column, or a DataError listing the columns that exist."""
    if name not in table.column_names:
        option = "--text-col" if role == "text" else "--label-col"
        raise DataError(
            f"{path}: no {role} column {name!r}; columns found: {', '.join(table.column_names)}. "
            f"Pick one with {option}."
        )
    return table.column(name).to_pylist()


def check_texts(values: list, path: str | Path, name: str) -> list[str]:
    """Every cell must be a non-empty string; otherwise name the (1-based data) rows."""
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DataError(
            f"{path}: column {name!r} has {len(bad)} empty or non-text cell(s) at data row(s) "
            f"{_rows_text(bad)} (1-based, header not counted); fix or remove those rows"
        )
    return values


@dataclass
class TextTable:
    """Texts (and labels, when asked for) read from one file, in file order."""

    path: Path
    table: pa.Table
    texts: list[str]
    labels: list[str] | None = None


def load_texts(
    path: str | Path,
    text_col: str = "text",
    label_col: str | None = None,
    max_rows: int | None = None,
) -> TextTable:
    """Read a file's texts (and labels); ``max_rows`` keeps the first rows (short CPU runs)."""
    path = Path(path)
    table = read_table(path)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    texts = check_texts(column(table, text_col, path, "text"), path, text_col)
    labels = None
    if label_col is not None:
        raw = column(table, label_col, path, "label")
        bad = [i for i, v in enumerate(raw) if v is None or str(v).strip() == ""]
        if bad:
            raise DataError(
                f"{path}: label column {label_col!r} is missing a value at data row(s) "
                f"{_rows_text(bad)} (1-based); label every row or remove it"
            )
        labels = [str(v).strip() for v in raw]
    return TextTable(path=path, table=table, texts=texts, labels=labels)


@dataclass(frozen=True)
class LabelMap:
    """Label names mapped to ids in sorted order; saved as ``labels.json``."""

    names: tuple[str, ...]

    @classmethod
    def from_labels(cls, labels: list[str]) -> "LabelMap":
        """The mapping of the distinct labels in ``labels``, sorted (so the same labels give the same ids)."""
        return cls(tuple(sorted(set(labels))))

    def encode(self, labels: list[str], path: str | Path = "<labels>") -> list[int]:
        """Each label's id; raises DataError naming the rows of ``path`` whose label is not in the map."""
        index = {name: i for i, name in enumerate(self.names)}
        unseen = sorted({label for label in labels if label not in index})
        if unseen:
            rows = [i for i, label in enumerate(labels) if label not in index]
            raise DataError(
                f"{path}: label(s) {', '.join(map(repr, unseen))} at data row(s) {_rows_text(rows)} "
                f"were not in the training labels {list(self.names)}; relabel them or add them to training"
            )
        return [index[label] for label in labels]

    def save(self, path: str | Path) -> None:
        """Write the labels as ``{"labels": [...]}`` JSON to ``path``."""
        Path(path).write_text(json.dumps({"labels": list(self.names)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        """Read a mapping written by ``save``; raises DataError where the file is not one."""
        try:
            names = json.loads(Path(path).read_text())["labels"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a label mapping ({exc}); expected {{\"labels\": [...]}}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path}: 'labels' must be a list of strings")
        return cls(tuple(names))


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write a table as CSV/TSV/JSONL/Parquet by extension, atomically (temp file, then rename)."""
    path = Path(path)
    fmt = file_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if fmt in ("csv", "tsv"):
            options = pacsv.WriteOptions(delimiter="\t" if fmt == "tsv" else ",", quoting_style="needed")
            with pa.OSFile(str(tmp), "wb") as sink:
                stream = pa.CompressedOutputStream(sink, "gzip") if path.suffix == ".gz" else sink
                pacsv.write_csv(table, stream, options)
                if stream is not sink:
                    stream.close()
        elif fmt == "parquet":
            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as handle:
                for row in table.to_pylist():
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")

