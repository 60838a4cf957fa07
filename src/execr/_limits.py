"""Limits: the validated resource budget of one run.

Every limit is enforced by the host (wasmtime and execr's watchdog), never by the
guest. ``None`` turns a limit off explicitly; a field left out takes the safe default.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, Final

from ._exceptions import InvalidArgument

__all__ = ["DEFAULT_LIMITS", "UNSET", "Limits", "Unset"]

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB
WASM_PAGE: Final = 64 * KiB
MAX_MEMORY: Final = 4 * GiB  # a 32-bit wasm memory cannot grow past this


class Unset(enum.Enum):
    """The type of ``UNSET``: "argument not given, use the default" (distinct from ``None``)."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def _number(name: str, value: object, *, integer: bool, minimum: float) -> Any:
    """Validate one limit: ``None`` or a finite number >= ``minimum``."""
    if value is None:
        return None
    kind = "a whole number" if integer else "a finite number"
    unit = " of bytes" if name.startswith(("memory", "max_")) else ""
    unit = " of seconds" if name == "timeout" else unit
    rule = f"{name} must be {kind}{unit} {'>=' if integer else 'above'} {minimum:g}, or None"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"{rule}; got {value!r} ({type(value).__name__})")
    if integer and not isinstance(value, int):
        if not (isinstance(value, float) and value.is_integer()):
            raise InvalidArgument(f"{rule}; got {value!r}")
        value = int(value)
    if not integer and not math.isfinite(value):
        raise InvalidArgument(f"{rule}; got {value!r}")
    if (value < minimum) if integer else (value <= minimum):
        raise InvalidArgument(f"{rule}; got {value!r}")
    return value


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
    """

    timeout: float | None = 30.0
    memory_limit: int | None = 512 * MiB
    fuel: int | None = None
    max_stdout: int | None = 1 * MiB
    max_stderr: int | None = 1 * MiB
    max_file_bytes: int | None = 64 * MiB
    max_files: int | None = 1000
    max_returned_file_bytes: int | None = 1 * MiB

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "timeout":
                value = _number("timeout", value, integer=False, minimum=0)
                if value is not None:
                    value = float(value)
            elif field.name == "fuel":
                value = _number("fuel", value, integer=True, minimum=1)
            elif field.name == "memory_limit":
                value = _number("memory_limit", value, integer=True, minimum=WASM_PAGE)
                if value is not None and value > MAX_MEMORY:
                    raise InvalidArgument(
                        f"memory_limit must be at most 4 GiB (a 32-bit wasm memory), or None; got {value!r}"
                    )
            else:
                value = _number(field.name, value, integer=True, minimum=0)
            object.__setattr__(self, field.name, value)

    def replace(self, **changes: Any) -> Limits:
        """A copy with ``changes``; ``UNSET`` values are ignored; unknown names raise."""
        names = {f.name for f in dataclasses.fields(self)}
        for key in changes:
            if key not in names:
                raise InvalidArgument(f"unknown limit {key!r}; known limits: {', '.join(sorted(names))}")
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
        return DEFAULT_LIMITS.replace(**dict(data))

    def exceeds(self, cap: Limits) -> list[str]:
        """Names of the limits in which ``self`` asks for more than ``cap`` allows."""
        over = []
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(cap, field.name)
            if theirs is not None and (mine is None or mine > theirs):
                over.append(field.name)
        return over


DEFAULT_LIMITS: Final = Limits()
