"""``serve``'s drift check: the vectors of the last requests, checked against the head's training vectors.

``score`` checks a whole file once (:mod:`scoring.drift`); a server has no end, so it keeps a
**sliding window** of the vectors of the last ``window`` texts it was sent (a ring buffer,
``window`` x dim float32: 1.5 MB for 1,000 MiniLM rows) and, every ``every`` texts, runs the same
domain classifier (:func:`scoring.drift.domain_auc`) between the window and the head's reference.
A window, not a reservoir since start: a reservoir over a day of in-domain traffic takes as long
again to show a change of topic (its rows stay old), while the window holds only what the server
is being sent now, so the verdict follows the traffic both ways (it fires, and goes quiet again).

The check runs in a thread of its own, never on a request's path: the encoder thread only copies
each batch's vectors into the buffer (a memcpy under a lock). One check of 1,000 rows against a
1,000-row reference is about a second (5 logistic fits, one BLAS thread); after a check that took ``d``
seconds the thread waits at least ``4 d`` before the next, so under any load it takes at most a
fifth of a core. When the verdict changes (it fires, or goes quiet again) one line goes to stderr.
"""
from __future__ import annotations

import sys
import threading
import time
import traceback

import numpy as np

from scoring.drift import DriftConfig, DriftResult, domain_auc, missing_reference, not_run
from scoring.predict import E2E

PAUSE_FACTOR = 4.0  # after a check of d seconds, the next starts d * 4 later at the soonest


class DriftMonitor:
    """The last ``window`` request vectors, checked against ``reference`` every ``every`` texts in a thread.

    ``add(vectors)`` is called from the encoder thread with each batch's vectors; ``state()`` is
    what ``GET /drift`` answers. ``start()`` and ``stop()`` run the checking thread.
    """

    def __init__(self, reference: np.ndarray, *, window: int, every: int, log=None):
        self.reference = np.asarray(reference, dtype=np.float32)
        self.config = DriftConfig(sample=window, min_rows=min(DriftConfig.min_rows, window))
        self.window, self.every = window, every
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.buffer = np.zeros((window, self.reference.shape[1]), dtype=np.float32)
        self.filled = self.next = self.seen = 0  # rows in the buffer, the slot written next, texts seen
        self.checked_at = 0  # texts seen when the last check copied the window
        self.checks, self.last_seconds = 0, 0.0
        self.result: DriftResult | None = None
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drift-check", daemon=True)

    def start(self) -> None:
        """Start the checking thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the checking thread (a check under way finishes first, up to ``timeout``)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the encoder thread --------------------------------------------------------------------
    def add(self, vectors: np.ndarray) -> None:
        """Put the rows of ``vectors`` in the window (the oldest rows make room); wake the check when due."""
        rows = np.asarray(vectors, dtype=np.float32)[-self.window:]
        with self._lock:
            n = len(rows)
            first = min(n, self.window - self.next)
            self.buffer[self.next:self.next + first] = rows[:first]
            self.buffer[:n - first] = rows[first:]
            self.next = (self.next + n) % self.window
            self.filled = min(self.window, self.filled + n)
            self.seen += len(vectors)
            if self._due():
                self._wake.set()

    def _due(self) -> bool:
        first = self.checks == 0  # the first verdict as soon as the window holds enough rows
        return (first or self.seen - self.checked_at >= self.every) and self.filled >= self.config.min_rows

    # -- the checking thread -------------------------------------------------------------------
    def _loop(self) -> None:
        if len(self.reference) >= 20:  # a first, tiny check: scikit-learn's imports and set-up, paid by no verdict
            try:
                domain_auc(self.reference[:20], self.reference[-20:], DriftConfig(sample=20, min_rows=10))
            except Exception:  # the real checks say it again, each time
                traceback.print_exc(file=sys.stderr)
        while not self._stop.is_set():
            self._wake.wait()
            with self._lock:
                if self._stop.is_set():
                    return
                if not self._due():
                    self._wake.clear()
                    continue
                rows, seen = self.buffer[:self.filled].copy(), self.seen
            started = time.perf_counter()
            try:
                result = domain_auc(self.reference, rows, self.config)
            except Exception:  # a bug must not stop the server; it is said once per failure
                traceback.print_exc(file=sys.stderr)
                result = None
            took = time.perf_counter() - started
            if result is not None:
                before = self.result
                with self._lock:
                    self.result, self.checked_at = result, seen
                    self.checks += 1
                    self.last_seconds = took
                if result.fired != (before is not None and before.fired):
                    self.log(f"serve: {result.line()} (the last {len(rows):,} texts)")
            self._stop.wait(PAUSE_FACTOR * took)

    # -- GET /drift ----------------------------------------------------------------------------
    def state(self) -> dict:
        """The last verdict as JSON (before the first check: too few rows), with the window's counters."""
        with self._lock:
            result = self.result or DriftResult(None, self.filled, len(self.reference), self.config.auc_threshold)
            counters = {"window": self.window, "every": self.every, "rows_in_window": self.filled,
                        "texts_seen": self.seen, "checked_at_texts": self.checked_at, "checks": self.checks,
                        "check_seconds": round(self.last_seconds, 3)}
        return result.as_dict() | {"line": result.line()} | counters


class NoCheck:
    """What ``GET /drift`` answers when no check runs: the reason (a head without a reference, the check off)."""

    def __init__(self, why: str):
        self.result = not_run(why)

    def state(self) -> dict:
        """The reason, as ``GET /drift`` answers it."""
        return self.result.as_dict() | {"line": self.result.line()}

    def add(self, vectors) -> None:
        """Nothing to keep."""

    def start(self) -> None:
        """Nothing to run."""

    def stop(self) -> None:
        """Nothing to stop."""


def monitor_for(predictor, window: int, every: int) -> DriftMonitor | NoCheck:
    """A ``DriftMonitor`` over ``predictor``'s head's reference, or ``NoCheck`` saying why there is none."""
    if window == 0:
        return NoCheck("switched off (--drift-window 0)")
    why = missing_reference(predictor.classifier, predictor.head.spec[0] == E2E)
    if why is not None:
        return NoCheck(why)
    return DriftMonitor(predictor.classifier.drift_reference_, window=window, every=every)
