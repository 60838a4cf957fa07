"""``await_state``: wait, bounded, for a state that changes without an event a test could wait on."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["await_state"]


def await_state(holds: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Wait until ``holds()`` is true; fail naming ``what`` after ``timeout`` seconds.

    For a pool's counters (``in_flight``, ``pending``) and a server's readiness, which other
    threads and processes change without signalling anything a test can wait on, so this
    polls them every 10 ms, bounded by ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while not holds():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)
