"""Limits are one validated value: clear errors naming the argument, rule and value."""

from __future__ import annotations

import math

import pytest

from execr import UNSET, InvalidArgument, Limits


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("timeout", -1, "timeout must be a finite number of seconds above 0, or None; got -1"),
        ("timeout", math.nan, "timeout must be"),
        ("timeout", math.inf, "timeout must be"),
        ("timeout", True, "got True (bool)"),
        ("timeout", "5", "got '5' (str)"),
        ("memory_limit", 10, "memory_limit must be a whole number of bytes >= 65536"),
        ("memory_limit", 5 * 2**30, "at most 4 GiB"),
        ("fuel", 0, "fuel must be a whole number >= 1"),
        ("fuel", 1.5, "fuel must be a whole number"),
        ("max_stdout", -5, "max_stdout must be a whole number of bytes >= 0"),
    ],
)
def test_bad_limits_name_argument_rule_and_value(field: str, value: object, message: str) -> None:
    """Each invalid limit raises InvalidArgument (a ValueError) with a precise message."""
    with pytest.raises(InvalidArgument) as info:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_defaults_are_safe() -> None:
    """Out of the box: 30 s, 512 MiB, 1 MiB per stream, bounded files."""
    lim = Limits()
    assert (lim.timeout, lim.memory_limit, lim.max_stdout, lim.max_stderr) == (30.0, 512 * 2**20, 2**20, 2**20)
    assert lim.max_files is not None and lim.max_file_bytes is not None


def test_none_turns_a_limit_off_and_unset_keeps_default() -> None:
    """None means no limit; UNSET means "use the default"."""
    lim = Limits().replace(timeout=None, memory_limit=UNSET)
    assert lim.timeout is None
    assert lim.memory_limit == Limits().memory_limit


def test_unknown_limit_is_rejected() -> None:
    """A misspelt limit name is an error, not silently ignored."""
    with pytest.raises(InvalidArgument, match="unknown limit 'timout'"):
        Limits.from_dict({"timout": 1})


def test_exceeds_lists_limits_over_a_cap() -> None:
    """An operator cap finds requests asking for more (None asks for unlimited)."""
    cap = Limits(timeout=10, memory_limit=2**28)
    assert Limits(timeout=20).exceeds(cap) == ["timeout", "memory_limit"]
    assert Limits(timeout=None, memory_limit=2**20).exceeds(cap) == ["timeout"]
    assert Limits(timeout=5, memory_limit=2**20).exceeds(cap) == []


def test_integral_floats_are_accepted_for_sizes() -> None:
    """1e6 is a fine byte count."""
    assert Limits(max_stdout=1e6).max_stdout == 1_000_000  # type: ignore[arg-type]
