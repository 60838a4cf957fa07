"""Live instances: one instance kept across runs (a session), with its state saved, rolled back and moved.

An instance's whole state is its linear memory and its stack pointer (the build's only mutable
global, checked when the snapshot was built); its WASI context holds no state of its own (the
request brings arguments and environment, ``_guestfs`` serves the files). Memory starts as the
snapshot's image, mapped copy-on-write; the pages that differ from it are exactly the pages the
process holds privately (``_pagemap``) plus those mapped from a file since. So:

- ``save()`` copies the private pages (and the stack pointer) into a buffer it reuses; past
  ``FOLD_AT`` it first folds them into the session's own memfd, mapped in place at the same
  offsets (``_fold``, ``_Folds``), so a call copies only what the calls since the last fold
  wrote, not everything the session ever changed (on kernels without ``PAGEMAP_SCAN``, before
  6.7, it copies all of memory);
- ``rollback(saved)`` writes the saved pages back over and drops every other private page (back
  to the file it maps, the image, or zeros past it): the instance is exactly as it was at
  ``save()``;
- ``image()`` writes every page that differs from the snapshot (private or mapped) into an
  ``Image``: what a checkpoint stores and its forks map;
- ``Image(state)`` holds a state's pages in a memfd once; ``map(image)`` maps them copy-on-write
  over a fresh instance (``mmap(MAP_PRIVATE | MAP_FIXED)``, one call per run of pages): a fork or
  a repeated restore costs microseconds whatever the heap's size, and the instance's writes stay
  private (rollback drops them back to the image).

Memory that grew during a rolled-back run stays allocated (wasm cannot shrink it) but is zero
and unused: the guest's allocator state is rolled back with the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io
import mmap
import os
import threading
import weakref
from collections.abc import Iterator
from itertools import repeat
from operator import sub
from typing import Any

import wasmtime as wt

from .._exports import SP_EXPORT
from . import _pagemap
from ._call import Raw, global_i32, memory_span
from ._threads import _reaper

__all__ = ["Image", "Live", "Saved", "State"]

PAGE = 4096
GAP = 16 * PAGE  # unchanged pages between two changed runs taken along (one mapping instead of two)
FOLD_AT = 4 << 20  # private bytes past which ``save()`` folds them into the session's file
#: A busy session folds once early, at this save, however small (see ``Live.save``) ...
EARLY_FOLD_SAVE = 16
#: ... while fewer than this many sessions in the process have done so (each fold adds ~20-40 memory maps)
EARLY_FOLDS = 256
OPEN_FOLDS = 64  # session files kept open at once (process-wide); the others are closed, see ``_Folds``


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


@dataclasses.dataclass(frozen=True)
class Saved:
    """A live instance's state for ``rollback``: its private spans' bytes back to back in ``data``."""

    data_len: int
    stack_pointer: int
    base: int  # the memory's address at the save
    flat: list[int]  # the spans, absolute: [start0, end0, start1, end1, ...]
    data: io.BytesIO  # the instance's save buffer (the spans' bytes from offset 0): valid until its next ``save()``

    @property
    def spans(self) -> list[tuple[int, int]]:
        """The spans as ``(start, end)`` offsets in memory."""
        return _pagemap.pairs(self.flat, self.base)


class Image:
    """A state's pages in a memfd (written once), ready to map into new instances; closes with the object."""

    def __init__(self, state: State) -> None:
        self.data_len, self.stack_pointer = state.data_len, state.stack_pointer
        self.runs: list[tuple[int, int, int]] = []  # (offset in memory, offset in the file, bytes)
        total = sum(len(data) for _, data in state.pages)
        fd = _spare.take(total)  # pages already allocated: the write below is a copy only
        if fd is None:
            fd = os.memfd_create("execr-session-image", os.MFD_CLOEXEC)
        self._finalizer = weakref.finalize(self, os.close, fd)
        self.fd = fd
        os.ftruncate(fd, total)
        at = 0
        for start, data in state.pages:
            if start % PAGE or len(data) % PAGE:
                raise ValueError(f"page run at {start} (+{len(data)}) is not page-aligned")
            _pwrite(fd, memoryview(data), at)
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


class _Spare:
    """One memfd whose pages are allocated ahead, on a thread of its own, for the next ``Image``.

    Most of an image's cost is not the copy but the kernel allocating (and zeroing) a page per
    4 KiB as the copy lands. Sessions that checkpoint or fork again and again (an agent's step, a
    grader's fork per test) make images of about the same size each time, so after each image a
    spare of its size is allocated in the background, and the next image of at most that size
    takes it: its write is a copy only. One spare per process, at most ``SPARE_MAX`` bytes, closed
    after ``SPARE_IDLE`` seconds unused; a forked child never takes its parent's.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: tuple[int, int] | None = None  # (fd, bytes allocated)
        self._want = 0  # the size to allocate next (0: nothing to do)
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None

    def take(self, size: int) -> int | None:
        """A memfd with at least ``size`` bytes allocated (None: none ready); then asks for the next one."""
        if size > SPARE_MAX or size < SPARE_MIN:
            return None
        with self._cond:
            self._after_fork()
            ready, fd = self._ready, None
            if ready is not None and size <= ready[1] <= 2 * size:
                fd, self._ready = ready[0], None
            self._want = -(-size // PAGE) * PAGE
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="execr-image-spare", daemon=True)
                self._thread.start()
            self._cond.notify()
            return fd

    def _after_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child: the spare (and the thread) are the parent's
            if self._ready is not None:
                os.close(self._ready[0])  # the child's copy of the descriptor; the parent keeps its own
            self._pid, self._ready, self._thread, self._want = os.getpid(), None, None, 0

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._want > 0, timeout=SPARE_IDLE)
                want, self._want = self._want, 0
                if want == 0:  # idle: give the spare back
                    old, self._ready = self._ready, None
                    if old is not None:
                        os.close(old[0])
                    continue
                old, self._ready = self._ready, None
            if old is not None:
                os.close(old[0])
            fd = os.memfd_create("execr-session-image", os.MFD_CLOEXEC)
            try:
                os.posix_fallocate(fd, 0, want)
            except OSError:  # out of memory or no fallocate here: images allocate as they write
                os.close(fd)
                continue
            with self._cond:
                if self._pid == os.getpid() and self._ready is None:
                    self._ready = (fd, want)
                    fd = -1
            if fd >= 0:
                os.close(fd)


SPARE_MIN = 1 << 20  # images smaller than this allocate as they write (it is quick)
SPARE_MAX = 256 << 20
SPARE_IDLE = 10.0
_spare = _Spare()


def _pwrite(fd: int, data: memoryview, at: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], at + done)


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


def _minus(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of the sorted, disjoint [start, end) spans ``a`` outside those of ``b`` (also sorted, disjoint)."""
    out: list[tuple[int, int]] = []
    i = 0
    for start, end in a:
        while i < len(b) and b[i][1] <= start:
            i += 1
        j = i
        while start < end and j < len(b) and b[j][0] < end:
            if b[j][0] > start:
                out.append((start, b[j][0]))
            start = max(start, b[j][1])
            j += 1
        if start < end:
            out.append((start, end))
    return out


def _close_gaps(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ``spans`` with gaps of at most ``GAP`` bytes between them closed (the gap's unchanged
    pages are taken along: one mapping instead of three)."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        if out and start - out[-1][1] <= GAP:
            out[-1] = (out[-1][0], end)
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
        self.calls: dict[int, Raw] = {}  # entry functions resolved in this instance (``_entry``)
        self._mapped: list[tuple[int, int]] = []  # spans mapped from an Image (they differ from the snapshot)
        self._buffer = io.BytesIO()  # reused by save(): no new pages to fault in per call
        self._folded: list[tuple[int, int]] = []  # spans mapped from the session's file (``_fold``)
        self._file_len = 0  # the session's file's size (0: none open)
        self._saves = 0
        self._early = False  # this instance holds one of the process's ``EARLY_FOLDS``

    def _base(self) -> int:
        return memory_span(self.store, self.mem)[0]

    def save(self) -> Saved:
        """What ``rollback`` needs to come back here (call only between runs): the private pages,
        copied into a buffer the next save overwrites, and the stack pointer. Once ``FOLD_AT``
        bytes are private they are folded into the session's file instead (same bytes, now
        file-backed: rollback drops back to them), so a call copies only what the calls since the
        last fold wrote, not all the session ever changed.

        A busy session also folds once at its ``EARLY_FOLD_SAVE``-th save, whatever its size: its
        private pages are then only those its calls keep writing (~76 for ``x + 1`` instead of
        ~124, the rest having been written once by its first calls), so each later save copies
        a third less. At most ``EARLY_FOLDS`` sessions of a process do so: a fold maps its file
        in ~20-40 pieces, and a process may hold 65,530 maps in all."""
        base, length = memory_span(self.store, self.mem)
        self._saves += 1
        if _pagemap.available():
            flat = _pagemap.scan_flat(base, base + length)  # absolute [start, end, start, end, ...]
            size = sum(flat[1::2]) - sum(flat[0::2])
            if size >= FOLD_AT or (self._saves == EARLY_FOLD_SAVE and size and _early_folds.take(self)):
                self._fold(_pagemap.pairs(flat, base))
                flat = []
        else:
            flat = [base, base + length]
        memory = memoryview((ctypes.c_char * length).from_address(base)).cast("B")
        kept = self._buffer
        try:  # the hot step of a session call: ~100 spans, iterated in C (a Python loop costs ~0.5 us a span)
            kept.seek(0)
            starts, ends = map(sub, flat[0::2], repeat(base)), map(sub, flat[1::2], repeat(base))
            kept.writelines(map(memory.__getitem__, map(slice, starts, ends)))
        finally:
            memory.release()
        return Saved(length, global_i32(self.store, self._sp), base, flat, kept)

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
        return _close_gaps(_union(_private(base, length), self._mapped))

    def rollback(self, saved: Saved) -> None:
        """Put the instance back to ``saved`` (this instance's last ``save()``); ``OSError`` if the kernel refuses."""
        base = self._base()
        length = self.mem.data_len(self.store)
        if _pagemap.available():
            # the saved pages are written back over; only pages made private since are dropped, in a
            # call per run of them with gaps under ``GAP`` closed (a call costs a TLB flush; a page
            # dropped in a gap only maps its file again, or is written back below)
            for start, end in _close_gaps(_minus(_pagemap.scan(base, base + length), saved.spans)):
                _pagemap.drop(base + start, end - start)
        elif length > saved.data_len:  # the save holds all of memory up to data_len; zero the rest
            self.mem.write(self.store, bytes(length - saved.data_len), saved.data_len)
        data, at = memoryview(saved.data.getvalue()), 0  # no copy (the buffer's next write makes its own)
        pages = []
        for start, end in saved.spans:
            pages.append((start, data[at : at + end - start]))
            at += end - start
        self._write(State(saved.data_len, saved.stack_pointer, tuple(pages)))  # type: ignore[arg-type]

    def map(self, image: Image) -> None:
        """Map ``image`` (a state of the same snapshot) over this fresh instance, copy-on-write."""
        self._grow_to(image.data_len)
        self._map_runs(image)
        self._write(State(image.data_len, image.stack_pointer, ()))

    def _fold(self, spans: list[tuple[int, int]]) -> None:
        """Move the private ``spans`` into the session's file, mapped over them at the same offsets
        (their bytes stay as they are; rollback now drops back to them)."""
        with _folds.file(self) as (fd, fresh):
            if fresh:  # a new file: what the old one held moves too, so the old one is unmapped and freed
                spans = _union(spans, self._folded)
                self._folded = []
            spans = _close_gaps(spans)  # a mapping per span: few and long (the process has ~65k in all)
            base, length = self._base(), self.mem.data_len(self.store)
            if self._file_len < length:
                os.ftruncate(fd, length)  # sparse: only written pages take memory
                self._file_len = length
            memory = memoryview((ctypes.c_char * length).from_address(base)).cast("B")
            try:
                for start, end in spans:
                    _pwrite(fd, memory[start:end], start)
            finally:
                memory.release()
            self._map_spans(fd, [(start, start, end - start) for start, end in spans])
        self._folded = _union(self._folded, spans)

    def trim(self) -> None:
        """Free what an idle session need not hold: the buffer ``save()`` reuses, and its
        file's descriptor (its pages stay mapped; the next fold starts a new file)."""
        self._buffer = io.BytesIO()
        _folds.close(self)

    def _map_runs(self, image: Image) -> None:
        self._map_spans(image.fd, image.runs)

    def _map_spans(self, fd: int, runs: list[tuple[int, int, int]]) -> None:
        """Map ``fd``'s ``(offset in memory, offset in the file, bytes)`` runs over memory, copy-on-write."""
        base, mapper = self._base(), _mmap()
        length = self.mem.data_len(self.store)
        flags, prot = mmap.MAP_PRIVATE | 0x10, mmap.PROT_READ | mmap.PROT_WRITE  # 0x10: MAP_FIXED
        for start, at, size in runs:
            if start + size > length:
                raise ValueError(f"page run at {start} (+{size}) lies outside memory of {length} bytes")
            got = mapper(base + start, size, prot, flags, fd, at)
            if got != base + start:
                err = ctypes.get_errno()
                raise OSError(err, f"cannot map a session image: {os.strerror(err)}")
        self._mapped = _union(self._mapped, [(start, start + size) for start, _, size in runs])

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
            _folds.close(self)
            _early_folds.give(self)
            _reaper.put(self.store)


class _Folds:
    """The sessions' fold files that are open, at most ``OPEN_FOLDS`` (least recently folded closed first).

    A file's descriptor is only needed to write the next fold: its mappings keep it alive. So an
    idle session holds none (``trim``), and many busy ones hold at most ``OPEN_FOLDS`` between
    them. A session whose file was closed starts a new one at its next fold and moves the old
    file's pages into it, so the old file is unmapped and freed, never leaked page by page. A
    descriptor in use by a fold is never closed under it (its number could be reused by another
    session's file mid-write): the cap waits for the fold to end.
    """

    def __init__(self) -> None:
        self._open: dict[int, _Fold] = {}  # by id(live), least recently used first
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def file(self, live: Live) -> Iterator[tuple[int, bool]]:
        """``live``'s file descriptor for one fold, and whether the file is new."""
        with self._lock:
            found = self._open.pop(id(live), None)
            if found is not None and found.live() is not live:  # a freed session's, under a reused id
                os.close(found.fd)
                found = None
            fresh = found is None
            if found is None:
                idle = [key for key, fold in self._open.items() if not fold.busy]
                for key in idle[: max(0, len(self._open) - OPEN_FOLDS + 1)]:
                    self._forget(key)
                found = _Fold(weakref.ref(live), os.memfd_create("execr-session", os.MFD_CLOEXEC))
                live._file_len = 0
            found.busy = True
            self._open[id(live)] = found  # now the most recent
        try:
            yield found.fd, fresh
        finally:
            with self._lock:
                found.busy = False

    def close(self, live: Live) -> None:
        """Close ``live``'s descriptor, if it has one (its mappings stay)."""
        with self._lock:
            found = self._open.get(id(live))
            if found is not None and found.live() is live and not found.busy:
                self._forget(id(live))

    def _forget(self, key: int) -> None:
        fold = self._open.pop(key)
        os.close(fold.fd)
        live = fold.live()
        if live is not None:
            live._file_len = 0


@dataclasses.dataclass
class _Fold:
    live: weakref.ref[Live]
    fd: int
    busy: bool = False


_folds = _Folds()


class _EarlyFolds:
    """The process's count of sessions that folded early (``EARLY_FOLDS`` at most; thread-safe)."""

    def __init__(self) -> None:
        self._held = 0
        self._lock = threading.Lock()

    def take(self, live: Live) -> bool:
        with self._lock:
            if self._held >= EARLY_FOLDS:
                return False
            self._held += 1
            live._early = True
            return True

    def give(self, live: Live) -> None:
        with self._lock:
            if live._early:
                live._early = False
                self._held -= 1


_early_folds = _EarlyFolds()
