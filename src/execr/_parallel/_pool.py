"""Pool: N worker processes, each holding a warm ``Runtime``, fed from one shared queue.

Workers are fresh interpreters started with ``subprocess`` (``python -c`` with a few fixed
lines; wasmtime, threads and ``fork`` do not mix), not with ``multiprocessing``'s spawn,
which makes every worker re-import the caller's ``__main__``: that fails under ``python -``,
``-c``, a REPL or a notebook, and re-runs a script's top level unless it is guarded. A
worker gets the caller's ``sys.path`` and nothing of its main module, then loads the
compiled module and snapshot from the on-disk cache. Each worker has one duplex pipe for
requests and results (pickled, ``multiprocessing.connection``), a one-way control pipe for
cancellation and a sentinel pipe whose write end only the worker holds, so it reads
end-of-file exactly when the worker exits. In the parent, one dispatcher thread per worker
pulls ``(request, future)`` pairs from a shared queue, sends the pickled request and waits
for the reply or for the sentinel.

Failure isolation: a worker that dies mid-run (killed, segfault) resolves the request it
was running to a ``Result`` with outcome ``CRASHED`` ("worker process died (exit code X)")
and is replaced; no exception reaches the caller for a guest's misbehaviour.

Lifetime, as with ``concurrent.futures``: a pool nobody closes never keeps the interpreter
from exiting. At exit every open pool resolves its queued and running requests
``CANCELLED``, lets its workers exit for up to ``EXIT_GRACE`` seconds (they remove their
temporary directories), then kills and reaps the rest. A pool garbage-collected without
``close()`` runs what was queued, then stops its workers. The dispatcher threads hold only
the pool's internals (``_Core``), never the ``WorkerPool`` itself, so it can be collected.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing.connection
import multiprocessing.spawn
import os
import queue
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Unpack, cast

from .._exceptions import InvalidArgument, PoolFull, RuntimeClosed
from .._image._flavors import flavor
from .._limits import UNSET, Unset
from .._process import Phase, at_exit
from .._request import Request, make_request
from .._results import Mode, Outcome, Result
from .._run_options import RunOptions
from ._worker import WORKER_CODE

__all__ = ["PoolFull", "WorkerPool"]

HANG_GRACE = 30.0  # seconds past a request's own timeout before a silent worker is killed
CANCEL_GRACE = 5.0  # seconds a cancelled run may take to stop before its worker is killed
START_TIMEOUT = 300.0  # seconds a worker may take to load (or build) the modules
EXIT_GRACE = 1.5  # seconds workers get to exit cleanly at interpreter exit before they are killed


#: What a worker process runs (``python -c``; argv: the request pipe's fd, the control pipe's fd).
#: Signals first, so a Ctrl-C during start-up cannot kill it; then the caller's ``sys.path``.
def _failure(request: Request | None, outcome: Outcome, error: str, started: float | None = None) -> Result:
    duration = 0.0 if started is None else time.perf_counter() - started
    mode: Mode = "plain" if request is not None and not request.snapshot else "snapshot"
    return Result.failure(outcome, error, mode=mode, duration=duration)


# -- the parent side --


def _factory_spec(factory: Callable[[], Any] | None) -> str | None:
    """How a worker finds ``factory``: by import path (it must be importable from the workers' sys.path)."""
    if factory is None:
        return None
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        raise InvalidArgument(f"runtime_factory must be importable by name (module-level); got {factory!r}")
    return f"{module}:{name}"


class _Worker:
    """One worker process and its pipes (owned by one dispatcher thread)."""

    def __init__(
        self,
        snapshot: bool,
        cache_dir: str | None,
        runtimes: tuple[str, ...] = ("default",),
        factory: str | None = None,
    ) -> None:
        self.conn, child = multiprocessing.Pipe(duplex=True)
        control_read, self.control = multiprocessing.Pipe(duplex=False)
        self.sentinel, sentinel_write = os.pipe()
        self._pipes_lock = threading.Lock()
        self._pipes_open = True
        fds = (child.fileno(), control_read.fileno(), sentinel_write)
        try:
            self.proc = subprocess.Popen(
                [multiprocessing.spawn.get_executable(), "-c", WORKER_CODE, str(fds[0]), str(fds[1])],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,  # the caller's stdin may be its script (python -) or a REPL
            )
        except BaseException:
            self.close_pipes()
            raise
        finally:
            child.close()
            control_read.close()
            os.close(sentinel_write)  # the worker now holds the only write end
        self.send_lock = threading.Lock()
        init = {
            "sys_path": list(sys.path),
            "snapshot": snapshot,
            "cache_dir": cache_dir,
            "runtimes": runtimes,
            "factory": factory,
        }
        with contextlib.suppress(OSError, ValueError):  # a worker that died at once shows in wait_ready
            self.conn.send(init)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> str | None:
        """None when the worker is ready, else why it is not."""
        ready = multiprocessing.connection.wait([self.conn, self.sentinel], timeout)
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
        return f"worker process died during start-up (exit code {self.exit_code()})"

    def alive(self) -> bool:
        """Whether the process still runs (its sentinel has not reached end-of-file)."""
        return not multiprocessing.connection.wait([self.sentinel], 0)

    def cancel(self, seq: int) -> None:
        with self.send_lock, contextlib.suppress(OSError, ValueError):
            self.control.send(("cancel", seq))

    def exit_code(self) -> int | None:
        """The exit code (negative: killed by that signal), reaping the process; None if it still runs after 5 s."""
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.close_pipes()

    def kill(self) -> None:
        """Kill the process and reap it."""
        with contextlib.suppress(OSError):
            self.proc.kill()  # a no-op once it has been reaped
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def close_pipes(self) -> None:
        with self._pipes_lock:
            if not self._pipes_open:
                return
            self._pipes_open = False
        for c in (self.conn, self.control):
            with contextlib.suppress(OSError):
                c.close()
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


class _Job:
    __slots__ = ("cancelled", "future", "request", "seq", "worker")

    def __init__(self, request: Request, future: Future[Result], seq: int) -> None:
        self.request = request
        self.future = future
        self.seq = seq
        self.worker: _Worker | None = None
        self.cancelled = False


_STOP = object()

#: Pools whose dispatcher threads may still run (closed at interpreter exit).
_live: weakref.WeakSet[_Core] = weakref.WeakSet()


class _Core:
    """A pool's state and dispatcher threads; ``WorkerPool`` is its public face."""

    def __init__(
        self,
        workers: int,
        snapshot: bool,
        cache_dir: str | None,
        max_queue: int | None,
        runtimes: tuple[str, ...],
        factory: str | None = None,
    ) -> None:
        self.workers = workers
        self.max_queue = max_queue
        self._snapshot = snapshot
        self._cache_dir = cache_dir
        self._runtimes = runtimes
        self.factory = factory  # a runtime factory by import path (``WorkerPool(runtime_factory=...)``)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._pending: dict[Future[Result], _Job] = {}
        self._running: dict[Future[Result], _Job] = {}
        self._processes: set[_Worker] = set()
        self._ready = 0
        self._restarts = 0
        self._completed = 0
        self._closed = False
        self._exiting = False  # the interpreter is exiting: start no worker, kill the rest
        self.owner: weakref.ref[WorkerPool] | None = None
        self._threads = [
            threading.Thread(target=self._dispatch, name=f"execr-pool-{i}", daemon=True) for i in range(workers)
        ]
        _live.add(self)
        for t in self._threads:
            t.start()

    # -- metrics --

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "workers": self.workers,
                "ready": self._ready,
                "pending": len(self._pending),
                "in_flight": len(self._running),
                "completed": self._completed,
                "restarts": self._restarts,
            }

    def worker_pids(self) -> list[int]:
        with self._lock:
            return sorted(w.pid for w in self._processes)

    def wait_ready(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                if self._ready >= self.workers or self._closed:
                    return self._ready >= self.workers
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # -- submitting --

    def submit(self, request: Request, block: bool, timeout: float | None) -> Future[Result]:
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

    def cancel(self, future: Future[Result]) -> bool:
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
            worker = _Worker(self._snapshot, self._cache_dir, self._runtimes, self.factory)
        except Exception as e:  # e.g. no file descriptors or processes left: fail the job, keep dispatching
            return None, f"{type(e).__name__}: {e}"
        with self._lock:
            self._processes.add(worker)
            exiting = self._exiting
        why = "the interpreter is exiting" if exiting else worker.wait_ready(START_TIMEOUT)
        if why is not None:
            self._discard(worker, kill=True)
            return None, why
        with self._lock:
            self._ready += 1
        return worker, None

    def _discard(self, worker: _Worker, kill: bool) -> None:
        if kill:
            worker.kill()
        else:
            worker.exit_code()  # reap it
        worker.close_pipes()
        with self._lock:
            self._processes.discard(worker)

    def _drop_worker(self, worker: _Worker, kill: bool) -> None:
        with self._lock:
            self._ready -= 1
            self._restarts += 1
        self._discard(worker, kill)

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
                if job.cancelled:  # e.g. at interpreter exit, before a worker took it
                    self._finish(
                        job, _failure(job.request, Outcome.CANCELLED, "the run was cancelled before it started")
                    )
                    continue
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
                with self._lock:
                    self._processes.discard(worker)

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
        waitables: list[Any] = [worker.conn, worker.sentinel]
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
                    if job.cancelled:
                        return _failure(
                            job.request, Outcome.CANCELLED, "the run was cancelled by the host", started
                        ), False
                    return _failure(
                        job.request, Outcome.CRASHED, f"worker process died (exit code {code})", started
                    ), False
                if msg[0] == "result" and msg[1] == job.seq:
                    return msg[2], True
                if msg[0] == "error" and msg[1] == job.seq:
                    return _failure(job.request, Outcome.CRASHED, f"execr error in worker: {msg[2]}", started), True
                continue  # a stale message; keep waiting
            if worker.sentinel in ready:
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

    def close(self, cancel_pending: bool = False, wait: bool = True) -> None:
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

    def abandon(self) -> None:
        """The ``WorkerPool`` was garbage-collected open: run what is queued, then stop.

        Called by the garbage collector, maybe inside this pool's own locked code on this
        thread, so it takes no lock (``SimpleQueue.put`` is reentrant); nobody can submit now.
        """
        if not self._closed:
            self._closed = True
            for _ in self._threads:
                self._queue.put(_STOP)

    def begin_exit(self) -> None:
        """Interpreter exit: start no more workers; cancel queued and running requests."""
        with self._lock:
            self._exiting = True
        self.close(cancel_pending=True, wait=False)

    def finish_exit(self, deadline: float) -> None:
        """Let the workers exit until ``deadline``, then kill and reap the rest."""
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = list(self._processes)
        for worker in left:
            worker.kill()
        for t in self._threads:  # let the dispatchers resolve the runs the kills ended
            t.join(max(0.0, deadline + 1.0 - time.monotonic()))


def _forget_pools() -> None:
    """In a forked child: the pools, their threads and workers are the parent's; exit leaves them alone."""
    _live.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pools)


def _exit_all() -> None:
    """At interpreter exit, shut down every pool still running, all within ``EXIT_GRACE`` seconds."""
    deadline = time.monotonic() + EXIT_GRACE
    cores = list(_live)
    for core in cores:
        core.begin_exit()
    for core in cores:
        core.finish_exit(deadline)


at_exit(Phase.RUNS, _exit_all)


class WorkerPool:
    """A pool of worker processes, each with a warm ``Runtime``.

    ``submit(request)`` returns a ``concurrent.futures.Future`` that always resolves to a
    ``Result`` (never an exception): a worker that dies mid-run gives ``CRASHED``, a run
    stopped by ``cancel``/``close(cancel_pending=True)`` gives ``CANCELLED``.

    ``max_queue`` bounds the requests waiting for a worker: ``submit`` then blocks (or with
    ``block=False`` raises ``PoolFull``). ``pending`` and ``in_flight`` count requests
    waiting and running. Usable as a context manager; ``close()`` is idempotent and later
    submissions raise ``RuntimeClosed``. A pool never closed does not hold up interpreter
    exit (its requests end ``CANCELLED``, its workers are stopped); one garbage-collected
    open finishes its queued requests, then stops its workers.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        snapshot: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        max_queue: int | None = None,
        runtimes: Iterable[str] = ("default",),
        runtime_factory: Callable[[], Any] | None = None,
    ) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidArgument(f"workers must be a positive int; got {workers!r}")
        if max_queue is not None and (isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1):
            raise InvalidArgument(f"max_queue must be a positive int or None; got {max_queue!r}")
        if not isinstance(snapshot, bool):
            raise InvalidArgument(f"snapshot must be a bool; got {type(snapshot).__name__}")
        names = tuple(dict.fromkeys([runtimes] if isinstance(runtimes, str) else runtimes))
        for name in names:
            flavor(name)
        self.workers = workers
        self.max_queue = max_queue
        folder = None if cache_dir is None else str(Path(cache_dir).expanduser())
        spec = _factory_spec(runtime_factory)
        self._core = core = _Core(workers, snapshot, folder, max_queue, names, spec)
        # Kept by the core (which outlives this object), so the callback fires when this is collected.
        self._core.owner = weakref.ref(self, lambda _: core.abandon())

    # -- metrics --

    @property
    def pending(self) -> int:
        """Requests submitted and not yet sent to a worker."""
        return self._core.stats()["pending"]

    @property
    def in_flight(self) -> int:
        """Requests running in a worker now."""
        return self._core.stats()["in_flight"]

    @property
    def closed(self) -> bool:
        return self._core._closed

    def stats(self) -> dict[str, int]:
        """Counters for metrics: workers, ready workers, pending, in_flight, completed, restarts."""
        return self._core.stats()

    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes now started (ready or warming up)."""
        return self._core.worker_pids()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every worker has warmed up (True) or ``timeout`` passes (False)."""
        return self._core.wait_ready(timeout)

    # -- submitting --

    def execute(
        self,
        code: str,
        stdin: str | bytes = "",
        args: Sequence[str] | None = None,
        use_fuel: bool = False,
        fuel: int | Unset | None = UNSET,
        mount_fs: str | os.PathLike[str] | None = None,
        stdio: str | os.PathLike[str] | None = None,
        **options: Unpack[RunOptions],
    ) -> Future[Result]:
        """Queue one run (``execr.execute``'s arguments, validated now); the future resolves to its ``Result``.

        Waits while ``max_queue`` runs are pending; ``submit(..., block=False)`` does not.
        """
        request = make_request(
            code, stdin, args, use_fuel=use_fuel, fuel=fuel, mount_fs=mount_fs, stdio=stdio, **options
        )
        return self.submit(request)

    def submit(self, request: Request, *, block: bool = True, timeout: float | None = None) -> Future[Result]:
        """Queue a validated ``Request`` (from ``make_request``); the future resolves to its ``Result``."""
        if not isinstance(request, Request):
            raise InvalidArgument(f"submit() takes a Request (see make_request); got {type(request).__name__}")
        return self._core.submit(request, block, timeout)

    def run(self, request: Request) -> Result:
        """Submit ``request`` and wait for its result."""
        return self.submit(request).result()

    def cancel(self, future: Future[Result]) -> bool:
        """Stop a submitted request: pending ones resolve ``CANCELLED`` at once, running
        ones are asked to stop (their result says ``CANCELLED``). False if already done."""
        return self._core.cancel(future)

    # -- lifecycle --

    def close(self, cancel_pending: bool = False, *, wait: bool = True) -> None:
        """Stop accepting requests and shut the workers down (idempotent).

        By default queued requests still run first. ``cancel_pending=True`` resolves
        queued requests ``CANCELLED`` and asks running ones to stop. ``wait=False``
        returns without waiting for the workers to exit.
        """
        self._core.close(cancel_pending, wait)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel_pending=exc[0] is not None)

    def __repr__(self) -> str:
        s = self.stats()
        state = "closed" if self.closed else "open"
        counts = " ".join(f"{k}={s[k]}" for k in ("workers", "ready", "pending", "in_flight"))
        return f"<WorkerPool {state} {counts}>"
