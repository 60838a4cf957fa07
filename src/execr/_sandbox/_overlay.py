"""Memory images: a booted guest's memory mapped over a fresh instance of the module it booted from.

A snapshot compiled with its memory as data costs minutes per snapshot (the whole module is
compiled again). The code never changes, only the memory: so an *image* (the linear memory
and the stack pointer captured after a boot, in a file) is made into a runnable module without
compiling anything. Each instance of the plain module (instrumented, compiled once) is grown
to the image's size, the image file is mapped over its linear memory copy-on-write
(``mmap(MAP_PRIVATE | MAP_FIXED)``: the instance reads the file's pages and writes private
copies that never reach the file or another instance), and its stack pointer is set. That is
the whole state of an instance of the recyclable builds (``_image._snapshot.recyclable``: one
mutable global, no table writes), so the instance is then exactly the booted one.

Pages the instance never writes stay the file's (the page cache, shared by every instance and
process); recycling resets the pages a run wrote, as for a compiled snapshot. wasmtime frees the
mapping with the instance's memory reservation.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import wasmtime as wt

from .._exports import SP_EXPORT
from ._recycle import Compiled

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["MemoryImage", "overlay", "supported"]

_PAGE = 65536
_MAP_FIXED = 0x10
_MAP_FAILED = ctypes.c_void_p(-1).value
_libc: ctypes.CDLL | None = None
_libc_lock = threading.Lock()


def _mmap() -> Any:
    global _libc
    with _libc_lock:
        if _libc is None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [
                ctypes.c_void_p,
                ctypes.c_size_t,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_int,
                ctypes.c_long,
            ]
            _libc = libc
        return _libc.mmap


def supported() -> bool:
    """Whether images can be mapped here (Linux or another POSIX system with ``MAP_FIXED``)."""
    return os.name == "posix" and hasattr(mmap, "MAP_PRIVATE")


@dataclasses.dataclass(frozen=True)
class MemoryImage:
    """A captured linear memory in a file (``length`` bytes, whole wasm pages) and its stack pointer."""

    path: Path
    length: int
    stack_pointer: int


class _ImagePre:
    """Instantiates the plain module, then maps the image over its memory and sets the stack pointer."""

    def __init__(self, inner: Any, image: MemoryImage) -> None:
        if image.length % _PAGE or image.length % mmap.PAGESIZE:
            raise ValueError("a memory image is whole wasm pages")
        self.inner = inner
        self.image = image
        self.fd = os.open(image.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(self.fd).st_size != image.length:
                raise ValueError(f"memory image {image.path} is not {image.length} bytes")
        except BaseException:
            os.close(self.fd)
            raise

    def instantiate(self, store: wt.Store) -> wt.Instance:
        instance: wt.Instance = self.inner.instantiate(store)
        exports = instance.exports(store)
        mem, sp = exports["memory"], exports[SP_EXPORT]
        assert isinstance(mem, wt.Memory) and isinstance(sp, wt.Global)
        have = mem.data_len(store)
        if have > self.image.length:  # not an image of this module
            raise ValueError(f"memory image {self.image.path} is smaller than the module's memory")
        if have < self.image.length:
            mem.grow(store, (self.image.length - have) // _PAGE)  # a store limit refuses it: WasmtimeError
        base = ctypes.cast(mem.data_ptr(store), ctypes.c_void_p).value
        flags = mmap.MAP_PRIVATE | _MAP_FIXED
        got = _mmap()(base, self.image.length, mmap.PROT_READ | mmap.PROT_WRITE, flags, self.fd, 0)
        if got != base or got == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, f"cannot map the memory image {self.image.path}: {os.strerror(err)}")
        sp.set_value(store, self.image.stack_pointer)
        return instance

    def close(self) -> None:
        """Close the image file (instances already made keep their mapping) and the inner InstancePre."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
        self.inner.close()


def overlay(base: Compiled, image: MemoryImage) -> Compiled:
    """A ``Compiled`` whose instances are ``base``'s with ``image`` mapped in (recycled like a snapshot's)."""
    host: Host = base.host
    compiled = Compiled(host, base.module)
    compiled.pre = cast("wt.InstancePre", _ImagePre(compiled.pre, image))  # Host.run only calls instantiate()
    compiled.min_bytes = image.length
    return compiled
