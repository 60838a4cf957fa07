"""Cache: where execr keeps compiled modules and snapshots, written atomically under a lock.

The cache is an optimisation, never a requirement. A corrupt or truncated entry reads as
missing, so it is rebuilt; a cache directory that cannot be written (read-only, full,
below a regular file) only means modules are built in memory and not kept. Each of these
is reported as a warning on the ``execr.cache`` logger (Python's last-resort handler
prints it on stderr when the application configured no logging), never as an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import platformdirs

__all__ = ["atomic_write", "cache_dir", "digest", "locked", "log", "read_verified", "write_verified"]

log = logging.getLogger("execr.cache")


def cache_dir() -> Path:
    """The cache directory: ``$EXECR_CACHE_DIR`` or the user's cache dir for execr."""
    env = os.environ.get("EXECR_CACHE_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("execr"))


def digest(*parts: str | bytes) -> str:
    """A short stable key over ``parts``."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:24]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_verified(path: Path, data: bytes) -> bool:
    """Atomically write ``data`` and a SHA-256 sidecar that ``read_verified`` checks.

    Returns whether it was stored: a cache that cannot be written (``OSError``: read-only,
    no space, not a directory) is logged as a warning and the caller goes on without it.
    """
    try:
        atomic_write(path, data)
        atomic_write(path.with_name(path.name + ".sha256"), hashlib.sha256(data).hexdigest().encode())
    except OSError as e:
        log.warning("execr: cannot write the cache entry %s (%s); continuing without caching it", path, e)
        return False
    return True


def read_verified(path: Path) -> bytes | None:
    """The bytes at ``path`` if present and matching their sidecar hash, else ``None``.

    A missing entry is silent; one that is present but corrupt or truncated (hash
    mismatch, missing or unreadable sidecar) is logged as a warning: it will be rebuilt.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("execr: cannot read the cache entry %s (%s); rebuilding it", path, e)
        return None
    try:
        want = path.with_name(path.name + ".sha256").read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        log.warning("execr: the cache entry %s has no readable checksum (%s); rebuilding it", path, e)
        return None
    if hashlib.sha256(data).hexdigest() != want:
        log.warning("execr: the cache entry %s is corrupt or truncated (checksum mismatch); rebuilding it", path)
        return None
    return data


_held_lock = threading.Lock()
_held: dict[Path, tuple[threading.RLock, list[int]]] = {}


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file) for the block.

    Across processes it is a ``flock``; within a process it is re-entrant for the
    holding thread (nested builds take it again) and exclusive between threads.
    """
    path = path.resolve() if path.exists() else path
    with _held_lock:
        rlock, depth = _held.setdefault(path, (threading.RLock(), [0]))
    with rlock:
        if depth[0]:
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: atomic writes keep the cache consistent
            fcntl = None  # type: ignore[assignment]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "a+b")  # noqa: SIM115
        except OSError as e:  # an unwritable cache: this process builds in memory, alone
            log.warning("execr: cannot take the cache lock %s (%s); building without the cache lock", path, e)
            depth[0] = 1
            try:
                yield
            finally:
                depth[0] = 0
            return
        with f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            depth[0] = 1
            try:
                yield
            finally:
                depth[0] = 0
                if fcntl is not None:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
