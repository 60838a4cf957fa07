"""The sandbox's limits on tiny inline-WAT modules: fast and exact, no CPython involved.

Each module is a WASI command (``_start``) run by the real ``Host`` with execr's WASI layer,
so what is pinned here is the host's own enforcement: the epoch deadline, fuel, the memory
limiter (and the refused-grow counter), ``proc_exit``, and output capture.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import wasmtime as wt

from execr import Outcome, _guestfs, _sandbox
from execr._guestfs import Caps, GuestFiles
from execr._image import _wasm
from execr._limits import Limits
from execr._output import Capture
from execr._sandbox import _wasi

WASI = '(import "wasi_snapshot_preview1" "{name}" (func ${name} {sig}))'
EXIT = WASI.format(name="proc_exit", sig="(param i32)")
WRITE = WASI.format(name="fd_write", sig="(param i32 i32 i32 i32) (result i32)")


def _run(
    wat: str, spies: dict[str, Callable[..., int]] | None = None, **limits: object
) -> tuple[_sandbox.RawRun, bytes]:
    """Compile ``wat`` (instrumented like execr's binaries), run its ``_start``; (raw run, stdout).
    ``spies`` replace ``GuestFiles`` methods (each gets ``(memory, *args)``)."""
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
        for method, spy in (spies or {}).items():
            setattr(files, method, spy)
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


STATUSES = [(0, Outcome.COMPLETED), (7, Outcome.FAILED), (256 + 3, Outcome.FAILED), (-2, Outcome.FAILED)]


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


# -- the raw host functions (``_wasi``): arguments, results and stops as the guest sees them --

POLL = WASI.format(name="poll_oneoff", sig="(param i32 i32 i32 i32) (result i32)")
I32_VALUES = (-1, -(2**31), 2**31 - 1, 0x1234)
I64_VALUES = (-1, -(2**63), 2**63 - 1, -5)


def test_every_file_call_gets_its_arguments_signed_and_returns_its_errno():
    """Each WASI file call reaches its ``GuestFiles`` method with the guest's i32 and i64
    arguments as signed ints (extremes included: what wasmtime-py's trampoline gave), and the
    method's errno reaches the guest."""
    imports, body, expected = [], [], []
    for k, (name, params, method) in enumerate(_guestfs.FUNCTIONS):
        sig = f"(param {' '.join(params)}) (result i32)"
        imports.append(WASI.format(name=name, sig=sig).replace(f"${name}", f"$f{k}"))
        args = [(I64_VALUES if t == _guestfs.I64 else I32_VALUES)[(k + i) % 4] for i, t in enumerate(params)]
        consts = " ".join(f"({t}.const {v})" for t, v in zip(params, args, strict=True))
        body.append(f"(if (i32.ne (call $f{k} {consts}) (i32.const {40 + k})) (then unreachable))")
        expected.append((method, tuple(args), 40 + k))
    calls: list[tuple[str, tuple[int, ...], int]] = []

    def spy(method: str) -> Callable[..., int]:
        def serve(mem: _guestfs.Memory, *args: int) -> int:
            assert mem.size == 65536 and mem.base != 0
            calls.append((method, args, 40 + len(calls)))
            return 40 + len(calls) - 1

        return serve

    wat = f"""(module {" ".join(imports)} (memory (export "memory") 1)
      (func (export "_start") {" ".join(body)}))"""
    raw, _ = _run(wat, {method: spy(method) for _, _, method in _guestfs.FUNCTIONS})
    assert raw.outcome is Outcome.COMPLETED, raw
    assert calls == expected


def test_signed_seek_offset_from_the_guest_memory_view():
    """fd_seek's i64 offset arrives signed, and the call writes through the guest's real memory."""
    seek = WASI.format(name="fd_seek", sig="(param i32 i64 i32 i32) (result i32)")
    seen: list[int] = []

    def fd_seek(mem: _guestfs.Memory, fd: int, offset: int, whence: int, out: int) -> int:
        seen.append(offset)
        mem.u64(out, 1000 + offset)
        return 0

    wat = f"""(module {seek} {EXIT} (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $fd_seek (i32.const 3) (i64.const -7) (i32.const 2) (i32.const 64)))
        (call $proc_exit (i32.wrap_i64 (i64.load (i32.const 64))))))"""
    raw, _ = _run(wat, {"fd_seek": fd_seek})
    assert seen == [-7]
    assert raw.exit_code == 993 & 0xFF


def _errno_of_failing_call(error: BaseException, errnos: list[int], **limits: object) -> _sandbox.RawRun:
    """A guest whose first fd_write raises ``error`` in the host, then loops; the errno it got
    back is passed as the last argument of a second fd_write, recorded in ``errnos`` (the two
    calls are straight-line code: no epoch check between them, so a halted guest still makes it)."""

    def fd_write(_mem: _guestfs.Memory, fd: int, _iovs: int, _n: int, out: int) -> int:
        if fd == 1:
            raise error
        errnos.append(out)
        return 0

    wat = f"""(module {WRITE} (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 0)
          (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 8))))
        (loop br 0)))"""
    raw, _ = _run(wat, {"fd_write": fd_write}, **limits)
    return raw


def test_limit_hit_in_a_file_call_stops_the_run_with_file_limit():
    """A file cap passed inside a call: the guest gets EDQUOT and is halted (file_limit, long before its deadline)."""
    errnos: list[int] = []
    started = time.monotonic()
    raw = _errno_of_failing_call(_guestfs.LimitHit("max_files: 3 entries"), errnos, timeout=10)
    assert raw.outcome is Outcome.FILE_LIMIT, raw
    assert "max_files" in (raw.error or "")
    assert errnos == [19]  # EDQUOT
    assert time.monotonic() - started < 5


def test_ctrl_c_in_a_file_call_interrupts_the_run():
    """KeyboardInterrupt inside a file call: the guest gets EINTR and is halted, the host re-raises it."""
    errnos: list[int] = []
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _errno_of_failing_call(KeyboardInterrupt(), errnos, timeout=10)
    assert errnos == [27]  # EINTR
    assert time.monotonic() - started < 5


def test_host_failure_in_a_file_call_is_eio():
    """Any other exception inside a file call is EIO to the guest, which goes on (here, to its deadline)."""
    errnos: list[int] = []
    raw = _errno_of_failing_call(RuntimeError("host bug"), errnos, timeout=0.3)
    assert errnos == [29]  # EIO
    assert raw.outcome is Outcome.TIMED_OUT


def test_file_call_without_a_run_is_ebadf():
    """A file call outside any run (no files to serve it) answers EBADF without touching the caller."""
    import ctypes

    slots = (ctypes.c_uint64 * 2)(0xFFFF, 0)
    assert _wasi._files_raw("fd_close", (_guestfs.I32,))(None, 0, ctypes.addressof(slots), 1) == 0
    assert slots[0] & 0xFFFFFFFF == 8  # EBADF


def _poll_wat(nsubs: int, timeout_ns: int, events: int = 64) -> str:
    """A guest that polls one relative monotonic clock subscription (at 0) and exits with the
    errno, or with 100 + the number of events when the call succeeded."""
    return f"""(module {POLL} {EXIT} (memory (export "memory") 1)
      (func (export "_start") (local $rc i32)
        (i64.store (i32.const 0) (i64.const 7))
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const {timeout_ns}))
        (local.set $rc (call $poll_oneoff (i32.const 0) (i32.const {events}) (i32.const {nsubs}) (i32.const 128)))
        (if (i32.eqz (local.get $rc)) (then (local.set $rc (i32.add (i32.const 100) (i32.load (i32.const 128))))))
        (call $proc_exit (local.get $rc))))"""


def test_poll_oneoff_waits_on_a_clock_and_checks_its_arguments():
    """poll_oneoff sleeps for a clock subscription and reports one event; a negative count is
    EINVAL, events past memory (a negative pointer) EFAULT."""
    started = time.monotonic()
    raw, _ = _run(_poll_wat(1, 50_000_000))
    assert raw.exit_code == 101
    assert time.monotonic() - started >= 0.05
    assert _run(_poll_wat(-1, 0))[0].exit_code == 28  # EINVAL
    assert _run(_poll_wat(1, 0, events=-16))[0].exit_code == 21  # EFAULT


def test_poll_oneoff_is_cut_short_by_the_deadline():
    """A 10 s clock wait ends at the run's deadline: timed_out, promptly."""
    started = time.monotonic()
    wat = _poll_wat(1, 10_000_000_000).replace("(call $proc_exit (local.get $rc))", "(loop br 0)")
    raw, _ = _run(wat, timeout=0.2)
    assert raw.outcome is Outcome.TIMED_OUT
    assert time.monotonic() - started < 2
