"""Policy: turn a validated wire request into an execr ``Request`` within the operator's caps."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from .._exceptions import InvalidArgument, shown
from .._limits import Limits
from .._request import Request, make_request
from ._models import ExecuteRequest

__all__ = ["PolicyError", "build_request", "check_caps", "policy_dict"]


class PolicyError(Exception):
    """A request the operator's policy refuses (mapped to 422 ``limit_exceeded``)."""


def _b64(what: str, text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as e:
        raise InvalidArgument(f"{what} is not valid base64: {e}") from e


def _show(value: object) -> str:
    return "null (unlimited)" if value is None else shown(value)


def check_caps(limits: Limits, cap: Limits) -> Limits:
    """``limits``, or ``PolicyError`` naming each limit over the operator's ``cap``."""
    over = limits.exceeds(cap)
    if over:
        detail = "; ".join(
            f"{name}={_show(getattr(limits, name))} exceeds the server's cap of {getattr(cap, name)!r}" for name in over
        )
        raise PolicyError(detail)
    return limits


def build_request(body: ExecuteRequest, default: Limits, cap: Limits) -> Request:
    """Validate ``body`` into a ``Request`` (``InvalidArgument`` on bad input, ``PolicyError`` over the cap)."""
    if body.stdin_base64 is not None:
        if body.stdin:
            raise InvalidArgument("give stdin or stdin_base64, not both")
        stdin: bytes | str = _b64("stdin_base64", body.stdin_base64)
    else:
        stdin = body.stdin
    files: dict[str, bytes | str] = {}
    for path, value in body.files.items():  # make_request validates the keys as one set
        files[path] = value if isinstance(value, str) else _b64(f"files[{path!r}].base64", value.base64)
    limits = check_caps(default.replace(**body.limits.given()), cap)
    return make_request(
        body.code,
        stdin,
        body.args,
        env=body.env,
        files=files,
        limits=limits,
        mounts=(),
        snapshot=True,
        runtime=body.runtime,
        inputs=body.inputs,
        preload=body.preload,
    )


def policy_dict(default: Limits, cap: Limits) -> dict[str, Any]:
    """The limit policy as JSON: defaults and caps (``null`` cap = no cap)."""
    return {"defaults": default.to_dict(), "caps": cap.to_dict()}
