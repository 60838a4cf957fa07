"""WASI preview-1 numbers, guest memory access and the errors of the file layer."""

from __future__ import annotations

import contextlib
import ctypes
import errno as E
import os
import stat
import struct
import time
from typing import Final, Protocol

# -- WASI preview-1 numbers ---------------------------------------------------------------------

ESUCCESS, EACCES_, EBADF_, EEXIST_, EFAULT_, EINVAL_, EIO_, EISDIR_ = 0, 2, 8, 20, 21, 28, 29, 31
ELOOP_, EMFILE_, ENAMETOOLONG_, ENOENT_, ENOTDIR_, ENOTSUP_, ENOTSOCK_ = 32, 33, 37, 44, 54, 58, 57
EPERM_, EROFS_, ESPIPE_, EDQUOT_, ENOTCAPABLE_, EOVERFLOW_ = 63, 69, 70, 19, 76, 61

_ERRNO: Final = {
    E.E2BIG: 1, E.EACCES: 2, E.EAGAIN: 6, E.EBADF: 8, E.EBUSY: 10, E.EDQUOT: 19, E.EEXIST: 20,
    E.EFAULT: 21, E.EFBIG: 22, E.EINTR: 27, E.EINVAL: 28, E.EIO: 29, E.EISDIR: 31, E.ELOOP: 32,
    E.EMFILE: 33, E.EMLINK: 34, E.ENAMETOOLONG: 37, E.ENFILE: 41, E.ENODEV: 43, E.ENOENT: 44,
    E.ENOMEM: 48, E.ENOSPC: 51, E.ENOSYS: 52, E.ENOTDIR: 54, E.ENOTEMPTY: 55, E.ENOTSUP: 58,
    E.ENXIO: 60, E.EOVERFLOW: 61, E.EPERM: 63, E.EROFS: 69, E.ESPIPE: 70, E.ETXTBSY: 74, E.EXDEV: 75,
}  # fmt: skip

# filetypes
UNKNOWN, CHAR, DIR, REG, SYMLINK = 0, 2, 3, 4, 7
# oflags, fdflags, lookupflags, fstflags, whence
O_CREAT_, O_DIRECTORY_, O_EXCL_, O_TRUNC_ = 1, 2, 4, 8
FD_APPEND = 1
FOLLOW = 1
ATIM, ATIM_NOW, MTIM, MTIM_NOW = 1, 2, 4, 8
# rights
R_READ, R_SEEK, R_TELL, R_WRITE = 1 << 1, 1 << 2, 1 << 5, 1 << 6
R_ALL: Final = (1 << 30) - 1
R_DIR_READ: Final = R_ALL & ~(
    R_WRITE | (1 << 9) | (1 << 10) | (1 << 16) | (1 << 17) | (1 << 19) | (1 << 25) | (1 << 26)
)


def _new_dir_size() -> int:
    import tempfile

    path = tempfile.mkdtemp(prefix="execr-probe-")
    try:
        return os.stat(path).st_size
    finally:
        os.rmdir(path)


#: What a brand-new directory's size is here (a reused run root reports this, not what it grew to).
NEW_DIR_SIZE: Final = _new_dir_size()
MAX_DEPTH: Final = 200  # directory levels the guest may create below a preopen
MAX_SYMLINK_HOPS: Final = 40
MAX_IO: Final = 1 << 24  # bytes moved by one read or write call at most (the guest's libc loops)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_STDIO: Final = 3
_U64: Final = (1 << 64) - 1


class LimitHit(Exception):
    """A guest call would pass a file cap: the run must stop (``reason`` says which)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unreadable(Exception):
    """Part of a writable tree could not be read (it must count as a violation, never as zero)."""


class WasiError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def wasi_errno(e: OSError) -> int:
    return _ERRNO.get(e.errno or 0, EIO_)


class Sink(Protocol):
    """Where stdout or stderr bytes go (``Capture``)."""

    def write(self, data: bytes) -> None: ...


# -- guest memory -------------------------------------------------------------------------------


class Memory:
    """Bounds-checked access to the calling instance's linear memory (raises ``WasiError(EFAULT)``)."""

    __slots__ = ("base", "size")

    def __init__(self, base: int, size: int) -> None:
        self.base, self.size = base, size

    def _check(self, ptr: int, n: int) -> int:
        ptr &= 0xFFFFFFFF
        if n < 0 or ptr + n > self.size:
            raise WasiError(EFAULT_)
        return self.base + ptr

    def read(self, ptr: int, n: int) -> bytes:
        return ctypes.string_at(self._check(ptr, n), n) if n else b""

    def write(self, ptr: int, data: bytes) -> None:
        if data:
            ctypes.memmove(self._check(ptr, len(data)), data, len(data))

    def u32(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<I", value & 0xFFFFFFFF))

    def u64(self, ptr: int, value: int) -> None:
        self.write(ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def iovecs(self, ptr: int, count: int) -> list[tuple[int, int]]:
        if count < 0 or count > 1024:
            raise WasiError(EINVAL_)
        raw = self.read(ptr, 8 * count)
        return [struct.unpack_from("<II", raw, 8 * i) for i in range(count)]

    def path(self, ptr: int, n: int) -> bytes:
        data = self.read(ptr, n)
        if b"\0" in data:
            raise WasiError(EINVAL_)
        return data


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _clip(vecs: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    out = []
    for ptr, n in vecs:
        take = min(n, total)
        if take <= 0:
            break
        out.append((ptr, take))
        total -= take
    return out


def _filetype(mode: int) -> int:
    if stat.S_ISREG(mode):
        return REG
    if stat.S_ISDIR(mode):
        return DIR
    if stat.S_ISLNK(mode):
        return SYMLINK
    return UNKNOWN


def _virtual_stat(kind: int, size: int, ino: int) -> bytes:
    return struct.pack("<QQB7xQQQQQ", 2, ino, kind, 1, size, 0, 0, 0)


def _times(st: os.stat_result, atim: int, mtim: int, flags: int) -> tuple[int, int]:

    now = time.time_ns()
    a = now if flags & ATIM_NOW else (atim if flags & ATIM else st.st_atime_ns)
    m = now if flags & MTIM_NOW else (mtim if flags & MTIM else st.st_mtime_ns)
    return a, m


# -- the WASI signatures ------------------------------------------------------------------------

I32, I64 = "i32", "i64"
#: (name, parameter types after the caller, method name) for every call this layer serves.
FUNCTIONS: Final[list[tuple[str, tuple[str, ...], str]]] = [
    ("fd_advise", (I32, I64, I64, I32), "fd_advise"),
    ("fd_allocate", (I32, I64, I64), "fd_allocate"),
    ("fd_close", (I32,), "fd_close"),
    ("fd_datasync", (I32,), "fd_datasync"),
    ("fd_fdstat_get", (I32, I32), "fd_fdstat_get"),
    ("fd_fdstat_set_flags", (I32, I32), "fd_fdstat_set_flags"),
    ("fd_fdstat_set_rights", (I32, I64, I64), "fd_fdstat_set_rights"),
    ("fd_filestat_get", (I32, I32), "fd_filestat_get"),
    ("fd_filestat_set_size", (I32, I64), "fd_filestat_set_size"),
    ("fd_filestat_set_times", (I32, I64, I64, I32), "fd_filestat_set_times"),
    ("fd_pread", (I32, I32, I32, I64, I32), "fd_pread"),
    ("fd_prestat_get", (I32, I32), "fd_prestat_get"),
    ("fd_prestat_dir_name", (I32, I32, I32), "fd_prestat_dir_name"),
    ("fd_pwrite", (I32, I32, I32, I64, I32), "fd_pwrite"),
    ("fd_read", (I32, I32, I32, I32), "fd_read"),
    ("fd_readdir", (I32, I32, I32, I64, I32), "fd_readdir"),
    ("fd_renumber", (I32, I32), "fd_renumber"),
    ("fd_seek", (I32, I64, I32, I32), "fd_seek"),
    ("fd_sync", (I32,), "fd_sync"),
    ("fd_tell", (I32, I32), "fd_tell"),
    ("fd_write", (I32, I32, I32, I32), "fd_write"),
    ("path_create_directory", (I32, I32, I32), "path_create_directory"),
    ("path_filestat_get", (I32, I32, I32, I32, I32), "path_filestat_get"),
    ("path_filestat_set_times", (I32, I32, I32, I32, I64, I64, I32), "path_filestat_set_times"),
    ("path_link", (I32, I32, I32, I32, I32, I32, I32), "refuse"),
    ("path_open", (I32, I32, I32, I32, I32, I64, I64, I32, I32), "path_open"),
    ("path_readlink", (I32, I32, I32, I32, I32, I32), "path_readlink"),
    ("path_remove_directory", (I32, I32, I32), "path_remove_directory"),
    ("path_rename", (I32, I32, I32, I32, I32, I32), "path_rename"),
    ("path_symlink", (I32, I32, I32, I32, I32), "refuse"),
    ("path_unlink_file", (I32, I32, I32), "path_unlink_file"),
    ("sock_accept", (I32, I32, I32), "sock"),
    ("sock_recv", (I32, I32, I32, I32, I32, I32), "sock"),
    ("sock_send", (I32, I32, I32, I32, I32), "sock"),
    ("sock_shutdown", (I32, I32), "sock"),
]
