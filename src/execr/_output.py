"""Output capture: keeping the head and the tail of a guest's stdout and stderr under a cap."""

from __future__ import annotations

import threading

__all__ = ["Capture"]


class Capture:
    """Collects written bytes; past ``cap`` it keeps the first and the last ``cap/2`` bytes.

    ``cap=None`` keeps everything. The guest's ``fd_write`` on stdout or stderr lands here
    (``_guestfs``), so the host holds at most ``cap`` bytes per stream whatever the guest
    writes: the overshoot is zero. Thread-safe.
    """

    __slots__ = ("_cap", "_head", "_lock", "_tail", "_tail_cap", "total")

    def __init__(self, cap: int | None) -> None:
        self._cap = cap
        self._head = bytearray()
        self._tail = bytearray()
        self._tail_cap = 0 if cap is None else cap - cap // 2
        self._lock = threading.Lock()
        self.total = 0

    def write(self, data: bytes) -> None:
        """Take one write from the guest (never raises, never blocks the guest for long)."""
        with self._lock:
            self.total += len(data)
            if self._cap is None:
                self._head += data
                return
            room = self._cap - len(self._head)
            if room > 0:
                self._head += data[:room]
                data = data[room:]
            if data and self._tail_cap:
                self._tail += data[-self._tail_cap :]
                if len(self._tail) > 2 * self._tail_cap:
                    del self._tail[: -self._tail_cap]

    def value(self) -> tuple[bytes, int]:
        """(kept bytes, number of bytes dropped from the middle)."""
        with self._lock:
            if self._cap is None or self.total <= self._cap:
                return bytes(self._head), 0
            t = self._tail_cap
            last = (
                bytes(self._head[len(self._head) - (t - len(self._tail)) :] + self._tail)
                if len(self._tail) < t
                else bytes(self._tail[-t:])
            )
            kept = bytes(self._head[: self._cap // 2]) + (last if t else b"")
            return kept, self.total - len(kept)
