"""Property-based fuzzing of batch lines: arbitrary JSON and non-JSON lines through ``run_batch`` and ``execr batch``.

Every non-blank input line gets exactly one result line, in order; a bad line gets a
``crashed`` record whose error starts with ``invalid request: ``; nothing raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execr import WorkerPool
from execr._parallel._batch import run_batch
from execr.cli import main

pytestmark = pytest.mark.guest

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "scientific", "a\u2028b", "\x85", "\u2029"]),
)
JSON = st.recursive(
    JSON_SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
FIELDS = [
    "code",
    "stdin",
    "args",
    "env",
    "files",
    "limits",
    "timeout",
    "fuel",
    "memory_limit",
    "max_stdout",
    "max_open_files",
    "runtime",
    "snapshot",
    "mounts",
    "mount_fs",
    "stdio",
    "pythonpath",
    "id",
    "use_fuel",
    "bogus",
]
CODE = st.sampled_from(["print(1)", "import sys; sys.exit(2)", "raise KeyError", "pass", "print(input())"])
REQUEST = st.fixed_dictionaries(
    {"code": st.one_of(CODE, JSON)},
    optional={name: JSON for name in FIELDS if name not in ("code", "runtime")} | {"runtime": st.just("default")},
)
NOT_JSON = st.one_of(
    st.text(min_size=1, max_size=20),
    st.sampled_from(["{", "[1, 2", '{"code": }', "NaN", '{"code": "x"} trailing', "\ud800", "[" * 5000 + "]" * 5000]),
    st.binary(min_size=1, max_size=20),
)


def _line(value: Any) -> bytes:
    """One input line (no line breaks inside; non-blank)."""
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
    else:
        raw = json.dumps(value).encode("utf-8")  # ensure_ascii: lone surrogates travel as \ud800 escapes
    raw = raw.replace(b"\n", b" ").replace(b"\r", b" ")
    return raw if raw.decode("utf-8", "replace").strip() else b"x"  # blank (Unicode whitespace) lines are skipped


LINE = st.one_of(REQUEST, REQUEST, JSON, NOT_JSON).map(_line)
LINES = st.lists(LINE, min_size=1, max_size=12)


def check_output(lines: list[bytes], out_text: str) -> None:
    """One record per line, in order; each bad line a crashed 'invalid request: ...' record."""
    records = [json.loads(x) for x in out_text.splitlines()]  # splitlines: U+2028 in a record must not split it
    assert [r["line"] for r in records] == list(range(1, len(lines) + 1)), records
    for r in records:
        assert isinstance(r["outcome"], str)
        if r["outcome"] == "crashed" and r.get("error", "").startswith("invalid request: "):
            continue
        assert r["outcome"] in ("completed", "failed", "timed_out", "out_of_fuel", "memory_limit", "file_limit"), r


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    """One warm worker for every example (a new pool per example would cost its start-up each time)."""
    with WorkerPool(1) as p:
        yield p


def test_run_batch_answers_every_line(tmp_path_factory: pytest.TempPathFactory, pool: WorkerPool) -> None:
    """run_batch over arbitrary lines: one result line each, bad ones 'invalid request', no exception."""
    folder = tmp_path_factory.mktemp("fuzz-batch")
    counter = iter(range(10**9))

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(lines=LINES)
    def prop(lines: list[bytes]) -> None:
        n = next(counter)
        src, out = folder / f"in{n}.jsonl", folder / f"out{n}.jsonl"
        src.write_bytes(b"\n".join(lines) + b"\n")
        written = run_batch(src, out, progress=False, pool=pool, timeout=2)
        assert written == len(lines)
        check_output(lines, out.read_text("utf-8"))

    prop()


def test_execr_batch_command_answers_every_line(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The `execr batch` command on arbitrary lines: exit 0 and one result line each."""
    folder = tmp_path_factory.mktemp("fuzz-batch-cli")
    counter = iter(range(10**9))

    @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(lines=st.lists(LINE, min_size=5, max_size=25))
    def prop(lines: list[bytes]) -> None:
        n = next(counter)
        src, out = folder / f"in{n}.jsonl", folder / f"out{n}.jsonl"
        src.write_bytes(b"\n".join(lines) + b"\n")
        assert main(["batch", str(src), "-o", str(out), "--workers", "1", "--no-progress"]) == 0
        check_output(lines, out.read_text("utf-8"))

    prop()
    assert "Traceback" not in capsys.readouterr().err


def test_a_host_path_line_is_refused_by_default(tmp_path: Path) -> None:
    """Found by the fuzzer's field list: a line naming mount_fs gets an 'invalid request' record naming it."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"code": "print(1)", "mount_fs": str(tmp_path)}) + "\n")
    assert main(["batch", str(src), "-o", str(out), "--workers", "1", "--no-progress"]) == 0
    (record,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert record["outcome"] == "crashed" and "mount_fs cannot be set from a batch file" in record["error"]
