"""Entering a guest: ``_start`` (plain path), a reactor's ``turn``, or the snapshot's Python entry function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import wasmtime as wt

from .. import _mailbox
from .._exports import TABLE_EXPORT
from ._call import Raw, read, table_func, write_all

if TYPE_CHECKING:
    from ._host import EntryPoint

__all__ = ["enter", "entry_func", "start", "turn", "value"]


def start(store: wt.Store, exports: Any, names: Sequence[str]) -> int:
    """Call ``names`` in order; the exit status is the last one's i32 result (0 without one)."""
    result: object = None
    for name in names:
        func = exports[name]
        assert isinstance(func, wt.Func)
        result = func(store)
    return result & 0xFF if isinstance(result, int) else 0


def turn(store: wt.Store, exports: Any, mem: wt.Memory, source: bytes) -> int:
    """Run ``source`` in a reactor's ``turn`` (0 ok, 1 uncaught exception, n: ``sys.exit(n)``)."""
    alloc, turn = exports["host_alloc"], exports["turn"]
    assert isinstance(alloc, wt.Func) and isinstance(turn, wt.Func)
    ptr = alloc(store, len(source))
    assert isinstance(ptr, int)
    if ptr == 0:
        raise wt.Trap("execr: host_alloc failed: out of guest memory")
    mem.write(store, source, ptr)
    status = turn(store, ptr, len(source))
    assert isinstance(status, int)
    return status


def entry_func(store: wt.Store, exports: Any, entry: EntryPoint, cache: dict[int, Raw]) -> Raw:
    """The entry's function in this instance, resolved once per instance (``cache`` is the instance's)."""
    raw = cache.get(entry.table_index)
    if raw is None:
        table = exports[TABLE_EXPORT]
        assert isinstance(table, wt.Table)
        func = table_func(store, table, entry.table_index)
        if func is None:
            raise wt.WasmtimeError(f"execr: no entry function at table index {entry.table_index}")
        raw = cache[entry.table_index] = Raw(store, func)
    return raw


def enter(store: wt.Store, exports: Any, mem: wt.Memory, entry: EntryPoint, cache: dict[int, Raw]) -> int | None:
    """Write the request into guest memory, call the entry, and read its exit status (None: it did not finish)."""
    write_all(store, mem, entry.patches)
    if entry.turn:
        turn(store, exports, mem, entry.turn)
    else:
        entry_func(store, exports, entry, cache)(store, *entry.args)
    status = _mailbox.status(read(store, mem, entry.mailbox, entry.mailbox + 8))
    return None if status is None else status & 0xFF


def value(store: wt.Store, mem: wt.Memory, entry: EntryPoint) -> bytes | None:
    """The value the entry left in the mailbox (the repr of the code's last expression), if any."""
    size = _mailbox.value(read(store, mem, entry.mailbox, entry.mailbox + 16))
    if size is None:
        return None
    start = entry.mailbox + _mailbox.PAYLOAD_AT
    return read(store, mem, start, start + size)
