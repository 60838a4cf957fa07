"""Tool boxes: a caller's host functions (``tools=``), and how one run's calls to them are answered.

``ToolBox`` holds the tools (each with its ``Signature``), the permission callback, the call
budget and, for async tools, the event loop to run them on; it is validated once and can serve
many runs (a session's). ``begin()`` makes a ``ToolRun``: one run's dispatcher, which the
sandbox's ``host.call`` hands each request frame to, and which keeps the run's ``ToolCall``
records. Nothing a guest sends, and nothing a tool does, raises out of ``ToolRun.answer``: every
failure is an error answer the guest sees as ``execr_tools.ToolError``.

Time: wasmtime meters only wasm code, so a tool's host time costs the guest no fuel. The wall
clock keeps running: a tool runs on a worker thread (``_workers``) while the guest's thread
waits for it until the run's deadline (or its cancel, or Ctrl-C); then the run stops at once
(``timed_out``, ``cancelled``) and the tool is left to finish on its own, its answer dropped.

Always a worker, even in a run nothing could stop (no deadline, no cancel, not the main
thread): inline would save the two hand-offs (~15-20 us of a ~60 us round trip, measured), but
the tool would run on the guest's thread below its wasm frames, and a tool that calls back
into execr there would re-enter a run in progress (a session's lock is re-entrant).

Speed (``bench/tools.py``): a request is parsed by one reused decoder; ``check`` runs on its
values only when a cheap look at the frame and the parsed values cannot rule out what it
refuses (``_plain``); ``Signature.bind`` matches the usual calls without ``inspect``; a plain
result (None, bool, int, a short ASCII str) skips ``check``; one reused encoder answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import keyword
import math
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any, Final

from .._exceptions import InvalidArgument, shown
from .._jsonlike import MAX_DEPTH, MAX_ITEMS, check
from .._results import ToolCall
from . import _guest, _workers
from ._schema import Mismatch, Signature

__all__ = [
    "DEFAULT_MAX_CALLS",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "MAX_RUN_BYTES",
    "Permission",
    "ToolBox",
    "ToolRun",
]

DEFAULT_MAX_CALLS: Final = 1000  # tool calls per run
#: Bytes of one request frame. Not 16 MiB like an answer: the guest writes requests, and parsing
#: JSON can take about 25 times its size in host memory for a moment (empty lists, dicts).
MAX_REQUEST: Final = 4 << 20
MAX_RESPONSE: Final = 16 << 20  # bytes of one answer
#: Request bytes one run may send in all (each call counts its frame plus ``_RECORD_COST``): the
#: records keep the arguments, so this bounds what a run's ``Result.tool_calls`` can hold.
MAX_RUN_BYTES: Final = 64 << 20
_RECORD_COST: Final = 256
_MESSAGE: Final = 4096  # characters of an error message sent to the guest
_SLICE: Final = 0.05  # seconds the guest's thread waits for a tool between checks for a stop
_MAX_CALLS_CAP: Final = 10**9
_SHORT: Final = 1 << 20  # characters of a str result sent without ``check`` (far below its MAX_TEXT)

Permission = Callable[[str, dict[str, Any]], bool]


class _Refusal(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message[:_MESSAGE]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _described(e: BaseException) -> str:
    name = type(e).__name__
    try:
        text = str(e).strip()
    except Exception:
        return name
    return f"{name}: {text}" if text else name


@dataclasses.dataclass(frozen=True)
class _Tool:
    name: str
    fn: Callable[..., Any]
    signature: Signature
    descriptor: dict[str, Any]


class ToolBox:
    """Host functions for runs: ``tools`` (name -> callable), ``permission``, ``max_calls``, ``loop``.

    ``permission(name, arguments)`` is asked before each call (anything but ``True`` refuses it,
    as does raising); ``max_calls`` caps the calls of one run (``None``: no cap; the request
    bytes of a run are capped at ``MAX_RUN_BYTES`` anyway); ``loop`` is the event loop async
    tools run on (``asyncio.run_coroutine_threadsafe``), else each async call runs in a fresh
    loop of its own. Invalid tools raise ``InvalidArgument`` here, before anything runs.
    """

    def __init__(
        self,
        tools: Mapping[str, Callable[..., Any]],
        *,
        permission: Permission | None = None,
        max_calls: int | None = DEFAULT_MAX_CALLS,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not isinstance(tools, Mapping):
            raise InvalidArgument(f"tools must be a mapping of names to callables; got {type(tools).__name__}")
        if permission is not None and not callable(permission):
            raise InvalidArgument(f"tool_permission must be a callable or None; got {type(permission).__name__}")
        if max_calls is not None and (
            isinstance(max_calls, bool) or not isinstance(max_calls, int) or not 0 <= max_calls <= _MAX_CALLS_CAP
        ):
            raise InvalidArgument(
                f"max_tool_calls must be a whole number from 0 to {_MAX_CALLS_CAP}, or None; got {shown(max_calls, 60)}"
            )
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise InvalidArgument(f"loop must be an asyncio event loop or None; got {type(loop).__name__}")
        self._tools: dict[str, _Tool] = {}
        for name, fn in tools.items():
            _check_name(name)
            if not callable(fn):
                raise InvalidArgument(f"tools[{name!r}] must be callable; got {type(fn).__name__}")
            sig = Signature(name, fn)
            doc = inspect.getdoc(fn) or ""
            descriptor = {"name": name, "description": doc[:_MESSAGE], "signature": sig.text, "parameters": sig.schema}
            self._tools[name] = _Tool(name, fn, sig, descriptor)
        self.permission = permission
        self.max_calls = max_calls
        self.loop = loop
        try:
            self._list = json.dumps({"ok": self.descriptors}, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:  # a pydantic schema holding something JSON cannot say
            raise InvalidArgument(f"tools: a tool's description is not JSON ({e})") from None

    @classmethod
    def of(
        cls,
        tools: Mapping[str, Callable[..., Any]] | None,
        permission: Permission | None = None,
        max_calls: int | None = DEFAULT_MAX_CALLS,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> ToolBox | None:
        """``ToolBox(...)`` for ``execute``'s keywords; ``None`` when ``tools`` is None or empty."""
        if tools is None or (isinstance(tools, Mapping) and not tools):
            if permission is not None:
                raise InvalidArgument("tool_permission was given without tools")
            return None
        return cls(tools, permission=permission, max_calls=max_calls, loop=loop)

    def with_loop(self, loop: asyncio.AbstractEventLoop | None) -> ToolBox:
        """The same tools, with async tools run on ``loop``."""
        out = object.__new__(ToolBox)
        out.__dict__.update(self.__dict__)
        out.loop = loop
        return out

    @property
    def names(self) -> tuple[str, ...]:
        """The tools' names."""
        return tuple(self._tools)

    @property
    def descriptors(self) -> list[dict[str, Any]]:
        """One dict per tool: ``name``, ``description``, ``signature`` and ``parameters`` (JSON Schema)."""
        return [dict(t.descriptor) for t in self._tools.values()]

    @property
    def control(self) -> dict[str, bytes]:
        """The files to add to the run's ``/__execr__`` (the guest module ``execr_tools``)."""
        return {_guest.FILE: _guest.SOURCE.encode()}

    def begin(self) -> ToolRun:
        """A dispatcher for one run (its calls, budget and records)."""
        return ToolRun(self)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise InvalidArgument(f"tool names must be ASCII Python identifiers (not keywords); got {shown(name, 60)}")
    if name.startswith("_") or name in _guest.RESERVED or len(name) > 64:
        raise InvalidArgument(
            f"tool name {shown(name, 60)} is not allowed: names are at most 64 characters, do not start with '_', "
            f"and are not {', '.join(sorted(_guest.RESERVED))} (the guest module's own)"
        )


class ToolRun:
    """One run's tool calls: ``answer`` serves each request frame, ``calls`` is the record.

    Used by one run at a time, from the guest's thread (not thread-safe).
    """

    def __init__(self, box: ToolBox) -> None:
        self.box = box
        self.count = 0  # calls made (list requests are not calls)
        self.bytes = 0  # request bytes charged against MAX_RUN_BYTES
        self._calls: list[ToolCall] = []
        self._over_budget = False  # the first call past max_calls is recorded, later ones not

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        """The calls so far, in order."""
        return tuple(self._calls)

    def answer(
        self, length: int, read: Callable[[], bytes], deadline: float | None, stop: Callable[[], bool]
    ) -> bytes | None:
        """The answer to one request frame of ``length`` bytes (``read()`` gives them), or ``None`` when
        the run must stop instead (``stop()`` turned true while a tool ran: deadline, cancel)."""
        started = time.perf_counter()
        name, arguments = "", {}
        try:
            cost = (length if length <= MAX_REQUEST else 0) + _RECORD_COST  # a frame too large is not read
            if self.bytes + cost > MAX_RUN_BYTES:
                sent = f"this run has sent {self.bytes} bytes of tool requests; at most {MAX_RUN_BYTES}"
                raise _Refusal("budget", sent)
            frame = None if length > MAX_REQUEST else read()
            request = None if frame is None else _parse(frame)
            if request == {"op": "list"}:
                return self.box._list
            self.bytes += cost
            self.count += 1  # every request but a list is a call, whatever becomes of it
            cap = self.box.max_calls
            if cap is not None and self.count > cap:
                raise _Refusal("budget", f"this run may make {cap} tool calls; this was call {self.count}")
            if request is None:
                cap_text = f"{MAX_REQUEST} ({MAX_REQUEST >> 20} MiB)"
                raise _Refusal("too_large", f"the request is {length} bytes; at most {cap_text}")
            if isinstance(request, _Refusal):
                raise request
            name, args, kwargs = _shape(request)
            # ``check`` finds nothing wrong in parsed JSON unless it holds a lone surrogate (only a
            # ``\u`` escape makes one), more than MAX_ITEMS values (each takes a byte), or nests too
            # deep or holds an infinite float (``1e999``), which ``_plain`` looks for; else it runs.
            plain = frame is not None and len(frame) <= MAX_ITEMS and b"\\u" not in frame
            arguments = {"args": args, "kwargs": kwargs}
            tool = self.box._tools.get(name)
            if tool is None:
                offered = ", ".join(self.box._tools) or "none"
                raise _Refusal("unknown_tool", f"no tool named {name!r:.80}; this run offers: {offered}")
            try:
                if not (plain and _plain(args, 1) and _plain(kwargs, 1)):
                    check("the arguments", [args, kwargs])
                named, call_args, call_kwargs = tool.signature.bind(args, kwargs)
            except Mismatch as e:
                arguments = e.named if e.named is not None else arguments
                raise _Refusal("invalid_arguments", str(e)) from None
            except InvalidArgument as e:
                raise _Refusal("invalid_arguments", str(e)) from None
            except Exception as e:  # a pydantic validator that raised something else
                raise _Refusal("invalid_arguments", f"{name}(): {_described(e)}") from None
            arguments = named
            value = self._invoke(tool, named, call_args, call_kwargs, deadline, stop)
            if value is _STOPPED:
                self._record(name, arguments, started, "the run was stopped while the tool ran (its answer is dropped)")
                return None
            body = self._encode(name, value)
        except _Refusal as e:
            self._record(name, arguments, started, e.message, e.kind)
            return _ENCODE_ASCII({"error": e.message, "kind": e.kind}).encode()  # a message may hold a lone surrogate
        self._record(name, arguments, started, None)
        return body

    def _record(self, name: str, arguments: dict[str, Any], started: float, error: str | None, kind: str = "") -> None:
        if kind == "budget":
            if self._over_budget:
                return  # only the first call past the budget is recorded
            self._over_budget = True
        self._calls.append(ToolCall(name, arguments, error is None, time.perf_counter() - started, error))

    def _invoke(
        self,
        tool: _Tool,
        named: dict[str, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        deadline: float | None,
        stop: Callable[[], bool],
    ) -> Any:
        permission, loop = self.box.permission, self.box.loop
        inner: list[Future[Any]] = []  # an async tool's future on ``loop``, to cancel on a stop

        def job() -> Any:
            if permission is not None:
                try:
                    allowed = permission(tool.name, named)
                except BaseException as e:
                    return _Denied(f"{tool.name} was refused: tool_permission raised {_described(e)}")
                if allowed is not True:
                    return _Denied(f"{tool.name} was refused by tool_permission")
            value = tool.fn(*args, **kwargs)
            if inspect.isawaitable(value):
                if loop is None:
                    return asyncio.run(_awaited(value))
                fut = asyncio.run_coroutine_threadsafe(_awaited(value), loop)
                inner.append(fut)
                return fut.result()
            return value

        call = _workers.submit(job)
        while not call.wait(_SLICE if deadline is None else min(_SLICE, max(deadline - time.monotonic(), 0.0))):
            if stop():
                for each in inner:
                    each.cancel()
                return _STOPPED
        if call.error is not None:
            raise _Refusal("tool_error", f"{tool.name} raised {_described(call.error)}")
        if isinstance(call.value, _Denied):
            raise _Refusal("denied", call.value.message)
        return call.value

    def _encode(self, name: str, value: Any) -> bytes:
        kind = type(value)
        pydantic = sys.modules.get("pydantic")
        try:
            if (
                value is None
                or kind is bool
                or kind is int
                or (kind is str and len(value) <= _SHORT and value.isascii())
            ):
                plain = value  # what ``check`` would return for it: the value itself
            else:
                if pydantic is not None and isinstance(value, pydantic.BaseModel):
                    value = value.model_dump(mode="json")
                plain = check(f"the result of {name}", value)
            body = _ENCODE({"ok": plain}).encode()
        except InvalidArgument as e:
            raise _Refusal("bad_result", str(e)) from None
        except Exception as e:
            raise _Refusal("bad_result", f"the result of {name} cannot be sent: {_described(e)}") from None
        if len(body) > MAX_RESPONSE:
            size = f"the result of {name} is {len(body)} bytes as JSON; at most {MAX_RESPONSE >> 20} MiB"
            raise _Refusal("too_large", size)
        return body


@dataclasses.dataclass(frozen=True)
class _Denied:
    message: str


_STOPPED: Final = object()


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


_DECODE: Final = json.JSONDecoder(parse_constant=_no_constant).decode
_ENCODE: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_ENCODE_ASCII: Final = json.JSONEncoder(separators=(",", ":")).encode


def _plain(value: list[Any] | dict[str, Any], depth: int) -> bool:
    """Whether a parsed JSON container nests less than ``MAX_DEPTH`` deep (``depth`` is its own
    level in ``check``'s count) and holds no infinite float (JSON's ``1e999`` parses to one);
    False when unsure: then ``check`` decides, and says why."""
    if depth >= MAX_DEPTH:
        return False
    items: Iterable[Any] = value.values() if type(value) is dict else value
    for item in items:
        kind = type(item)
        if kind is list or kind is dict:
            if not _plain(item, depth + 1):
                return False
        elif kind is float and not math.isfinite(item):
            return False
    return True


def _parse(frame: bytes) -> Any:
    """The request's JSON, or the ``_Refusal`` to answer it with (raised once it is counted)."""
    try:
        return _DECODE(frame.decode("utf-8"))
    except UnicodeDecodeError:
        return _Refusal("protocol", "the request is not UTF-8")
    except (ValueError, RecursionError) as e:
        return _Refusal("protocol", f"the request is not JSON ({str(e)[:200]})")


def _shape(request: Any) -> tuple[str, list[Any], dict[str, Any]]:
    if not isinstance(request, dict) or not isinstance(request.get("tool"), str):
        raise _Refusal("protocol", 'a request is {"tool": NAME, "args": [...], "kwargs": {...}} or {"op": "list"}')
    extra = set(request) - {"tool", "args", "kwargs"}
    if extra:
        raise _Refusal("protocol", f"unexpected keys in the request: {sorted(extra)!r:.200}")
    args, kwargs = request.get("args", []), request.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise _Refusal("protocol", "args must be a list and kwargs an object")
    return request["tool"], args, kwargs
