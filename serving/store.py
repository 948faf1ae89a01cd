"""The embedding cache as a server uses it: opened once, written off the request path.

``Embedder.embed`` opens the store, looks up, encodes the misses, commits them (an fsync and a
SQLite commit, about 20 ms on this disk) and closes it again, on every call, and each opening
writes to a shard file of its own. For a command that is one call; for a server it would be one
shard file and 20 ms per batch. ``ServingEmbedder`` is an ``Embedder`` whose ``open_store`` hands
its encoder thread one ``WriteBehindStore`` for the server's life: lookups go to the store (and
to the vectors not yet committed), new vectors are answered at once and committed by a writer
thread of its own, every ``flush_seconds`` in one transaction (one shard file for the process).

What this leaves out: vectors not yet committed when the process is killed with SIGKILL are lost
(the cache is a cache: they are encoded again); SIGTERM commits them first (``close_all``). A
commit that fails (disk full) is said once on stderr; the server goes on and its texts are encoded
again next time.
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from embed.encoder import Embedder


class WriteBehindStore:
    """The store interface (``get_many``, ``put_many``, ``close``, ``dropped``) over one open store.

    ``reader`` is used by the thread that made this object only; ``open_writer()`` is called in the
    writer thread (an SQLite connection stays in the thread that opened it).
    """

    def __init__(self, reader, open_writer, *, flush_seconds: float = 0.05):
        self.reader = reader
        self.owner = threading.get_ident()
        self.flush_seconds = flush_seconds
        self.pending: dict[bytes, np.ndarray] = {}
        self.committed = 0
        self.failed: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, args=(open_writer,), name="cache-writer",
                                        daemon=True)
        self._writer.start()

    @property
    def dropped(self) -> int:
        """Damaged rows the reader found and dropped (as ``EmbeddingStore.dropped``)."""
        return self.reader.dropped

    def get_many(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, vectors)`` for ``keys``: the committed store first, then the vectors still pending."""
        found, vectors = self.reader.get_many(keys)
        if self.pending and not found.all():
            with self._lock:
                for i in np.flatnonzero(~found):
                    vector = self.pending.get(keys[i])
                    if vector is not None:
                        vectors[i], found[i] = vector, True
        return found, vectors

    def put_many(self, keys: list[bytes], vectors: np.ndarray) -> int:
        """Queue vectors for the writer thread (a key already pending keeps its first vector); returns ``len(keys)``."""
        with self._lock:
            for key, vector in zip(keys, np.array(vectors, dtype=np.float32)):
                self.pending.setdefault(key, vector)
        self._wake.set()
        return len(keys)

    def close(self) -> None:
        """Nothing: ``Embedder.embed`` closes its store after every call, and this one lives on."""

    def close_all(self, timeout: float = 30.0) -> None:
        """Commit what is pending, stop the writer and close the reader (from the thread that made it)."""
        self._stop.set()
        self._wake.set()
        self._writer.join(timeout)
        self.reader.close()

    def _write_loop(self, open_writer) -> None:
        writer = None
        try:
            writer = open_writer()
        except Exception as exc:  # the reader opened, so this is rare (permissions changed, disk gone)
            self._fail(exc)
        while True:
            self._wake.wait()
            self._stop.wait(self.flush_seconds)  # let more vectors join this commit (a stop cuts it short)
            self._wake.clear()
            with self._lock:
                batch = list(self.pending.items())
            if batch and writer is not None:
                try:
                    writer.put_many([key for key, _ in batch], np.stack([vector for _, vector in batch]))
                    self.committed += len(batch)
                except Exception as exc:
                    self._fail(exc)
            with self._lock:  # only now: until committed, lookups find them here
                for key, _ in batch:
                    self.pending.pop(key, None)
            if self._stop.is_set() and not self.pending:
                break
        if writer is not None:
            writer.close()

    def _fail(self, exc: Exception) -> None:
        if self.failed is None:
            self.failed = str(exc)
            print(f"serve: the embedding cache cannot be written ({exc}); serving goes on, and texts it could not "
                  "keep are encoded again when they come back", file=sys.stderr, flush=True)


class ServingEmbedder(Embedder):
    """An ``Embedder`` whose encoder thread keeps one ``WriteBehindStore`` open (``open_live_store``).

    Any other thread (the head check at load time) gets a store of its own per call, as ``Embedder`` does.
    """

    live_store_: WriteBehindStore | None = None

    @classmethod
    def like(cls, embedder: Embedder) -> ServingEmbedder:
        """A ServingEmbedder with the same parameters as ``embedder``."""
        return cls(**embedder.get_params(deep=False))

    def open_live_store(self) -> None:
        """Called in the encoder thread: from now on its lookups and writes go through one open store."""
        if self._cache_root() is None:
            return  # no cache: Embedder's NullStore is free to open
        self.live_store_ = WriteBehindStore(super().open_store(), super().open_store)

    def close_live_store(self) -> None:
        """Commit what is pending and close the live store (``open_live_store`` undone); no-op without one."""
        if self.live_store_ is not None:
            self.live_store_.close_all()
            self.live_store_ = None

    def open_store(self):
        """The live store in the thread that opened it (the encoder thread), else a fresh one as ``Embedder``."""
        live = self.live_store_
        if live is not None and live.owner == threading.get_ident():
            return live
        return super().open_store()
