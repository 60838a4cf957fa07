"""Checkpoints: a session's state as bytes (versioned header, pages, files, SHA-256), and back.

Layout (all integers little-endian)::

    16 bytes  MAGIC
    u32       FORMAT version
    u32       header size, then the header: UTF-8 JSON (runtime, snapshot key, memory size,
              stack pointer, page runs as [offset, size], files size, budgets, counters, env, limits)
    ...       the page runs' bytes, in header order
    ...       the session's files: an uncompressed tar of its working directory
    32 bytes  SHA-256 of everything before it

``Checkpoint.from_bytes`` refuses (``CheckpointRefused``) anything whose hash, magic, version
or shape is wrong before it looks at the content; the session that restores it then checks
that the snapshot key matches its own runtime (same binary, wasmtime and engine setup).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import struct
import tarfile
from typing import Any, Final

from ._exceptions import CheckpointRefused
from ._workspace import write_beneath

__all__ = ["FORMAT", "MAGIC", "Checkpoint", "pack_files", "unpack_files"]

MAGIC: Final = b"EXECR-CHECKPOINT"
FORMAT: Final = 1
_HEAD = struct.Struct("<16sII")
MAX_HEADER: Final = 16 << 20


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A session's state at one moment: restore it with ``Session.restore`` (here or elsewhere)."""

    runtime: str
    key: str  # the snapshot's cache key: binary, stdlib, wasmtime, engine, bootstrap
    metered: bool  # taken on the fuel-metering engine
    data_len: int
    stack_pointer: int
    pages: tuple[tuple[int, bytes], ...] = dataclasses.field(repr=False)
    files: bytes = dataclasses.field(repr=False, default=b"")
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # counters, budgets, env, limits

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        """Pickle as the serialized bytes (Ray, multiprocessing): checked again when unpickled."""
        return (Checkpoint.from_bytes, (self.to_bytes(),))

    @property
    def size(self) -> int:
        """Bytes of memory pages held (what grows with the pages the session changed)."""
        return sum(len(data) for _, data in self.pages)

    def to_bytes(self) -> bytes:
        """The serialized checkpoint (see the module docstring)."""
        header = {
            "runtime": self.runtime,
            "key": self.key,
            "metered": self.metered,
            "data_len": self.data_len,
            "stack_pointer": self.stack_pointer,
            "pages": [[offset, len(data)] for offset, data in self.pages],
            "files": len(self.files),
            "info": self.info,
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        body = b"".join([_HEAD.pack(MAGIC, FORMAT, len(head)), head, *(d for _, d in self.pages), self.files])
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Checkpoint:
        """Parse and verify a serialized checkpoint (``CheckpointRefused`` if it is not a sound one)."""
        raw = bytes(data)
        if len(raw) < _HEAD.size + 32:
            raise CheckpointRefused("not an execr checkpoint (too short)")
        body, digest = raw[:-32], raw[-32:]
        magic, version, head_len = _HEAD.unpack_from(body)
        if magic != MAGIC:
            raise CheckpointRefused("not an execr checkpoint (bad magic)")
        if version != FORMAT:
            raise CheckpointRefused(f"checkpoint format {version} is not supported (this execr reads {FORMAT})")
        if hashlib.sha256(body).digest() != digest:
            raise CheckpointRefused("checkpoint is corrupt (SHA-256 mismatch)")
        if head_len > MAX_HEADER or _HEAD.size + head_len > len(body):
            raise CheckpointRefused("checkpoint header is malformed")
        try:
            h = json.loads(body[_HEAD.size : _HEAD.size + head_len])
            at = _HEAD.size + head_len
            pages = []
            for offset, size in h["pages"]:
                if not (isinstance(offset, int) and isinstance(size, int) and offset >= 0 and size >= 0):
                    raise ValueError("bad page run")
                pages.append((offset, body[at : at + size]))
                at += size
            files = body[at : at + int(h["files"])]
            at += int(h["files"])
            if at != len(body) or any(len(d) != s for (_, d), (_, s) in zip(pages, h["pages"], strict=True)):
                raise ValueError("sizes do not add up")
            return cls(
                runtime=str(h["runtime"]),
                key=str(h["key"]),
                metered=bool(h["metered"]),
                data_len=int(h["data_len"]),
                stack_pointer=int(h["stack_pointer"]),
                pages=tuple(pages),
                files=files,
                info=dict(h["info"]),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointRefused(f"checkpoint header is malformed ({e})") from None


def pack_files(root: str) -> bytes:
    """The regular files and directories below ``root`` as an uncompressed tar (links are skipped)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in [*sorted(dirnames), *sorted(filenames)]:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                rel = os.path.relpath(path, root)
                if stat.S_ISDIR(st.st_mode):
                    info = tarfile.TarInfo(rel)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif stat.S_ISREG(st.st_mode):
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                    with os.fdopen(fd, "rb") as f:
                        content = f.read()
                    info = tarfile.TarInfo(rel)
                    info.size, info.mode = len(content), 0o644
                    tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def unpack_files(data: bytes, root: str) -> None:
    """Write the files of ``pack_files`` output below ``root``: regular files and directories only,
    each path resolved without following links (``CheckpointRefused`` for anything else)."""
    if not data:
        return
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                name = member.name
                parts = name.split("/")
                if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
                    raise CheckpointRefused(f"checkpoint file {name!r} is not a plain relative path")
                if member.isdir():
                    write_beneath(root, name + "/.execr-dir", b"")
                    os.unlink(os.path.join(root, name, ".execr-dir"))
                elif member.isfile():
                    f = tar.extractfile(member)
                    write_beneath(root, name, f.read() if f is not None else b"")
                else:
                    raise CheckpointRefused(f"checkpoint file {name!r} is not a regular file or directory")
    except (tarfile.TarError, OSError) as e:
        raise CheckpointRefused(f"checkpoint files cannot be restored: {e}") from None
