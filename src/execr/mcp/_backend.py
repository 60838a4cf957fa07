"""Backends: where ``run_python``'s runs happen (this process's threads, a ``WorkerPool``, or a host's runner).

Every backend admits at most ``capacity`` runs at once (running plus waiting), like
``execr serve`` (workers + ``--max-queue``); one more is refused with ``Busy`` rather than
queued without bound. A call the client cancels stops its run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import anyio
import anyio.to_thread

from .._exceptions import ExecrError, RuntimeClosed
from .._parallel._pool import PoolFull, WorkerPool
from .._request import Request
from .._results import Result
from .._runtime import Runtime
from ..server._config import ServerConfig

__all__ = ["Backend", "Busy", "HostBackend", "LocalBackend", "PoolBackend", "Runner", "Runs", "local_runtime"]

#: A host's own way to run a request (``execr serve``'s pool, with its admission and metrics).
Runner = Callable[[Request], Awaitable[Result]]


class Runs(Protocol):
    """What the in-process backend needs of a runtime (``execr.Runtime``, or ``execr.testing.FakeRuntime``)."""

    def warmup(self, runtimes: Iterable[str] = ...) -> None: ...

    def run(self, request: Request, cancel: threading.Event | None = None) -> Result: ...


def local_runtime(config: ServerConfig) -> Runs:
    """The runtime for in-process runs: ``config.runtime_factory()`` (a test seam), else a ``Runtime``."""
    if config.runtime_factory is not None:
        runtime: Runs = config.runtime_factory()
        return runtime
    return Runtime(snapshot=config.snapshot, cache_dir=config.cache_dir)


class Busy(ExecrError):
    """The backend already holds as many runs as it admits; the caller should retry later."""


class Backend:
    """Runs validated requests, at most ``capacity`` at once (``None``: the runner admits)."""

    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        self.admitted = 0  # event-loop owned

    async def start(self) -> None:
        """Get ready to run (start workers, load the runtime); called once before serving."""

    async def close(self) -> None:
        """Stop; runs still waiting are cancelled (idempotent)."""

    def info_runtime(self) -> Any:
        """A ``Runtime`` to describe (``list_runtimes``); only its files are read."""
        return Runtime()

    async def run(self, request: Request) -> Result:
        """Run ``request``; ``Busy`` when full."""
        if self.capacity is not None and self.admitted >= self.capacity:
            raise Busy(f"the server is busy ({self.admitted} runs running or waiting); retry in a moment")
        self.admitted += 1
        try:
            return await self._run(request)
        finally:
            self.admitted -= 1

    async def _run(self, request: Request) -> Result:
        raise NotImplementedError


class LocalBackend(Backend):
    """Runs on threads of this process, ``concurrency`` at a time, on one ``Runtime``.

    The runtime enforces every limit itself (the epoch ticker stops a run at its
    timeout), so a thread is never held longer than the run's timeout.
    """

    def __init__(self, runtime: Runs, concurrency: int, max_queue: int, runtimes: tuple[str, ...]) -> None:
        super().__init__(concurrency + max_queue)
        self.runtime = runtime
        self.concurrency = concurrency
        self.runtimes = runtimes
        self._limiter: anyio.CapacityLimiter | None = None
        self._warm: threading.Thread | None = None

    async def start(self) -> None:
        self._limiter = anyio.CapacityLimiter(self.concurrency)
        # Load the runtimes in the background: the first call waits for it, the handshake does not.
        self._warm = threading.Thread(target=self._warmup, name="execr-mcp-warmup", daemon=True)
        self._warm.start()

    def _warmup(self) -> None:
        try:
            self.runtime.warmup(self.runtimes)
            # One run warms the host paths too (the first run of a process costs a few ms more).
            self.runtime.run(Request(code="pass"))
        except Exception:
            pass  # not ready: the first call says why, as a tool result

    def info_runtime(self) -> Any:
        return self.runtime

    async def _run(self, request: Request) -> Result:
        if self._limiter is None:  # mounted without start()
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        cancel = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                self.runtime.run, request, cancel, limiter=self._limiter, abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            cancel.set()  # the abandoned thread's run stops at its next check
            raise


class PoolBackend(Backend):
    """Runs in a ``WorkerPool`` of warm worker processes, like ``execr serve``."""

    def __init__(self, workers: int, max_queue: int, **pool_options: Any) -> None:
        super().__init__(workers + max_queue)
        self.workers = workers
        self.pool_options = pool_options
        self.pool: WorkerPool | None = None

    async def start(self) -> None:
        self.pool = await anyio.to_thread.run_sync(lambda: WorkerPool(self.workers, **self.pool_options))

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await anyio.to_thread.run_sync(lambda: pool.close(cancel_pending=True))

    def info_runtime(self) -> Any:
        opts = self.pool_options
        return Runtime(snapshot=opts.get("snapshot", True), cache_dir=opts.get("cache_dir"))

    async def _run(self, request: Request) -> Result:
        pool = self.pool
        if pool is None:
            raise Busy("the server is starting or stopping; retry in a moment")
        try:
            future = pool.submit(request, block=False)
        except PoolFull as e:
            raise Busy(f"the server is busy ({e}); retry in a moment") from e
        except RuntimeClosed as e:
            raise Busy("the server is shutting down") from e
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            pool.cancel(future)
            raise


class HostBackend(Backend):
    """Runs through a host's ``Runner`` (``execr serve`` mounting ``/mcp`` shares its pool and queue)."""

    def __init__(self, runner: Runner) -> None:
        super().__init__(None)
        self.runner = runner

    async def _run(self, request: Request) -> Result:
        try:
            return await self.runner(request)
        except Exception as e:
            if getattr(e, "status", None) in (429, 503):  # execr serve's queue_full / unavailable
                raise Busy(f"the server is busy: {e}") from e
            raise
