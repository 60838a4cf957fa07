"""Pagemap: put a recycled instance's linear memory back to its initial image, touching only what changed.

A fresh instance maps its image copy-on-write, so every page a run writes costs a page
fault (~240 per hello world, most of a run's cost). Recycling an instance instead needs
its memory back *exactly* as it started. Linux's ``PAGEMAP_SCAN`` ioctl (6.7+) lists the
pages of a range that are private to this process: written (copied from the image, or
zero pages made real) since they were last dropped. Only those can differ from the
image; every other page still maps the image file or the shared zero page.

``Restorer`` keeps, per instance, a lazily filled copy of the image's pages (``mirror``):
a page seen private for the first time is dropped (``MADV_DONTNEED``: the mapping falls
back to the image or to zeros) and its original bytes are read into the mirror; a page
already known is copied back from the mirror and stays resident, so the next run writes
it without a fault. Past ``keep`` resident bytes, every private page is dropped instead.
Either way each private page ends up equal to the image, which is all isolation needs.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading

__all__ = ["Restorer", "available", "drop", "pairs", "scan", "scan_flat"]

_PAGE = mmap.PAGESIZE
_PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg)
_FILE, _PRESENT, _SWAPPED, _PFNZERO = 1 << 2, 1 << 3, 1 << 4, 1 << 5
_MADV_DONTNEED = 4
_REGIONS = 512  # regions per ioctl call (the scan resumes where it stopped)


class _ScanArg(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


class _Region(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


_libc: ctypes.CDLL | None = None
_fd: tuple[int, int] | None = None  # (pid, fd of /proc/self/pagemap)
_lock = threading.Lock()
_probed: bool | None = None


def _pagemap() -> int:
    """This process's pagemap fd (reopened after a fork: /proc/self is resolved at open)."""
    global _fd
    pid = os.getpid()
    with _lock:
        if _fd is None or _fd[0] != pid:
            _fd = (pid, os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC))
        return _fd[1]


class _Scanner:
    """A thread's ``PAGEMAP_SCAN`` buffers, made once (allocating them per scan cost as much as the scan)."""

    def __init__(self) -> None:
        self.regions = (_Region * _REGIONS)()
        self.words = memoryview(self.regions).cast("B").cast("Q")  # start, end, categories per region
        self.arg = _ScanArg(
            size=ctypes.sizeof(_ScanArg),
            vec=ctypes.addressof(self.regions),
            vec_len=_REGIONS,
            category_inverted=_FILE | _PFNZERO,
            category_mask=_FILE | _PFNZERO,
            category_anyof_mask=_PRESENT | _SWAPPED,
        )
        self.ref = ctypes.byref(self.arg)


_scanners = threading.local()


def _scan_flat(start: int, end: int) -> list[int]:
    """The private pages of ``[start, end)`` (present or swapped, neither file nor zero page) as
    absolute addresses ``[start0, end0, start1, end1, ...]`` (no per-span objects: a session's
    save reads ~130 spans per call, and each Python object there costs)."""
    assert _libc is not None
    scanner = getattr(_scanners, "scanner", None)
    if scanner is None:
        scanner = _scanners.scanner = _Scanner()
    arg, words, ioctl = scanner.arg, scanner.words, _libc.ioctl
    arg.start, arg.end = start, end
    fd = _pagemap()
    flat: list[int] = []
    while True:
        n = ioctl(fd, _PAGEMAP_SCAN, scanner.ref)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"PAGEMAP_SCAN: {os.strerror(err)}")
        if n:
            found = words[: 3 * n].tolist()
            del found[2::3]  # the categories
            flat += found
        if arg.walk_end >= end:
            return flat
        if arg.walk_end <= arg.start:  # no progress: never report a partial scan as complete
            raise OSError(0, "PAGEMAP_SCAN stopped before the end of the range")
        arg.start = arg.walk_end


def _scan(start: int, end: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans of private pages, as offsets from ``start``."""
    return pairs(_scan_flat(start, end), start)


def pairs(flat: list[int], base: int) -> list[tuple[int, int]]:
    """``scan_flat``'s ``[start0, end0, start1, ...]`` as ``(start, end)`` offsets from ``base``."""
    return [(flat[i] - base, flat[i + 1] - base) for i in range(0, len(flat), 2)]


def _drop(start: int, length: int) -> None:
    assert _libc is not None
    if _libc.madvise(start, length, _MADV_DONTNEED) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"madvise: {os.strerror(err)}")


def scan(start: int, end: int) -> list[tuple[int, int]]:
    """The private spans of ``[start, end)`` as offsets from ``start`` (only when ``available()``)."""
    return _scan(start, end)


def scan_flat(start: int, end: int) -> list[int]:
    """The private spans of ``[start, end)`` as absolute ``[start0, end0, start1, ...]`` (only when ``available()``)."""
    return _scan_flat(start, end)


def drop(start: int, length: int) -> None:
    """Drop the pages of ``[start, start + length)`` back to their mapping (the image, or zeros)."""
    _drop(start, length)


def available() -> bool:
    """Whether this kernel can list private pages (``PAGEMAP_SCAN``): probed once per process."""
    global _libc, _probed
    if _probed is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
            libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            _libc = libc
            probe = mmap.mmap(-1, 4 * _PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            view = ctypes.c_char.from_buffer(probe)
            try:
                probe[_PAGE] = 1  # one private page; one page only read (the zero page)
                _ = probe[2 * _PAGE]
                base = ctypes.addressof(view)
                ok = _scan(base, base + 4 * _PAGE) == [(_PAGE, 2 * _PAGE)]
            finally:
                del view
                probe.close()
            _probed = ok
        except Exception:  # an older kernel (ENOTTY), no libc, ...: runs use new instances
            _probed = False
    return _probed


class Restorer:
    """Resets ``length`` bytes at ``base`` (an instance's linear memory) to what they held at creation.

    Create it right after instantiation, before the guest runs. ``reset()`` must only be
    called while nothing runs in the instance.
    """

    def __init__(self, base: int, length: int, keep: int) -> None:
        if base % _PAGE or length % _PAGE:
            raise ValueError("memory must be page-aligned")
        self.base, self.length, self.keep = base, length, keep
        self._memory = memoryview((ctypes.c_char * length).from_address(base)).cast("B")
        self._mirror = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self._copy = memoryview(self._mirror)
        self._known = bytearray(length // _PAGE)  # 1: the mirror holds this page's original bytes
        self._last: list[tuple[int, int]] = []  # the spans of the last reset (all known since)
        self.resident = 0  # private bytes found by the last reset

    def reset(self) -> None:
        """Make every page equal to the image again (raises ``OSError`` if the kernel refuses)."""
        memory, copy = self._memory, self._copy
        spans = _scan(self.base, self.base + self.length)
        self.resident = sum(end - start for start, end in spans)
        if self.resident > self.keep:
            for start, end in spans:
                _drop(self.base + start, end - start)
            self._last = []
            return
        if spans != self._last:  # new pages among them: learn their original bytes first
            self._learn(spans)
            self._last = spans
        for start, end in spans:  # steady state: copy every private page back
            memory[start:end] = copy[start:end]

    def _learn(self, spans: list[tuple[int, int]]) -> None:
        """Drop the pages of ``spans`` the mirror does not hold yet and read their original bytes."""
        known = self._known
        for start, end in spans:
            first, last = start // _PAGE, end // _PAGE
            if known.count(1, first, last) == last - first:
                continue
            page = first
            while page < last:  # runs of known / unknown pages
                state = known[page]
                stop = page + 1
                while stop < last and known[stop] == state:
                    stop += 1
                if not state:
                    at, to = page * _PAGE, stop * _PAGE
                    _drop(self.base + at, to - at)  # back to the image (or zeros) ...
                    self._copy[at:to] = self._memory[at:to]  # ... whose bytes the mirror keeps
                    known[page:stop] = b"\x01" * (stop - page)
                page = stop

    def close(self) -> None:
        """Release the mirror."""
        self._memory.release()
        self._copy.release()
        self._mirror.close()
