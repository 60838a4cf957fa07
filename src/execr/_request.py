"""Requests: one run's validated inputs (code, stdin, args, env, files, mounts, limits)."""

from __future__ import annotations

import dataclasses
import marshal
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._exceptions import InvalidArgument, shown
from ._image._flavors import NAMES, flavor, preload_list
from ._jsonlike import check_inputs
from ._limits import DEFAULT_LIMITS, UNSET, Limits
from ._mounts import SLOTS, Mount, guest_path, host_dir

__all__ = ["HOST_PATH_FIELDS", "LIMIT_NAMES", "Request", "make_request"]

#: ``execute()`` arguments that name host paths: only the operator (the Python API, or a
#: flag such as ``execr batch --allow-host-paths``) may set them, never a client's request.
HOST_PATH_FIELDS = ("mounts", "mount_fs", "stdio", "pythonpath")

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
    preload: tuple[str, ...] | None = None  # modules the run's snapshot must have imported (a preload set)
    inputs: bytes = b""  # guest globals set before the code runs (marshal of a JSON-like dict; b"": none)

    def derived(self, **changes: Any) -> Request:
        """A copy with ``changes``, values the caller validated (a session's call: ~1 us, where
        ``dataclasses.replace`` takes ~5)."""
        if not changes.keys() <= _FIELDS:
            raise TypeError(f"not Request fields: {sorted(changes.keys() - _FIELDS)}")
        new = object.__new__(Request)
        new.__dict__.update(self.__dict__, **changes)
        return new


_FIELDS = frozenset(f.name for f in dataclasses.fields(Request))


def _unicode(name: str, value: str) -> str:
    """``value`` if it encodes as UTF-8; a lone surrogate (``"\\ud800"``) raises ``InvalidArgument``."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgument(
            f"{name} must be valid Unicode text (encodable as UTF-8); it holds a lone surrogate "
            f"{value[e.start]!r} at index {e.start}"
        ) from None
    return value


def _text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a str; got {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgument(f"{name} must not contain NUL characters; got {shown(value)}")
    return _unicode(name, value)


def _bytes(name: str, value: object) -> bytes:
    if isinstance(value, str):
        return _unicode(name, value).encode("utf-8")
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
            raise InvalidArgument(f"env keys must be non-empty str without '=' or NUL; got {shown(key)}")
        _unicode("env key", key)
        out.append((key, _text(f"env[{shown(key)}]", value)))
    return tuple(out)


def _files(files: object, mounts: tuple[Mount, ...], root: Path | None) -> tuple[tuple[str, bytes], ...]:
    """Validate ``files`` as one set: each key a guest path in the root, no two naming the same
    file after normalization (``a``, ``/a``, ``./a``), none inside another (``a`` and ``a/b``)."""
    if files is None:
        return ()
    if not isinstance(files, Mapping):
        raise InvalidArgument(f"files must be a mapping of guest path to str or bytes; got {type(files).__name__}")
    out = []
    seen: dict[str, str] = {}
    for key, value in files.items():
        if not isinstance(key, str):
            raise InvalidArgument(f"files keys must be str guest paths; got {shown(key)}")
        what = f"files key {shown(key)}"
        guest = guest_path(_unicode("files key", key), "files key", relative_ok=True)
        if guest == "/":
            raise InvalidArgument(f"{what} names the root directory, not a file")
        for mount in mounts:
            if guest == mount.guest or guest.startswith(mount.guest.rstrip("/") + "/"):
                raise InvalidArgument(f"{what} is inside mount {mount.guest!r}; files go in the root")
        if guest in seen:
            raise InvalidArgument(f"{what} and {shown(seen[guest])} name the same file {guest!r}")
        seen[guest] = key
        out.append((key, _bytes(f"files[{shown(key)}]", value)))
    for guest, key in seen.items():
        parent = guest.rsplit("/", 1)[0]
        while parent:
            if parent in seen:
                raise InvalidArgument(
                    f"files key {shown(seen[parent])} is a file, so {shown(key)} cannot be inside it: "
                    "a path cannot be both a file and a directory"
                )
            parent = parent.rsplit("/", 1)[0]
    if root is not None:
        for guest, key in seen.items():
            _fits_root(root, guest, key)
    return tuple(out)


def _fits_root(root: Path, guest: str, key: str) -> None:
    """Refuse a ``files`` key that ``mount_fs`` already holds as a directory, or below a non-directory."""
    parts = guest.strip("/").split("/")
    here = root
    for i, part in enumerate(parts):
        here = here / part
        try:
            st = here.lstat()
        except OSError:
            return  # missing from here on: the run creates it
        last = i == len(parts) - 1
        if last and stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"files key {shown(key)} names a directory in mount_fs, not a file")
        if last and not stat.S_ISREG(st.st_mode):  # a FIFO would block the host's write; a link would be followed
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "a special file (FIFO, socket or device)"
            raise InvalidArgument(f"files key {shown(key)} names {kind} in mount_fs, not a regular file")
        if not last and not stat.S_ISDIR(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise InvalidArgument(f"files key {shown(key)}: {'/'.join(parts[: i + 1])!r} in mount_fs is {what}")


def _mounts(mounts: object) -> tuple[Mount, ...]:
    if mounts is None:
        return ()
    if isinstance(mounts, (str, Mount)) or not isinstance(mounts, Iterable):
        mounts = [mounts]
    out = []
    for m in mounts:
        for part in m if isinstance(m, (tuple, list)) else (m,):
            if isinstance(part, str):
                _unicode("mount", part)
        if isinstance(m, Mount):
            out.append(Mount.of(m.host, m.guest, m.writable))
        elif isinstance(m, str):
            out.append(Mount.parse(m))
        elif isinstance(m, (tuple, list)) and len(m) in (2, 3):
            out.append(Mount.of(m[0], m[1], m[2] if len(m) == 3 else False))
        else:
            raise InvalidArgument(
                f"each mount must be a Mount, 'HOST:GUEST[:rw]' or (host, guest[, writable]); got {shown(m)}"
            )
    if len(out) > SLOTS:
        raise InvalidArgument(f"at most {SLOTS} mounts are supported; got {len(out)}")
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
    preload: object = None,
    inputs: object = None,
    **limit_kwargs: Any,
) -> Request:
    """Validate ``execute``'s arguments into a ``Request`` (raises ``InvalidArgument``).

    Bad input of any shape (wrong types, lone surrogates, conflicting ``files`` keys,
    limits past what the host can enforce) raises ``InvalidArgument`` naming the field.
    """
    tool_keys = sorted(set(limit_kwargs) & {"tools", "tool_permission", "max_tool_calls"})
    if tool_keys:
        raise InvalidArgument(
            f"{', '.join(tool_keys)}: host functions are callables of this process, so only execute(), "
            "execute_async(), Runtime.execute() and sessions take them (not pools, batches, Ray or HTTP)"
        )
    unknown = set(limit_kwargs) - set(LIMIT_NAMES)
    if unknown:
        raise InvalidArgument(f"unexpected argument(s) {shown(sorted(unknown))}; limits are: {', '.join(LIMIT_NAMES)}")
    if isinstance(code, (bytes, bytearray)):
        raise InvalidArgument("code must be text (str); decode bytes first, e.g. code.decode('utf-8')")
    code = _text("code", code)
    if args is None:
        args = ()
    if isinstance(args, (str, bytes)) or not isinstance(args, Iterable):
        raise InvalidArgument(f"args must be a sequence of str; got {type(args).__name__}")
    args = tuple(_text(f"args[{i}]", a) for i, a in enumerate(args))
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
    if pythonpath is UNSET:
        pythonpath = os.environ.get("EXECR_PYTHONPATH") or None
    if not isinstance(snapshot, bool):
        raise InvalidArgument(f"snapshot must be a bool; got {type(snapshot).__name__}")
    if not isinstance(runtime, str) or runtime not in NAMES:
        raise InvalidArgument(f"runtime must be one of {', '.join(map(repr, NAMES))}; got {shown(runtime)}")
    spec = flavor(runtime)
    if preload is not None and not spec.reactor:
        raise InvalidArgument(f"preload applies to the scientific runtime, not {spec.name!r}")
    if preload is not None and not isinstance(preload, (str, Iterable)):
        raise InvalidArgument(f"preload must be module names (a str or a list); got {type(preload).__name__}")
    wanted = None if preload is None else preload_list(preload)
    mount_list = _mounts(mounts)
    spec.check_mounts(m.guest for m in mount_list)
    root = None if mount_fs is None else host_dir(mount_fs, "mount_fs")
    return Request(
        code=code,
        stdin=_bytes("stdin", stdin),
        args=args,
        env=_env(env),
        files=_files(files, mount_list, root),
        mounts=mount_list,
        limits=lim,
        mount_fs=root,
        stdio=None if stdio is None else host_dir(stdio, "stdio"),
        pythonpath=None if pythonpath is None else host_dir(pythonpath, "EXECR_PYTHONPATH"),
        snapshot=snapshot,
        runtime=spec.name,
        preload=wanted or None,
        inputs=_inputs(inputs),
    )


def _inputs(inputs: object) -> bytes:
    """``inputs=`` as the marshal bytes the guest loads (b"" for none)."""
    values = check_inputs(inputs)
    return marshal.dumps(values, 4) if values else b""
