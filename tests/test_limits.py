"""Limits: each one stops the guest within limit + margin, and the outcome names the cause."""

from __future__ import annotations

import pytest

from execr import Limits, Outcome
from execr._limits import DEFAULT_LIMITS

pytestmark = pytest.mark.guest

MiB = 1024 * 1024


def test_timeout_stops_busy_loop(run):
    """timeout=1 stops a busy loop within the limit plus a margin (outcome timed_out)."""
    r = run("print('start', flush=True)\nwhile True: pass", timeout=1)
    assert r.outcome is Outcome.TIMED_OUT, (r.outcome, r.error, r.stderr)
    assert r.duration < 2.5
    assert r.exit_code is None
    assert r.stdout == "start\n"
    assert "wall-clock" in (r.error or "")


def test_timeout_stops_sleep(run):
    """timeout=1 stops time.sleep(600) within the limit plus a margin (outcome timed_out)."""
    r = run("import time\ntime.sleep(600)", timeout=1)
    assert r.outcome is Outcome.TIMED_OUT, (r.outcome, r.error, r.stderr)
    assert r.duration < 2.5


def test_short_sleep_completes(run):
    """A sleep shorter than the timeout completes normally."""
    r = run("import time\nt = time.monotonic(); time.sleep(0.05); print(time.monotonic() - t >= 0.04)", timeout=5)
    assert r.ok and r.stdout == "True\n", (r.outcome, r.stderr)


def test_fuel_limit(run):
    """fuel=10_000_000 stops a busy loop with outcome out_of_fuel."""
    r = run("while True: pass", fuel=10_000_000, timeout=5)
    assert r.outcome is Outcome.OUT_OF_FUEL, (r.outcome, r.error)
    assert r.fuel_consumed == 10_000_000
    assert r.duration < 2.5


def test_memory_limit(run, base_memory):
    """A memory_limit 64 MiB above the runtime's initial memory stops a 200 MiB allocation (outcome memory_limit).

    The limit is relative: the scientific snapshot starts with ~63 MiB (numpy and pandas loaded),
    the default runtime with far less.
    """
    limit = base_memory + 64 * MiB
    r = run("x = bytearray(200*1024*1024)\nprint('allocated')", memory_limit=limit)
    assert r.outcome is Outcome.MEMORY_LIMIT, (r.outcome, r.error, r.stderr)
    assert "allocated" not in r.stdout
    assert r.data_len <= limit
    assert "memory" in (r.error or "")


def test_memory_limit_below_initial_memory(run):
    """A memory_limit below the runtime's initial memory gives memory_limit with a clear error."""
    r = run("print('ran')", memory_limit=1 * MiB)
    assert r.outcome is Outcome.MEMORY_LIMIT, (r.outcome, r.error)
    assert r.stdout == ""
    assert "initial memory" in (r.error or "") and str(MiB) in r.error


def test_max_stdout_keeps_head_and_tail(run):
    """max_stdout keeps the head and the tail (with the last line), and counts what it dropped."""
    r = run("import sys\nsys.stdout.write('a' * 1_000_000 + '\\n')\nprint('THE END')", max_stdout=1000)
    total = 1_000_000 + 1 + len("THE END\n")
    assert r.ok, (r.outcome, r.error)
    assert len(r.stdout_bytes) == 1000
    assert r.stdout_bytes.startswith(b"a" * 400)
    assert r.stdout.endswith("a\nTHE END\n")
    assert r.stdout_dropped == total - len(r.stdout_bytes)


def test_stderr_traceback_survives_stdout_flood(run):
    """A traceback on stderr survives a flood of stdout."""
    code = "import sys\nfor _ in range(200): sys.stdout.write('x' * 10_000)\nraise ValueError('boom')"
    r = run(code, max_stdout=1000)
    assert r.outcome is Outcome.FAILED and r.exit_code == 1
    assert r.stderr.endswith("ValueError: boom\n"), r.stderr
    assert r.stdout_dropped == 2_000_000 - 1000


def test_stderr_cap_keeps_final_traceback(run):
    """max_stderr keeps the end of stderr, so the final traceback line survives a stderr flood."""
    r = run("import sys\nsys.stderr.write('e' * 100_000)\nraise ValueError('last')", max_stderr=500)
    assert len(r.stderr_bytes) == 500
    assert r.stderr.endswith("ValueError: last\n")
    assert r.stderr_dropped > 0


def test_max_files(run):
    """max_files=10 stops a loop creating 1000 files with outcome file_limit."""
    r = run("for i in range(1000):\n    open(f'f{i}.txt', 'w').close()\nprint('done')", max_files=10, timeout=10)
    assert r.outcome is Outcome.FILE_LIMIT, (r.outcome, r.error)
    assert "done" not in r.stdout
    assert "max_files" in (r.error or "")
    assert len(r.files) < 1000


def test_max_file_bytes(run):
    """max_file_bytes=1 MiB stops a 200 MiB writer long before it fills the disk (outcome file_limit)."""
    code = "f = open('big.bin', 'wb')\nfor _ in range(200):\n    f.write(b'x' * (1024 * 1024))\nprint('done')"
    r = run(code, max_file_bytes=MiB, timeout=20, max_returned_file_bytes=16)
    assert r.outcome is Outcome.FILE_LIMIT, (r.outcome, r.error)
    assert "done" not in r.stdout
    assert "max_file_bytes" in (r.error or "")
    assert r.files, "the partial file is reported"
    assert max(f.size for f in r.files) < 100 * MiB


def test_default_limits_are_safe():
    """With no limits given, runs get safe defaults: 30 s, 512 MiB, 1 MiB per output stream."""
    lim = Limits()
    assert lim == DEFAULT_LIMITS
    assert lim.timeout == 30.0
    assert lim.memory_limit == 512 * MiB
    assert lim.max_stdout == MiB and lim.max_stderr == MiB
    assert lim.max_file_bytes is not None and lim.max_files is not None


def test_execute_without_limits_uses_defaults(run):
    """execute(code) with no limits applies the default output cap (a 2 MiB print is capped at 1 MiB)."""
    r = run("import sys\nsys.stdout.write('z' * (2 * 1024 * 1024))")
    assert r.ok
    assert len(r.stdout_bytes) == MiB
    assert r.stdout_dropped == MiB


def test_none_turns_a_limit_off(run):
    """None turns one limit off: max_stdout=None keeps all 2 MiB of output."""
    r = run("import sys\nsys.stdout.write('z' * (2 * 1024 * 1024))", max_stdout=None)
    assert len(r.stdout_bytes) == 2 * MiB and r.stdout_dropped == 0


def test_fuel_measured_without_limit(run, runtime_name):
    """Without a fuel limit, the default runtime runs unmetered (fuel_consumed None); the others measure."""
    r = run("sum(range(1000))")
    assert r.ok
    if runtime_name == "default":
        assert r.fuel_consumed is None
    else:
        assert r.fuel_consumed is not None and r.fuel_consumed > 0


def test_execute_request_gets_default_limits():
    """A request built with no limit arguments carries exactly the default Limits."""
    from execr._request import make_request

    assert make_request("pass").limits == Limits()
    assert make_request("pass", timeout=None).limits.timeout is None
    assert make_request("pass", limits={"timeout": 2}).limits == Limits(timeout=2.0)


def test_empty_directories_count_against_max_files(run):
    """A guest cannot exhaust inodes with empty directories: they count against max_files."""
    r = run("import os\nfor i in range(1000):\n    os.mkdir(f'd{i}')", max_files=10)
    assert r.outcome == "file_limit"
    assert "max_files" in (r.error or "")


def test_file_cap_is_checked_when_a_short_run_ends(run):
    """A run that writes past max_file_bytes in one go and exits at once still ends in file_limit."""
    r = run("open('big', 'wb').write(b'x' * (3 * 1024 * 1024))", max_file_bytes=1024 * 1024)
    assert r.outcome == "file_limit"
    assert "max_file_bytes" in (r.error or "")
