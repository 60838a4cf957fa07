"""Deep stacks: running a guest on a host thread whose native stack is big enough for it.

wasmtime runs wasm on the calling thread's own native stack and stops it at ``max_wasm_stack``
bytes below where it entered (a ``wasm stack overflow`` trap). That limit must be *smaller*
than what the thread has left, with room below it for the host functions the guest calls: a
guest that reached the end of the real stack first would crash the host process (SIGSEGV),
not trap. A host thread's stack is whatever its creator chose (8 MiB for glibc's main thread
and threads by default, 128 KiB for musl's threads), so an Engine whose ``max_wasm_stack`` is
larger than execr can count on runs its guests here instead: on execr's own threads, each
made with a stack of ``max_wasm_stack`` plus ``HEADROOM``. Idle threads are kept (at most
``KEEP`` per size) and hand-offs cost tens of microseconds.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["HEADROOM", "KEEP", "call", "fits"]

T = TypeVar("T")

#: Native stack beyond ``max_wasm_stack``: host functions called from the deepest wasm frame
#: (execr's WASI layer is Python), wasmtime's own frames, and the thread's start.
HEADROOM: Final = 8 << 20
KEEP: Final = 8  # idle threads kept per stack size

_create_lock = threading.Lock()


class _Worker(threading.Thread):
    """One thread with a deep stack, running the jobs handed to it one at a time."""

    def __init__(self, size: int) -> None:
        super().__init__(name=f"execr-deep-stack-{size >> 20}M", daemon=True)
        self.size = size
        self._job: tuple[Callable[[], Any], list[Any], threading.Event] | None = None
        self._ready = threading.Condition()

    def submit(self, fn: Callable[[], Any], box: list[Any], done: threading.Event) -> None:
        with self._ready:
            self._job = (fn, box, done)
            self._ready.notify()

    def run(self) -> None:
        while True:
            with self._ready:
                while self._job is None:
                    self._ready.wait()
                fn, box, done = self._job
                self._job = None
            try:
                box.append((True, fn()))
            except BaseException as e:  # handed back to the caller, re-raised there
                box.append((False, e))
            keep = _idle_again(self)  # before the caller wakes: its next call can take this thread
            done.set()
            if not keep:
                return


_idle: dict[int, list[_Worker]] = {}
_idle_lock = threading.Lock()


def _idle_again(worker: _Worker) -> bool:
    with _idle_lock:
        pool = _idle.setdefault(worker.size, [])
        if len(pool) >= KEEP:
            return False
        pool.append(worker)
        return True


def _take(size: int) -> _Worker:
    with _idle_lock:
        pool = _idle.get(size)
        if pool:
            return pool.pop()
    with _create_lock:  # threading.stack_size is process-wide: set it only around this one start
        old = threading.stack_size(size)
        try:
            worker = _Worker(size)
            worker.start()
        finally:
            threading.stack_size(old)
    return worker


def call(max_wasm_stack: int, fn: Callable[[], T], interrupt: Callable[[], None]) -> T:
    """``fn()`` on a thread whose stack holds ``max_wasm_stack`` plus ``HEADROOM``; its result or exception.

    Ctrl-C while waiting (``KeyboardInterrupt`` in this thread) calls ``interrupt()`` (which must
    make ``fn`` return soon), waits for ``fn`` to end, and raises ``KeyboardInterrupt``.
    """
    size = -(-(max_wasm_stack + HEADROOM) // (1 << 20)) << 20  # whole MiB
    worker = _take(size)
    box: list[Any] = []
    done = threading.Event()
    worker.submit(fn, box, done)
    interrupted = False
    while True:
        try:
            done.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
            interrupt()
    if interrupted:
        raise KeyboardInterrupt
    ok, value = box[0]
    if not ok:
        raise value
    result: T = value
    return result


#: What a calling thread must have beyond ``max_wasm_stack`` to run a guest itself: the caller's
#: own frames below the entry, wasmtime's, and the host functions the deepest wasm frame calls.
MIN_ROOM: Final = 2 << 20
_sizes = threading.local()


def _thread_stack() -> int:
    """The calling thread's native stack size in bytes (0: unknown), asked once per thread."""
    size = getattr(_sizes, "size", None)
    if size is None:
        size = 0
        try:
            libc = ctypes.CDLL(None)
            libc.pthread_self.restype = ctypes.c_ulong
            libc.pthread_getattr_np.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
            libc.pthread_attr_getstack.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
            libc.pthread_attr_destroy.argtypes = [ctypes.c_void_p]
            attr = ctypes.create_string_buffer(256)  # pthread_attr_t is 56 bytes on glibc x86-64
            if libc.pthread_getattr_np(libc.pthread_self(), attr) == 0:
                addr, length = ctypes.c_void_p(), ctypes.c_size_t()
                if libc.pthread_attr_getstack(attr, ctypes.byref(addr), ctypes.byref(length)) == 0:
                    size = length.value
                libc.pthread_attr_destroy(attr)
        except (OSError, AttributeError):  # no pthread_getattr_np: unknown
            size = 0
        _sizes.size = size
    return int(size)


def fits(max_wasm_stack: int) -> bool:
    """Whether the calling thread's stack is big enough to run a guest with ``max_wasm_stack`` itself
    (else ``call`` runs it on one of execr's threads: past the real stack's end the host would crash)."""
    return _thread_stack() >= max_wasm_stack + MIN_ROOM
