"""Results: the Outcome enum, raise_for_outcome's exception classes, and the JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

import execr
from execr import (
    ExecrError,
    GuestCrashed,
    GuestFailed,
    GuestFileLimit,
    GuestMemoryLimit,
    GuestOutOfFuel,
    GuestTimedOut,
    InvalidArgument,
    Outcome,
    OutcomeError,
    OutputFile,
    Result,
)


def test_outcome_is_a_str_enum():
    """Outcome values compare equal to their plain strings and print as them."""
    assert issubclass(Outcome, str)
    assert Outcome.COMPLETED == "completed"
    assert str(Outcome.TIMED_OUT) == "timed_out"
    assert Outcome("out_of_fuel") is Outcome.OUT_OF_FUEL
    assert {o.value for o in Outcome} == {
        "completed",
        "failed",
        "timed_out",
        "out_of_fuel",
        "memory_limit",
        "file_limit",
        "crashed",
        "cancelled",
    }
    assert json.dumps({"o": Outcome.FAILED}) == '{"o": "failed"}'


@pytest.mark.parametrize(
    ("outcome", "exc_type", "builtin"),
    [
        (Outcome.FAILED, GuestFailed, None),
        (Outcome.TIMED_OUT, GuestTimedOut, TimeoutError),
        (Outcome.OUT_OF_FUEL, GuestOutOfFuel, None),
        (Outcome.MEMORY_LIMIT, GuestMemoryLimit, MemoryError),
        (Outcome.FILE_LIMIT, GuestFileLimit, None),
        (Outcome.CRASHED, GuestCrashed, None),
        (Outcome.CANCELLED, execr.GuestCancelled, None),
    ],
)
def test_raise_for_outcome(outcome, exc_type, builtin):
    """raise_for_outcome raises the matching OutcomeError subclass carrying the result."""
    result = Result(outcome=outcome, exit_code=None, error="why it stopped")
    with pytest.raises(exc_type) as info:
        result.raise_for_outcome()
    assert isinstance(info.value, OutcomeError) and isinstance(info.value, ExecrError)
    assert info.value.result is result
    assert outcome.value in str(info.value) and "why it stopped" in str(info.value)
    if builtin is not None:
        assert isinstance(info.value, builtin)


def test_raise_for_outcome_completed_returns_self():
    """raise_for_outcome returns the result itself when the run completed."""
    result = Result()
    assert result.raise_for_outcome() is result
    assert result.ok


def test_exception_hierarchy():
    """The exceptions subclass the built-ins a user would catch (TimeoutError, MemoryError, ValueError)."""
    assert issubclass(GuestTimedOut, TimeoutError)
    assert issubclass(GuestMemoryLimit, MemoryError)
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(InvalidArgument, ExecrError)
    assert issubclass(execr.RuntimeUnavailable, RuntimeError)
    assert issubclass(execr.RuntimeClosed, RuntimeError)


def test_to_dict_from_dict_round_trip_with_binary():
    """to_dict/from_dict round-trips a result, including non-UTF-8 output and files (via base64)."""
    result = Result.build(
        stdout=b"ok\xff\xfe",
        stderr="héllo\n".encode(),
        stdout_dropped=3,
        fuel_consumed=1234,
        memory=200,
        data_len=200 * 65536,
        outcome=Outcome.FAILED,
        exit_code=2,
        duration=0.5,
        files=(OutputFile("/a.bin", 10, b"\x00\x80\xff", truncated=True), OutputFile("/t.txt", 2, b"hi")),
        error=None,
        mode="plain",
    )
    data = result.to_dict()
    text = json.dumps(data)  # JSON-ready
    assert data["stdout_base64"] and "stderr_base64" not in data
    assert data["outcome"] == "failed"
    back = Result.from_dict(json.loads(text))
    assert back == result
    assert back.stdout_bytes == b"ok\xff\xfe" and back.stdout == "ok\ufffd\ufffd"
    assert back.file("a.bin").content == b"\x00\x80\xff"


@pytest.mark.guest
def test_real_result_round_trip(run):
    """A real run's result survives to_dict/from_dict unchanged."""
    r = run("import sys\nsys.stdout.buffer.write(b'\\xff')\nopen('o.bin','wb').write(b'\\x80')\nsys.exit(4)")
    assert r.exit_code == 4
    assert Result.from_dict(json.loads(json.dumps(r.to_dict()))) == r


@pytest.mark.guest
def test_raise_for_outcome_on_real_failure(run):
    """A real failing run raises GuestFailed from raise_for_outcome."""
    with pytest.raises(GuestFailed) as info:
        run("raise ValueError('x')").raise_for_outcome()
    assert info.value.result.exit_code == 1


def test_output_is_stored_once_as_bytes():
    """Result keeps the bytes; stdout/stderr are their text, and truncation is one flag away."""
    result = Result(stdout_bytes=b"caf\xc3\xa9 \xff", stderr_bytes=b"e", stdout_dropped=10)
    assert result.stdout == "café \ufffd" and result.stderr == "e"
    assert result.stdout_truncated and not result.stderr_truncated
    assert "stdout" not in {f.name for f in dataclasses.fields(Result)}


def test_mount_validates_when_built(tmp_path):
    """Mount(...) itself checks its host directory and guest path, like Mount.of."""
    import execr

    assert execr.Mount(tmp_path, "/data").host == tmp_path.resolve()
    with pytest.raises(execr.InvalidArgument, match="does not exist"):
        execr.Mount(tmp_path / "missing", "/data")
    with pytest.raises(execr.InvalidArgument, match="absolute"):
        execr.Mount(tmp_path, "data")
    with pytest.raises(execr.InvalidArgument, match="reserves"):
        execr.Mount(tmp_path, "/__execr__/x")
