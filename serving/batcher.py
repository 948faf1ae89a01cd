"""Requests that arrive together become one encoder call, run in the one thread that owns the encoder.

``submit(texts)`` queues a request and returns a future. The loop takes the queue's oldest request,
waits until ``max_batch_texts`` texts are queued or the oldest has waited ``max_wait`` seconds
(never longer: under load the encoder is busy, requests queue meanwhile and the next batch leaves
at once), joins requests in arrival order up to ``max_batch_texts`` texts (a larger request goes
alone, whole) and runs them as one call in a single worker thread (the encoder is not re-entrant;
its own threads use the cores). Each request gets its own rows back, in order.

A request whose client left (its future cancelled) is skipped if its batch has not started, and
its rows are dropped if it has: the others in the batch are answered as if it had stayed. A batch
that raises is run again request by request, so one bad request fails alone. Past
``max_queued_texts`` waiting texts, ``submit`` raises ``Busy`` (the server answers 503).
"""
from __future__ import annotations

import asyncio
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .body import RequestError


@dataclass
class Job:
    """One request waiting in the queue: its texts, the future that gets its answer, and when it arrived (loop time)."""

    texts: list[str]
    future: asyncio.Future
    arrived: float


@dataclass
class Counters:
    """What ``/health`` reports about the work done so far."""

    requests: int = 0  # answered with predictions
    texts: int = 0
    batches: int = 0  # encoder calls
    encoded: int = 0  # distinct texts that missed the cache
    largest_batch: int = 0  # texts
    left: int = 0  # requests whose client went away before the answer
    failed_batches: int = 0
    started: float = field(default_factory=time.time)


class Busy(RequestError):
    """503 ``busy``: the queue already holds ``--max-queued-texts`` texts; the client should retry."""

    def __init__(self, queued: int, limit: int):
        super().__init__(503, "busy", f"the server has {queued:,} texts waiting, at its limit of {limit:,} "
                         "(--max-queued-texts); retry in a moment, or restart serve with a larger --max-queued-texts",
                         limit=limit)


class MicroBatcher:
    """Joins concurrent requests into calls of ``run(texts) -> (proba, truncated, encoded)`` in one thread.

    ``warm_up`` (run once in the worker thread by :meth:`start_worker`) is where the thread-bound
    pieces (the cache store, the compiled encoder) are made.
    """

    def __init__(self, run: Callable[[list[str]], tuple[np.ndarray, np.ndarray, int]], *, max_batch_texts: int,
                 max_wait: float, max_queued_texts: int):
        self.run = run
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait
        self.max_queued_texts = max_queued_texts
        self.counters = Counters()
        self.queue: deque[Job] = deque()
        self.queued_texts = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._busy = False

    # -- life -----------------------------------------------------------------------------------
    def start_worker(self, warm_up: Callable[[], None]) -> None:
        """Run ``warm_up`` in the worker thread now (before the port opens); its errors raise here."""
        self.executor.submit(warm_up).result()

    async def start(self) -> None:
        """Start the batching loop as a task on the running event loop."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def stop(self, finish: Callable[[], None] | None = None) -> None:
        """Answer what is queued, stop the loop, then run ``finish`` in the worker thread (the cache's last writes)."""
        while self.queue or self._busy:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if finish is not None:
            await asyncio.get_running_loop().run_in_executor(self.executor, finish)
        self.executor.shutdown(wait=True)

    # -- requests -------------------------------------------------------------------------------
    def submit(self, texts: list[str]) -> asyncio.Future:
        """Queue one request's texts; the future gets ``(proba rows, truncated flags)`` for them, in order."""
        if self.queue and self.queued_texts + len(texts) > self.max_queued_texts:
            raise Busy(self.queued_texts, self.max_queued_texts)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.append(Job(texts, future, loop.time()))
        self.queued_texts += len(texts)
        self._wake.set()
        return future

    # -- the loop -------------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            deadline = self.queue[0].arrived + self.max_wait
            while self.queued_texts < self.max_batch_texts and (delay := deadline - loop.time()) > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    break
            jobs = self._take()
            if jobs:
                self._busy = True
                try:
                    await self._execute(jobs)
                except Exception:  # a bug here must not stop the loop: every later request would hang
                    traceback.print_exc(file=sys.stderr)
                    for job in jobs:
                        _settle(job.future, error=RuntimeError("the batch failed; see the server's log"))
                finally:
                    self._busy = False

    def _take(self) -> list[Job]:
        """Jobs from the front of the queue, up to ``max_batch_texts`` texts (at least one job)."""
        jobs, n = [], 0
        while self.queue:
            job = self.queue[0]
            if job.future.done():  # its client left while it waited: nothing to encode for it
                self.queue.popleft()
                self.queued_texts -= len(job.texts)
                self.counters.left += 1
                continue
            if jobs and n + len(job.texts) > self.max_batch_texts:
                break
            self.queue.popleft()
            self.queued_texts -= len(job.texts)
            jobs.append(job)
            n += len(job.texts)
        return jobs

    async def _execute(self, jobs: list[Job]) -> None:
        texts = [text for job in jobs for text in job.texts]
        try:
            proba, truncated, encoded = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, texts)
        except Exception as exc:
            self.counters.failed_batches += 1
            if len(jobs) > 1:  # find the request that fails: the others are answered
                for job in jobs:
                    await self._execute([job])
                return
            _settle(jobs[0].future, error=exc)
            return
        c = self.counters
        c.batches += 1
        c.encoded += encoded
        c.largest_batch = max(c.largest_batch, len(texts))
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            if _settle(job.future, result=(proba[start:end], truncated[start:end])):
                c.requests += 1
                c.texts += len(job.texts)
            else:
                c.left += 1
            start = end


def _settle(future: asyncio.Future, *, result=None, error: BaseException | None = None) -> bool:
    """Give ``future`` its result (or error) unless its client left (cancelled); whether it was given."""
    if future.done():
        return False
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
    return True
