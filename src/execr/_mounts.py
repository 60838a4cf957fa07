"""Mounts: the guest's file system layout, and the host directories a caller grants (``Mount``).

The guest sees a fixed preopen layout, the same on every run (the snapshot freezes
wasi-libc's preopen table, so fds and order never change)::

    fd 3  /                  the run's root and working directory (writable)
    fd 4  /__execr__         read-only: the script (main.py) and the request
    fd 5  /__pypackages__    read-only: EXECR_PYTHONPATH, or an empty directory
    fd 6+ mount slots        extra mounts, at the guest paths the caller picks

Host paths never appear to the guest. The run's own side (its root, inputs, outputs) is
``_workspace``; how the guest's calls are served, ``_guestfs``.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from pathlib import Path
from typing import Final

from ._exceptions import InvalidArgument, shown

__all__ = ["CONTROL", "PACKAGES", "SCRIPT", "SLOTS", "Mount", "Preopen", "guest_path", "host_dir", "slot_placeholder"]

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
    """A host directory shown to the guest at ``guest`` (read-only unless ``writable``).

    Validated when built: ``host`` must be an existing directory (it is resolved), ``guest``
    an absolute guest path outside execr's reserved ones; anything else raises ``InvalidArgument``.
    """

    host: Path
    guest: str
    writable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", host_dir(self.host, "mount host path"))
        object.__setattr__(self, "guest", guest_path(self.guest, "mount guest path"))
        if not isinstance(self.writable, bool):
            raise InvalidArgument(f"mount writable must be True or False; got {shown(self.writable)}")

    @classmethod
    def parse(cls, spec: str) -> Mount:
        """Parse ``HOST:GUEST[:rw|:ro]`` (the CLI's ``--mount`` form)."""
        if not isinstance(spec, str):
            raise InvalidArgument(f"mount spec must be a string HOST:GUEST[:rw|ro]; got {type(spec).__name__}")
        parts = spec.rsplit(":", 2) if spec.endswith((":rw", ":ro")) else spec.rsplit(":", 1)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise InvalidArgument(f"mount spec must look like HOST:GUEST[:rw|ro]; got {shown(spec)}")
        return cls.of(parts[0], parts[1], writable=len(parts) == 3 and parts[2] == "rw")

    @classmethod
    def of(cls, host: str | os.PathLike[str], guest: str, writable: bool = False) -> Mount:
        """Build a mount (the same as ``Mount(host, guest, writable)``)."""
        return cls(Path(host) if isinstance(host, (str, os.PathLike)) else host, guest, bool(writable))


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
        raise InvalidArgument(f"{what} must be a non-empty string; got {shown(value)}")
    if "\0" in value:
        raise InvalidArgument(f"{what} must not contain NUL; got {shown(value)}")
    if not value.startswith("/"):
        if not relative_ok:
            raise InvalidArgument(f"{what} must be absolute (start with '/'); got {shown(value)}")
        value = "/" + value
    if ".." in value.split("/"):
        raise InvalidArgument(f"{what} must not contain '..'; got {shown(value)}")
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
