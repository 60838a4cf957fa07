"""Tool workers: the threads host functions run on, so a run can stop waiting for a tool that hangs.

A tool runs on one of execr's daemon threads, never on the guest's: the guest's thread waits
for it in slices and gives up at the run's deadline, cancel or Ctrl-C (the tool then runs on
to its end, unobserved, and the thread rejoins the pool). Idle threads are kept (up to
``MAX_IDLE``), so a call costs two thread hand-offs, not a thread start. Daemon threads: a
tool that never returns does not hold up the interpreter's exit.
"""

from __future__ import annotations

import _thread
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Final

__all__ = ["MAX_IDLE", "Job", "submit"]

MAX_IDLE: Final = 8


class Job:
    """One function run on a worker: ``wait`` for it, then read ``value`` or ``error``."""

    __slots__ = ("_done", "error", "fn", "value")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn: Callable[[], Any] | None = fn
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = _thread.allocate_lock()
        self._done.acquire()

    def wait(self, timeout: float) -> bool:
        """Whether the job has finished, waiting at most ``timeout`` seconds for it."""
        if self._done.acquire(timeout=timeout):
            self._done.release()
            return True
        return False

    def _run(self) -> None:
        fn, self.fn = self.fn, None
        try:
            assert fn is not None
            self.value = fn()
        except BaseException as e:  # a tool's SystemExit is its error, not this thread's end
            self.error = e
        finally:
            self._done.release()


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="execr-tool", daemon=True)
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            job._run()
            del job
            if not _rejoin(self):
                return


_idle: list[_Worker] = []
_lock = threading.Lock()


def _rejoin(worker: _Worker) -> bool:
    with _lock:
        if len(_idle) < MAX_IDLE:
            _idle.append(worker)
            return True
    return False


def submit(fn: Callable[[], Any]) -> Job:
    """Run ``fn`` on a tool worker."""
    job = Job(fn)
    with _lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.start()
    worker.jobs.put(job)
    return job


def _after_fork() -> None:  # a forked child has none of its parent's threads
    global _lock
    _lock = threading.Lock()
    _idle.clear()


os.register_at_fork(after_in_child=_after_fork)
