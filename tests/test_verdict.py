"""Outcomes come from host evidence only (``_verdict``): guest text never decides."""

from __future__ import annotations

import pytest

from execr import Outcome
from execr._verdict import Evidence, Trap, verdict

MiB = 1 << 20


@pytest.mark.parametrize(
    "code",
    [
        "raise MemoryError('mine')",
        "import sys\nprint('MemoryError', file=sys.stderr)\nsys.exit(1)",
        "import sys\nprint('Fatal Python error: out of memory', file=sys.stderr)\nraise SystemExit(3)",
    ],
    ids=["raise", "print", "fatal-text"],
)
def test_guest_cannot_forge_memory_limit(run, code):
    """A guest that only says MemoryError failed: no memory.grow was refused, so no memory_limit."""
    r = run(code, memory_limit=None)
    assert r.outcome is Outcome.FAILED, (r.outcome, r.error)


def test_refused_grow_is_memory_limit(run, base_memory):
    """A real allocation past the limit is memory_limit, and the error counts the refused grows."""
    r = run("x = bytearray(1 << 30)", memory_limit=base_memory + 32 * MiB)
    assert r.outcome is Outcome.MEMORY_LIMIT
    assert "memory.grow call(s) refused" in (r.error or "")


def test_caught_memory_error_can_still_complete(run, base_memory):
    """A guest that survives a refused grow and exits 0 completed: the verdict follows the exit."""
    r = run(
        "try:\n    x = bytearray(1 << 30)\nexcept MemoryError:\n    print('coped')", memory_limit=base_memory + 32 * MiB
    )
    assert r.outcome is Outcome.COMPLETED and r.stdout == "coped\n"


def test_verdict_rules():
    """The decision table: file caps win, then the exit, then traps; refused grows turn failures into memory_limit."""
    file_stop = (Outcome.FILE_LIMIT, "max_files")
    assert verdict(Evidence(exit_status=0, stop=file_stop))[0] is Outcome.FILE_LIMIT
    assert verdict(Evidence(exit_status=0, stop=(Outcome.TIMED_OUT, "t")))[0] is Outcome.COMPLETED
    assert verdict(Evidence(exit_status=256 + 3))[:2] == (Outcome.FAILED, 3)
    assert verdict(Evidence(exit_status=1, grow_refused=2))[0] is Outcome.MEMORY_LIMIT
    assert verdict(Evidence(trap=Trap.UNREACHABLE, grow_refused=1))[0] is Outcome.MEMORY_LIMIT
    assert verdict(Evidence(trap=Trap.FUEL, grow_refused=1))[0] is Outcome.OUT_OF_FUEL
    assert verdict(Evidence(trap=Trap.STACK))[0] is Outcome.CRASHED
    assert verdict(Evidence())[0] is Outcome.CRASHED
    assert verdict(Evidence(exit_status=0), "unreadable")[0] is Outcome.FILE_LIMIT
    assert verdict(Evidence(trap=Trap.FUEL), "unreadable")[0] is Outcome.OUT_OF_FUEL
