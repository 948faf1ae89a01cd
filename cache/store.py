"""A content-addressed embedding store, one per model fingerprint.

Layout of a store (``<root>/<fingerprint[:20]>/``)::

    store.json      fingerprint, model description, dimension (written once)
    index.sqlite    key -> (shard, row, crc32), WAL mode
    shards/*.f32    contiguous float32 rows, append-only, one file per writer

Write protocol: a writer appends rows to its own shard file, flushes and fsyncs it, and only then
commits the index rows for that batch in one SQLite transaction. A process killed at any moment
leaves every committed vector readable; bytes appended but not committed are never referenced.
Several processes can write to one store at once: each has its own shard file and SQLite
serialises the index commits (``INSERT OR IGNORE``, so a text raced by two writers is stored once
in the index). Every row's CRC32 is checked on read; a damaged row is dropped from the index and
reported as a miss, so the caller re-encodes it and nothing else is lost; so is an index row whose
shard name or row number this store cannot have written (no such path is ever opened). A damaged
index file (SQLite reports corruption, or answers with a row for a key not asked for) raises
CacheError naming ``index.sqlite`` and the ``cache clear`` command that removes the store.

The store knows keys, a fingerprint string and float arrays, and nothing about models.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import TweetheadsError
from fileio import write_atomic


class CacheError(TweetheadsError):
    """The cache cannot be used as asked (unwritable folder, disk full, damaged store)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, shard TEXT NOT NULL, row INTEGER NOT NULL,
                                    crc INTEGER NOT NULL) WITHOUT ROWID;
"""
_CHUNK = 30_000  # keys per SELECT ... IN (...): under SQLite's 32,766-variable limit (3.32+)
_SHARD_NAME = re.compile(r"[0-9]+-[0-9a-f]{12}\.f32\Z")


def text_key(fingerprint: str, text: str) -> bytes:
    """Content hash of the model fingerprint and the (already normalized) text: 16 bytes."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16, key=fingerprint.encode()[:64]).digest()


def default_cache_dir() -> Path:
    """``$TWEETHEADS_CACHE_DIR`` if set, else ``~/.cache/tweetheads``."""
    env = os.environ.get("TWEETHEADS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "tweetheads"


@dataclass(frozen=True)
class StoreInfo:
    """One store as ``cache info`` lists it: folder, fingerprint, model description, vectors, bytes on disk."""

    path: Path
    fingerprint: str
    description: dict
    count: int
    bytes: int


def _use_wal(db: sqlite3.Connection, wait: float = 60.0) -> None:
    """Put the index in WAL mode, a property of the file that the first opener sets for all.

    Switching needs an exclusive lock, and where several processes open a new store at once SQLite may answer
    "database is locked" at once rather than wait (its busy handler is skipped where waiting could deadlock); so
    a busy answer is retried for up to ``wait`` seconds, and a file already in WAL mode is left as it is.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not any(word in str(exc).lower() for word in ("locked", "busy")) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class EmbeddingStore:
    """Dict-like access to the vectors of one model fingerprint under ``root``."""

    def __init__(self, root: str | Path, fingerprint: str, dim: int, description: dict | None = None):
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.dim = int(dim)
        self.path = self.root / fingerprint[:20]
        self._shard_name: str | None = None
        self._shard_rows = 0
        self._maps: dict[str, np.ndarray] = {}
        self.dropped = 0  # damaged rows found on read since this object was made
        self._chunk = _CHUNK  # lowered to 500 on an SQLite with the old 999-variable limit
        # len(self) without a COUNT(*) scan per call: (data_version, rows) as last counted, kept exact by
        # this connection's own writes; data_version changes when another connection commits
        self._count: tuple[int, int] | None = None
        try:
            (self.path / "shards").mkdir(parents=True, exist_ok=True)
            meta_path = self.path / "store.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                if meta.get("fingerprint") != fingerprint or int(meta.get("dim", -1)) != self.dim:
                    raise CacheError(
                        f"{meta_path}: store belongs to fingerprint {meta.get('fingerprint')} dim {meta.get('dim')}, "
                        f"not {fingerprint} dim {dim}; remove the folder with `cache clear`"
                    )
            else:
                write_atomic(meta_path, json.dumps({"fingerprint": fingerprint, "dim": self.dim,
                                                    "description": description or {}}, indent=2), unique=True)
            self._db = sqlite3.connect(self.path / "index.sqlite", timeout=60, isolation_level=None)
            _use_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            if type(exc) is sqlite3.DatabaseError:  # SQLITE_CORRUPT, SQLITE_NOTADB: the file itself is damaged
                raise self._damaged(exc) from exc
            raise CacheError(f"cache store {self.path} cannot be opened ({exc}); check the folder "
                             "or point --cache-dir / TWEETHEADS_CACHE_DIR elsewhere") from exc
        except (OSError, sqlite3.Error, ValueError) as exc:
            raise CacheError(f"cache store {self.path} cannot be opened ({exc}); check the folder "
                             "or point --cache-dir / TWEETHEADS_CACHE_DIR elsewhere") from exc

    def _damaged(self, problem) -> CacheError:
        return CacheError(f"{self.path / 'index.sqlite'}: the cache index is damaged ({problem}); remove this store "
                          f"with `cache clear {self.path.name}` (its texts are encoded again on the next run)")

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        try:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if self._count is None or self._count[0] != version:
                self._count = (version, self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        except sqlite3.Error as exc:
            raise self._damaged(exc) from exc
        return self._count[1]

    def _counted(self, change: int) -> None:
        """Keep ``len(self)`` exact after this connection added (+) or deleted (-) ``change`` rows."""
        if self._count is not None:
            self._count = (self._count[0], self._count[1] + change)

    def shard(self, name: str) -> np.ndarray | None:
        """The shard file `name` as a read-only (rows, dim) float32 map, None while it holds no whole row."""
        arr = self._maps.get(name)
        path = self.path / "shards" / name
        size = path.stat().st_size if path.exists() else 0
        if arr is None or arr.shape[0] * self.dim * 4 < size - size % (self.dim * 4):
            if size < self.dim * 4:
                return None
            arr = np.memmap(path, dtype=np.float32, mode="r", shape=(size // (self.dim * 4), self.dim))
            self._maps[name] = arr
        return arr

    def index_rows(self, position: dict[bytes, int]):
        """``(key, shard, row, crc)`` index rows for the keys in ``position``.

        Asked for a large share of the store, one pass over the whole index (about 1 us a row) beats
        ``key IN (...)`` lookups (2 to 4 us a key); rows for keys nobody asked for are skipped.
        """
        unique = list(position)
        if len(unique) * 3 >= len(self):
            yield from [row for row in self._db.execute("SELECT key, shard, row, crc FROM vectors").fetchall()
                        if row[0] in position]
            return
        chunk_size = self._chunk
        for start in range(0, len(unique), chunk_size):
            chunk = unique[start:start + chunk_size]
            yield from self._db.execute(
                f"SELECT key, shard, row, crc FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)

    def get_many(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(found, vectors)``: a bool mask and a float32 array, zero rows where not found."""
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        position: dict[bytes, int] = {}  # key -> its first index in keys
        repeats: list[tuple[int, bytes]] = []
        for i, key in enumerate(keys):
            if position.setdefault(key, i) != i:
                repeats.append((i, key))
        try:
            rows = list(self.index_rows(position))
        except sqlite3.OperationalError as exc:
            if "too many SQL variables" in str(exc) and self._chunk > 500:
                self._chunk = 500  # an SQLite built with the old 999-variable limit
                return self.get_many(keys)
            raise self._damaged(exc) from exc
        except sqlite3.Error as exc:
            raise self._damaged(exc) from exc
        damaged: list[bytes] = []
        if rows:
            # column-wise: one list comprehension per check instead of Python work per row
            key_col, shard_col, row_col, crc_col = zip(*rows)
            indices = [position.get(k) if type(k) is bytes else None for k in key_col]
            if None in indices:  # the index answered another question
                raise self._damaged(f"asked for some keys, got a row for {key_col[indices.index(None)]!r}")
            shard_ids: dict[object, int] = {}
            shard_of = np.fromiter((shard_ids.setdefault(s, len(shard_ids)) for s in shard_col), np.int64, len(rows))
            valid = np.fromiter((type(r) is int and r >= 0 and type(c) is int for r, c in zip(row_col, crc_col)),
                                bool, len(rows))
            row_arr = np.fromiter((r if v else 0 for r, v in zip(row_col, valid)), np.int64, len(rows))
            crc_arr = np.fromiter((c if v else 0 for c, v in zip(crc_col, valid)), np.int64, len(rows))
            index_arr = np.asarray(indices, dtype=np.int64)
            for shard, sid in shard_ids.items():
                mine = shard_of == sid
                arr = self.shard(shard) if isinstance(shard, str) and _SHARD_NAME.match(shard) else None
                if arr is None:  # a damaged row (never a path to open) or a lost shard: re-encoded
                    valid &= ~mine
                    continue
                where = np.flatnonzero(mine & valid)
                where = where[np.argsort(index_arr[where], kind="stable")]  # in output order
                dest, sel = index_arr[where], row_arr[where]
                inside = sel < arr.shape[0]
                if not inside.all():  # rows past the shard's end (a truncated file)
                    valid[where[~inside]] = False
                    where, dest, sel = where[inside], dest[inside], sel[inside]
                if len(dest) == len(keys):  # every output row from this shard: gather straight into out
                    np.take(arr, sel, axis=0, out=out)
                    block = out
                else:
                    block = arr[sel]
                ok = np.fromiter(map(zlib.crc32, block), np.int64, len(block)) == crc_arr[where]
                if block is out:
                    out[~ok] = 0
                else:
                    out[dest[ok]] = block[ok]
                valid[where[~ok]] = False
                found[dest[ok]] = True
            damaged = [key_col[i] for i in np.flatnonzero(~valid)]
        for i, key in repeats:
            first = position[key]
            if found[first]:
                out[i] = out[first]
                found[i] = True
        if damaged:
            self.dropped += len(damaged)
            self._delete(damaged)
        return found, out

    def _delete(self, keys: list[bytes]) -> None:
        try:
            with self._transaction():
                before = self._db.total_changes
                self._db.executemany("DELETE FROM vectors WHERE key = ?", [(k,) for k in keys])
                removed = self._db.total_changes - before
            self._counted(-removed)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from exc

    # -- writing -------------------------------------------------------------------------------
    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    def put_many(self, keys: list[bytes], vectors: np.ndarray) -> int:
        """Store vectors for keys not already present; returns how many were added. Atomic per call."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.dim):
            raise CacheError(f"expected {len(keys)} vectors of dim {self.dim}, got shape {vectors.shape}")
        if not len(keys):
            return 0
        if self._shard_name is None:
            self._shard_name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}.f32"
            self._shard_rows = 0
        path = self.path / "shards" / self._shard_name
        try:
            with open(path, "ab") as handle:
                start = handle.tell() // (self.dim * 4)
                handle.write(vectors.tobytes())
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            self._shard_name = None  # a torn append is never referenced; the next batch starts a new shard
            raise CacheError(f"cannot write to cache shard {path} ({exc}); free disk space or use "
                             "another --cache-dir; vectors committed earlier are kept") from exc
        rows = [(key, self._shard_name, start + i, zlib.crc32(vectors[i].tobytes())) for i, key in enumerate(keys)]
        try:
            with self._transaction():
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?, ?, ?)", rows)
                added = self._db.total_changes - before
        except sqlite3.Error as exc:
            raise CacheError(f"cannot commit to cache index {self.path / 'index.sqlite'} ({exc}); "
                             "vectors committed earlier are kept") from exc
        self._counted(added)
        return added

    def close(self) -> None:
        """Drop the memory-mapped shards and close the SQLite index."""
        self._maps.clear()
        self._db.close()


class NullStore:
    """The same interface with nothing stored: ``cache_dir=None`` switches caching off."""

    dropped = 0

    def __init__(self, dim: int):
        self.dim = dim

    def __len__(self) -> int:
        return 0

    def get_many(self, keys):
        """Nothing found: all-False flags and zero vectors of width ``dim``."""
        return np.zeros(len(keys), dtype=bool), np.zeros((len(keys), self.dim), dtype=np.float32)

    def put_many(self, keys, vectors) -> int:
        """Store nothing; returns 0 (vectors written)."""
        return 0

    def close(self) -> None:
        """Nothing to close."""
        pass


def list_stores(root: str | Path) -> list[StoreInfo]:
    """Every store under ``root`` (each folder with a store.json), in folder order.

    A store whose metadata or index cannot be read is listed with 0 vectors and ``{"error": "unreadable"}``
    as its description, so ``cache info`` and ``cache clear`` still see it.
    """
    root = Path(root)
    infos = []
    for meta_path in sorted(root.glob("*/store.json")):
        try:
            meta = json.loads(meta_path.read_text())
            with sqlite3.connect(meta_path.parent / "index.sqlite", timeout=60) as db:
                count = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        except (OSError, ValueError, sqlite3.Error):
            meta, count = {"fingerprint": meta_path.parent.name, "description": {"error": "unreadable"}}, 0
        size = sum(p.stat().st_size for p in meta_path.parent.rglob("*") if p.is_file())
        infos.append(StoreInfo(meta_path.parent, meta.get("fingerprint", ""), meta.get("description", {}), count, size))
    return infos


def find_stores(root: str | Path, prefix: str) -> list[StoreInfo]:
    """The stores whose fingerprint (or folder name) starts with ``prefix``; ``"all"``: every store."""
    if not prefix:
        raise CacheError("an empty store prefix matches nothing; pass a fingerprint prefix from `cache info`, or all")
    return [info for info in list_stores(root)
            if prefix == "all" or info.fingerprint.startswith(prefix) or info.path.name.startswith(prefix)]


def clear_store(root: str | Path, prefix: str) -> list[Path]:
    """Remove the stores ``find_stores`` matches; CacheError when none does."""
    found = find_stores(root, prefix)
    if not found:
        raise CacheError(f"no cache store under {root} matches {prefix!r}; see `cache info` for the list")
    for info in found:
        shutil.rmtree(info.path)
    return [info.path for info in found]
