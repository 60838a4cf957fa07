"""Output capture: keeping the head and the tail of a guest's stdout and stderr under a cap."""

from __future__ import annotations

import ctypes
import os
import threading

__all__ = ["Capture", "FileCapture"]


class Capture:
    """Collects written bytes; past ``cap`` it keeps the first and the last ``cap/2`` bytes.

    ``cap=None`` keeps everything. Thread-safe: wasmtime may call ``write`` from its own
    worker threads.
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


_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_SLACK = 1 << 20  # let a stream run this far past its cap before dropping its middle


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free the blocks of ``[offset, offset + length)`` (reads as zeros); False if unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return bool(fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) == 0)


class FileCapture:
    """Collects a stream through a host file (wasmtime writes it directly: ~25x cheaper
    per write than a callback), keeping the head and the tail under ``cap``.

    While the run goes on, ``poll()`` (called by the watchdog on the run's thread, the
    guest paused) saves the head and punches a hole over the middle once the file
    passes ``cap`` by ``_SLACK``, so a flood never fills the disk. Where holes cannot be
    punched, ``poll()`` returns a reason to stop the run instead.
    """

    __slots__ = ("_cap", "_head", "path")

    def __init__(self, cap: int | None, path: str) -> None:
        self._cap = cap
        self._head: bytes | None = None
        self.path = path

    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def poll(self, name: str) -> str | None:
        """Bound the file's disk use; return a reason to stop if that is impossible."""
        cap = self._cap
        if cap is None:
            return None
        size = self._size()
        if size <= cap + _SLACK:
            return None
        fd = os.open(self.path, os.O_RDWR)
        try:
            if self._head is None:
                self._head = os.pread(fd, cap // 2, 0)
            if not _punch_hole(fd, cap // 2, size - cap):
                return f"{name} passed {size} bytes (cap {cap}) on a file system that cannot drop the middle"
        finally:
            os.close(fd)
        return None

    def value(self) -> tuple[bytes, int]:
        """(kept bytes, number of bytes dropped from the middle)."""
        size = self._size()
        try:
            with open(self.path, "rb") as f:
                if self._cap is None or size <= self._cap:
                    return f.read(), 0
                head = self._head if self._head is not None else f.read(self._cap // 2)
                tail_len = self._cap - self._cap // 2
                f.seek(size - tail_len)
                tail = f.read(tail_len) if tail_len else b""
        except OSError:
            return b"", size
        return head + tail, size - len(head) - len(tail)
