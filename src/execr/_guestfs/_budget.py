"""Budgets: the file caps of one run, and the descriptors all runs of this process may hold."""

from __future__ import annotations

import dataclasses
import threading
from typing import Final


def _host_budget() -> int:
    """Guest descriptors all runs of this process may hold together: the host keeps 256 for itself."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft <= 0:
            soft = 1 << 20
    except (ImportError, OSError, ValueError):
        soft = 1024
    return max(32, soft - 256)


class _HostFds:
    """The process-wide count of descriptors guests hold, under ``_host_budget()`` (thread-safe)."""

    def __init__(self) -> None:
        self.budget = _host_budget()
        self.held = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.held >= self.budget:
                return False
            self.held += 1
            return True

    def give(self, n: int = 1) -> None:
        with self._lock:
            self.held -= n


HOST_FDS: Final = _HostFds()


@dataclasses.dataclass
class Caps:
    """The file caps of one run (``None``: no limit)."""

    max_files: int | None = None
    max_bytes: int | None = None
    max_open: int | None = None
