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


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "fuel",
            2**64,
            "fuel must be at most 2**62 (the most fuel the engine meters), or None; got 18446744073709551616",
        ),
        ("fuel", 2**62 + 1, "fuel must be at most 2**62"),
        ("timeout", 1e10, "timeout must be at most 1e9 seconds"),
        ("timeout", 10**400, "timeout must be at most 1e9 seconds"),
        ("max_stdout", 2**63, "max_stdout must be at most 2**62"),
        ("max_stderr", 2**64, "max_stderr must be at most 2**62"),
        ("max_file_bytes", 1e300, "max_file_bytes must be at most 2**62"),
        ("max_files", 2**70, "max_files must be at most 2**62"),
        ("max_returned_file_bytes", 2**70, "max_returned_file_bytes must be at most 4 GiB"),
        ("max_open_files", 2**20 + 1, "max_open_files must be at most 2**20"),
        ("max_open_files", 0, "max_open_files must be a whole number >= 1, or None; got 0"),
        ("max_open_files", 1.5, "max_open_files must be a whole number"),
        pytest.param(
            "fuel",
            10**5000,
            "fuel must be at most 2**62 (the most fuel the engine meters), or None; got <int>",
            id="huge",
        ),
    ],
)
def test_limits_are_bounded_by_what_the_host_enforces(field: str, value: object, message: str) -> None:
    """Past the host's real ceiling a limit is refused (fuel >= 2**64 used to run out at once, sizes overflowed)."""
    with pytest.raises(InvalidArgument) as info:
        Limits(**{field: value})  # type: ignore[arg-type]
    assert message in str(info.value)


def test_ceilings_themselves_are_accepted() -> None:
    """The largest value of every limit is valid, and the fuel ceiling is the engine's own unlimited value."""
    import importlib

    from execr import _limits

    for name in ("execr._sandbox._consts",):  # where the engine keeps its constants
        try:
            engine = importlib.import_module(name)
        except ImportError:
            continue
        assert _limits.MAX_FUEL == engine.UNLIMITED_FUEL
        break
    else:
        pytest.fail("the engine's UNLIMITED_FUEL was not found")
    top = Limits(
        timeout=1e9,
        fuel=2**62,
        memory_limit=4 * 2**30,
        max_stdout=2**62,
        max_stderr=2**62,
        max_file_bytes=2**62,
        max_files=2**62,
        max_returned_file_bytes=4 * 2**30,
        max_open_files=2**20,
    )
    assert top.fuel == 2**62 and top.max_open_files == 2**20


def test_max_open_files_default_and_off() -> None:
    """max_open_files defaults to 128 and None turns it off, like every limit."""
    assert Limits().max_open_files == 128
    assert Limits(max_open_files=None).max_open_files is None
    assert Limits.from_dict({"max_open_files": 3}).to_dict()["max_open_files"] == 3
