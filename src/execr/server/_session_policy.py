"""Session policy: the operator's caps and defaults applied to a session's limits, budgets, calls and checkpoints.

Limits are checked against the caps as for ``/v1/execute`` (over a cap: ``PolicyError``); the
idle timeout and the lifetime default to the operator's ``session_idle_timeout`` and
``max_session_lifetime`` and may not exceed them; a call may override only ``PER_CALL_LIMITS``;
a checkpoint is at most ``max_checkpoint_bytes``, and a restored one must fit the session's
memory and fuel limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._checkpoint import Checkpoint
from .._exceptions import CheckpointRefused, InvalidArgument
from .._limits import UNSET, Limits
from ._config import ServerConfig
from ._policy import PolicyError, check_caps
from ._session_errors import CheckpointTooLarge

__all__ = [
    "PER_CALL_LIMITS",
    "call_overrides",
    "check_checkpoint_size",
    "check_restore",
    "session_budgets",
    "session_limits",
]

#: Limits a single call may override (the others hold for the whole session).
PER_CALL_LIMITS = ("timeout", "fuel", "max_stdout", "max_stderr", "max_returned_file_bytes")
_SESSION_DEFAULTS = {"idle_timeout": 600.0, "lifetime": 3600.0, "max_calls": 10_000}


def session_limits(config: ServerConfig, given: Mapping[str, Any] | None) -> Limits:
    """A session's limits: the operator's defaults with ``given``, within the caps."""
    return check_caps(config.default_limits.replace(**dict(given or {})), config.max_limits)


def _budget(name: str, value: object, cap: float | None) -> Any:
    """A session budget: left out, the operator's (or Session's default); else at most the cap."""
    if value is UNSET:
        return cap if cap is not None else _SESSION_DEFAULTS[name]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise InvalidArgument(f"{name} must be a number or null; got {type(value).__name__}")
    if cap is not None and (value is None or value > cap):
        shown = "null (no limit)" if value is None else repr(value)
        raise PolicyError(f"{name}={shown} exceeds the server's cap of {cap!r}")
    return value


def session_budgets(config: ServerConfig, idle_timeout: object, lifetime: object, max_calls: object) -> dict[str, Any]:
    """A session's ``idle_timeout``, ``lifetime`` and ``max_calls`` (``UNSET``: the operator's)."""
    return {
        "idle_timeout": _budget("idle_timeout", idle_timeout, config.session_idle_timeout),
        "lifetime": _budget("lifetime", lifetime, config.max_session_lifetime),
        "max_calls": _budget("max_calls", max_calls, None),
    }


def call_overrides(config: ServerConfig, limits: Limits, given: Mapping[str, Any]) -> dict[str, Any]:
    """The limits one call sets (``given``, only ``PER_CALL_LIMITS``) over the session's, within the caps."""
    bad = sorted(set(given) - set(PER_CALL_LIMITS))
    if bad:
        raise InvalidArgument(
            f"a call can set only {', '.join(PER_CALL_LIMITS)}; {', '.join(bad)} hold for the whole session"
        )
    merged = check_caps(limits.replace(**given), config.max_limits)
    return {name: getattr(merged, name) for name in given}


def check_checkpoint_size(config: ServerConfig, data: bytes) -> None:
    """``CheckpointTooLarge`` if a serialized checkpoint is over ``max_checkpoint_bytes``."""
    cap = config.max_checkpoint_bytes
    if len(data) > cap:
        raise CheckpointTooLarge(
            f"the checkpoint is {len(data)} bytes, more than this server's max_checkpoint_bytes ({cap}); "
            "keep less state in the session (delete big objects and files) and retry"
        )


def check_restore(cp: Checkpoint, lim: Limits) -> None:
    """``CheckpointRefused`` if ``cp`` does not fit a session with limits ``lim`` (memory, fuel metering)."""
    if lim.memory_limit is not None and cp.data_len > lim.memory_limit:
        raise CheckpointRefused(
            f"the checkpoint's memory ({cp.data_len} bytes) is over the session's memory_limit ({lim.memory_limit})"
        )
    if lim.fuel is not None and not cp.metered:
        raise CheckpointRefused("this server limits fuel, and the checkpoint is of a session without metering")
