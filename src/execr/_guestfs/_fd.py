"""The ``fd_*`` WASI calls."""

from __future__ import annotations

import heapq
import os
import struct

from ._abi import (
    _STDIO,
    DIR,
    EBADF_,
    EINVAL_,
    EISDIR_,
    ENAMETOOLONG_,
    ENOTSUP_,
    EOVERFLOW_,
    EROFS_,
    ESPIPE_,
    ESUCCESS,
    FD_APPEND,
    MAX_IO,
    R_ALL,
    R_DIR_READ,
    R_READ,
    R_SEEK,
    R_TELL,
    R_WRITE,
    REG,
    UNKNOWN,
    Memory,
    _clip,
    _filetype,
    _times,
    _virtual_stat,
)
from ._core import Core
from ._tree import _Blob, _Dir, _File, _Out


class FdCalls(Core):
    """The ``fd_*`` calls: descriptors, reads and writes, listings."""

    def fd_close(self, mem: Memory, fd: int) -> int:
        self._entry(fd)
        return self._drop(fd)

    def fd_renumber(self, mem: Memory, fd: int, to: int) -> int:
        entry = self._entry(fd)
        if to == fd:
            return ESUCCESS
        self._entry(to)
        preopens = range(_STDIO, _STDIO + len(self.trees))
        if fd in preopens or to in preopens or fd < _STDIO or to < _STDIO:
            return ENOTSUP_
        self._drop(to)
        self._free.remove(to)
        heapq.heapify(self._free)
        del self._table[fd]
        heapq.heappush(self._free, fd)
        self._mine.discard(fd)
        self._mine.add(to)
        self._table[to] = entry
        return ESUCCESS

    def fd_fdstat_get(self, mem: Memory, fd: int, out: int) -> int:
        entry = self._entry(fd)
        flags, inherit = 0, 0
        if isinstance(entry, _Dir):
            # inheriting: everything, so that wasi-libc asks for what the guest wants (it masks its
            # request with these) and ``path_open`` refuses a write on a read-only tree by name
            kind, rights, inherit = DIR, R_ALL if entry.tree.writable else R_DIR_READ, R_ALL
        elif isinstance(entry, _File):
            kind = REG
            rights = R_ALL & ~(0 if entry.write else R_WRITE) & ~(0 if entry.read else R_READ)
            flags = FD_APPEND if entry.append else 0
        elif isinstance(entry, _Blob):
            kind, rights = (UNKNOWN if entry.stdin else REG), R_READ | (0 if entry.stdin else R_SEEK | R_TELL)
        else:
            kind, rights = UNKNOWN, R_WRITE
        mem.write(out, struct.pack("<BxHxxxxQQ", kind, flags, rights, inherit))
        return ESUCCESS

    def fd_fdstat_set_flags(self, mem: Memory, fd: int, flags: int) -> int:
        entry = self._entry(fd)
        if isinstance(entry, _File):
            entry.append = bool(flags & FD_APPEND)
        return ESUCCESS

    def fd_fdstat_set_rights(self, mem: Memory, fd: int, base: int, inheriting: int) -> int:
        self._entry(fd)
        return ESUCCESS

    def fd_prestat_get(self, mem: Memory, fd: int, out: int) -> int:
        index = fd - _STDIO
        if not 0 <= index < len(self.trees) or fd not in self._table:
            return EBADF_
        mem.write(out, struct.pack("<BxxxI", 0, len(self.trees[index].guest.encode())))
        return ESUCCESS

    def fd_prestat_dir_name(self, mem: Memory, fd: int, ptr: int, n: int) -> int:
        index = fd - _STDIO
        if not 0 <= index < len(self.trees) or fd not in self._table:
            return EBADF_
        name = self.trees[index].guest.encode()
        if n < len(name):
            return ENAMETOOLONG_
        mem.write(ptr, name)
        return ESUCCESS

    def fd_filestat_get(self, mem: Memory, fd: int, out: int) -> int:
        entry = self._entry(fd)
        if isinstance(entry, _Dir):
            if entry.fd < 0:
                mem.write(out, _virtual_stat(DIR, 0, 2))
                return ESUCCESS
            self._filestat(mem, out, os.fstat(entry.fd))
        elif isinstance(entry, _File):
            self._filestat(mem, out, os.fstat(entry.fd))
        elif isinstance(entry, _Blob):
            mem.write(out, _virtual_stat(UNKNOWN if entry.stdin else REG, len(entry.data), 1 if not entry.stdin else 0))
        else:
            mem.write(out, _virtual_stat(UNKNOWN, 0, 0))
        return ESUCCESS

    def fd_filestat_set_size(self, mem: Memory, fd: int, size: int) -> int:
        f = self._file(fd)
        if not f.write:
            return EBADF_
        if size < 0 or size > 1 << 62:
            return EINVAL_
        old = self._sizes.get(f.key, 0)
        self._grow(0, size - old)
        os.ftruncate(f.fd, size)
        self._sizes[f.key] = size
        return ESUCCESS

    def fd_filestat_set_times(self, mem: Memory, fd: int, atim: int, mtim: int, flags: int) -> int:
        entry = self._entry(fd)
        if isinstance(entry, _File):
            if not self._writes(entry.tree):
                return EROFS_
            os.utime(entry.fd, ns=_times(os.fstat(entry.fd), atim, mtim, flags))
            return ESUCCESS
        if isinstance(entry, _Dir):
            if entry.fd < 0 or not self._writes(entry.tree):
                return EROFS_
            os.utime(entry.fd, ns=_times(os.fstat(entry.fd), atim, mtim, flags))
            return ESUCCESS
        return EBADF_

    def fd_advise(self, mem: Memory, fd: int, offset: int, length: int, advice: int) -> int:
        self._entry(fd)
        return ESUCCESS

    def fd_allocate(self, mem: Memory, fd: int, offset: int, length: int) -> int:
        self._file(fd)
        return ENOTSUP_

    def fd_datasync(self, mem: Memory, fd: int) -> int:
        self._entry(fd)
        return ESUCCESS

    fd_sync = fd_datasync

    def fd_seek(self, mem: Memory, fd: int, offset: int, whence: int, out: int) -> int:
        entry = self._entry(fd)
        if whence not in (0, 1, 2):
            return EINVAL_
        if isinstance(entry, _Blob) and not entry.stdin:
            start = (0, entry.pos, len(entry.data))[whence]
            if start + offset < 0:
                return EINVAL_
            entry.pos = start + offset
            mem.u64(out, entry.pos)
            return ESUCCESS
        if isinstance(entry, _Dir):
            return EISDIR_
        if not isinstance(entry, _File):
            return ESPIPE_
        if offset < -(1 << 62) or offset > 1 << 62:
            return EINVAL_
        mem.u64(out, os.lseek(entry.fd, offset, (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END)[whence]))
        return ESUCCESS

    def fd_tell(self, mem: Memory, fd: int, out: int) -> int:
        return self.fd_seek(mem, fd, 0, 1, out)

    def fd_read(self, mem: Memory, fd: int, iovs: int, count: int, out: int) -> int:
        return self._read(mem, fd, iovs, count, out, None)

    def fd_pread(self, mem: Memory, fd: int, iovs: int, count: int, offset: int, out: int) -> int:
        if offset < 0:
            return EINVAL_
        return self._read(mem, fd, iovs, count, out, offset)

    def _read(self, mem: Memory, fd: int, iovs: int, count: int, out: int, offset: int | None) -> int:
        entry = self._entry(fd)
        vecs = mem.iovecs(iovs, count)
        want = min(sum(n for _, n in vecs), MAX_IO)
        if isinstance(entry, _Blob):
            pos = entry.pos if offset is None else offset
            if entry.stdin and offset is not None:
                return ESPIPE_
            data = entry.data[pos : pos + want]
            if offset is None:
                entry.pos += len(data)
        elif isinstance(entry, _File):
            if not entry.read:
                return EBADF_
            data = os.read(entry.fd, want) if offset is None else os.pread(entry.fd, want, offset)
        elif isinstance(entry, _Dir):
            return EISDIR_
        else:
            return EBADF_
        done = 0
        for ptr, n in vecs:
            if done >= len(data):
                break
            chunk = data[done : done + n]
            mem.write(ptr, chunk)
            done += len(chunk)
        mem.u32(out, done)
        return ESUCCESS

    def fd_write(self, mem: Memory, fd: int, iovs: int, count: int, out: int) -> int:
        return self._write(mem, fd, iovs, count, out, None)

    def fd_pwrite(self, mem: Memory, fd: int, iovs: int, count: int, offset: int, out: int) -> int:
        if offset < 0:
            return EINVAL_
        return self._write(mem, fd, iovs, count, out, offset)

    def _write(self, mem: Memory, fd: int, iovs: int, count: int, out: int, offset: int | None) -> int:
        entry = self._entry(fd)
        vecs = mem.iovecs(iovs, count)
        if sum(n for _, n in vecs) > MAX_IO:
            vecs = _clip(vecs, MAX_IO)
        data = b"".join(mem.read(ptr, n) for ptr, n in vecs)
        if isinstance(entry, _Out):
            if offset is not None:
                return ESPIPE_
            entry.sink.write(data)
            mem.u32(out, len(data))
            return ESUCCESS
        if isinstance(entry, _Dir):
            return EISDIR_
        if not isinstance(entry, _File) or not entry.write:
            return EBADF_
        size = self._sizes.get(entry.key, 0)
        if offset is not None:
            start = offset
        elif entry.append:
            start = size
        else:
            start = os.lseek(entry.fd, 0, os.SEEK_CUR)
        end = start + len(data)
        if end > 1 << 62:
            return EOVERFLOW_
        charged = max(0, end - size)
        self._grow(0, charged)
        try:
            if offset is not None:
                written = os.pwrite(entry.fd, data, offset)
            else:
                if entry.append:
                    os.lseek(entry.fd, 0, os.SEEK_END)
                written = os.write(entry.fd, data)
        except BaseException:
            self.bytes -= charged
            raise
        self.bytes -= charged - max(0, start + written - size)  # a short write: give back what was not used
        self._sizes[entry.key] = max(size, start + written)
        mem.u32(out, written)
        return ESUCCESS

    def fd_readdir(self, mem: Memory, fd: int, buf: int, buf_len: int, cookie: int, out: int) -> int:
        d = self._dir(fd)
        if cookie == 0 or d.listing is None:
            d.listing = self._list(d)
        chunks = []
        used = 0
        for index in range(cookie, len(d.listing)):
            name, kind, ino = d.listing[index]
            ent = struct.pack("<QQIB3x", index + 1, ino, len(name), kind) + name
            chunks.append(ent)
            used += len(ent)
            if used >= buf_len:
                break
        data = b"".join(chunks)[:buf_len]
        mem.write(buf, data)
        mem.u32(out, len(data))
        return ESUCCESS

    def _list(self, d: _Dir) -> list[tuple[bytes, int, int]]:
        items: list[tuple[bytes, int, int]] = [(b".", DIR, 1), (b"..", DIR, 1)]
        if d.fd < 0:
            for name in sorted(d.tree.files or {}):
                items.append((name.encode(), REG, 2 + len(items)))
            return items
        with os.scandir(d.fd) as it:
            entries = sorted(it, key=lambda e: e.name)  # by name, whatever order the host keeps
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            items.append((os.fsencode(entry.name), _filetype(st.st_mode), self._ino(st)))
        return items
