"""Exceptions: the one tree every execr error belongs to.

::

    ExecrError
    ├── InvalidArgument (ValueError)       bad input to an execr API; names the argument
    ├── RuntimeUnavailable (RuntimeError)  the CPython binary is missing, corrupt or cannot load
    ├── RuntimeClosed (RuntimeError)       a closed Runtime, pool or session was used
    │   └── SessionExpired                 a session passed its idle timeout, lifetime or call budget
    ├── CheckpointRefused (ValueError)     a checkpoint that is corrupt, or for another runtime or binary
    ├── PoolFull (queue.Full)              ``WorkerPool.submit(block=False)`` found the queue full
    └── OutcomeError                       raised by ``Result.raise_for_outcome()``
        ├── GuestFailed                    the program exited with a non-zero code
        ├── GuestTimedOut (TimeoutError)   the wall-clock limit stopped it
        ├── GuestOutOfFuel                 the fuel limit stopped it
        ├── GuestMemoryLimit (MemoryError) the memory limit stopped it
        ├── GuestFileLimit                 it wrote more files or bytes than allowed
        ├── GuestCrashed                   a trap or an execr-side failure ended it
        └── GuestCancelled                 the host stopped it (cancel, shutdown, Ctrl-C in a worker)

Guest failures are data (a ``Result``); only host misuse raises.
"""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._results import Result

__all__ = [
    "CheckpointRefused",
    "ExecrError",
    "GuestCancelled",
    "GuestCrashed",
    "GuestFailed",
    "GuestFileLimit",
    "GuestMemoryLimit",
    "GuestOutOfFuel",
    "GuestTimedOut",
    "InvalidArgument",
    "OutcomeError",
    "PoolFull",
    "RuntimeClosed",
    "RuntimeUnavailable",
    "SessionExpired",
]


def shown(value: object, limit: int = 120) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: messages quote untrusted
    values, and a repr can fail (an int of over 4,300 digits, a broken ``__repr__``) or be huge."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "..."


class ExecrError(Exception):
    """Base class of every exception execr raises."""


class InvalidArgument(ExecrError, ValueError):
    """An argument to an execr API is of the wrong type or out of range."""


class RuntimeUnavailable(ExecrError, RuntimeError):
    """The sandbox runtime cannot be loaded (missing or corrupt binary, failed compile)."""


class RuntimeClosed(ExecrError, RuntimeError):
    """A runtime, pool or session was used after ``close()``."""


class OutcomeError(ExecrError):
    """A run did not complete successfully; ``result`` holds everything it produced."""

    def __init__(self, result: Result) -> None:
        self.result = result
        detail = f": {result.error}" if result.error else ""
        super().__init__(f"guest run ended with outcome {result.outcome.value!r}{detail}")


class GuestFailed(OutcomeError):
    """The guest exited with a non-zero exit code."""


class GuestTimedOut(OutcomeError, TimeoutError):
    """The guest was stopped by the wall-clock limit."""


class GuestOutOfFuel(OutcomeError):
    """The guest used up its fuel (instruction budget)."""


class GuestMemoryLimit(OutcomeError, MemoryError):
    """The guest needed more linear memory than the limit allows."""


class GuestFileLimit(OutcomeError):
    """The guest wrote more files or bytes into writable mounts than allowed."""


class GuestCrashed(OutcomeError):
    """The guest ended with a trap (or execr failed to run it); see ``result.error``."""


class GuestCancelled(OutcomeError):
    """The host stopped the run before it ended (a cancel, a server shutdown)."""


class PoolFull(ExecrError, queue.Full):
    """``WorkerPool.submit(..., block=False)`` found ``max_queue`` requests already pending."""


class SessionExpired(RuntimeClosed):
    """The session passed its idle timeout, its lifetime or its call budget, and was closed."""


class CheckpointRefused(ExecrError, ValueError):
    """A checkpoint that is corrupt, of another format version, or for another runtime or binary."""
