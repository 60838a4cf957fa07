"""Host functions that replace WASI's: clocks, sleeps, exit, and the file calls (``_guestfs``)."""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable

import wasmtime as wt

from .. import _guestfs
from .._results import Outcome
from ._run import _current, _halt, _Run

EBADF, EDQUOT, EFAULT, EINTR, EINVAL, EIO = 8, 19, 21, 27, 28, 29  # WASI errnos

_CLOCKS: dict[int, Callable[[], int]] = {0: time.time_ns, 1: time.monotonic_ns}


def _clock_now(clock: int) -> int:
    fn = _CLOCKS.get(clock)
    if fn is not None:
        return fn()
    run = _current()  # process / thread CPU clocks: time since this run started
    start = run.started if run is not None else 0.0
    return int((time.monotonic() - start) * 1e9)


def _clock_time_get(caller: wt.Caller, clock: int, _precision: int, out: int) -> int:
    if clock not in (0, 1, 2, 3):
        return EINVAL
    mem = caller["memory"]
    assert isinstance(mem, wt.Memory)
    mem.write(caller, struct.pack("<Q", _clock_now(clock)), out)
    return 0


def _poll_oneoff(caller: wt.Caller, subs_ptr: int, events_ptr: int, nsubs: int, nevents_ptr: int) -> int:
    run = _current()
    try:
        return _poll(caller, run, subs_ptr, events_ptr, nsubs, nevents_ptr)
    except KeyboardInterrupt:
        if run is not None:
            run.interrupt()
        _halt(caller)
        return EINTR
    except BaseException:
        return EINVAL


def _poll(caller: wt.Caller, run: _Run | None, subs_ptr: int, events_ptr: int, nsubs: int, nevents_ptr: int) -> int:
    if nsubs <= 0 or nsubs > 4096:
        return EINVAL
    mem = caller["memory"]
    assert isinstance(mem, wt.Memory)
    size = mem.data_len(caller)
    subs_ptr, events_ptr, nevents_ptr = subs_ptr & 0xFFFFFFFF, events_ptr & 0xFFFFFFFF, nevents_ptr & 0xFFFFFFFF
    if subs_ptr + 48 * nsubs > size or events_ptr + 32 * nsubs > size or nevents_ptr + 4 > size:
        return EFAULT
    raw = bytes(mem.read(caller, subs_ptr, subs_ptr + 48 * nsubs))
    ready: list[bytes] = []
    clocks: list[tuple[float, bytes]] = []
    for i in range(nsubs):
        sub = raw[48 * i : 48 * (i + 1)]
        userdata, tag = sub[0:8], sub[8]
        if tag == 0:
            clock, timeout = struct.unpack_from("<IQ", sub, 16)[0], struct.unpack_from("<Q", sub, 24)[0]
            if struct.unpack_from("<H", sub, 40)[0] & 1:  # absolute time
                timeout = max(0, timeout - _clock_now(clock))
            clocks.append((timeout / 1e9, userdata + struct.pack("<HBx", 0, 0) + bytes(20)))
        elif tag in (1, 2):  # every guest descriptor is memory or a regular file: always ready
            ready.append(userdata + struct.pack("<HBx", 0, tag) + bytes(4) + struct.pack("<QH6x", 0, 0))
        else:
            return EINVAL
    if not ready and clocks:
        wait = min(t for t, _ in clocks)
        end = time.monotonic() + wait
        while True:
            now = time.monotonic()
            if run is not None and run.must_stop():
                _halt(caller)
                return EINTR
            if now >= end:
                break
            step = end - now
            if run is not None and run.deadline is not None:
                step = min(step, max(run.deadline - now, 0.0) + 0.001)
            step = min(step, 0.05)
            if run is not None and run.cancel is not None:
                run.cancel.wait(step)
            else:
                time.sleep(step)
        ready = [ev for t, ev in clocks if t <= wait]
    mem.write(caller, b"".join(ready), events_ptr)
    mem.write(caller, struct.pack("<I", len(ready)), nevents_ptr)
    return 0


def _proc_exit(caller: wt.Caller, status: int) -> None:
    """Record the exit status (any i32: wasmtime's own refuses 126 and up) and stop the guest."""
    run = _current()
    if run is not None:
        run.exit_status = status
        run.halted = True
    _halt(caller)  # wasi-libc follows proc_exit with ``unreachable``; the deadline catches anything else


def _files_call(method: str) -> Callable[..., int]:
    """A WASI file call served by the run's ``GuestFiles`` (see ``_guestfs``); never raises."""

    def call(caller: wt.Caller, *args: int) -> int:
        run = _current()
        if run is None or run.files is None:
            return EBADF
        try:
            mem = run.memory
            if mem is None:
                found = caller["memory"]
                assert isinstance(found, wt.Memory)
                run.memory = mem = found
            view = _guestfs.Memory(ctypes.cast(mem.data_ptr(caller), ctypes.c_void_p).value or 0, mem.data_len(caller))
            return _guestfs.call(run.files, method, view, args)
        except _guestfs.LimitHit as e:
            if run.stop is None:
                run.stop = (Outcome.FILE_LIMIT, e.reason)
            _halt(caller)
            return EDQUOT
        except KeyboardInterrupt:
            run.interrupt()
            _halt(caller)
            return EINTR
        except BaseException:
            return EIO

    return call


_I32, _I64 = wt.ValType.i32(), wt.ValType.i64()
_OVERRIDES: list[tuple[str, list[wt.ValType], list[wt.ValType], Callable[..., int | None]]] = [
    ("poll_oneoff", [_I32] * 4, [_I32], _poll_oneoff),
    ("clock_time_get", [_I32, _I64, _I32], [_I32], _clock_time_get),
    ("proc_exit", [_I32], [], _proc_exit),
    *(
        (name, [_I64 if t == _guestfs.I64 else _I32 for t in params], [_I32], _files_call(method))
        for name, params, method in _guestfs.FUNCTIONS
    ),
]


def _no_host_tools(*_args: int) -> int:
    """``host.call``: a reactor build's tool hook; execr offers no tools (-1: "no host")."""
    return -1
