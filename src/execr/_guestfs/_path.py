"""The ``path_*`` WASI calls."""

from __future__ import annotations

import os
import stat

from ._abi import (
    _DIR_FLAGS,
    DIR,
    EACCES_,
    EEXIST_,
    EINVAL_,
    EISDIR_,
    ELOOP_,
    ENAMETOOLONG_,
    ENOENT_,
    ENOTDIR_,
    ENOTSOCK_,
    ENOTSUP_,
    EPERM_,
    EROFS_,
    ESUCCESS,
    FD_APPEND,
    FOLLOW,
    MAX_DEPTH,
    O_CREAT_,
    O_DIRECTORY_,
    O_EXCL_,
    O_TRUNC_,
    R_READ,
    R_WRITE,
    REG,
    Memory,
    WasiError,
    _close,
    _times,
    _virtual_stat,
)
from ._core import Core
from ._tree import _At, _Blob, _Dir, _File


class PathCalls(Core):
    """The ``path_*`` calls (and the refused link and socket calls)."""

    def path_open(
        self,
        mem: Memory,
        fd: int,
        dirflags: int,
        path_ptr: int,
        path_len: int,
        oflags: int,
        rights: int,
        _inheriting: int,
        fdflags: int,
        out: int,
    ) -> int:
        self._room_for_fd()
        with self._at(fd, path_ptr, path_len, mem, bool(dirflags & FOLLOW)) as at:
            tree = at.tree
            want_write = bool(rights & R_WRITE) or bool(oflags & O_TRUNC_)
            creating = bool(oflags & O_CREAT_)
            if (want_write or creating) and not self._writes(tree) and (want_write or not self._exists(at)):
                return EROFS_
            if tree.virtual:
                return self._open_virtual(mem, at, oflags, out)
            try:
                st: os.stat_result | None = os.stat(at.name, dir_fd=at.parent, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if oflags & O_CREAT_ and oflags & O_EXCL_:
                    return EEXIST_
                if stat.S_ISLNK(st.st_mode):
                    return ELOOP_
                if stat.S_ISDIR(st.st_mode):
                    if want_write:
                        return EISDIR_
                    dfd = os.open(at.name, _DIR_FLAGS, dir_fd=at.parent)
                    mem.u32(out, self._add_fd(_Dir(tree, (*at.rel, at.name) if at.name != b"." else at.rel, dfd)))
                    return ESUCCESS
                if oflags & O_DIRECTORY_:
                    return ENOTDIR_
                if not stat.S_ISREG(st.st_mode):
                    return EACCES_  # FIFOs, sockets, devices: never opened for a guest
            else:
                if not creating:
                    return ENOENT_
                if oflags & O_DIRECTORY_:
                    return ENOENT_
                if len(at.rel) >= MAX_DEPTH:
                    return ENAMETOOLONG_
                self._grow(1, 0)
            read = bool(rights & R_READ) or not want_write
            flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
            flags |= (os.O_RDWR if read else os.O_WRONLY) if want_write else os.O_RDONLY
            if st is None:
                flags |= os.O_CREAT | os.O_EXCL
            try:
                hfd = os.open(at.name, flags, 0o644, dir_fd=at.parent)
            except BaseException:
                if st is None:
                    self.entries -= 1
                raise
            try:
                now = os.fstat(hfd)
                if not stat.S_ISREG(now.st_mode) or (
                    st is not None and (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev)
                ):
                    raise WasiError(EACCES_)
                key = (now.st_dev, now.st_ino)
                if want_write:
                    size = self._sizes.get(key, now.st_size)
                    if oflags & O_TRUNC_ and size:
                        os.ftruncate(hfd, 0)
                        self.bytes -= size
                        size = 0
                    self._sizes[key] = size
                self._opens[key] = self._opens.get(key, 0) + 1
            except BaseException:
                _close(hfd)
                raise
            f = _File(tree, hfd, key, read, want_write, bool(fdflags & FD_APPEND))
            mem.u32(out, self._add_fd(f))
            return ESUCCESS

    def _open_virtual(self, mem: Memory, at: _At, oflags: int, out: int) -> int:
        if at.name == b".":
            mem.u32(out, self._add_fd(_Dir(at.tree, (), -1)))
            return ESUCCESS
        data = (at.tree.files or {}).get(at.name.decode("utf-8", "replace"))
        if data is None:
            return ENOENT_
        if oflags & O_DIRECTORY_:
            return ENOTDIR_
        mem.u32(out, self._add_fd(_Blob(data)))
        return ESUCCESS

    def path_filestat_get(self, mem: Memory, fd: int, flags: int, path_ptr: int, path_len: int, out: int) -> int:
        with self._at(fd, path_ptr, path_len, mem, bool(flags & FOLLOW)) as at:
            if at.tree.virtual:
                if at.name == b".":
                    mem.write(out, _virtual_stat(DIR, 0, 2))
                    return ESUCCESS
                data = (at.tree.files or {}).get(at.name.decode("utf-8", "replace"))
                if data is None:
                    return ENOENT_
                mem.write(out, _virtual_stat(REG, len(data), 3))
                return ESUCCESS
            self._filestat(mem, out, os.stat(at.name, dir_fd=at.parent, follow_symlinks=False))
            return ESUCCESS

    def path_filestat_set_times(
        self, mem: Memory, fd: int, flags: int, path_ptr: int, path_len: int, atim: int, mtim: int, fst: int
    ) -> int:
        with self._at(fd, path_ptr, path_len, mem, bool(flags & FOLLOW)) as at:
            if not self._writes(at.tree):
                return EROFS_
            st = os.stat(at.name, dir_fd=at.parent, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                return ENOTSUP_
            os.utime(at.name, ns=_times(st, atim, mtim, fst), dir_fd=at.parent, follow_symlinks=False)
            return ESUCCESS

    def path_create_directory(self, mem: Memory, fd: int, path_ptr: int, path_len: int) -> int:
        with self._at(fd, path_ptr, path_len, mem, False) as at:
            if not self._writes(at.tree):
                return EROFS_
            if len(at.rel) >= MAX_DEPTH:
                return ENAMETOOLONG_
            if self._exists(at):
                return EEXIST_
            self._grow(1, 0)
            try:
                os.mkdir(at.name, 0o755, dir_fd=at.parent)
            except BaseException:
                self.entries -= 1
                raise
            return ESUCCESS

    def path_remove_directory(self, mem: Memory, fd: int, path_ptr: int, path_len: int) -> int:
        with self._at(fd, path_ptr, path_len, mem, False) as at:
            if not self._writes(at.tree):
                return EROFS_
            if at.name in (b".", b"..") or (not at.rel and at.name == b"."):
                return EINVAL_
            os.rmdir(at.name, dir_fd=at.parent)
            self.entries -= 1
            return ESUCCESS

    def path_unlink_file(self, mem: Memory, fd: int, path_ptr: int, path_len: int) -> int:
        with self._at(fd, path_ptr, path_len, mem, False) as at:
            if not self._writes(at.tree):
                return EROFS_
            st = os.stat(at.name, dir_fd=at.parent, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                return EISDIR_
            os.unlink(at.name, dir_fd=at.parent)
            self._unlinked(st)
            return ESUCCESS

    def path_rename(
        self, mem: Memory, fd: int, old_ptr: int, old_len: int, new_fd: int, new_ptr: int, new_len: int
    ) -> int:
        with self._at(fd, old_ptr, old_len, mem, False) as src, self._at(new_fd, new_ptr, new_len, mem, False) as dst:
            if not self._writes(src.tree) or not self._writes(dst.tree):
                return EROFS_
            if b"." in (src.name, dst.name) or b".." in (src.name, dst.name):
                return EINVAL_
            try:
                old = os.stat(dst.name, dir_fd=dst.parent, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            moving = os.stat(src.name, dir_fd=src.parent, follow_symlinks=False)
            if old is not None and (old.st_dev, old.st_ino) == (moving.st_dev, moving.st_ino):
                return ESUCCESS
            os.rename(src.name, dst.name, src_dir_fd=src.parent, dst_dir_fd=dst.parent)
            if old is not None:
                if stat.S_ISDIR(old.st_mode):
                    self.entries -= 1
                else:
                    self._unlinked(old)
            return ESUCCESS

    def path_readlink(
        self, mem: Memory, fd: int, path_ptr: int, path_len: int, buf: int, buf_len: int, out: int
    ) -> int:
        with self._at(fd, path_ptr, path_len, mem, False) as at:
            if at.tree.virtual:
                return EINVAL_
            target = os.readlink(at.name, dir_fd=at.parent)
            data = target[:buf_len]
            mem.write(buf, data)
            mem.u32(out, len(data))
            return ESUCCESS

    def refuse(self, mem: Memory, *_args: int) -> int:
        """``path_link`` and ``path_symlink``: links could let a guest reach outside its trees."""
        return EPERM_

    def sock(self, mem: Memory, fd: int, *_args: int) -> int:
        """``sock_*``: no descriptor here is a socket."""
        self._entry(fd)
        return ENOTSOCK_
