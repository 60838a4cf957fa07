"""Session budgets: what a session may spend (idle time, lifetime, calls) and what one call may override.

``budgets`` validates a session's budgets, ``expiry`` says why a session is spent (or None),
``tightened`` applies a restored checkpoint's budgets, and ``call_request`` checks one call's
limit keywords (``PER_CALL``) and makes its request from the session's base request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._exceptions import InvalidArgument
from ._limits import _number
from ._request import Request, _bytes, _inputs, _text

__all__ = ["PER_CALL", "budgets", "call_request", "expiry", "tightened"]

PER_CALL = ("timeout", "fuel", "max_stdout", "max_stderr", "max_returned_file_bytes")


def budgets(idle_timeout: object, lifetime: object, max_calls: object) -> tuple[float | None, float | None, int | None]:
    """``idle_timeout``, ``lifetime`` and ``max_calls``, validated (``None``: no limit)."""
    day = "1e9 s (about 31 years)"
    return (
        _number("idle_timeout", idle_timeout, integer=False, minimum=0, maximum=1e9, why=day),
        _number("lifetime", lifetime, integer=False, minimum=0, maximum=1e9, why=day),
        _number("max_calls", max_calls, integer=True, minimum=1, maximum=2**62, why="2**62"),
    )


def expiry(
    idle_timeout: float | None, lifetime: float | None, max_calls: int | None, *, idle: float, age: float, calls: int
) -> str | None:
    """Why a session idle for ``idle`` seconds, ``age`` seconds old, that made ``calls`` calls, is spent."""
    why = None
    if idle_timeout is not None and idle > idle_timeout:
        why = f"expired: idle for more than {idle_timeout:g} s"
    elif lifetime is not None and age > lifetime:
        why = f"expired: older than its lifetime of {lifetime:g} s"
    elif max_calls is not None and calls >= max_calls:
        why = f"expired: it made its {max_calls} calls"
    return why


def tightened(info: Mapping[str, Any], max_calls: int | None, lifetime: float | None) -> tuple[Any, Any]:
    """``max_calls`` and ``lifetime``, each replaced by a checkpoint's (``info``) where that is tighter."""
    out = []
    for name, mine in (("max_calls", max_calls), ("lifetime", lifetime)):
        theirs = info.get(name)
        out.append(theirs if theirs is not None and (mine is None or theirs < mine) else mine)
    return out[0], out[1]


def call_request(
    base: Request,
    code: str,
    stdin: str | bytes,
    inputs: Mapping[str, Any] | None,
    atomic: object,
    metered: bool,
    limit_kwargs: Mapping[str, Any],
) -> Request:
    """One call's request: ``base`` (the session's) with ``code``, ``stdin``, ``inputs`` and the call's limits."""
    bad = set(limit_kwargs) - set(PER_CALL)
    if bad:
        raise InvalidArgument(f"per-call limits are {', '.join(PER_CALL)}; got {', '.join(sorted(bad))}")
    if "fuel" in limit_kwargs and limit_kwargs["fuel"] is not None and not metered:
        raise InvalidArgument("a per-call fuel limit needs a metered session: create it with fuel=N")
    if not isinstance(atomic, bool):
        raise InvalidArgument(f"atomic must be a bool; got {type(atomic).__name__}")
    if isinstance(code, (bytes, bytearray)):
        raise InvalidArgument("code must be text (str); decode bytes first, e.g. code.decode('utf-8')")
    # the session's own fields (runtime, env, mounts, pythonpath) were validated when it was made
    return base.derived(
        code=_text("code", code),
        stdin=_bytes("stdin", stdin),
        limits=base.limits.replace(**limit_kwargs) if limit_kwargs else base.limits,
        inputs=_inputs(inputs),
    )
