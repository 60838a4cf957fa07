"""Tool workers: the threads host functions run on, so a run can stop waiting for a tool that hangs.

A tool runs on one of execr's daemon threads, never on the guest's: the guest's thread waits
for it in slices and gives up at the run's deadline, cancel or Ctrl-C (the tool then runs on
to its end, unobserved, and the thread rejoins the pool). Idle threads are kept (up to
``MAX_IDLE``), so a call costs two thread hand-offs (a lock released each way: about 10-20 us,
most of it the operating system waking a thread), not a thread start. Daemon threads: a
tool that never returns does not hold up the interpreter's exit.
"""

from __future__ import annotations

import _thread
import os
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


class _Worker(threading.Thread):
    """A thread that runs one job at a time: ``give`` hands it one (a lock, not a queue, wakes it)."""

    def __init__(self) -> None:
        super().__init__(name="execr-tool", daemon=True)
        self._go = _thread.allocate_lock()
        self._go.acquire()
        self._job: Job | None = None

    def give(self, job: Job) -> None:
        self._job = job
        self._go.release()

    def run(self) -> None:
        while True:
            self._go.acquire()
            job, self._job = self._job, None
            assert job is not None
            job._run()
            keep = _rejoin(self)  # before the caller wakes: its next call can take this thread
            done = job._done
            del job
            done.release()
            if not keep:
                return


#: Idle workers. ``list.append`` and ``list.pop`` are atomic: no lock (at worst a race keeps
#: one or two more than ``MAX_IDLE``).
_idle: list[_Worker] = []


def _rejoin(worker: _Worker) -> bool:
    if len(_idle) < MAX_IDLE:
        _idle.append(worker)
        return True
    return False


def submit(fn: Callable[[], Any]) -> Job:
    """Run ``fn`` on a tool worker."""
    job = Job(fn)
    try:
        worker = _idle.pop()
    except IndexError:
        worker = _Worker()
        worker.start()
    worker.give(job)
    return job


def _after_fork() -> None:  # a forked child has none of its parent's threads
    _idle.clear()


os.register_at_fork(after_in_child=_after_fork)
