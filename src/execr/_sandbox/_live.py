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
- ``image()`` writes every page that differs from the snapshot (private or mapped) into an
  ``Image``: what a checkpoint stores and its forks map;
- ``save(reuse=True)`` folds a large private set into a memfd mapped in place instead of copying
  it, so a session with a big heap does not copy it before every call;
- ``Image(state)`` holds a state's pages in a memfd once; ``map(image)`` maps them copy-on-write
  over a fresh instance (``mmap(MAP_PRIVATE | MAP_FIXED)``, one call per run of pages): a fork or
  a repeated restore costs microseconds whatever the heap's size, and the instance's writes stay
  private (rollback drops them back to the image).

Memory that grew during a rolled-back run stays allocated (wasm cannot shrink it) but is zero
and unused: the guest's allocator state is rolled back with the rest.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import weakref
from typing import Any

import wasmtime as wt

from .._exports import SP_EXPORT
from . import _pagemap
from ._threads import _reaper

__all__ = ["Image", "Live", "State"]

PAGE = 4096
GAP = 16 * PAGE  # unchanged pages between two changed runs taken along (one mapping instead of two)
FOLD_AT = 4 << 20  # private bytes past which ``save(reuse=True)`` folds them into a mapped image


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


class Image:
    """A state's pages in a memfd (written once), ready to map into new instances; closes with the object."""

    def __init__(self, state: State) -> None:
        self.data_len, self.stack_pointer = state.data_len, state.stack_pointer
        self.runs: list[tuple[int, int, int]] = []  # (offset in memory, offset in the file, bytes)
        fd = os.memfd_create("execr-session-image", os.MFD_CLOEXEC)
        self._finalizer = weakref.finalize(self, os.close, fd)
        self.fd = fd
        at = 0
        os.ftruncate(fd, sum(len(data) for _, data in state.pages))
        for start, data in state.pages:
            if start % PAGE or len(data) % PAGE:
                raise ValueError(f"page run at {start} (+{len(data)}) is not page-aligned")
            view = memoryview(data)
            done = 0
            while done < len(view):
                done += os.pwrite(fd, view[done:], at + done)
            self.runs.append((start, at, len(data)))
            at += len(data)
        self._view: mmap.mmap | None = None

    def pages(self) -> tuple[tuple[int, memoryview], ...]:
        """The image's page runs as read-only views of the memfd (no copy)."""
        total = sum(size for _, _, size in self.runs)
        if total == 0:
            return ()
        if self._view is None:
            self._view = mmap.mmap(self.fd, total, mmap.MAP_SHARED, mmap.PROT_READ)
        view = memoryview(self._view)
        return tuple((start, view[at : at + size]) for start, at, size in self.runs)

    def close(self) -> None:
        """Close the memfd now (instances that mapped it keep their pages)."""
        self._finalizer()


_libc: Any = None


def _mmap() -> Any:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        _libc = libc
    return _libc.mmap


def _union(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The union of two lists of [start, end) spans, sorted and merged."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(a + b):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


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
        self._mapped: list[tuple[int, int]] = []  # spans mapped from an Image (they differ from the snapshot)
        self._buffer = bytearray()  # reused by save(reuse=True): no new pages to fault in per call

    def _base(self) -> int:
        return ctypes.cast(self.mem.data_ptr(self.store), ctypes.c_void_p).value or 0

    def save(self, reuse: bool = False) -> State:
        """What ``rollback`` needs to come back here: the private pages and the stack pointer (call only
        between runs). ``reuse`` (a session's call): the pages are views of a buffer the next such save
        overwrites, and once ``FOLD_AT`` bytes are private they are folded into an image mapped in
        place instead (same bytes, now file-backed: rollback drops back to them), so a session does
        not copy the whole heap it built before every call, only what the last call wrote."""
        base, length = self._base(), self.mem.data_len(self.store)
        spans = _private(base, length)
        if reuse and _pagemap.available() and sum(end - start for start, end in spans) >= FOLD_AT:
            self._fold(spans)
            spans = []
        return self._read(spans, reuse)

    def image(self) -> Image:
        """The whole state written straight into an ``Image`` (one copy; for a checkpoint and its forks)."""
        length = self.mem.data_len(self.store)
        memory = memoryview((ctypes.c_char * length).from_address(self._base())).cast("B")
        try:
            sp = self._sp.value(self.store)
            assert isinstance(sp, int)
            return Image(State(length, sp, tuple((start, memory[start:end]) for start, end in self._spans())))  # type: ignore[misc]
        finally:
            memory.release()

    def _spans(self) -> list[tuple[int, int]]:
        """The spans that differ from the snapshot, with gaps under ``GAP`` closed (fewer, longer runs to map)."""
        base, length = self._base(), self.mem.data_len(self.store)
        out: list[tuple[int, int]] = []
        for start, end in _union(_private(base, length), self._mapped):
            if out and start - out[-1][1] <= GAP:
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
        return out

    def _read(self, spans: list[tuple[int, int]], reuse: bool) -> State:
        length = self.mem.data_len(self.store)
        memory = memoryview((ctypes.c_char * length).from_address(self._base())).cast("B")
        try:
            if not reuse:
                pages = tuple((start, bytes(memory[start:end])) for start, end in spans)
            else:
                need = sum(end - start for start, end in spans)
                if len(self._buffer) < need:
                    self._buffer = bytearray(need)
                buffer, at, runs = memoryview(self._buffer), 0, []
                for start, end in spans:
                    buffer[at : at + end - start] = memory[start:end]
                    runs.append((start, buffer[at : at + end - start]))
                    at += end - start
                pages = tuple(runs)  # type: ignore[arg-type]
        finally:
            memory.release()
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

    def map(self, image: Image) -> None:
        """Map ``image`` (a state of the same snapshot) over this fresh instance, copy-on-write."""
        self._grow_to(image.data_len)
        self._map_runs(image)
        self._write(State(image.data_len, image.stack_pointer, ()))

    def _fold(self, spans: list[tuple[int, int]]) -> None:
        """Move the private ``spans`` into an image mapped over them (their bytes stay as they are)."""
        base, length = self._base(), self.mem.data_len(self.store)
        memory = memoryview((ctypes.c_char * length).from_address(base)).cast("B")
        try:
            image = Image(State(length, 0, tuple((start, memory[start:end]) for start, end in spans)))  # type: ignore[misc]
        finally:
            memory.release()
        try:
            self._map_runs(image)
        finally:
            image.close()  # the mappings keep the file; no descriptor is held

    def trim(self) -> None:
        """Free the buffer ``save(reuse=True)`` keeps between calls (an idle session's memory)."""
        self._buffer = bytearray()

    def _map_runs(self, image: Image) -> None:
        base, mapper = self._base(), _mmap()
        length = self.mem.data_len(self.store)
        flags, prot = mmap.MAP_PRIVATE | 0x10, mmap.PROT_READ | mmap.PROT_WRITE  # 0x10: MAP_FIXED
        for start, at, size in image.runs:
            if start + size > length:
                raise ValueError(f"page run at {start} (+{size}) lies outside memory of {length} bytes")
            got = mapper(base + start, size, prot, flags, image.fd, at)
            if got != base + start:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot map a session image: {os.strerror(err)}")
            self._mapped.append((start, start + size))
        self._mapped = _union(self._mapped, [])

    def _grow_to(self, data_len: int) -> None:
        length = self.mem.data_len(self.store)
        if data_len % 65536 or data_len > 1 << 32:
            raise ValueError(f"memory size {data_len} is not a whole number of wasm pages within 4 GiB")
        if data_len > length:
            self.mem.grow(self.store, (data_len - length) // 65536)

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
        self._sp.set_value(self.store, state.stack_pointer)  # (the grow counter is cleared after every run)

    def reseed(self, addresses: tuple[int, ...], entropy: Any) -> None:
        """Write fresh Mersenne Twister keys at ``addresses`` (a fork must not repeat its parent's numbers)."""
        for address in addresses:
            self.mem.write(self.store, entropy(624 * 4), address)

    def close(self) -> None:
        """Free the instance (idempotent)."""
        if not self.closed:
            self.closed = True
            _reaper.put(self.store)
