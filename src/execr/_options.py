"""Options: command-line values (seconds, byte sizes, counts, ``none``) for every execr command.

These only parse; execr's own validation (``Limits``) judges the values. Each returns
``None`` for ``none``/``off``/``unlimited`` and raises ``argparse.ArgumentTypeError``
with the expected form, so argparse prints one clear line.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from ._exceptions import InvalidArgument, shown

__all__ = ["at_least", "count", "parse_size", "positive", "seconds", "size"]

NONE_WORDS = frozenset({"none", "off", "unlimited"})
_SIZE = re.compile(r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _is_none(text: str) -> bool:
    return text.strip().lower() in NONE_WORDS


def parse_size(text: str) -> int:
    """``"65536"``, ``"64K"``, ``"512M"``, ``"1G"``, ``"1.5GiB"`` (powers of 1024) → bytes."""
    m = _SIZE.fullmatch(str(text).strip())
    value = float(m["num"]) * _UNITS[m["unit"].lower()] if m else float("nan")
    if not value.is_integer():
        raise InvalidArgument(f"expected a whole number of bytes like 65536, 64K, 512M or 1G; got {shown(text)}")
    return int(value)


def seconds(text: str) -> float | None:
    """Seconds (a number) or ``none``."""
    if _is_none(text):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (e.g. 2.5) or 'none'; got {shown(text)}") from None


def size(text: str) -> int | None:
    """A byte size (see ``parse_size``) or ``none``."""
    if _is_none(text):
        return None
    try:
        return parse_size(text)
    except InvalidArgument as e:
        raise argparse.ArgumentTypeError(f"{e}, or 'none'") from None


def count(text: str) -> int | None:
    """A whole number (``1000``, ``1_000``, ``4e8``) or ``none``."""
    if _is_none(text):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number or 'none'; got {shown(text)}")
    return int(value)


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}; got {shown(text)}")
        return value

    return parse


positive = at_least(1)
