"""Process: the one owner of execr's process-wide state and of the order it is torn down at exit.

Process-wide state (each created lazily, on first use, by the module named):

- the wasmtime Engines, Linkers and epoch tickers (``_sandbox.host(fuel)``: one metering fuel, one not;
  Linkers are freed after the stores), the store reaper and
  the trap-handler guard (``_sandbox``);
- the recycled instances of each compiled module (``_sandbox._recycle``);
- the default ``Runtime`` behind ``execute()`` (``_runtime.default_runtime()``);
- worker pools (``_parallel``), run roots kept for reuse and the trash thread (``_workspace``);
- the process-wide descriptor budget of guests (``_guestfs.HOST_FDS``).

Teardown is one ``atexit`` hook that runs the registered steps phase by phase, in this
order, whatever the import order was:

1. ``RUNS``: pools cancel what is queued and stop and reap their workers;
2. ``INSTANCES``: recycled instances are retired (their stores go to the reaper);
3. ``STORES``: the reaper frees every store, before wasmtime's own threads wind down
   (freeing them later made wasmtime panic at exit);
4. ``FILES``: run roots and the trash are removed.

A failing step never stops the others.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Drainer", "Phase", "at_exit"]


class Phase(enum.IntEnum):
    """Teardown phases, in the order they run."""

    RUNS = 1
    INSTANCES = 2
    STORES = 3
    FILES = 4


_steps: dict[Phase, list[Callable[[], object]]] = {phase: [] for phase in Phase}
_lock = threading.Lock()


def at_exit(phase: Phase, step: Callable[[], object]) -> None:
    """Run ``step`` at interpreter exit, in ``phase`` (steps of one phase run in registration order)."""
    with _lock:
        _steps[phase].append(step)


def _teardown() -> None:
    for phase in Phase:
        with _lock:
            steps = list(_steps[phase])
        for step in steps:
            with contextlib.suppress(Exception):
                step()


atexit.register(_teardown)


class Drainer(Generic[T]):
    """Applies ``action`` to items on a background daemon thread, in order; drained at exit in ``phase``.

    Work that need not delay a result goes here (freeing a store, removing a run root). It is
    still done deterministically: ``drain()`` (run at exit, in its phase) finishes every item
    left, on the calling thread if the background one is gone.
    """

    def __init__(self, action: Callable[[T], object], name: str, phase: Phase) -> None:
        self._action = action
        self._name = name
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        at_exit(phase, self.drain)

    def put(self, item: T) -> None:
        """Queue ``item`` (starts the thread if it is not running)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._queue.put(item)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            with contextlib.suppress(Exception):
                self._action(item)

    def drain(self, timeout: float = 10.0) -> None:
        """Finish every queued item now (the thread stops; a later ``put`` starts a new one)."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                with contextlib.suppress(Exception):
                    self._action(item)
