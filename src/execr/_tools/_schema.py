"""Tool schemas: a host function's parameters as JSON Schema, and the check that a guest's arguments fit.

``parameters(fn)`` reads ``fn``'s signature and type hints once (``InvalidArgument`` for a hint
that is not JSON-like) and returns a ``Signature``: its JSON Schema (``schema``), the text shown
to the guest (``text``), and ``bind(args, kwargs)``, which matches a guest's call to the
parameters, checks every value against its hint, converts it where the hint asks (``float``
from an int, ``tuple``, an ``Enum`` member, a pydantic model) and returns the arguments by name
(for the record and the permission callback) and the call to make.

Hints: ``str``, ``int``, ``float``, ``bool``, ``None``, ``Any`` (or none), ``list[T]``,
``tuple[T, ...]``, ``tuple[A, B]``, ``dict[str, T]`` (and the ``typing``/``collections.abc``
spellings), ``Optional``/unions, ``Literal``, ``Annotated`` (a str in its metadata becomes the
description), ``Enum`` subclasses with JSON values, and pydantic models (pydantic is never
imported here: a class is a model only if pydantic is already loaded). A function whose one
parameter is a model takes that model's fields as its arguments.
"""

from __future__ import annotations

import collections.abc as abc
import contextlib
import enum
import functools
import inspect
import math
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .._exceptions import InvalidArgument
from .._jsonlike import check

__all__ = ["Mismatch", "Signature", "parameters"]


class Mismatch(Exception):
    """A guest's arguments do not fit the tool (the message is what the guest sees); ``named``: the
    arguments by parameter name, when the call matched the parameters but a value did not fit."""

    named: dict[str, Any] | None = None


class _Spec:
    """One hint: its schema and its check (which returns the value the tool receives)."""

    text = "Any"

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def check(self, value: Any, where: str) -> Any:
        return value


_JSON_NAMES = {type(None): "null", bool: "a bool", int: "an int", float: "a float", str: "a str"}


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a dict"
    return _JSON_NAMES.get(type(value), type(value).__name__)


class _Scalar(_Spec):
    def __init__(self, tp: type) -> None:
        self.tp = tp
        self.text = "None" if tp is type(None) else tp.__name__

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        name = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}[self.tp]
        return {"type": name}

    def check(self, value: Any, where: str) -> Any:
        if self.tp is float and type(value) is int:
            try:
                return float(value)
            except OverflowError:
                raise Mismatch(f"{where} is too large for a float") from None
        if type(value) is not self.tp:
            raise Mismatch(f"{where} must be {_JSON_NAMES[self.tp]}; got {_kind(value)}")
        return value


class _List(_Spec):
    def __init__(self, item: _Spec, make: type = list) -> None:
        self.item, self.make = item, make
        self.text = f"{make.__name__}[{item.text}{', ...' if make is tuple else ''}]"

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(defs)}

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise Mismatch(f"{where} must be a list; got {_kind(value)}")
        return self.make(self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value))


class _Tuple(_Spec):
    def __init__(self, items: list[_Spec]) -> None:
        self.items = items
        self.text = f"tuple[{', '.join(s.text for s in items)}]"

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        n = len(self.items)
        return {"type": "array", "prefixItems": [s.schema(defs) for s in self.items], "minItems": n, "maxItems": n}

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, list) or len(value) != len(self.items):
            raise Mismatch(f"{where} must be a list of {len(self.items)} items; got {_kind(value)}")
        return tuple(s.check(v, f"{where}[{i}]") for i, (s, v) in enumerate(zip(self.items, value, strict=True)))


class _Dict(_Spec):
    def __init__(self, value: _Spec) -> None:
        self.value = value
        self.text = f"dict[str, {value.text}]"

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.schema(defs)}

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise Mismatch(f"{where} must be a dict; got {_kind(value)}")
        return {k: self.value.check(v, f"{where}[{k!r:.40}]") for k, v in value.items()}


class _Union(_Spec):
    def __init__(self, options: list[_Spec]) -> None:
        # Exact scalars first, so ``float | int`` keeps an int an int.
        self.options = sorted(options, key=lambda s: 0 if isinstance(s, (_Scalar, _Literal)) else 1)
        self.text = " | ".join(s.text for s in options)

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [s.schema(defs) for s in self.options]}

    def check(self, value: Any, where: str) -> Any:
        for spec in self.options:
            if isinstance(spec, _Scalar) and spec.tp is float and type(value) is int:
                continue  # an int matches ``int`` if the union has it; else the float pass below
            try:
                return spec.check(value, where)
            except Mismatch:
                pass
        for spec in self.options:
            if isinstance(spec, _Scalar) and spec.tp is float and type(value) is int:
                return spec.check(value, where)
        raise Mismatch(f"{where} must be {self.text}; got {_kind(value)}")


class _Literal(_Spec):
    def __init__(self, values: tuple[Any, ...], enum_type: type[enum.Enum] | None = None) -> None:
        self.values, self.enum_type = values, enum_type
        self.text = enum_type.__name__ if enum_type is not None else f"Literal[{', '.join(map(repr, values))}]"

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        return {"enum": list(self.values)}

    def check(self, value: Any, where: str) -> Any:
        for v in self.values:
            if type(v) is type(value) and v == value:
                return value if self.enum_type is None else self.enum_type(value)
        raise Mismatch(f"{where} must be one of {', '.join(map(repr, self.values))}; got {_kind(value)}")


class _Model(_Spec):
    """A pydantic model: its own schema (under ``$defs``), validated by ``model_validate``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.text = model.__name__

    def own_schema(self) -> dict[str, Any]:
        return dict(self.model.model_json_schema())

    def schema(self, defs: dict[str, Any]) -> dict[str, Any]:
        schema = self.own_schema()
        defs.update(schema.pop("$defs", {}))
        defs[self.model.__name__] = schema
        return {"$ref": f"#/$defs/{self.model.__name__}"}

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise Mismatch(f"{where} must be a dict (the fields of {self.text}); got {_kind(value)}")
        try:
            return self.model.model_validate(value)
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            raise Mismatch(f"{where} does not fit {self.text}: {_first_lines(str(e))}") from None


def _first_lines(text: str, limit: int = 600) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())[:limit]


def _is_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


_ANY = _Spec()
_SEQUENCES = (list, abc.Sequence, abc.MutableSequence, abc.Iterable, abc.Collection)
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def _spec(tp: Any, where: str) -> _Spec:
    """The spec of hint ``tp`` (``where`` names it in errors)."""
    if tp is inspect.Parameter.empty or tp is Any or tp is object:
        return _ANY
    if tp is None or tp is type(None):
        return _Scalar(type(None))
    if tp in (str, int, float, bool):
        return _Scalar(tp)
    if tp in _SEQUENCES:
        return _List(_ANY)
    if tp is tuple:
        return _List(_ANY, tuple)
    if tp in _MAPPINGS:
        return _Dict(_ANY)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = tuple(m.value for m in tp)
        if not values or not all(_literal_ok(v) for v in values):
            raise _unsupported(where, tp, "an Enum's values must be None, bool, int, float or str")
        return _Literal(values, tp)
    if _is_model(tp):
        return _Model(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _spec(args[0], where)
    if origin is typing.Union or origin is types.UnionType:
        return _Union([_spec(a, where) for a in args])
    if origin is typing.Literal:
        if not all(_literal_ok(v) for v in args):
            raise _unsupported(where, tp, "Literal values must be None, bool, int, float or str")
        return _Literal(tuple(args))
    if origin in _SEQUENCES:
        return _List(_spec(args[0], where) if args else _ANY)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _List(_spec(args[0], where), tuple)
        if not args or args == ((),):
            return _Tuple([])
        return _Tuple([_spec(a, where) for a in args])
    if origin in _MAPPINGS:
        if args and args[0] not in (str, Any):
            raise _unsupported(where, tp, "dict keys must be str (JSON object keys)")
        return _Dict(_spec(args[1], where) if args else _ANY)
    raise _unsupported(where, tp, "")


def _literal_ok(v: object) -> bool:
    return v is None or isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))


def _unsupported(where: str, tp: Any, why: str) -> InvalidArgument:
    shown = getattr(tp, "__name__", None) if isinstance(tp, type) else None
    return InvalidArgument(
        f"{where} has the type hint {shown if shown else repr(tp)}, which is not JSON-like"
        + (f" ({why})" if why else "")
        + "; use str, int, float, bool, None, list[...], dict[str, ...], tuple[...], Optional/unions, "
        "Literal, an Enum or a pydantic model"
    )


def _annotated(fn: Callable[..., Any]) -> Any:
    """What holds ``fn``'s annotations: the function itself, a partial's function, a class's
    ``__init__`` or a callable object's ``__call__``."""
    target: Any = fn
    while isinstance(target, functools.partial):
        target = target.func
    if isinstance(target, type):
        return typing.cast(Any, target).__init__
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target):
        return target
    return type(target).__call__


def _description(tp: Any) -> str | None:
    if typing.get_origin(tp) is typing.Annotated:
        texts = [m for m in typing.get_args(tp)[1:] if isinstance(m, str)]
        return " ".join(texts) or None
    return None


class Signature:
    """A tool's parameters: schema, text and the binding of a guest's call."""

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        where = f"tools[{name!r}]"
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"{where}: cannot read the callable's signature ({e})") from None
        try:
            hints = typing.get_type_hints(_annotated(fn), include_extras=True)
        except Exception as e:
            raise InvalidArgument(
                f"{where}: cannot resolve its type hints ({type(e).__name__}: {e}); "
                "a hint must name a type visible from the function's module"
            ) from None
        self.name = name
        self._sig = sig
        self._specs: dict[str, _Spec] = {}
        self._model: _Model | None = None
        params = list(sig.parameters.values())
        for p in params:
            if p.kind is p.VAR_POSITIONAL:
                raise InvalidArgument(f"{where} takes *{p.name}; a tool's parameters must have names")
            hint = hints.get(p.name, inspect.Parameter.empty)
            self._specs[p.name] = _spec(hint, f"{where} parameter {p.name!r}")
        only = [p for p in params if p.kind is not p.VAR_KEYWORD]
        if len(params) == 1 and len(only) == 1 and isinstance(self._specs[only[0].name], _Model):
            model = self._specs[only[0].name]
            assert isinstance(model, _Model)
            self._model = model
        self.schema = self._schema(hints)
        self.text = self._text()
        # ``bind``'s quick path, for the usual parameters (by position or keyword, or keyword-only):
        # (name, spec, where, by position?) in order; which ones a call may give by position, and
        # which it must give.
        simple = self._model is None and all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        self._quick = (
            [
                (p.name, self._specs[p.name], f"{name}(): argument {p.name!r}", p.kind is p.POSITIONAL_OR_KEYWORD)
                for p in params
            ]
            if simple
            else None
        )
        self._positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self._required = tuple(p.name for p in params if p.default is p.empty)

    def _schema(self, hints: Mapping[str, Any]) -> dict[str, Any]:
        if self._model is not None:
            return self._model.own_schema()
        defs: dict[str, Any] = {}
        props: dict[str, Any] = {}
        required: list[str] = []
        extra: dict[str, Any] | bool = False
        for p in self._sig.parameters.values():
            spec = self._specs[p.name]
            if p.kind is p.VAR_KEYWORD:
                extra = spec.schema(defs)
                continue
            prop = spec.schema(defs)
            desc = _description(hints.get(p.name))
            if desc:
                prop = {**prop, "description": desc}
            if p.default is p.empty:
                required.append(p.name)
            else:
                with contextlib.suppress(InvalidArgument):  # a default the guest could not send is not shown
                    prop = {**prop, "default": check("default", p.default)}
            props[p.name] = prop
        out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        out["additionalProperties"] = extra
        if defs:
            out["$defs"] = defs
        return out

    def _text(self) -> str:
        parts = []
        for p in self._sig.parameters.values():
            star = "**" if p.kind is p.VAR_KEYWORD else ""
            text = f"{star}{p.name}: {self._specs[p.name].text}"
            if p.default is not p.empty:
                try:
                    text += f" = {p.default!r:.60}"
                except Exception:
                    text += " = ..."
            parts.append(text)
        return f"{self.name}({', '.join(parts)})"

    def bind(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[dict[str, Any], tuple[Any, ...], dict[str, Any]]:
        """Match a guest's call: (arguments by name, as sent; positional and keyword arguments to call with)."""
        if self._model is not None:
            return self._bind_model(args, kwargs)
        if self._quick is not None:
            quick = self._bind_quick(args, kwargs)
            if quick is not None:
                return quick
        try:
            bound = self._sig.bind(*args, **kwargs)
        except TypeError as e:
            raise Mismatch(f"{self.name}(): {e}") from None
        named: dict[str, Any] = {}
        for pname, value in bound.arguments.items():
            param = self._sig.parameters[pname]
            if param.kind is param.VAR_KEYWORD:
                named.update(value)
            else:
                named[pname] = value
        try:
            for pname, value in bound.arguments.items():
                param = self._sig.parameters[pname]
                spec, where = self._specs[pname], f"{self.name}(): argument"
                if param.kind is param.VAR_KEYWORD:
                    bound.arguments[pname] = {k: spec.check(v, f"{where} {k!r}") for k, v in value.items()}
                else:
                    bound.arguments[pname] = spec.check(value, f"{where} {pname!r}")
        except Mismatch as e:
            e.named = named
            raise
        return named, bound.args, bound.kwargs

    def _bind_quick(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], tuple[Any, ...], dict[str, Any]] | None:
        """``bind`` without ``inspect`` for a call that fits the parameters (None: one that does not,
        left to ``inspect.Signature.bind`` and its error message). The same result: the arguments by
        name in parameter order, and as many positional ones as lead without a gap."""
        assert self._quick is not None
        if len(args) > len(self._positional):
            return None
        given = dict(zip(self._positional, args, strict=False))
        for key, value in kwargs.items():
            if key in given or key not in self._specs:
                return None
            given[key] = value
        for key in self._required:
            if key not in given:
                return None
        named = {pname: given[pname] for pname, _, _, _ in self._quick if pname in given}
        call_args: list[Any] = []
        call_kwargs: dict[str, Any] = {}
        by_keyword = False  # from the first keyword-only or missing parameter on
        try:
            for pname, spec, where, positional in self._quick:
                if pname not in given:
                    by_keyword = True
                    continue
                checked = spec.check(given[pname], where)
                if by_keyword or not positional:
                    by_keyword = True
                    call_kwargs[pname] = checked
                else:
                    call_args.append(checked)
        except Mismatch as e:
            e.named = named
            raise
        return named, tuple(call_args), call_kwargs

    def _bind_model(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[dict[str, Any], tuple[Any, ...], dict[str, Any]]:
        assert self._model is not None
        if len(args) == 1 and not kwargs and isinstance(args[0], dict):
            fields = args[0]
        elif args:
            raise Mismatch(f"{self.name}() takes the fields of {self._model.text} by keyword (or one dict)")
        else:
            fields = kwargs
        try:
            return dict(fields), (self._model.check(fields, f"{self.name}()"),), {}
        except Mismatch as e:
            e.named = dict(fields)
            raise


def parameters(name: str, fn: Callable[..., Any]) -> Signature:
    """``fn``'s parameters as a ``Signature`` (``InvalidArgument`` if a hint is not JSON-like)."""
    return Signature(name, fn)
