"""Limits: the validated resource budget of one run.

Every limit is enforced by the host (wasmtime, its epoch ticker and execr's WASI file layer), never by the
guest. ``None`` turns a limit off explicitly; a field left out takes the safe default.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, Final

from ._exceptions import InvalidArgument, shown

__all__ = ["DEFAULT_LIMITS", "UNSET", "Limits", "Unset"]

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
WASM_PAGE: Final = 64 * KiB
MAX_MEMORY: Final = 4 * GiB  # a 32-bit wasm memory cannot grow past this
MAX_FUEL: Final = 1 << 62  # the engine's "unlimited" fuel (its ``UNLIMITED_FUEL``): more cannot be metered
MAX_TIMEOUT: Final = 1e9  # s (~31 years): deadlines in ns fit an int64 and thread waits stay under TIMEOUT_MAX
MAX_SIZE: Final = 1 << 62  # bytes or files: host offsets and counters are signed 64-bit, with room to add
MAX_RETURNED: Final = 4 * GiB  # per file: returned content is held in memory (and in JSON) with the Result
MAX_OPEN_FILES: Final = 1 << 20  # Linux's default ceiling on one process's descriptors (fs.nr_open)


class Unset(enum.Enum):
    """The type of ``UNSET``: "argument not given, use the default" (distinct from ``None``)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def _number(name: str, value: object, *, integer: bool, minimum: float, maximum: float, why: str) -> Any:
    """Validate one limit: ``None`` or a finite number >= ``minimum`` (above it for floats), <= ``maximum``."""
    if value is None:
        return None
    kind = "a whole number" if integer else "a finite number"
    unit = " of bytes" if name.startswith(("memory", "max_")) and name not in _COUNTS else ""
    unit = " of seconds" if name == "timeout" else unit
    rule = f"{name} must be {kind}{unit} {'>=' if integer else 'above'} {minimum:g}, or None"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{rule}; got {shown(value)} ({type(value).__name__})")
    if integer and not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            raise InvalidArgument(f"{rule}; got {shown(value)}")
        value = int(value)
    if isinstance(value, float) and not math.isfinite(value):  # (an int is finite; isfinite overflows on 10**400)
        raise InvalidArgument(f"{rule}; got {shown(value)}")
    if (value < minimum) if integer else (value <= minimum):
        raise InvalidArgument(f"{rule}; got {shown(value)}")
    if value > maximum:
        raise InvalidArgument(f"{name} must be at most {why}, or None; got {shown(value)}")
    return value


_COUNTS = frozenset({"max_files", "max_open_files", "fuel"})
# name -> (integer, minimum, maximum, why the maximum)
_RULES: Final[dict[str, tuple[bool, float, float, str]]] = {
    "timeout": (False, 0, MAX_TIMEOUT, "1e9 seconds (longer deadlines overflow the host's timers)"),
    "memory_limit": (True, WASM_PAGE, MAX_MEMORY, "4 GiB (a 32-bit wasm memory)"),
    "fuel": (True, 1, MAX_FUEL, "2**62 (the most fuel the engine meters)"),
    "max_stdout": (True, 0, MAX_SIZE, "2**62 (the most the host counts)"),
    "max_stderr": (True, 0, MAX_SIZE, "2**62 (the most the host counts)"),
    "max_file_bytes": (True, 0, MAX_SIZE, "2**62 (the most the host counts)"),
    "max_files": (True, 0, MAX_SIZE, "2**62 (the most the host counts)"),
    "max_returned_file_bytes": (True, 0, MAX_RETURNED, "4 GiB (returned content is held in memory)"),
    "max_open_files": (True, 1, MAX_OPEN_FILES, "2**20 (the most descriptors a Linux process holds)"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """What one run may use. Sizes are bytes; ``None`` means "no limit".

    - ``timeout``: wall-clock seconds; stops busy loops *and* blocking calls (sleep).
    - ``memory_limit``: bytes of guest linear memory (the wasm heap), at most 4 GiB.
    - ``fuel``: wasm instruction budget (wasmtime fuel); ``None`` measures without limiting.
    - ``max_stdout`` / ``max_stderr``: bytes kept per stream; the head and the tail are
      kept and the middle dropped, so a final traceback survives.
    - ``max_file_bytes`` / ``max_files``: total bytes and number of files the guest may
      have in its writable mounts; going over stops the run (outcome ``file_limit``).
    - ``max_returned_file_bytes``: per file, how much content of changed files the
      result carries (bigger files are listed with their size and a truncated head).
    - ``max_open_files``: descriptors the guest may hold open at once, beyond stdio and
      the preopened directories; past it the guest gets ``EMFILE``.

    Each limit also has a ceiling: what the host can really enforce (fuel at most 2**62,
    timeout at most 1e9 s, memory at most 4 GiB, ...); values past it raise
    ``InvalidArgument`` rather than being silently misapplied.
    """

    timeout: float | None = 30.0
    memory_limit: int | None = 512 * MiB
    fuel: int | None = None
    max_stdout: int | None = 1 * MiB
    max_stderr: int | None = 1 * MiB
    max_file_bytes: int | None = 64 * MiB
    max_files: int | None = 1000
    max_returned_file_bytes: int | None = 1 * MiB
    max_open_files: int | None = 128

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            integer, minimum, maximum, why = _RULES[field.name]
            value = getattr(self, field.name)
            value = _number(field.name, value, integer=integer, minimum=minimum, maximum=maximum, why=why)
            if value is not None and not integer:
                value = float(value)
            object.__setattr__(self, field.name, value)

    def replace(self, **changes: Any) -> Limits:
        """A copy with ``changes``; ``UNSET`` values are ignored; unknown names raise."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise InvalidArgument(f"unknown limit {shown(key)}; known limits: {', '.join(sorted(names))}")
        given = {k: v for k, v in changes.items() if v is not UNSET}
        return dataclasses.replace(self, **given) if given else self

    def to_dict(self) -> dict[str, Any]:
        """The limits as a plain JSON-ready mapping."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """Build limits from a mapping (unknown keys raise ``InvalidArgument``)."""
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"limits must be a mapping of limit names to values; got {type(data).__name__}")
        given = dict(data)
        for key in given:
            if not isinstance(key, str):
                raise InvalidArgument(f"limits keys must be limit names (str); got {shown(key)}")
        return DEFAULT_LIMITS.replace(**given)

    def exceeds(self, cap: Limits) -> list[str]:
        """Names of the limits in which ``self`` asks for more than ``cap`` allows."""
        over = []
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(cap, field.name)
            if theirs is not None and (mine is None or mine > theirs):
                over.append(field.name)
        return over


DEFAULT_LIMITS: Final = Limits()
