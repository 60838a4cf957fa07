"""Raw calls into a guest, for the per-run hot path.

wasmtime-py's ``Func.__call__`` builds the function's type, its parameter types and value
objects on every call: ~20 us of Python for a call whose own cost is ~2.5 us. A ``Raw``
function checks its type once (``i32`` parameters and results only) and then calls
``wasmtime_func_call_unchecked`` with a reused argument array. Traps and errors are raised as
``Func.__call__`` raises them (``wt.Trap``, ``wt.ExitTrap``, ``wt.WasmtimeError``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

import wasmtime as wt
from wasmtime import _bindings as ffi
from wasmtime._ffi import WASMTIME_I32
from wasmtime._func import maybe_raise_last_exn

__all__ = ["Raw", "global_i32", "memory_span", "read", "table_func", "write", "write_all"]


class Raw:
    """A guest function taking and returning only ``i32`` values, callable without per-call type work."""

    __slots__ = ("_func", "_slots", "_trap", "params", "results")

    def __init__(self, store: wt.Store, func: wt.Func) -> None:
        ty = func.type(store)
        kinds = [str(t) for t in (*ty.params, *ty.results)]
        if any(kind != "i32" for kind in kinds):
            raise TypeError(f"not an i32-only function: {kinds}")
        self.params, self.results = len(ty.params), len(ty.results)
        self._func = func._func
        self._slots = (ffi.wasmtime_val_raw_t * max(1, self.params, self.results))()
        self._trap = ctypes.POINTER(ffi.wasm_trap_t)()

    def __call__(self, store: wt.Store, *args: int) -> int | None:
        """Call it in ``store`` (the store it came from); the first result, or None without one."""
        if len(args) != self.params:
            raise TypeError(f"expected {self.params} arguments, got {len(args)}")
        slots, trap = self._slots, self._trap
        for i, arg in enumerate(args):
            slots[i].i32 = arg
        error = ffi.wasmtime_func_call_unchecked(
            store._context(), ctypes.byref(self._func), slots, len(slots), ctypes.byref(trap)
        )
        if error:
            raise wt.WasmtimeError._from_ptr(error)  # an ExitTrap when it carries an exit status
        if trap:
            caught, self._trap = wt.Trap._from_ptr(trap), ctypes.POINTER(ffi.wasm_trap_t)()
            maybe_raise_last_exn()  # an exception a host function raised takes precedence
            raise caught
        return int(slots[0].i32) if self.results else None


def table_func(store: wt.Store, table: wt.Table, index: int) -> wt.Func | None:
    """The function at ``index`` of ``table`` (None: out of bounds, null, or not a function)."""
    found = table.get(store, index)
    return found if isinstance(found, wt.Func) else None


def memory_span(store: wt.Store, mem: wt.Memory) -> tuple[int, int]:
    """The address and byte length of ``mem`` now (both change when memory grows)."""
    ctx, handle = store._context(), ctypes.byref(mem._memory)
    base = ctypes.cast(ffi.wasmtime_memory_data(ctx, handle), ctypes.c_void_p).value or 0
    return base, ffi.wasmtime_memory_data_size(ctx, handle)


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
