"""The descriptor table of one run: its entries, accounting and path resolution."""

from __future__ import annotations

import errno as E
import heapq
import os
import stat
import struct
from typing import Self

from ._abi import (
    _DIR_FLAGS,
    _STDIO,
    _U64,
    EBADF_,
    EISDIR_,
    ELOOP_,
    EMFILE_,
    ENOENT_,
    ENOTCAPABLE_,
    ENOTDIR_,
    ESPIPE_,
    ESUCCESS,
    MAX_SYMLINK_HOPS,
    NEW_DIR_SIZE,
    LimitHit,
    Memory,
    Sink,
    WasiError,
    _close,
    _filetype,
)
from ._budget import HOST_FDS, Caps
from ._tree import Tree, _At, _Blob, _Dir, _Entry, _File, _Out


class Core:
    """The descriptor table of one run and its file accounting (``GuestFiles`` adds the calls).

    Each method takes the calling instance's ``Memory`` and the call's raw arguments and
    returns a WASI errno; host failures never escape (``LimitHit`` is the one exception a
    method raises: the caller stops the run). Not thread-safe: one run, one thread.
    """

    def __init__(
        self,
        trees: list[Tree],
        *,
        stdin: bytes,
        stdout: Sink,
        stderr: Sink,
        caps: Caps,
        base: tuple[int, int] = (0, 0),
        used: tuple[int, int] | None = None,
    ) -> None:
        self.trees = trees
        self.caps = caps
        # what the writable trees hold now (``used``, else ``base``), counted as the run goes; caps
        # apply to what was added since ``base`` (a session's earlier calls count too)
        self.entries, self.bytes = base if used is None else used
        self._base = base
        self._table: dict[int, _Entry] = {0: _Blob(stdin, stdin=True), 1: _Out(stdout), 2: _Out(stderr)}
        self._sizes: dict[tuple[int, int], int] = {}  # sizes of files the guest has open for writing
        self._opens: dict[tuple[int, int], int] = {}  # descriptors per host inode
        self._orphans: dict[tuple[int, int], int] = {}  # unlinked while open: size still held
        self._inodes: dict[tuple[int, int], int] = {}
        self._fresh: set[tuple[int, int]] = set()  # fresh roots: (dev, ino)
        self._opened = 0
        self._free: list[int] = []  # closed descriptors below the highest ever used (a heap)
        self._mine: set[int] = set()  # descriptors the guest opened (what max_open_files counts)
        #: whether a call could have changed a writable tree (opened a file there for writing, made,
        #: removed, renamed or retimed something): if not, the run changed no file (``_writes``)
        self.touched = False
        try:
            for i, tree in enumerate(trees):
                if not tree.virtual:
                    assert tree.host is not None
                    tree.fd = os.open(tree.host, _DIR_FLAGS)
                    if tree.fresh:
                        st = os.fstat(tree.fd)
                        self._fresh.add((st.st_dev, st.st_ino))
                self._table[_STDIO + i] = _Dir(tree, (), tree.fd)
        except BaseException:
            self.close()
            raise

    # -- lifecycle --

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every host descriptor of the run (idempotent)."""
        table, self._table = self._table, {}
        HOST_FDS.give(self._opened)
        self._opened = 0
        for entry in table.values():
            if isinstance(entry, _File) or (isinstance(entry, _Dir) and entry.fd >= 0 and entry.fd != entry.tree.fd):
                _close(entry.fd)
        for tree in self.trees:
            if tree.fd >= 0:
                _close(tree.fd)
                tree.fd = -1

    @property
    def open_count(self) -> int:
        """Descriptors the guest opened and has not closed (a boot must end with none to be captured)."""
        return len(self._mine)

    # -- helpers --

    def _writes(self, tree: Tree) -> bool:
        """Whether ``tree`` may be changed (the one check every changing call makes); if so, ``touched``."""
        if tree.writable:
            self.touched = True
        return tree.writable

    def _entry(self, fd: int) -> _Entry:
        entry = self._table.get(fd)
        if entry is None:
            raise WasiError(EBADF_)
        return entry

    def _dir(self, fd: int) -> _Dir:
        entry = self._entry(fd)
        if not isinstance(entry, _Dir):
            raise WasiError(ENOTDIR_)
        return entry

    def _file(self, fd: int) -> _File:
        entry = self._entry(fd)
        if isinstance(entry, _Dir):
            raise WasiError(EISDIR_)
        if not isinstance(entry, _File):
            raise WasiError(ESPIPE_)
        return entry

    def _ino(self, st: os.stat_result) -> int:
        """A per-run inode number: the host's numbering never shows."""
        return self._inodes.setdefault((st.st_dev, st.st_ino), len(self._inodes) + 1)

    def _add_fd(self, entry: _Entry) -> int:
        """Give ``entry`` the lowest free guest descriptor (``_room_for_fd`` was checked first)."""
        fd = heapq.heappop(self._free) if self._free else len(self._table) + len(self._free)
        self._table[fd] = entry
        self._mine.add(fd)
        self._opened += 1
        HOST_FDS.take()  # may pass the budget by the few a racing run took since ``_room_for_fd``
        return fd

    def _room_for_fd(self) -> None:
        """EMFILE past ``max_open_files``, or when all runs together would leave the host too few."""
        if self.caps.max_open is not None and self._opened >= self.caps.max_open:
            raise WasiError(EMFILE_)
        if not HOST_FDS.take():
            raise WasiError(EMFILE_)
        HOST_FDS.give()

    def _grow(self, entries: int, size: int) -> None:
        """Account for ``entries`` more entries and ``size`` more bytes (negative: fewer), or stop the run."""
        caps = self.caps
        if entries > 0 and caps.max_files is not None and self.entries + entries - self._base[0] > caps.max_files:
            raise LimitHit(f"max_files limit of {caps.max_files} files and directories reached")
        if size > 0 and caps.max_bytes is not None and self.bytes + size - self._base[1] > caps.max_bytes:
            raise LimitHit(f"max_file_bytes limit of {caps.max_bytes} bytes reached")
        self.entries += entries
        self.bytes += size

    def _filestat(self, mem: Memory, ptr: int, st: os.stat_result) -> None:
        mem.write(
            ptr,
            struct.pack(
                "<QQB7xQQQQQ",
                1,
                self._ino(st),
                _filetype(st.st_mode),
                st.st_nlink,
                NEW_DIR_SIZE if (st.st_dev, st.st_ino) in self._fresh else st.st_size,
                st.st_atime_ns & _U64,
                st.st_mtime_ns & _U64,
                st.st_ctime_ns & _U64,
            ),
        )

    # -- path resolution --

    def _walk_to(self, d: _Dir, path: bytes, follow: bool) -> _At:
        """Resolve ``path`` below ``d`` to (parent directory fd, final name), inside its tree."""
        if path.startswith(b"/"):
            raise WasiError(ENOTCAPABLE_)
        tree = d.tree
        if tree.virtual:
            comps = [c for c in path.split(b"/") if c not in (b"", b".")]
            if b".." in comps or len(comps) > 1:
                raise WasiError(ENOTCAPABLE_ if b".." in comps else ENOENT_)
            return _At(tree, -1, comps[0] if comps else b".", (), [])
        pending = list(reversed([*d.rel, *path.split(b"/")]))  # a stack: the next component is last
        cur: list[bytes] = []
        fds: list[int] = []
        hops = 0
        try:
            while pending:
                name = pending.pop()
                if name in (b"", b"."):
                    continue
                if name == b"..":
                    if not cur:
                        raise WasiError(ENOTCAPABLE_)
                    cur.pop()
                    _close(fds.pop())
                    continue
                parent = fds[-1] if fds else tree.fd
                last = all(p in (b"", b".") for p in pending)
                if last and not follow:
                    return _At(tree, parent, name, tuple(cur), fds)
                try:
                    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except OSError as e:
                    if e.errno == E.ENOENT and last:
                        return _At(tree, parent, name, tuple(cur), fds)
                    raise
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > MAX_SYMLINK_HOPS:
                        raise WasiError(ELOOP_)
                    target = os.readlink(name, dir_fd=parent)
                    if not target or target.startswith(b"/"):
                        raise WasiError(ENOTCAPABLE_)
                    pending.extend(reversed(target.split(b"/")))
                    continue
                if last and not stat.S_ISDIR(st.st_mode):
                    return _At(tree, parent, name, tuple(cur), fds)
                if not stat.S_ISDIR(st.st_mode):
                    raise WasiError(ENOTDIR_)
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=parent))
                cur.append(name)
            # the path names a directory that is now open (or the start itself)
            if fds:
                name = cur.pop()
                _close(fds.pop())
                return _At(tree, fds[-1] if fds else tree.fd, name, tuple(cur), fds)
            return _At(tree, tree.fd, b".", (), fds)
        except BaseException:
            for fd in fds:
                _close(fd)
            raise

    def _at(self, fd: int, path_ptr: int, path_len: int, mem: Memory, follow: bool) -> _At:
        return self._walk_to(self._dir(fd), mem.path(path_ptr, path_len), follow)

    def _drop(self, fd: int) -> int:
        entry = self._table.pop(fd)
        heapq.heappush(self._free, fd)
        if fd in self._mine:
            self._mine.discard(fd)
            self._opened -= 1
            HOST_FDS.give()
        if isinstance(entry, _File):
            self._release(entry)
        elif isinstance(entry, _Dir) and entry.fd >= 0 and entry.fd != entry.tree.fd:
            _close(entry.fd)
        return ESUCCESS

    def _release(self, f: _File) -> None:
        key = f.key
        left = self._opens.get(key, 1) - 1
        if left > 0:
            self._opens[key] = left
        else:
            self._opens.pop(key, None)
            self._sizes.pop(key, None)
            size = self._orphans.pop(key, None)
            if size is not None:  # unlinked while open: its bytes are freed now
                self.entries -= 1
                self.bytes -= size
        _close(f.fd)

    def _unlinked(self, st: os.stat_result) -> None:
        """Account for a name removed: its bytes stay held while a guest descriptor is open."""
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1:
            return
        if key in self._opens:
            self._orphans[key] = self._sizes.get(key, st.st_size)
            return
        self.entries -= 1
        self.bytes -= self._sizes.get(key, st.st_size)

    def _exists(self, at: _At) -> bool:
        if at.tree.virtual:
            return at.name == b"." or at.name.decode("utf-8", "replace") in (at.tree.files or {})
        try:
            os.stat(at.name, dir_fd=at.parent, follow_symlinks=False)
            return True
        except OSError:
            return False
