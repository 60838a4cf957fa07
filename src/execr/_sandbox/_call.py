"""Raw wasmtime calls for the per-run hot path: guest functions, memory, globals, host callbacks.

wasmtime-py builds type and value objects on every call: ``Func.__call__`` costs ~20 us of
Python for a call whose own cost is ~2.5 us, and even reading a memory's address costs ~5 us
through ``ctypes.cast``. Here a few wasmtime C functions get private prototypes that take and
return plain ints (wasmtime-py's own stay as they are). Those that only read or set store
state keep the GIL (``PyDLL``); ``wasmtime_func_call_unchecked`` runs guest code, so it
releases it as wasmtime-py's calls do.

A ``Raw`` function checks its type once (``i32`` parameters and results only) and then calls
``wasmtime_func_call_unchecked`` with a reused argument array. Traps and errors are raised as
``Func.__call__`` raises them (``wt.Trap``, ``wt.ExitTrap``, ``wt.WasmtimeError``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

import wasmtime as wt
from wasmtime import _bindings as ffi
from wasmtime._ffi import WASMTIME_I32
from wasmtime._ffi import dll as _dll
from wasmtime._func import maybe_raise_last_exn

__all__ = ["Raw", "global_i32", "memory_span", "read", "table_func", "write", "write_all"]

_pylib = ctypes.PyDLL(_dll._name, handle=_dll._handle)
_vp, _size = ctypes.c_void_p, ctypes.c_size_t


def _proto(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    fn = lib[name]  # ``lib[name]`` is a new function object; ``lib.name`` is wasmtime-py's
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_caller_context = _proto(_pylib, "wasmtime_caller_context", _vp, _vp)
_memory_data = _proto(_pylib, "wasmtime_memory_data", _vp, _vp, _vp)
_memory_size = _proto(_pylib, "wasmtime_memory_data_size", _size, _vp, _vp)
_set_epoch_deadline = _proto(_pylib, "wasmtime_context_set_epoch_deadline", None, _vp, ctypes.c_uint64)
_func_call = _proto(_dll, "wasmtime_func_call_unchecked", _vp, _vp, _vp, _vp, _size, _vp)
_trap_delete = _proto(_pylib, "wasm_trap_delete", None, _vp)
_error_delete = _proto(_pylib, "wasmtime_error_delete", None, _vp)
_define_unchecked = _proto(
    _pylib,
    "wasmtime_linker_define_func_unchecked",
    _vp,
    _vp,
    ctypes.c_char_p,
    _size,
    ctypes.c_char_p,
    _size,
    _vp,
    _vp,
    _vp,
    _vp,
)


class Raw:
    """A guest function taking and returning only ``i32`` values, callable without per-call type work."""

    __slots__ = ("_at", "_func", "_slots", "_trap", "params", "results")

    def __init__(self, store: wt.Store, func: wt.Func) -> None:
        ty = func.type(store)
        kinds = [str(t) for t in (*ty.params, *ty.results)]
        if any(kind != "i32" for kind in kinds):
            raise TypeError(f"not an i32-only function: {kinds}")
        self.params, self.results = len(ty.params), len(ty.results)
        self._func = func._func  # the handle (store id and index): held here, passed by address
        self._at = ctypes.addressof(self._func)
        self._slots = (ffi.wasmtime_val_raw_t * max(1, self.params, self.results))()
        self._trap = ctypes.c_void_p()

    def __call__(self, store: wt.Store, *args: int) -> int | None:
        """Call it in ``store`` (the store it came from); the first result, or None without one."""
        if len(args) != self.params:
            raise TypeError(f"expected {self.params} arguments, got {len(args)}")
        slots, trap = self._slots, self._trap
        for i, arg in enumerate(args):
            slots[i].i32 = arg
        error = _func_call(store._context(), self._at, slots, len(slots), ctypes.addressof(trap))
        if error:  # an ExitTrap when it carries an exit status
            raise wt.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
        if trap.value:
            caught = wt.Trap._from_ptr(ctypes.cast(trap.value, ctypes.POINTER(ffi.wasm_trap_t)))
            trap.value = None
            maybe_raise_last_exn()  # an exception a host function raised takes precedence
            raise caught
        return int(slots[0].i32) if self.results else None


def table_func(store: wt.Store, table: wt.Table, index: int) -> wt.Func | None:
    """The function at ``index`` of ``table`` (None: out of bounds, null, or not a function)."""
    found = table.get(store, index)
    return found if isinstance(found, wt.Func) else None


def memory_span(store: wt.Store, mem: wt.Memory) -> tuple[int, int]:
    """The address and byte length of ``mem`` now (both change when memory grows)."""
    ctx, handle = store._context(), ctypes.addressof(mem._memory)
    return _memory_data(ctx, handle) or 0, _memory_size(ctx, handle)


def write(store: wt.Store, mem: wt.Memory, data: bytes, at: int) -> None:
    """Copy ``data`` into guest memory at ``at`` (``IndexError`` outside memory)."""
    base, length = memory_span(store, mem)
    if at < 0 or at + len(data) > length:
        raise IndexError(f"{len(data)} bytes at {at} lie outside memory of {length} bytes")
    ctypes.memmove(base + at, data, len(data))


def read(store: wt.Store, mem: wt.Memory, start: int, stop: int) -> bytes:
    """A copy of guest memory ``[start, stop)`` (``IndexError`` outside memory)."""
    base, length = memory_span(store, mem)
    if start < 0 or stop < start or stop > length:
        raise IndexError(f"[{start}, {stop}) lies outside memory of {length} bytes")
    return ctypes.string_at(base + start, stop - start)


def write_all(store: wt.Store, mem: wt.Memory, patches: Iterable[tuple[int, bytes]]) -> None:
    """``write`` each ``(address, bytes)`` of ``patches``, looking memory up once."""
    base, length = memory_span(store, mem)
    for at, data in patches:
        if at < 0 or at + len(data) > length:
            raise IndexError(f"{len(data)} bytes at {at} lie outside memory of {length} bytes")
        ctypes.memmove(base + at, data, len(data))


def global_i32(store: wt.Store, glob: wt.Global) -> int:
    """An ``i32`` global's value, read without ``Global.value``'s per-call value objects."""
    raw = ffi.wasmtime_val_t()
    ffi.wasmtime_global_get(store._context(), ctypes.byref(glob._global), ctypes.byref(raw))
    if int(raw.kind) != WASMTIME_I32.value:
        raise TypeError("not an i32 global")
    return int(raw.of.i32)
