"""Results: what one run produced and why it ended, as immutable data."""

from __future__ import annotations

import base64
import dataclasses
import enum
from typing import Any, Literal

from . import _exceptions as exc

__all__ = ["Mode", "Outcome", "OutputFile", "Result", "ToolCall"]


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
    Outcome.CANCELLED: exc.GuestCancelled,
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
class ToolCall:
    """One call the guest made to a host function (``tools=``): what, with what, how it ended.

    ``ok`` is False when the call was refused (unknown tool, arguments not matching its schema,
    the permission callback said no, the call budget was spent) or the tool raised; ``error``
    then says why. ``duration`` is the host time spent, in seconds (not charged to fuel).
    ``arguments`` are by parameter name; for a call that did not match the tool's parameters,
    ``{"args": [...], "kwargs": {...}}`` as sent; for a request that could not be read (not JSON,
    too large), ``name`` is ``""`` and ``arguments`` is empty. Past ``max_tool_calls``, only the
    first refused call is recorded.
    """

    name: str
    arguments: dict[str, Any]
    ok: bool
    duration: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


Mode = Literal["snapshot", "plain"]
"""How the run started: from the pre-initialized snapshot, or CPython's own ``_start``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """Everything one run produced.

    The output is stored once, as bytes (``stdout_bytes``, ``stderr_bytes``: exactly what the
    guest wrote, head and tail kept under the cap); ``stdout`` and ``stderr`` are its text
    (invalid UTF-8 replaced). ``stdout_truncated`` says whether the middle was dropped
    (``stdout_dropped`` bytes). The seed's fields are kept: ``stdout``, ``stderr``,
    ``fuel_consumed`` (None when the run was not metered: a default-runtime run without a fuel
    limit), ``memory`` (64 KiB pages of linear memory at the end) and ``data_len`` (its size in bytes).
    """

    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    fuel_consumed: int | None = None
    memory: int = 0
    data_len: int = 0
    outcome: Outcome = Outcome.COMPLETED
    exit_code: int | None = 0
    duration: float = 0.0
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    files: tuple[OutputFile, ...] = ()
    error: str | None = None
    mode: Mode = "snapshot"
    #: The repr of the code's last expression, as a REPL shows it (``Session.run``, or ``value=True``);
    #: None when the code does not end in an expression, its value is None, or the run failed.
    value: str | None = None
    #: In a session, the number of this call (1, 2, ...); None for a one-off run.
    execution_count: int | None = None
    #: The host functions the guest called, in order (see ``tools=``).
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def build(cls, *, stdout: bytes = b"", stderr: bytes = b"", **fields: Any) -> Result:
        """Make a result from raw output bytes."""
        return cls(stdout_bytes=stdout, stderr_bytes=stderr, **fields)

    @classmethod
    def failure(cls, outcome: Outcome, error: str, *, mode: Mode = "snapshot", duration: float = 0.0) -> Result:
        """A result for a run that produced nothing: a crash outside the guest, a cancel, bad input."""
        return cls(outcome=outcome, exit_code=None, error=error, mode=mode, duration=duration)

    @property
    def stdout(self) -> str:
        """What the guest wrote to stdout, as text (invalid UTF-8 replaced)."""
        return _text(self.stdout_bytes)

    @property
    def stderr(self) -> str:
        """What the guest wrote to stderr, as text (invalid UTF-8 replaced)."""
        return _text(self.stderr_bytes)

    @property
    def stdout_truncated(self) -> bool:
        """True when stdout passed ``max_stdout`` and its middle was dropped."""
        return self.stdout_dropped > 0

    @property
    def stderr_truncated(self) -> bool:
        """True when stderr passed ``max_stderr`` and its middle was dropped."""
        return self.stderr_dropped > 0

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
            "value": self.value,
            "execution_count": self.execution_count,
            "tool_calls": [c.to_dict() for c in self.tool_calls],
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
            mode="plain" if data.get("mode") == "plain" else "snapshot",
            value=data.get("value"),
            execution_count=data.get("execution_count"),
            tool_calls=tuple(ToolCall(**c) for c in data.get("tool_calls", ())),
        )
