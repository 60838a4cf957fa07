"""Workspace: the host side of one run: its trees, inputs written in, and what it wrote.

Host-side file work for a run (``files=``, ``stdio=``, collecting outputs) goes through
directory descriptors with ``O_NOFOLLOW`` at every component, so a link planted anywhere in
a path is never followed; output trees are walked through descriptors at any depth.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from ._exceptions import InvalidArgument
from ._guestfs import Tree, Unreadable, walk
from ._mounts import CONTROL, PACKAGES, SLOTS, Mount, guest_path, slot_placeholder
from ._results import OutputFile
from ._roots import roots

__all__ = ["Workspace", "check_outputs", "write_beneath", "write_outputs"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

FileState = dict[str, tuple[int, int, int]]


def _open_beneath(top: str, parts: list[str], *, create: bool) -> int:
    """Open the directory ``top/parts...`` one component at a time, never following a link."""
    fd = os.open(top, _DIR_FLAGS)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_beneath(top: str, rel: str, content: bytes) -> None:
    """Write ``content`` to ``top/rel`` (directories made as needed); a link anywhere raises ``OSError``."""
    parts = [p for p in rel.split("/") if p]
    dfd = _open_beneath(top, parts[:-1], create=True)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO never blocks
        fd = os.open(parts[-1], flags, 0o644, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            os.ftruncate(fd, 0)
            f.write(content)
    finally:
        os.close(dfd)


def _scan(host: str, guest: str, refuse_links: bool) -> tuple[FileState, int, int]:
    """(regular files by guest path, entries, bytes) below ``host``; ``Unreadable`` if any part is not readable."""
    fd = os.open(host, _DIR_FLAGS)
    state: FileState = {}
    entries = size = 0
    try:
        for rel, st, _parent in walk(fd):
            entries += 1
            if stat.S_ISDIR(st.st_mode):
                continue
            size += st.st_size
            if stat.S_ISREG(st.st_mode):
                path = posixpath.join(guest, os.fsdecode(rel))
                if refuse_links and st.st_nlink > 1:
                    raise InvalidArgument(
                        f"writable mount {guest!r} holds a hard-linked file ({os.fsdecode(rel)!r}); the guest could "
                        "change the file's other names outside the mount: mount it read-only or copy it"
                    )
                state[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
    finally:
        os.close(fd)
    return state, entries, size


class Workspace:
    """The host side of one run: the trees behind the preopens, inputs, and what the run wrote."""

    def __init__(
        self,
        *,
        root: Path | None,
        mounts: Iterable[Mount],
        packages: Path | None,
        files: Mapping[str, bytes],
    ) -> None:
        self.mounts = tuple(mounts)
        if len(self.mounts) > SLOTS:
            raise InvalidArgument(f"at most {SLOTS} extra mounts are supported; got {len(self.mounts)}")
        self._own = ""
        if root is None:
            self._own = self.root = roots.take()
        else:
            self.root = str(root)
        try:
            self.packages = str(packages) if packages is not None else None
            self.writable: list[tuple[str, str]] = [("/", self.root)]
            self.writable += [(m.guest, str(m.host)) for m in self.mounts if m.writable]
            for path, content in files.items():
                self._put(path, content)
            self.before: FileState = {}
            self._after: tuple[FileState, int, int] | None = None  # ``changed()``'s walk, for ``rebase()``
            self._trees: list[Tree] | None = None  # ``trees()``'s fixed ones
            entries = size = 0
            for guest, host in self.writable:
                if host == self._own and not files:
                    continue  # brand new and empty
                try:
                    state, n, b = _scan(host, guest, refuse_links=host != self._own)
                except Unreadable as e:
                    raise InvalidArgument(f"writable mount {guest!r} cannot be read in full: {e}") from e
                self.before |= state
                entries += n
                size += b
            self.base_usage = self.usage = (entries, size)
        except BaseException:
            self.close()
            raise

    def _put(self, path: str, content: bytes) -> None:
        guest = guest_path(path, "files key", relative_ok=True)
        for mount in self.mounts:
            if guest == mount.guest or guest.startswith(mount.guest.rstrip("/") + "/"):
                raise InvalidArgument(f"files key {path!r} is inside mount {mount.guest!r}; files go in the root")
        if guest == "/":
            raise InvalidArgument(f"files key {path!r} names the root directory, not a file")
        try:
            write_beneath(self.root, guest.lstrip("/"), content)
        except OSError as e:
            raise InvalidArgument(
                f"files key {path!r} cannot be written into the root ({e.strerror}: a name in its path is a file, "
                "a link or not writable)"
            ) from e

    def trees(self, control: Mapping[str, bytes]) -> list[Tree]:
        """The preopened trees of this run, in the fixed order (``control``: the files of /__execr__).

        All but /__execr__ are made once per workspace (a session's calls reuse them, one at a
        time: ``GuestFiles`` opens and closes their directories per run).
        """
        if self._trees is None:
            fixed = [
                Tree("/", self.root, True, fresh=bool(self._own)),
                Tree(PACKAGES, self.packages) if self.packages is not None else Tree(PACKAGES, files={}),
            ]
            for i in range(SLOTS):
                if i < len(self.mounts):
                    m = self.mounts[i]
                    fixed.append(Tree(m.guest, str(m.host), m.writable))
                else:
                    fixed.append(Tree(slot_placeholder(i), files={}))
            self._trees = fixed
        root, *rest = self._trees
        return [root, Tree(CONTROL, files=dict(control)), *rest]

    def changed(self, cap: int | None, touched: bool = True) -> tuple[tuple[OutputFile, ...], str | None]:
        """Files created or changed by the run (content up to ``cap`` bytes each), and a problem, if any.

        The problem is set when part of a writable tree cannot be read: that counts as a
        violation of the file caps, never as nothing written. ``touched=False`` (the run made no
        call that could change a writable tree, ``GuestFiles.touched``): nothing, without a walk.
        """
        out: list[OutputFile] = []
        self._after = None
        if not touched:
            self._after = (self.before, *self.usage)
            return (), None
        after: FileState = {}
        entries = size = 0
        for guest, host in self.writable:
            try:
                fd = os.open(host, _DIR_FLAGS)
            except OSError as e:
                return tuple(out), f"writable mount {guest!r} cannot be read: {e.strerror}"
            try:
                for rel, st, parent in walk(fd):
                    entries += 1
                    if stat.S_ISDIR(st.st_mode):
                        continue
                    size += st.st_size
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    path = posixpath.join(guest, os.fsdecode(rel))
                    after[path] = seen = (st.st_size, st.st_mtime_ns, st.st_ino)
                    if self.before.get(path) == seen:
                        continue
                    name = rel.rsplit(b"/", 1)[-1]
                    try:
                        ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent)
                    except OSError:
                        continue
                    with os.fdopen(ffd, "rb") as f:
                        content = f.read(min(cap + 1, st.st_size + 1) if cap is not None else -1)
                    truncated = cap is not None and len(content) > cap
                    out.append(OutputFile(path, st.st_size, content[:cap] if truncated else content, truncated))
            except Unreadable as e:
                return tuple(sorted(out, key=lambda f: f.path)), f"writable mount {guest!r} cannot be read: {e}"
            finally:
                os.close(fd)
        self._after = (after, entries, size)
        return tuple(sorted(out, key=lambda f: f.path)), None

    def rebase(self) -> str | None:
        """Take what the writable trees hold now as the new ``before`` (a session, between calls), and
        update ``usage``; returns a problem if part of them cannot be read (``None``: fine).

        Right after a complete ``changed()`` (a session's call), its walk is reused instead of a second one.
        """
        after, self._after = self._after, None
        if after is not None:
            self.before, self.usage = after[0], (after[1], after[2])
            return None
        before: FileState = {}
        entries = size = 0
        for guest, host in self.writable:
            try:
                state, n, b = _scan(host, guest, refuse_links=False)
            except (Unreadable, OSError) as e:
                return f"writable mount {guest!r} cannot be read: {e}"
            before |= state
            entries += n
            size += b
        self.before, self.usage = before, (entries, size)
        return None

    def close(self) -> None:
        """Give back the run's own root (kept for reuse if empty, else removed in the background).

        Never touches the caller's own directories.
        """
        own, self._own = self._own, ""
        if own:
            roots.give(own)


def check_outputs(directory: Path, names: Iterable[str]) -> None:
    """Refuse (``InvalidArgument``) output names in ``directory`` that exist as anything but a regular file."""
    dfd = os.open(directory, _DIR_FLAGS)
    try:
        for name in names:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
                raise InvalidArgument(
                    f"stdio directory {str(directory)!r}: {name!r} exists and is not a plain file (a link or "
                    "special file would be written through): remove it"
                )
    finally:
        os.close(dfd)


def write_outputs(directory: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (names, no slashes) into ``directory`` without following links (``stdio=``)."""
    dfd = os.open(directory, _DIR_FLAGS)
    try:
        for name, content in files.items():
            try:
                fd = os.open(
                    name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd
                )
            except OSError as e:
                raise InvalidArgument(
                    f"stdio directory: cannot write {name!r} ({e.strerror}; a link is never followed)"
                ) from e
            with os.fdopen(fd, "wb") as f:
                f.write(content)
    finally:
        os.close(dfd)
