"""Mounts: the guest's filesystem layout, per-run workspaces and what a run wrote.

The guest sees a fixed preopen layout, the same on every run (the snapshot freezes
wasi-libc's preopen table, so fds and order never change)::

    fd 3  /                  the run's root and working directory (writable)
    fd 4  /__execr__         read-only: the script (main.py) and the request
    fd 5  /__pypackages__    read-only: EXECR_PYTHONPATH, or an empty directory
    fd 6+ mount slots        extra mounts, at the guest paths the caller picks

Host paths never appear to the guest. Symlinks and hard links cannot lead out of a
mount (wasmtime resolves paths inside each preopen; execr refuses writable mounts
holding hard-linked files and never follows a link when collecting outputs).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import posixpath
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

from ._exceptions import InvalidArgument
from ._results import OutputFile

__all__ = ["CONTROL", "PACKAGES", "SLOTS", "Mount", "Preopen", "Workspace", "outputs_dir", "slot_placeholder"]

CONTROL: Final = "/__execr__"
PACKAGES: Final = "/__pypackages__"
SCRIPT: Final = CONTROL + "/main.py"
SLOTS: Final = 6
MAX_GUEST_PATH: Final = 200
RESERVED: Final = (CONTROL, PACKAGES)


def slot_placeholder(index: int) -> str:
    """The guest path a mount slot boots with; runs overwrite it in guest memory."""
    head = f"/__execr_mount_slot_{index}_"
    return head + "x" * (MAX_GUEST_PATH - len(head))


@dataclasses.dataclass(frozen=True, slots=True)
class Mount:
    """A host directory shown to the guest at ``guest`` (read-only unless ``writable``)."""

    host: Path
    guest: str
    writable: bool = False

    @classmethod
    def parse(cls, spec: str) -> Mount:
        """Parse ``HOST:GUEST[:rw|:ro]`` (the CLI's ``--mount`` form)."""
        if not isinstance(spec, str):
            raise InvalidArgument(f"mount spec must be a string HOST:GUEST[:rw|ro]; got {type(spec).__name__}")
        parts = spec.rsplit(":", 2) if spec.endswith((":rw", ":ro")) else spec.rsplit(":", 1)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise InvalidArgument(f"mount spec must look like HOST:GUEST[:rw|ro]; got {spec!r}")
        return cls.of(parts[0], parts[1], writable=len(parts) == 3 and parts[2] == "rw")

    @classmethod
    def of(cls, host: str | os.PathLike[str], guest: str, writable: bool = False) -> Mount:
        """Validate and build a mount (host must be an existing directory)."""
        return cls(
            host=host_dir(host, "mount host path"), guest=guest_path(guest, "mount guest path"), writable=bool(writable)
        )


def host_dir(value: object, what: str) -> Path:
    """An existing host directory, resolved; anything else raises ``InvalidArgument``."""
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidArgument(f"{what} must be a path to a directory; got {type(value).__name__}")
    path = Path(value).expanduser()
    if not path.exists():
        raise InvalidArgument(f"{what} {str(path)!r} does not exist")
    if not path.is_dir():
        raise InvalidArgument(f"{what} {str(path)!r} is not a directory")
    return path.resolve()


def guest_path(value: object, what: str, *, relative_ok: bool = False) -> str:
    """A normalized absolute guest path, refusing ``..``, NUL and the reserved paths."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{what} must be a non-empty string; got {value!r}")
    if "\0" in value:
        raise InvalidArgument(f"{what} must not contain NUL; got {value!r}")
    if not value.startswith("/"):
        if not relative_ok:
            raise InvalidArgument(f"{what} must be absolute (start with '/'); got {value!r}")
        value = "/" + value
    if ".." in value.split("/"):
        raise InvalidArgument(f"{what} must not contain '..'; got {value!r}")
    norm = posixpath.normpath(value)
    norm = "/" + norm.lstrip("/")
    if len(norm.encode()) > MAX_GUEST_PATH:
        raise InvalidArgument(f"{what} must be at most {MAX_GUEST_PATH} bytes; got {len(norm.encode())}")
    for reserved in RESERVED:
        if norm == reserved or norm.startswith(reserved + "/"):
            raise InvalidArgument(f"{what} {value!r} is inside {reserved}, which execr reserves")
    return norm


@dataclasses.dataclass(frozen=True, slots=True)
class Preopen:
    """One WASI preopen: host directory, guest path, writability."""

    host: str
    guest: str
    writable: bool


_empty_lock = threading.Lock()
_empty_dir: str | None = None


def empty_dir() -> str:
    """A process-wide empty directory, shown read-only behind unused slots."""
    global _empty_dir
    with _empty_lock:
        if _empty_dir is None or not os.path.isdir(_empty_dir):
            _empty_dir = tempfile.mkdtemp(prefix="execr-empty-")
            atexit.register(shutil.rmtree, _empty_dir, True)
        return _empty_dir


FileState = dict[str, tuple[int, int, int]]

_scratch_lock = threading.Lock()
_scratch_pool: list[str] = []
_SCRATCH_KEEP = 16


_outputs_dir: str | None = None
_TMPFS = "/dev/shm"
_TMPFS_MIN_FREE = 1 << 30


def outputs_dir() -> str:
    """Where runs' stdout/stderr files live: a RAM file system when one with room exists.

    Truncating and rewriting small files there is several times cheaper than on a disk
    file system; a flood cannot fill it (``FileCapture`` drops the middle as it goes).
    """
    global _outputs_dir
    with _scratch_lock:
        if _outputs_dir is None or not os.path.isdir(_outputs_dir):
            base = None
            try:
                st = os.statvfs(_TMPFS)
                if st.f_bavail * st.f_frsize >= _TMPFS_MIN_FREE and os.access(_TMPFS, os.W_OK):
                    base = _TMPFS
            except OSError:
                pass
            _outputs_dir = tempfile.mkdtemp(prefix="execr-out-", dir=base)
            atexit.register(shutil.rmtree, _outputs_dir, True)
        return _outputs_dir


def _output_files(scratch: str) -> tuple[str, str]:
    name = os.path.join(outputs_dir(), os.path.basename(scratch))
    return name + ".stdout", name + ".stderr"


def _take_scratch() -> str:
    """A scratch directory holding empty ``root/`` and ``ctl/`` directories."""
    with _scratch_lock:
        if _scratch_pool:
            return _scratch_pool.pop()
    tmp = tempfile.mkdtemp(prefix="execr-run-")
    os.mkdir(os.path.join(tmp, "root"))
    os.mkdir(os.path.join(tmp, "ctl"))
    return tmp


def _give_back_scratch(tmp: str) -> None:
    try:
        with os.scandir(tmp) as it:
            names = sorted(e.name for e in it)
        with os.scandir(os.path.join(tmp, "root")) as it:
            root_empty = next(it, None) is None
        for name in names:
            if name not in ("root", "ctl"):
                os.unlink(os.path.join(tmp, name))
        for name in ("main.py", "request.bin"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(tmp, "ctl", name))
        reusable = root_empty and {"ctl", "root"} <= set(names)
    except OSError:
        reusable = False
    if reusable:
        with _scratch_lock:
            if len(_scratch_pool) < _SCRATCH_KEEP:
                _scratch_pool.append(tmp)
                return
    shutil.rmtree(tmp, ignore_errors=True)
    for path in _output_files(tmp):
        with contextlib.suppress(OSError):
            os.unlink(path)


@atexit.register
def _drop_scratch() -> None:
    with _scratch_lock:
        while _scratch_pool:
            shutil.rmtree(_scratch_pool.pop(), ignore_errors=True)


def _walk(root: str, limit: int | None) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative path, lstat) for every entry below ``root``; never follows links."""
    stack = [""]
    seen = 0
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            seen += 1
            if limit is not None and seen > limit:
                return
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            child = f"{rel}/{entry.name}" if rel else entry.name
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                stack.append(child)


class Workspace:
    """The host side of one run: directories behind the preopens, inputs, outputs."""

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
        self._tmp = self.scratch = _take_scratch()
        self.stdout_path, self.stderr_path = _output_files(self.scratch)  # wasmtime truncates them per run
        try:
            self.control = os.path.join(self._tmp, "ctl")
            if root is None:
                self.root = os.path.join(self._tmp, "root")
                self._own_root = True
            else:
                self.root = str(root)
                self._own_root = False
            self.packages = str(packages) if packages is not None else empty_dir()
            self.writable: list[tuple[str, str]] = [("/", self.root)]
            self.writable += [(m.guest, str(m.host)) for m in self.mounts if m.writable]
            for guest, host in self.writable:
                if not (self._own_root and host == self.root):
                    self._refuse_hard_links(guest, host)
            for path, content in files.items():
                self._put(path, content)
            self.before, self.base_usage = self._scan(None)
        except BaseException:
            self.close()
            raise

    def _refuse_hard_links(self, guest: str, host: str) -> None:
        for rel, st in _walk(host, 100_000):
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                raise InvalidArgument(
                    f"writable mount {guest!r} holds a hard-linked file ({rel!r}); the guest could change "
                    "the file's other names outside the mount: mount it read-only or copy it"
                )

    def _put(self, path: str, content: bytes) -> None:
        guest = guest_path(path, "files key", relative_ok=True)
        for mount in self.mounts:
            if guest == mount.guest or guest.startswith(mount.guest.rstrip("/") + "/"):
                raise InvalidArgument(f"files key {path!r} is inside mount {mount.guest!r}; files go in the root")
        if guest == "/":
            raise InvalidArgument(f"files key {path!r} names the root directory, not a file")
        target = os.path.join(self.root, guest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(content)

    def preopens(self) -> list[Preopen]:
        """The preopens of this run, in the fixed order (slots padded with an empty dir)."""
        out = [
            Preopen(self.root, "/", True),
            Preopen(self.control, CONTROL, False),
            Preopen(self.packages, PACKAGES, False),
        ]
        for i in range(SLOTS):
            if i < len(self.mounts):
                m = self.mounts[i]
                out.append(Preopen(str(m.host), m.guest, m.writable))
            else:
                out.append(Preopen(empty_dir(), slot_placeholder(i), False))
        return out

    def write_script(self, code: bytes, request: bytes | None = None) -> None:
        """Write the script (and, when given, an oversized request) into the control directory."""
        with open(os.path.join(self.control, "main.py"), "wb") as f:
            f.write(code)
        if request is not None:
            with open(os.path.join(self.control, "request.bin"), "wb") as f:
                f.write(request)

    def _scan(self, limit: int | None) -> tuple[FileState, tuple[int, int]]:
        """One walk of the writable mounts: ``state()`` and ``usage()`` together."""
        out: FileState = {}
        entries = size = 0
        for guest, host in self.writable:
            for rel, st in _walk(host, limit):
                entries += 1
                if stat.S_ISREG(st.st_mode):
                    out[posixpath.join(guest, rel)] = (st.st_size, st.st_mtime_ns, st.st_ino)
                if not stat.S_ISDIR(st.st_mode):
                    size += st.st_size
        return out, (entries, size)

    def state(self, limit: int | None = None) -> FileState:
        """(size, mtime_ns, inode) of every regular file in the writable mounts, by guest path."""
        return self._scan(limit)[0]

    def usage(self, limit: int | None) -> tuple[int, int]:
        """(entries, bytes) now in the writable mounts, counting at most ``limit`` entries.

        Directories count as entries too, so empty directories cannot exhaust inodes.
        """
        entries = size = 0
        for _guest, host in self.writable:
            for _rel, st in _walk(host, limit):
                entries += 1
                if not stat.S_ISDIR(st.st_mode):
                    size += st.st_size
        return entries, size

    def changed(self, cap: int | None, limit: int | None) -> tuple[OutputFile, ...]:
        """Files created or changed by the run, with content up to ``cap`` bytes each."""
        out = []
        hosts = dict(self.writable)
        for path, sig in sorted(self.state(limit).items()):
            if self.before.get(path) == sig:
                continue
            mount = max((g for g in hosts if path == g or path.startswith(g.rstrip("/") + "/")), key=len)
            host = os.path.join(hosts[mount], path[len(mount) :].lstrip("/"))
            try:
                fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                content = f.read(cap + 1 if cap is not None else -1)
            truncated = cap is not None and len(content) > cap
            out.append(OutputFile(path, sig[0], content[:cap] if truncated else content, truncated))
        return tuple(out)

    def close(self) -> None:
        """Remove the run's temporary directories (never the caller's own mounts).

        A scratch directory whose root the run left empty is kept for reuse (creating and
        removing directories is slow on some filesystems); anything else is deleted.
        """
        tmp, self._tmp = self._tmp, ""
        if tmp:
            _give_back_scratch(tmp)
