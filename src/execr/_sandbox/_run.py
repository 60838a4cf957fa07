"""A run's host state, and how a run is stopped: the epoch callback, halting, Ctrl-C."""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal's raw functions (no stubs)
import ctypes
import dataclasses
import signal
import threading
import time
from typing import Any

import wasmtime as wt
from wasmtime import _bindings as ffi

from .. import _guestfs
from .._results import Outcome
from .._tools import ToolRun

_local = threading.local()


@dataclasses.dataclass
class _Run:
    """Per-run host state, reachable from host functions on the running thread."""

    deadline: float | None
    cancel: threading.Event | None
    files: _guestfs.GuestFiles | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    stop: tuple[Outcome, str] | None = None
    exit_status: int | None = None
    halted: bool = False  # proc_exit: the guest must not run one more instruction
    interrupted: bool = False  # Ctrl-C reached the host while this run was in progress
    memory: wt.Memory | None = None
    tools: ToolRun | None = None  # the run's host functions (``host.call``); None: the guest gets -1
    alloc: wt.Func | None = None  # the guest's ``host_alloc`` export, found at the first tool call

    def check(self) -> tuple[Outcome, str] | None:
        """Decide whether the run must stop now (and remember why)."""
        if self.stop is None:
            if self.cancel is not None and self.cancel.is_set():
                self.stop = (Outcome.CANCELLED, "the run was cancelled by the host")
            elif self.deadline is not None and time.monotonic() >= self.deadline:
                self.stop = (Outcome.TIMED_OUT, "wall-clock limit reached")
        return self.stop

    def interrupt(self) -> None:
        """Ctrl-C: stop the guest now; the host re-raises ``KeyboardInterrupt`` once it is cleaned up."""
        self.interrupted = True
        if self.stop is None:
            self.stop = (Outcome.CANCELLED, "interrupted (Ctrl-C)")

    def must_stop(self) -> bool:
        return self.halted or self.check() is not None


def _current() -> _Run | None:
    return getattr(_local, "run", None)


_CallbackType = ffi._wasmtime_store_epoch_deadline_callback.argtypes[1]
_FinalizerType = ffi._wasmtime_store_epoch_deadline_callback.argtypes[3]


def _on_epoch(
    _ctx: object, _data: object, delta: ctypes._Pointer[ctypes.c_uint64], kind: ctypes._Pointer[ctypes.c_uint8]
) -> int:
    run = _current()
    try:
        stop = run is not None and run.must_stop()
    except KeyboardInterrupt:  # Ctrl-C lands in whatever Python code runs on the main thread: here
        if run is not None:
            run.interrupt()
        stop = run is not None
    except BaseException:  # never let an exception cross the FFI boundary
        stop = False
    if stop:
        reason = run.stop[1] if run is not None and run.stop is not None else "stopped"
        err = ffi.wasmtime_error_new(ctypes.c_char_p(f"execr: {reason}".encode()))
        return ctypes.cast(err, ctypes.c_void_p).value or 0
    delta[0] = 1
    kind[0] = 0  # continue
    return 0


_ON_EPOCH = _CallbackType(_on_epoch)
_NO_FINALIZER = _FinalizerType(lambda _data: None)


def _catch_sigint(state: _Run) -> Any:
    """On the main thread, let Ctrl-C stop this run instead of raising inside wasmtime's callbacks.

    Python raises ``KeyboardInterrupt`` at the first bytecode of whatever Python code runs next
    on the main thread: during a run that is an epoch callback or a host function, where it
    would be lost. So while a run is in progress, SIGINT only marks it interrupted (the guest
    stops at the next epoch check, or its sleep is cut short), and ``Host.run`` raises
    ``KeyboardInterrupt`` after cleaning up. A handler the application installed itself is
    left alone. Returns the handler to restore, or None.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:  # ``_signal``: ``signal``'s wrappers convert to and from enums, ~10 us a call
        if _signal.getsignal(_SIGINT) is not signal.default_int_handler:
            return None
        return _signal.signal(_SIGINT, lambda _sig, _frame: state.interrupt())
    except (ValueError, OSError):
        return None


def restore_sigint(handler: Any) -> None:
    """Put back the handler ``_catch_sigint`` replaced."""
    _signal.signal(_SIGINT, handler)


_SIGINT = int(signal.SIGINT)
