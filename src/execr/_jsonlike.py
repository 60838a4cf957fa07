"""JSON-like values: the data that crosses between host and guest (``inputs=``, tool arguments and results).

A JSON-like value is ``None``, a ``bool``, an ``int``, a finite ``float``, a ``str``, a list
(or tuple) of JSON-like values, or a dict with ``str`` keys and JSON-like values. ``check``
validates one and returns a plain copy (tuples become lists), refusing anything else with an
``InvalidArgument`` that names where it sits: cycles, other types, lone surrogates, and values
deeper or larger than the host will carry.
"""

from __future__ import annotations

import keyword
import math
from typing import Any, Final

from ._exceptions import InvalidArgument, shown

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "check", "check_inputs"]

MAX_DEPTH: Final = 64  # nesting levels
MAX_ITEMS: Final = 1_000_000  # scalars, keys and containers in one value
MAX_TEXT: Final = 64 << 20  # characters of all strings together


class _Budget:
    __slots__ = ("items", "text")

    def __init__(self) -> None:
        self.items = 0
        self.text = 0


def _str(where: str, value: str, budget: _Budget) -> str:
    budget.text += len(value)
    if budget.text > MAX_TEXT:
        raise InvalidArgument(f"{where}: the strings add up to more than {MAX_TEXT} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"{where} holds a lone surrogate at index {e.start}; it must be valid Unicode") from None
    return str(value)


def _walk(where: str, value: object, depth: int, budget: _Budget, seen: set[int]) -> Any:
    budget.items += 1
    if budget.items > MAX_ITEMS:
        raise InvalidArgument(f"{where}: more than {MAX_ITEMS} items in one value")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{where} must be a finite number; got {shown(value)}")
        return float(value)
    if isinstance(value, str):
        return _str(where, value, budget)
    if isinstance(value, (list, tuple, dict)):
        if depth >= MAX_DEPTH:
            raise InvalidArgument(f"{where} nests deeper than {MAX_DEPTH} levels")
        if id(value) in seen:
            raise InvalidArgument(f"{where} contains itself (a cycle)")
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise InvalidArgument(f"{where} has a key of type {type(key).__name__}; keys must be str")
                    out[_str(f"{where} key", key, budget)] = _walk(
                        f"{where}[{key!r:.40}]", item, depth + 1, budget, seen
                    )
                return out
            return [_walk(f"{where}[{i}]", item, depth + 1, budget, seen) for i, item in enumerate(value)]
        finally:
            seen.discard(id(value))
    raise InvalidArgument(
        f"{where} must be JSON-like (None, bool, int, float, str, list, dict); got {type(value).__name__}"
    )


def check(where: str, value: object) -> Any:
    """A plain copy of the JSON-like ``value``, or ``InvalidArgument`` naming ``where`` it is wrong."""
    return _walk(where, value, 0, _Budget(), set())


def check_inputs(inputs: object) -> dict[str, Any]:
    """Validate ``inputs=``: a mapping of guest global names (identifiers, not keywords or dunders)
    to JSON-like values."""
    if inputs is None:
        return {}
    if not isinstance(inputs, dict):
        raise InvalidArgument(f"inputs must be a dict of names to JSON-like values; got {type(inputs).__name__}")
    for name in inputs:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InvalidArgument(f"inputs keys must be Python identifiers; got {shown(name, 60)}")
        if name.startswith("__") and name.endswith("__"):
            raise InvalidArgument(f"inputs cannot set the dunder name {name!r}")
    out = check("inputs", inputs)
    assert isinstance(out, dict)
    return out
