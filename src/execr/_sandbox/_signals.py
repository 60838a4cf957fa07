"""Trap handlers: keeping wasmtime's SIGSEGV/SIGILL/SIGFPE/SIGBUS handlers installed."""

from __future__ import annotations

import ctypes
import signal
import threading


class _TrapHandlers:
    """Keeps wasmtime's trap handlers (SIGSEGV, SIGILL, SIGFPE, SIGBUS) installed.

    wasmtime turns a guest's out-of-bounds access or ``unreachable`` into a trap through
    these signals, and installs its handlers when the Engine is created. Anything that
    installs its own later (``faulthandler.enable()``, ``ray.init()``) would make the next
    guest trap kill the host process instead. Before each run the handlers are checked
    and, if replaced, put back (a few microseconds; no-op where ``sigaction`` is missing).
    """

    _SIGNALS = tuple(getattr(signal, n) for n in ("SIGSEGV", "SIGILL", "SIGFPE", "SIGBUS") if hasattr(signal, n))
    _SIZE = 512  # bytes, more than any libc's struct sigaction

    def __init__(self) -> None:
        self._saved: list[tuple[int, ctypes.Array[ctypes.c_char], int | None]] = []
        try:
            self._sigaction = ctypes.PyDLL(None).sigaction  # keeps the GIL: a syscall of ~1 us, 4 per run
        except (OSError, AttributeError):
            return
        self._sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        self._local = threading.local()  # ``ensure``'s buffer, one per thread
        for sig in self._SIGNALS:
            buf = ctypes.create_string_buffer(self._SIZE)
            if self._sigaction(sig, None, buf) == 0:
                self._saved.append((sig, buf, ctypes.c_void_p.from_buffer(buf).value))

    def ensure(self) -> None:
        """Reinstall any of wasmtime's handlers that something else replaced."""
        if not self._saved:
            return
        now = getattr(self._local, "now", None)
        if now is None:
            now = self._local.now = ctypes.create_string_buffer(self._SIZE)
        for sig, saved, handler in self._saved:
            if self._sigaction(sig, None, now) == 0 and ctypes.c_void_p.from_buffer(now).value != handler:
                self._sigaction(sig, saved, None)
