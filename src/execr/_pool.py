"""Pool: N worker processes, each holding a warm ``Runtime``, fed from one shared queue.

Workers are started with the ``spawn`` method (wasmtime, threads and ``fork`` do not mix)
and load the compiled module and snapshot from the on-disk cache. Each worker has one
duplex pipe for requests and results plus a one-way control pipe for cancellation; in the
parent, one dispatcher thread per worker pulls ``(request, future)`` pairs from a shared
queue, sends the pickled request and waits for the reply or for the process to die.

Failure isolation: a worker that dies mid-run (killed, segfault) resolves the request it
was running to a ``Result`` with outcome ``CRASHED`` ("worker process died (exit code X)")
and is replaced; no exception reaches the caller for a guest's misbehaviour.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, cast

from ._exceptions import ExecrError, InvalidArgument, RuntimeClosed
from ._flavors import flavor
from ._request import Request
from ._results import Outcome, Result

__all__ = ["PoolFull", "WorkerPool"]

_CTX = multiprocessing.get_context("spawn")
HANG_GRACE = 30.0  # seconds past a request's own timeout before a silent worker is killed
CANCEL_GRACE = 5.0  # seconds a cancelled run may take to stop before its worker is killed
START_TIMEOUT = 300.0  # seconds a worker may take to load (or build) the modules


class PoolFull(ExecrError, queue.Full):
    """``submit(..., block=False)`` found ``max_queue`` requests already pending."""


def _failure(request: Request | None, outcome: Outcome, error: str, started: float | None = None) -> Result:
    mode = "plain" if request is not None and not request.snapshot else "snapshot"
    duration = 0.0 if started is None else time.perf_counter() - started
    return Result(outcome=outcome, exit_code=None, error=error, duration=duration, mode=mode)


# -- the worker process --


def _worker_main(
    conn: Any, control: Any, snapshot: bool, cache_dir: str | None, runtimes: tuple[str, ...] = ("default",)
) -> None:
    """Entry point of a worker process: warm up, then run requests until told to stop.

    Workers ignore SIGINT and SIGTERM: a signal to the whole process group (Ctrl-C, a
    process manager) must not kill runs mid-way; the parent drains and closes them.
    """
    from ._runtime import Runtime

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)

    try:
        runtime = Runtime(snapshot=snapshot, cache_dir=cache_dir)
        runtime.warmup(runtimes)
    except BaseException as e:  # report why, then exit
        with contextlib.suppress(Exception):
            conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    lock = threading.Lock()
    current: list[Any] = [None, None]  # [seq, Event] of the run in progress

    def watch_control() -> None:
        while True:
            try:
                msg = control.recv()
            except (EOFError, OSError):
                return
            with lock:
                if msg[0] == "cancel" and current[0] == msg[1] and current[1] is not None:
                    current[1].set()

    threading.Thread(target=watch_control, name="execr-worker-control", daemon=True).start()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] != "run":
            return
        _, seq, request = msg
        event = threading.Event()
        with lock:
            current[0], current[1] = seq, event
        try:
            reply: tuple[Any, ...] = ("result", seq, runtime.run(request, cancel=event))
        except Exception as e:
            reply = ("error", seq, f"{type(e).__name__}: {e}")
        with lock:
            current[0] = current[1] = None
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return


# -- the parent side --


class _Worker:
    """One worker process and its pipes (owned by one dispatcher thread)."""

    def __init__(self, snapshot: bool, cache_dir: str | None, runtimes: tuple[str, ...] = ("default",)) -> None:
        self.conn, child = _CTX.Pipe(duplex=True)
        control_read, self.control = _CTX.Pipe(duplex=False)
        self.proc = _CTX.Process(
            target=_worker_main,
            args=(child, control_read, snapshot, cache_dir, runtimes),
            name="execr-worker",
            daemon=True,
        )
        self.proc.start()
        child.close()
        control_read.close()
        self.send_lock = threading.Lock()

    def wait_ready(self, timeout: float) -> str | None:
        """None when the worker is ready, else why it is not."""
        ready = multiprocessing.connection.wait([self.conn, self.proc.sentinel], timeout)
        if self.conn in ready:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                msg = None
            if msg is not None and msg[0] == "ready":
                return None
            if msg is not None and msg[0] == "failed":
                return str(msg[1])
        if not ready:
            return f"worker did not start within {timeout:.0f} s"
        self.proc.join(5)
        return f"worker process died during start-up (exit code {self.proc.exitcode})"

    def alive(self) -> bool:
        """Whether the process still runs. Its sentinel says so reliably, unlike ``is_alive()``:
        when another thread reaps the child first (``Process.start()`` reaps finished ones),
        ``waitpid`` fails with ECHILD and ``is_alive()`` answers True for a dead worker."""
        return not multiprocessing.connection.wait([self.proc.sentinel], 0)

    def cancel(self, seq: int) -> None:
        with self.send_lock, contextlib.suppress(OSError, ValueError):
            self.control.send(("cancel", seq))

    def exit_code(self) -> int | None:
        self.proc.join(5)
        return self.proc.exitcode

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.kill()
        self.close_pipes()

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.kill()
        self.proc.join(5)

    def close_pipes(self) -> None:
        for c in (self.conn, self.control):
            with contextlib.suppress(OSError):
                c.close()


class _Job:
    __slots__ = ("cancelled", "future", "request", "seq", "worker")

    def __init__(self, request: Request, future: Future[Result], seq: int) -> None:
        self.request = request
        self.future = future
        self.seq = seq
        self.worker: _Worker | None = None
        self.cancelled = False


_STOP = object()


class WorkerPool:
    """A pool of worker processes, each with a warm ``Runtime``.

    ``submit(request)`` returns a ``concurrent.futures.Future`` that always resolves to a
    ``Result`` (never an exception): a worker that dies mid-run gives ``CRASHED``, a run
    stopped by ``cancel``/``close(cancel_pending=True)`` gives ``CANCELLED``.

    ``max_queue`` bounds the requests waiting for a worker: ``submit`` then blocks (or with
    ``block=False`` raises ``PoolFull``). ``pending`` and ``in_flight`` count requests
    waiting and running. Usable as a context manager; ``close()`` is idempotent and later
    submissions raise ``RuntimeClosed``.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        snapshot: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        max_queue: int | None = None,
        runtimes: Iterable[str] = ("default",),
    ) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidArgument(f"workers must be a positive int; got {workers!r}")
        if max_queue is not None and (isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1):
            raise InvalidArgument(f"max_queue must be a positive int or None; got {max_queue!r}")
        if not isinstance(snapshot, bool):
            raise InvalidArgument(f"snapshot must be a bool; got {type(snapshot).__name__}")
        self._runtimes = tuple(dict.fromkeys([runtimes] if isinstance(runtimes, str) else runtimes))
        for name in self._runtimes:
            flavor(name)
        self.workers = workers
        self.max_queue = max_queue
        self._snapshot = snapshot
        self._cache_dir = None if cache_dir is None else str(Path(cache_dir).expanduser())
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._pending: dict[Future[Result], _Job] = {}
        self._running: dict[Future[Result], _Job] = {}
        self._ready = 0
        self._restarts = 0
        self._completed = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._dispatch, name=f"execr-pool-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # -- metrics --

    @property
    def pending(self) -> int:
        """Requests submitted and not yet sent to a worker."""
        with self._lock:
            return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Requests running in a worker now."""
        with self._lock:
            return len(self._running)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> dict[str, int]:
        """Counters for metrics: workers, ready workers, pending, in_flight, completed, restarts."""
        with self._lock:
            return {
                "workers": self.workers,
                "ready": self._ready,
                "pending": len(self._pending),
                "in_flight": len(self._running),
                "completed": self._completed,
                "restarts": self._restarts,
            }

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every worker has warmed up (True) or ``timeout`` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._ready >= self.workers or self._closed:
                    return self._ready >= self.workers
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- submitting --

    def submit(self, request: Request, *, block: bool = True, timeout: float | None = None) -> Future[Result]:
        """Queue ``request``; the future resolves to its ``Result``."""
        if not isinstance(request, Request):
            raise InvalidArgument(f"submit() takes a Request (see make_request); got {type(request).__name__}")
        future: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeClosed("this WorkerPool is closed")
            if self.max_queue is not None and len(self._pending) >= self.max_queue:
                if not block:
                    raise PoolFull(f"{self.max_queue} requests already pending")
                if not self._room.wait_for(
                    lambda: self._closed or len(self._pending) < self.max_queue,  # type: ignore[operator]
                    timeout,
                ):
                    raise PoolFull(f"{self.max_queue} requests still pending after {timeout} s")
                if self._closed:
                    raise RuntimeClosed("this WorkerPool is closed")
            job = _Job(request, future, next(self._seq))
            self._pending[future] = job
            self._queue.put(job)  # under the lock: never after close()'s stop markers
        return future

    def run(self, request: Request) -> Result:
        """Submit ``request`` and wait for its result."""
        return self.submit(request).result()

    def cancel(self, future: Future[Result]) -> bool:
        """Stop a submitted request: pending ones resolve ``CANCELLED`` at once, running
        ones are asked to stop (their result says ``CANCELLED``). False if already done."""
        with self._lock:
            job = self._pending.pop(future, None)
            if job is not None:
                self._room.notify()
            else:
                job = self._running.get(future)
                if job is None:
                    return False
                job.cancelled = True
                worker = job.worker
        if job.worker is None:
            self._resolve(job, _failure(job.request, Outcome.CANCELLED, "the run was cancelled before it started"))
        elif worker is not None:
            worker.cancel(job.seq)
        return True

    # -- dispatching --

    def _resolve(self, job: _Job, result: Result) -> None:
        with contextlib.suppress(Exception):  # already resolved or cancelled by the caller
            if not job.future.done() and (job.future.running() or job.future.set_running_or_notify_cancel()):
                job.future.set_result(result)

    def _take(self) -> _Job | None:
        """The next job to run, or None to stop."""
        while True:
            job: Any = self._queue.get()
            if job is _STOP:
                return None
            with self._lock:
                if self._pending.pop(job.future, None) is None:
                    continue  # cancelled while pending
                self._room.notify()
                if not job.future.set_running_or_notify_cancel():
                    continue  # Future.cancel() by the caller
                self._running[job.future] = job
            return cast(_Job, job)

    def _start_worker(self) -> tuple[_Worker | None, str | None]:
        try:
            worker = _Worker(self._snapshot, self._cache_dir, self._runtimes)
        except Exception as e:  # e.g. no file descriptors or processes left: fail the job, keep dispatching
            return None, f"{type(e).__name__}: {e}"
        why = worker.wait_ready(START_TIMEOUT)
        if why is not None:
            worker.kill()
            worker.close_pipes()
            return None, why
        with self._lock:
            self._ready += 1
        return worker, None

    def _drop_worker(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._ready -= 1
            self._restarts += 1
        if kill:
            worker.kill()
        worker.close_pipes()

    def _dispatch(self) -> None:
        worker: _Worker | None = None
        start_error: str | None = None
        try:
            if not self._closed:
                worker, start_error = self._start_worker()
            while True:
                job = self._take()
                if job is None:
                    return
                if worker is None or not worker.alive():
                    if worker is not None:
                        self._drop_worker(worker, kill=False)
                        worker = None
                    worker, start_error = self._start_worker()
                    if worker is None:
                        self._finish(
                            job, _failure(job.request, Outcome.CRASHED, f"worker failed to start: {start_error}")
                        )
                        continue
                result, alive = self._run_on(worker, job)
                if not alive:
                    self._drop_worker(worker, kill=True)
                    worker = None
                self._finish(job, result)
        finally:
            if worker is not None:
                with self._lock:
                    self._ready -= 1
                worker.stop()

    def _finish(self, job: _Job, result: Result) -> None:
        with self._lock:
            self._running.pop(job.future, None)
            self._completed += 1
        self._resolve(job, result)

    def _run_on(self, worker: _Worker, job: _Job) -> tuple[Result, bool]:
        """Run ``job`` on ``worker``: (result, whether the worker is still usable)."""
        started = time.perf_counter()
        with self._lock:
            job.worker = worker
            cancelled = job.cancelled
        if cancelled:
            return _failure(job.request, Outcome.CANCELLED, "the run was cancelled before it started"), True
        try:
            worker.conn.send(("run", job.seq, job.request))
        except (OSError, ValueError) as e:
            return _failure(job.request, Outcome.CRASHED, f"worker process died (sending the request: {e})"), False
        limit = job.request.limits.timeout
        hang = None if limit is None else limit + HANG_GRACE
        cancel_deadline: float | None = None
        waitables: list[Any] = [worker.conn, worker.proc.sentinel]
        while True:
            # Wake at least twice a second so a cancel that raced the start is re-sent
            # and an unresponsive worker is noticed.
            wait_for = 0.5 if hang is None else min(0.5, max(0.0, started + hang - time.perf_counter()))
            if job.cancelled and cancel_deadline is None:
                cancel_deadline = time.perf_counter() + CANCEL_GRACE
                worker.cancel(job.seq)
            ready = multiprocessing.connection.wait(waitables, wait_for)
            if worker.conn in ready:
                try:
                    msg = worker.conn.recv()
                except (EOFError, OSError):
                    code = worker.exit_code()
                    return _failure(
                        job.request, Outcome.CRASHED, f"worker process died (exit code {code})", started
                    ), False
                if msg[0] == "result" and msg[1] == job.seq:
                    return msg[2], True
                if msg[0] == "error" and msg[1] == job.seq:
                    return _failure(job.request, Outcome.CRASHED, f"execr error in worker: {msg[2]}", started), True
                continue  # a stale message; keep waiting
            if worker.proc.sentinel in ready:
                code = worker.exit_code()
                if job.cancelled:
                    return _failure(job.request, Outcome.CANCELLED, "the run was cancelled by the host", started), False
                return _failure(job.request, Outcome.CRASHED, f"worker process died (exit code {code})", started), False
            now = time.perf_counter()
            if cancel_deadline is not None and now >= cancel_deadline:
                return _failure(job.request, Outcome.CANCELLED, "the run was cancelled by the host", started), False
            if hang is not None and now >= started + hang:
                msg_ = f"worker process unresponsive {hang:.0f} s into a run with timeout {limit} s; killed"
                return _failure(job.request, Outcome.CRASHED, msg_, started), False

    # -- lifecycle --

    def close(self, cancel_pending: bool = False, *, wait: bool = True) -> None:
        """Stop accepting requests and shut the workers down (idempotent).

        By default queued requests still run first. ``cancel_pending=True`` resolves
        queued requests ``CANCELLED`` and asks running ones to stop. ``wait=False``
        returns without waiting for the workers to exit.
        """
        with self._lock:
            first = not self._closed
            self._closed = True
            self._room.notify_all()
            dropped = list(self._pending.values()) if cancel_pending else []
            if cancel_pending:
                self._pending.clear()
                running = list(self._running.values())
                for job in running:
                    job.cancelled = True
            else:
                running = []
        for job in dropped:
            self._resolve(job, _failure(job.request, Outcome.CANCELLED, "cancelled: the pool was closed"))
        for job in running:
            if job.worker is not None:
                job.worker.cancel(job.seq)
        if first:
            for _ in self._threads:
                self._queue.put(_STOP)
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel_pending=exc[0] is not None)

    def __repr__(self) -> str:
        s = self.stats()
        state = "closed" if self._closed else "open"
        counts = " ".join(f"{k}={s[k]}" for k in ("workers", "ready", "pending", "in_flight"))
        return f"<WorkerPool {state} {counts}>"
