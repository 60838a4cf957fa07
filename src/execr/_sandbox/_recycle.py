"""Recycled instances: a compiled module and the instances it keeps between runs."""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

import wasmtime as wt

from .._exports import SP_EXPORT
from .._process import Phase, at_exit
from . import _pagemap
from ._call import Raw, global_i32, memory_span
from ._consts import KEEP_RESIDENT, MAX_IDLE
from ._threads import _reaper

if TYPE_CHECKING:
    from ._host import Host


class _Warm:
    """An instance kept between runs, with what it takes to put it back to its initial state."""

    __slots__ = ("calls", "exports", "length", "mem", "restorer", "sp", "sp0", "store")

    def __init__(self, store: wt.Store, exports: Any, mem: wt.Memory) -> None:
        sp = exports[SP_EXPORT]
        assert isinstance(sp, wt.Global)
        self.store, self.exports, self.mem, self.sp = store, exports, mem, sp
        self.calls: dict[int, Raw] = {}  # entry functions resolved in this instance (``_entry``)
        self.sp0 = sp.value(store)
        base, self.length = memory_span(store, mem)
        self.restorer = _pagemap.Restorer(base, self.length, KEEP_RESIDENT)

    def reset(self) -> bool:
        """Put memory and stack pointer back as they were at instantiation (False: retire it); WASI
        holds no run's state (an entry run's context is empty; its files are ``_guestfs``'s)."""
        try:
            if self.mem.data_len(self.store) != self.length:
                return False  # memory grew: wasm cannot shrink it
            self.restorer.reset()
            if global_i32(self.store, self.sp) != self.sp0:  # a run that returned has already put it back
                self.sp.set_value(self.store, self.sp0)
            return True
        except Exception:  # any doubt: retire the instance, never hand it on
            return False

    def retire(self) -> None:
        self.restorer.close()
        _reaper.put(self.store)


def _warm(store: wt.Store, exports: Any, mem: wt.Memory) -> _Warm | None:
    try:
        return _Warm(store, exports, mem)
    except (KeyError, ValueError, OSError):
        return None


class Compiled:
    """A compiled module ready to instantiate (its InstancePre is linked once).

    ``recycle``: runs through an ``EntryPoint`` may reuse instances (set for snapshots whose
    only mutable state is linear memory, the stack pointer and WASI; see ``_Warm``).
    """

    def __init__(self, host: Host, module: wt.Module) -> None:
        self.module = module
        self.host = host
        self.pre = host._linker.instantiate_pre(module)
        mem = next(e.type for e in module.exports if e.name == "memory")
        assert isinstance(mem, wt.MemoryType)
        self.min_bytes = mem.limits.min * 65536
        self.recycle = False
        self._idle: list[_Warm] = []
        self._released = False
        self._lock = threading.Lock()
        _compiled.add(self)

    def serialize(self) -> bytes:
        """The compiled code, for ``Host.load`` in a later process (same wasmtime, same engine)."""
        return bytes(self.module.serialize())

    def checkout(self) -> _Warm | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def checkin(self, warm: _Warm) -> None:
        """Keep ``warm`` for the next run if it resets cleanly and there is room; else retire it."""
        if warm.reset():
            with self._lock:
                if len(self._idle) < MAX_IDLE and not self._released:
                    self._idle.append(warm)
                    return
        warm.retire()

    def release(self) -> None:
        """Retire the kept instances and keep none from now on (idempotent)."""
        with self._lock:
            idle, self._idle, self._released = self._idle, [], True
        for warm in idle:
            warm.retire()


_compiled: weakref.WeakSet[Compiled] = weakref.WeakSet()


def _release_all() -> None:
    """At exit: retire every kept instance, and free the compiled modules while wasmtime's
    bindings still work (left to finalizers, they fail noisily during interpreter shutdown)."""
    for compiled in list(_compiled):
        compiled.release()
        for obj in (compiled.pre, compiled.module):
            with contextlib.suppress(Exception):
                obj.close()


at_exit(Phase.INSTANCES, _release_all)


def recycling() -> bool:
    """Whether snapshot runs reuse instances here (``EXECR_RECYCLE`` is not 0 and the kernel can)."""
    return os.environ.get("EXECR_RECYCLE", "1") != "0" and _pagemap.available()
