"""The sandbox's limits on tiny inline-WAT modules: fast and exact, no CPython involved.

Each module is a WASI command (``_start``) run by the real ``Host`` with execr's WASI layer,
so what is pinned here is the host's own enforcement: the epoch deadline, fuel, the memory
limiter (and the refused-grow counter), ``proc_exit``, and output capture.
"""

from __future__ import annotations

import time

import pytest
import wasmtime as wt

from execr import Outcome, _sandbox
from execr._guestfs import Caps, GuestFiles
from execr._image import _wasm
from execr._limits import Limits
from execr._output import Capture

WASI = '(import "wasi_snapshot_preview1" "{name}" (func ${name} {sig}))'
EXIT = WASI.format(name="proc_exit", sig="(param i32)")
WRITE = WASI.format(name="fd_write", sig="(param i32 i32 i32 i32) (result i32)")


def _run(wat: str, **limits: object) -> tuple[_sandbox.RawRun, bytes]:
    """Compile ``wat`` (instrumented like execr's binaries), run its ``_start``; (raw run, stdout)."""
    host = _sandbox.host()
    # the stack pointer and table that execr's instrumentation exports, as in a real binary
    wat = wat.replace(
        '(memory (export "memory") 1)',
        '(memory (export "memory") 1) (global (mut i32) (i32.const 9)) (table 1 funcref)',
        1,
    )
    compiled = host.compile(_wasm.instrument(wt.wat2wasm(wat)))
    stdout, stderr = Capture(None), Capture(None)
    lim = Limits(**{"timeout": 5.0, "memory_limit": None, **limits})  # type: ignore[arg-type]
    with GuestFiles([], stdin=b"", stdout=stdout, stderr=stderr, caps=Caps()) as files:
        launch = _sandbox.Launch(files=files, stdout=stdout, stderr=stderr, limits=lim)
        raw = host.run(compiled, launch)
    return raw, stdout.value()[0]


def test_busy_loop_is_stopped_by_the_deadline():
    """``(loop br 0)`` never calls the host: the epoch deadline alone stops it (timed_out)."""
    started = time.monotonic()
    raw, _ = _run('(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))', timeout=0.2)
    assert raw.outcome is Outcome.TIMED_OUT
    assert time.monotonic() - started < 2


def test_fuel_stops_a_loop_exactly():
    """A fuel budget stops the loop with out_of_fuel, having consumed exactly the budget."""
    raw, _ = _run('(module (memory (export "memory") 1) (func (export "_start") (loop br 0)))', fuel=10_000)
    assert raw.outcome is Outcome.OUT_OF_FUEL
    assert raw.fuel_consumed == 10_000


def test_refused_grow_is_host_evidence():
    """A memory.grow the limiter refuses is counted outside linear memory; the failure that follows is memory_limit."""
    wat = """(module (memory (export "memory") 1)
      (func (export "_start")
        (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"""
    raw, _ = _run(wat, memory_limit=4 * 65536)
    assert raw.outcome is Outcome.MEMORY_LIMIT
    assert raw.evidence.grow_refused == 1
    ok, _ = _run(wat, memory_limit=None)
    assert ok.outcome is Outcome.COMPLETED and ok.evidence.grow_refused == 0


def test_unreachable_without_evidence_is_a_crash():
    """The same trap with no refused grow is a crash, named as such."""
    raw, _ = _run('(module (memory (export "memory") 1) (func (export "_start") unreachable))')
    assert raw.outcome is Outcome.CRASHED and "unreachable" in (raw.error or "")


STATUSES = [(0, Outcome.COMPLETED), (7, Outcome.FAILED), (256 + 3, Outcome.FAILED)]


@pytest.mark.parametrize(("status", "outcome"), STATUSES)
def test_proc_exit_status_and_stop(status, outcome):
    """proc_exit records the status (masked like POSIX) and the guest runs no further, whatever follows it."""
    wat = f"""(module {EXIT} (memory (export "memory") 1)
      (func (export "_start") (call $proc_exit (i32.const {status})) (loop br 0)))"""
    raw, _ = _run(wat, timeout=5)
    assert raw.outcome is outcome
    assert raw.exit_code == status & 0xFF


def test_fd_write_reaches_the_capture():
    """A guest's fd_write on fd 1 lands in the run's stdout capture, through execr's WASI layer."""
    wat = f"""(module {WRITE} (memory (export "memory") 1)
      (data (i32.const 16) "hello\\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 6))
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    raw, out = _run(wat)
    assert raw.outcome is Outcome.COMPLETED
    assert out == b"hello\n"


def test_fd_write_out_of_bounds_is_efault_not_a_host_error():
    """An iovec pointing past linear memory gets EFAULT (21) back; the host is not disturbed."""
    wat = f"""(module {WRITE} {EXIT} (memory (export "memory") 1)
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 65530)) (i32.store (i32.const 4) (i32.const 100))
        (call $proc_exit (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""
    raw, out = _run(wat)
    assert raw.exit_code == 21 and out == b""
