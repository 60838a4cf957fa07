"""Jobs: a pool's requests between ``submit`` and their ``Result``: the shared queue, pending and running, cancels.

Every future this hands out resolves to a ``Result``, never an exception: a request cancelled
before it ran resolves ``CANCELLED`` here; one that ran resolves with what its worker said
(``finish``). ``take`` gives the dispatcher threads the next job, or ``None`` once ``close``
or ``abandon`` has put one stop marker per thread behind the queued jobs.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

from .._exceptions import PoolFull, RuntimeClosed
from .._request import Request
from .._results import Mode, Outcome, Result

if TYPE_CHECKING:
    from ._handle import WorkerProcess

__all__ = ["NOT_STARTED", "Job", "Jobs", "failure"]

NOT_STARTED = "the run was cancelled before it started"


def failure(request: Request | None, outcome: Outcome, error: str, started: float | None = None) -> Result:
    """The ``Result`` of a run the pool ended (cancelled, or its worker died or never started)."""
    duration = 0.0 if started is None else time.perf_counter() - started
    mode: Mode = "plain" if request is not None and not request.snapshot else "snapshot"
    return Result.failure(outcome, error, mode=mode, duration=duration)


class Job:
    """One submitted request, its future, and (once taken) the worker running it."""

    __slots__ = ("cancelled", "future", "request", "seq", "worker")

    def __init__(self, request: Request, future: Future[Result], seq: int) -> None:
        self.request = request
        self.future = future
        self.seq = seq
        self.worker: WorkerProcess | None = None
        self.cancelled = False


_STOP = object()


class Jobs:
    """The queue of one pool's jobs and their state; ``lock`` guards every field below."""

    def __init__(self, max_queue: int | None, stops: int) -> None:
        self.max_queue = max_queue
        self._stops = stops  # one stop marker per dispatcher thread
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self._room = threading.Condition(self.lock)
        self._seq = itertools.count()
        self.pending: dict[Future[Result], Job] = {}
        self.running: dict[Future[Result], Job] = {}
        self.completed = 0
        self.closed = False

    def submit(self, request: Request, block: bool, timeout: float | None) -> Future[Result]:
        """Queue ``request``; with ``max_queue`` pending, wait for room (or raise ``PoolFull``)."""
        future: Future[Result] = Future()
        with self.lock:
            if self.closed:
                raise RuntimeClosed("this WorkerPool is closed")
            if self.max_queue is not None and len(self.pending) >= self.max_queue:
                if not block:
                    raise PoolFull(f"{self.max_queue} requests already pending")
                if not self._room.wait_for(
                    lambda: self.closed or len(self.pending) < self.max_queue,  # type: ignore[operator]
                    timeout,
                ):
                    raise PoolFull(f"{self.max_queue} requests still pending after {timeout} s")
                if self.closed:
                    raise RuntimeClosed("this WorkerPool is closed")
            job = Job(request, future, next(self._seq))
            self.pending[future] = job
            self._queue.put(job)  # under the lock: never after close()'s stop markers
        return future

    def cancel(self, future: Future[Result]) -> bool:
        """Resolve a pending job ``CANCELLED`` now, or ask the worker running it to stop; False if done."""
        with self.lock:
            job = self.pending.pop(future, None)
            if job is not None:
                self._room.notify()
            else:
                job = self.running.get(future)
                if job is None:
                    return False
                job.cancelled = True
                worker = job.worker
        if job.worker is None:
            self.resolve(job, failure(job.request, Outcome.CANCELLED, NOT_STARTED))
        elif worker is not None:
            worker.cancel(job.seq)
        return True

    def take(self) -> Job | None:
        """The next job to run (now counted as running), or None to stop."""
        while True:
            job: Any = self._queue.get()
            if job is _STOP:
                return None
            with self.lock:
                if self.pending.pop(job.future, None) is None:
                    continue  # cancelled while pending
                self._room.notify()
                if not job.future.set_running_or_notify_cancel():
                    continue  # Future.cancel() by the caller
                self.running[job.future] = job
            return cast(Job, job)

    def attach(self, job: Job, worker: WorkerProcess) -> bool:
        """Record that ``worker`` runs ``job`` (so a cancel reaches it); whether it was cancelled already."""
        with self.lock:
            job.worker = worker
            return job.cancelled

    def finish(self, job: Job, result: Result) -> None:
        """``job`` is done: count it and resolve its future."""
        with self.lock:
            self.running.pop(job.future, None)
            self.completed += 1
        self.resolve(job, result)

    @staticmethod
    def resolve(job: Job, result: Result) -> None:
        """Set the future's result, unless the caller already cancelled or it is resolved."""
        with contextlib.suppress(Exception):  # already resolved or cancelled by the caller
            if not job.future.done() and (job.future.running() or job.future.set_running_or_notify_cancel()):
                job.future.set_result(result)

    def close(self, cancel_pending: bool) -> None:
        """Accept no more jobs; the dispatchers stop once the queue is empty (or at once, with ``cancel_pending``).

        ``cancel_pending`` resolves the queued jobs ``CANCELLED`` and asks the running ones to stop.
        """
        with self.lock:
            first = not self.closed
            self.closed = True
            self._room.notify_all()
            dropped = list(self.pending.values()) if cancel_pending else []
            if cancel_pending:
                self.pending.clear()
                running = list(self.running.values())
                for job in running:
                    job.cancelled = True
            else:
                running = []
        for job in dropped:
            self.resolve(job, failure(job.request, Outcome.CANCELLED, "cancelled: the pool was closed"))
        for job in running:
            if job.worker is not None:
                job.worker.cancel(job.seq)
        if first:
            self._stop_dispatchers()

    def abandon(self) -> None:
        """Accept no more jobs and let the dispatchers stop after the queued ones; takes no lock.

        Called by the garbage collector, maybe inside this pool's own locked code on this
        thread (``SimpleQueue.put`` is reentrant); nobody can submit any more.
        """
        if not self.closed:
            self.closed = True
            self._stop_dispatchers()

    def _stop_dispatchers(self) -> None:
        for _ in range(self._stops):
            self._queue.put(_STOP)
