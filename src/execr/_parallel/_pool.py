"""Pool: N worker processes, each holding a warm ``Runtime``, fed from one shared queue.

Workers are fresh interpreters started with ``subprocess`` (``python -c`` with a few fixed
lines; wasmtime, threads and ``fork`` do not mix), not with ``multiprocessing``'s spawn,
which makes every worker re-import the caller's ``__main__``: that fails under ``python -``,
``-c``, a REPL or a notebook, and re-runs a script's top level unless it is guarded. A
worker gets the caller's ``sys.path`` and nothing of its main module, then loads the
compiled module and snapshot from the on-disk cache. Each worker has one duplex pipe for
requests and results (pickled, ``multiprocessing.connection``), a one-way control pipe for
cancellation and a sentinel pipe whose write end only the worker holds, so it reads
end-of-file exactly when the worker exits (``_handle.WorkerProcess``). In the parent, one
dispatcher thread per worker (``_Core``, here) takes jobs from the shared queue
(``_jobs.Jobs``), sends the pickled request and waits for the reply or for the sentinel.

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

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Unpack

from .._exceptions import InvalidArgument, PoolFull, shown
from .._image._flavors import flavor
from .._limits import UNSET, Unset
from .._process import Phase, at_exit
from .._request import Request, make_request
from .._results import Outcome, Result
from .._run_options import RunOptions
from ._handle import WorkerProcess
from ._jobs import NOT_STARTED, Job, Jobs, failure

__all__ = ["PoolFull", "WorkerPool"]

START_TIMEOUT = 300.0  # seconds a worker may take to load (or build) the modules
EXIT_GRACE = 1.5  # seconds workers get to exit cleanly at interpreter exit before they are killed


def _factory_spec(factory: Callable[[], Any] | None) -> str | None:
    """How a worker finds ``factory``: by import path (it must be importable from the workers' sys.path)."""
    if factory is None:
        return None
    module, name = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:
        raise InvalidArgument(f"runtime_factory must be importable by name (module-level); got {shown(factory)}")
    return f"{module}:{name}"


#: Pools whose dispatcher threads may still run (closed at interpreter exit).
_live: weakref.WeakSet[_Core] = weakref.WeakSet()


class _Core:
    """A pool's worker processes and the dispatcher threads that feed them ``jobs``; ``WorkerPool`` is its face.

    Each dispatcher thread owns one worker at a time: it starts it, takes jobs from
    ``jobs`` and runs them on it, and replaces it when it dies. ``_lock`` guards the worker
    counts; ``jobs.lock`` guards the jobs.
    """

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
        self.jobs = Jobs(max_queue, stops=workers)
        self._snapshot = snapshot
        self._cache_dir = cache_dir
        self._runtimes = runtimes
        self.factory = factory  # a runtime factory by import path (``WorkerPool(runtime_factory=...)``)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a worker becomes ready or the pool closes
        self._processes: set[WorkerProcess] = set()
        self._ready = 0
        self._restarts = 0
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
        with self.jobs.lock:
            pending, in_flight, completed = len(self.jobs.pending), len(self.jobs.running), self.jobs.completed
        with self._lock:
            return {
                "workers": self.workers,
                "ready": self._ready,
                "pending": pending,
                "in_flight": in_flight,
                "completed": completed,
                "restarts": self._restarts,
            }

    def worker_pids(self) -> list[int]:
        with self._lock:
            return sorted(w.pid for w in self._processes)

    def wait_ready(self, timeout: float | None) -> bool:
        with self._changed:
            self._changed.wait_for(lambda: self._ready >= self.workers or self.jobs.closed, timeout)
            return self._ready >= self.workers

    # -- the workers --

    def _start_worker(self) -> tuple[WorkerProcess | None, str | None]:
        try:
            worker = WorkerProcess(self._snapshot, self._cache_dir, self._runtimes, self.factory)
        except Exception as e:  # e.g. no file descriptors or processes left: fail the job, keep dispatching
            return None, f"{type(e).__name__}: {e}"
        with self._lock:
            self._processes.add(worker)
            exiting = self._exiting
        why = "the interpreter is exiting" if exiting else worker.wait_ready(START_TIMEOUT)
        if why is not None:
            self._discard(worker, kill=True)
            return None, why
        with self._changed:
            self._ready += 1
            self._changed.notify_all()
        return worker, None

    def _discard(self, worker: WorkerProcess, kill: bool) -> None:
        if kill:
            worker.kill()
        else:
            worker.exit_code()  # reap it
        worker.close_pipes()
        with self._lock:
            self._processes.discard(worker)

    def _drop_worker(self, worker: WorkerProcess, kill: bool) -> None:
        with self._lock:
            self._ready -= 1
            self._restarts += 1
        self._discard(worker, kill)

    # -- dispatching --

    def _dispatch(self) -> None:
        """One dispatcher thread: keep a worker, run each job taken from the queue on it, until told to stop."""
        worker: WorkerProcess | None = None
        start_error: str | None = None
        try:
            if not self.jobs.closed:
                worker, start_error = self._start_worker()
            while True:
                job = self.jobs.take()
                if job is None:
                    return
                if job.cancelled:  # e.g. at interpreter exit, before a worker took it
                    self.jobs.finish(job, failure(job.request, Outcome.CANCELLED, NOT_STARTED))
                    continue
                if worker is None or not worker.alive():
                    if worker is not None:
                        self._drop_worker(worker, kill=False)
                        worker = None
                    worker, start_error = self._start_worker()
                    if worker is None:
                        error = f"worker failed to start: {start_error}"
                        self.jobs.finish(job, failure(job.request, Outcome.CRASHED, error))
                        continue
                result, alive = self._run_on(worker, job)
                if not alive:
                    self._drop_worker(worker, kill=True)
                    worker = None
                self.jobs.finish(job, result)
        finally:
            if worker is not None:
                with self._lock:
                    self._ready -= 1
                worker.stop()
                with self._lock:
                    self._processes.discard(worker)

    def _run_on(self, worker: WorkerProcess, job: Job) -> tuple[Result, bool]:
        """Run ``job`` on ``worker``: (result, whether the worker is still usable)."""
        if self.jobs.attach(job, worker):
            return failure(job.request, Outcome.CANCELLED, NOT_STARTED), True
        return worker.run(job)

    # -- lifecycle --

    def close(self, cancel_pending: bool = False, wait: bool = True) -> None:
        self.jobs.close(cancel_pending)
        with self._changed:
            self._changed.notify_all()
        if wait:
            for t in self._threads:
                if t is not threading.current_thread():
                    t.join()

    def abandon(self) -> None:
        """The ``WorkerPool`` was garbage-collected open: run what is queued, then stop (takes no lock)."""
        self.jobs.abandon()

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
            raise InvalidArgument(f"workers must be a positive int; got {shown(workers)}")
        if max_queue is not None and (isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1):
            raise InvalidArgument(f"max_queue must be a positive int or None; got {shown(max_queue)}")
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
        return self._core.jobs.closed

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
        return self._core.jobs.submit(request, block, timeout)

    def run(self, request: Request) -> Result:
        """Submit ``request`` and wait for its result."""
        return self.submit(request).result()

    def cancel(self, future: Future[Result]) -> bool:
        """Stop a submitted request: pending ones resolve ``CANCELLED`` at once, running
        ones are asked to stop (their result says ``CANCELLED``). False if already done."""
        return self._core.jobs.cancel(future)

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
