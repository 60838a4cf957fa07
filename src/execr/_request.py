"""Requests: one run's validated inputs (code, stdin, args, env, files, mounts, limits)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._exceptions import InvalidArgument
from ._flavors import flavor
from ._limits import DEFAULT_LIMITS, UNSET, Limits
from ._mounts import Mount, host_dir

__all__ = ["LIMIT_NAMES", "Request", "make_request"]

LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(Limits))
SEED_FUEL = 400_000_000


@dataclasses.dataclass(frozen=True)
class Request:
    """A validated run request (picklable, so it can cross process boundaries)."""

    code: str
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, bytes], ...] = ()
    mounts: tuple[Mount, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    mount_fs: Path | None = None
    stdio: Path | None = None
    pythonpath: Path | None = None
    snapshot: bool = True
    runtime: str = "default"


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str; got {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    return value


def _bytes(name: str, value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise InvalidArgument(f"{name} must be str or bytes; got {type(value).__name__}")


def _env(env: object) -> tuple[tuple[str, str], ...]:
    if env is None:
        return ()
    if not isinstance(env, Mapping):
        raise InvalidArgument(f"env must be a mapping of str to str; got {type(env).__name__}")
    out = []
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise InvalidArgument(f"env keys must be non-empty str without '=' or NUL; got {key!r}")
        out.append((key, _text(f"env[{key!r}]", value)))
    return tuple(out)


def _mounts(mounts: object) -> tuple[Mount, ...]:
    if mounts is None:
        return ()
    if isinstance(mounts, (str, Mount)) or not isinstance(mounts, Iterable):
        mounts = [mounts]
    out = []
    for m in mounts:
        if isinstance(m, Mount):
            out.append(Mount.of(m.host, m.guest, m.writable))
        elif isinstance(m, str):
            out.append(Mount.parse(m))
        elif isinstance(m, (tuple, list)) and len(m) in (2, 3):
            out.append(Mount.of(m[0], m[1], m[2] if len(m) == 3 else False))
        else:
            raise InvalidArgument(
                f"each mount must be a Mount, 'HOST:GUEST[:rw]' or (host, guest[, writable]); got {m!r}"
            )
    guests = [m.guest for m in out]
    if len(set(guests)) != len(guests):
        raise InvalidArgument(f"two mounts share a guest path: {guests}")
    if "/" in guests:
        raise InvalidArgument("a mount cannot replace the root '/': use mount_fs for that")
    return tuple(out)


def make_request(
    code: object,
    stdin: object = "",
    args: object = None,
    *,
    use_fuel: bool = False,
    fuel: object = UNSET,
    mount_fs: object = None,
    stdio: object = None,
    env: object = None,
    files: object = None,
    mounts: object = (),
    pythonpath: object = UNSET,
    limits: Limits | Mapping[str, Any] | None = None,
    snapshot: object = True,
    runtime: object = "default",
    **limit_kwargs: Any,
) -> Request:
    """Validate ``execute``'s arguments into a ``Request`` (raises ``InvalidArgument``)."""
    unknown = set(limit_kwargs) - set(LIMIT_NAMES)
    if unknown:
        raise InvalidArgument(f"unexpected argument(s) {sorted(unknown)}; limits are: {', '.join(LIMIT_NAMES)}")
    if isinstance(code, (bytes, bytearray)):
        raise InvalidArgument("code must be text (str); decode bytes first, e.g. code.decode('utf-8')")
    code = _text("code", code)
    if args is None:
        args = ()
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise InvalidArgument(f"args must be a sequence of str; got {type(args).__name__}")
    args = tuple(_text("args item", a) for a in args)
    if limits is None:
        base = DEFAULT_LIMITS
    elif isinstance(limits, Limits):
        base = limits
    else:
        base = Limits.from_dict(limits)
    if not isinstance(use_fuel, bool):
        raise InvalidArgument(f"use_fuel must be a bool; got {type(use_fuel).__name__}")
    if use_fuel:
        limit_kwargs.setdefault("fuel", SEED_FUEL if fuel is UNSET else fuel)
    elif fuel is not UNSET:
        limit_kwargs.setdefault("fuel", fuel)
    lim = base.replace(**limit_kwargs)
    if files is None:
        files = {}
    if not isinstance(files, Mapping):
        raise InvalidArgument(f"files must be a mapping of guest path to str or bytes; got {type(files).__name__}")
    file_items = []
    for key, value in files.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"files keys must be str guest paths; got {key!r}")
        file_items.append((key, _bytes(f"files[{key!r}]", value)))
    if pythonpath is UNSET:
        pythonpath = os.environ.get("EXECR_PYTHONPATH") or None
    if not isinstance(snapshot, bool):
        raise InvalidArgument(f"snapshot must be a bool; got {type(snapshot).__name__}")
    spec = flavor(runtime)
    mount_list = _mounts(mounts)
    spec.check_mounts(m.guest for m in mount_list)
    return Request(
        code=code,
        stdin=_bytes("stdin", stdin),
        args=args,
        env=_env(env),
        files=tuple(file_items),
        mounts=mount_list,
        limits=lim,
        mount_fs=None if mount_fs is None else host_dir(mount_fs, "mount_fs"),
        stdio=None if stdio is None else host_dir(stdio, "stdio"),
        pythonpath=None if pythonpath is None else host_dir(pythonpath, "EXECR_PYTHONPATH"),
        snapshot=snapshot,
        runtime=spec.name,
    )
