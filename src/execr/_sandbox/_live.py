"""Live instances: one instance kept across runs (a session), with its state saved, rolled back and moved.

An instance's whole state is its linear memory, its stack pointer (the build's only mutable
global, checked when the snapshot was built) and its WASI context (replaced on every run).
Memory starts as the snapshot's image, mapped copy-on-write; the pages that differ from it
are exactly the pages the process holds privately (``_pagemap``). So:

- ``save()`` copies those pages (and the stack pointer): the cost grows with what the session
  changed since the snapshot, not with its heap (on kernels without ``PAGEMAP_SCAN``, before
  6.7, it copies all of memory);
- ``rollback(saved)`` drops every private page (back to the image, or zeros past it) and
  writes the saved ones back: the instance is exactly as it was at ``save()``;
- ``State`` is also what a checkpoint stores; ``load(state)`` puts it into a fresh instance of
  the same snapshot (in this process or another).

Memory that grew during a rolled-back run stays allocated (wasm cannot shrink it) but is zero
and unused: the guest's allocator state is rolled back with the rest.
"""

from __future__ import annotations

import ctypes
import dataclasses
from typing import Any

import wasmtime as wt

from .._exports import GROW_FAILURES_EXPORT, SP_EXPORT
from . import _pagemap
from ._threads import _reaper

__all__ = ["Live", "State"]

PAGE = 4096


@dataclasses.dataclass(frozen=True)
class State:
    """A live instance's state: memory size, stack pointer and the pages that differ from the image."""

    data_len: int
    stack_pointer: int
    pages: tuple[tuple[int, bytes], ...]  # (offset, bytes): runs of whole pages

    @property
    def size(self) -> int:
        """Bytes of page data held."""
        return sum(len(data) for _, data in self.pages)


def _private(base: int, length: int) -> list[tuple[int, int]]:
    """The spans that may differ from the image: the private pages, or (no ``PAGEMAP_SCAN``) all of memory."""
    return _pagemap.scan(base, base + length) if _pagemap.available() else [(0, length)]


class Live:
    """An instance kept across runs. Not thread-safe: one run at a time (its owner serializes)."""

    def __init__(self, store: wt.Store, exports: Any) -> None:
        mem, sp = exports["memory"], exports[SP_EXPORT]
        assert isinstance(mem, wt.Memory) and isinstance(sp, wt.Global)
        self.store, self.exports, self.mem, self._sp = store, exports, mem, sp
        self.closed = False

    def _base(self) -> int:
        return ctypes.cast(self.mem.data_ptr(self.store), ctypes.c_void_p).value or 0

    def save(self) -> State:
        """The instance's state now (call only between runs)."""
        length = self.mem.data_len(self.store)
        base = self._base()
        view = (ctypes.c_char * length).from_address(base)
        pages = tuple((start, bytes(memoryview(view)[start:end])) for start, end in _private(base, length))
        sp = self._sp.value(self.store)
        assert isinstance(sp, int)
        return State(length, sp, pages)

    def rollback(self, state: State) -> None:
        """Put the instance back to ``state`` (from ``save()`` on this instance); ``OSError`` if the kernel refuses."""
        base = self._base()
        length = self.mem.data_len(self.store)
        if _pagemap.available():
            for start, end in _pagemap.scan(base, base + length):
                _pagemap.drop(base + start, end - start)
        elif length > state.data_len:  # the saved state holds all of memory up to data_len; zero the rest
            self.mem.write(self.store, bytes(length - state.data_len), state.data_len)
        self._write(state)

    def load(self, state: State) -> None:
        """Put ``state`` (saved from an instance of the same snapshot) into this fresh instance."""
        length = self.mem.data_len(self.store)
        if state.data_len > length:
            self.mem.grow(self.store, (state.data_len - length) // 65536)
        self._write(state)

    def _write(self, state: State) -> None:
        length = self.mem.data_len(self.store)
        view = memoryview((ctypes.c_char * length).from_address(self._base())).cast("B")
        try:
            for start, data in state.pages:
                if start < 0 or start + len(data) > length:
                    raise ValueError(f"page run at {start} (+{len(data)}) lies outside memory of {length} bytes")
                view[start : start + len(data)] = data
        finally:
            view.release()
        self._sp.set_value(self.store, state.stack_pointer)
        try:
            counter = self.exports[GROW_FAILURES_EXPORT]
        except KeyError:
            counter = None
        if isinstance(counter, wt.Global):
            counter.set_value(self.store, 0)

    def reseed(self, addresses: tuple[int, ...], entropy: Any) -> None:
        """Write fresh Mersenne Twister keys at ``addresses`` (a fork must not repeat its parent's numbers)."""
        for address in addresses:
            self.mem.write(self.store, entropy(624 * 4), address)

    def close(self) -> None:
        """Free the instance (idempotent)."""
        if not self.closed:
            self.closed = True
            _reaper.put(self.store)
