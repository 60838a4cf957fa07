"""Results: what one run produced and why it ended, as immutable data."""

from __future__ import annotations

import base64
import dataclasses
import enum
from typing import Any

from . import _exceptions as exc

__all__ = ["Outcome", "OutputFile", "Result"]


class Outcome(enum.StrEnum):
    """Why a run ended. A ``str`` enum: ``Outcome.COMPLETED == "completed"``."""

    COMPLETED = "completed"  # exit code 0
    FAILED = "failed"  # non-zero exit code (uncaught exception, sys.exit(n))
    TIMED_OUT = "timed_out"  # wall-clock limit
    OUT_OF_FUEL = "out_of_fuel"  # fuel limit
    MEMORY_LIMIT = "memory_limit"  # linear memory limit
    FILE_LIMIT = "file_limit"  # too many files or bytes written into writable mounts
    CRASHED = "crashed"  # any other trap, or an execr-side failure (see Result.error)
    CANCELLED = "cancelled"  # stopped from the host side (shutdown, cancel)


_RAISES: dict[Outcome, type[exc.OutcomeError]] = {
    Outcome.FAILED: exc.GuestFailed,
    Outcome.TIMED_OUT: exc.GuestTimedOut,
    Outcome.OUT_OF_FUEL: exc.GuestOutOfFuel,
    Outcome.MEMORY_LIMIT: exc.GuestMemoryLimit,
    Outcome.FILE_LIMIT: exc.GuestFileLimit,
    Outcome.CRASHED: exc.GuestCrashed,
    Outcome.CANCELLED: exc.GuestCrashed,
}


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _blob(prefix: str, data: bytes) -> dict[str, Any]:
    """JSON form of bytes: text, plus base64 when the bytes are not valid UTF-8."""
    out: dict[str, Any] = {prefix: _text(data)}
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        out[f"{prefix}_base64"] = base64.b64encode(data).decode("ascii")
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class OutputFile:
    """A file the run created or changed in a writable mount.

    ``path`` is the guest path; ``content`` holds at most ``max_returned_file_bytes``
    (``truncated`` says when it is only the head of a larger file of ``size`` bytes).
    """

    path: str
    size: int
    content: bytes
    truncated: bool = False

    @property
    def text(self) -> str:
        """The content decoded as UTF-8 (invalid bytes replaced)."""
        return _text(self.content)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (content as text, plus base64 when not valid UTF-8)."""
        return {"path": self.path, "size": self.size, "truncated": self.truncated, **_blob("content", self.content)}


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """Everything one run produced.

    The seed's fields are kept: ``stdout``, ``stderr``, ``fuel_consumed``, ``memory``
    (64 KiB pages of linear memory at the end) and ``data_len`` (its size in bytes).
    """

    stdout: str = ""
    stderr: str = ""
    fuel_consumed: int | None = None
    memory: int = 0
    data_len: int = 0
    outcome: Outcome = Outcome.COMPLETED
    exit_code: int | None = 0
    duration: float = 0.0
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    files: tuple[OutputFile, ...] = ()
    error: str | None = None
    mode: str = "snapshot"

    @classmethod
    def build(cls, *, stdout: bytes = b"", stderr: bytes = b"", **fields: Any) -> Result:
        """Make a result from raw output bytes (text fields are derived from them)."""
        return cls(stdout=_text(stdout), stderr=_text(stderr), stdout_bytes=stdout, stderr_bytes=stderr, **fields)

    @property
    def ok(self) -> bool:
        """True when the run completed with exit code 0."""
        return self.outcome is Outcome.COMPLETED

    def file(self, path: str) -> OutputFile | None:
        """The output file at guest ``path`` (absolute, or relative to the working directory)."""
        want = path if path.startswith("/") else "/" + path
        return next((f for f in self.files if f.path == want), None)

    def raise_for_outcome(self) -> Result:
        """Return ``self`` if the run completed; otherwise raise the matching ``OutcomeError``."""
        if self.outcome is Outcome.COMPLETED:
            return self
        raise _RAISES[self.outcome](self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: outputs as text (plus base64 where not valid UTF-8)."""
        return {
            "outcome": self.outcome.value,
            "exit_code": self.exit_code,
            **_blob("stdout", self.stdout_bytes),
            **_blob("stderr", self.stderr_bytes),
            "stdout_dropped": self.stdout_dropped,
            "stderr_dropped": self.stderr_dropped,
            "duration": self.duration,
            "fuel_consumed": self.fuel_consumed,
            "memory": self.memory,
            "data_len": self.data_len,
            "files": [f.to_dict() for f in self.files],
            "error": self.error,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Inverse of ``to_dict`` (used to carry results across processes and files)."""

        def raw(prefix: str, src: dict[str, Any]) -> bytes:
            if f"{prefix}_base64" in src:
                return base64.b64decode(src[f"{prefix}_base64"])
            return str(src.get(prefix, "")).encode("utf-8")

        files = tuple(
            OutputFile(path=f["path"], size=f["size"], content=raw("content", f), truncated=f.get("truncated", False))
            for f in data.get("files", ())
        )
        return cls.build(
            stdout=raw("stdout", data),
            stderr=raw("stderr", data),
            outcome=Outcome(data["outcome"]),
            exit_code=data.get("exit_code"),
            stdout_dropped=data.get("stdout_dropped", 0),
            stderr_dropped=data.get("stderr_dropped", 0),
            duration=data.get("duration", 0.0),
            fuel_consumed=data.get("fuel_consumed"),
            memory=data.get("memory", 0),
            data_len=data.get("data_len", 0),
            files=files,
            error=data.get("error"),
            mode=data.get("mode", "snapshot"),
        )
