"""Engine: the one seam to wasmtime.

Only this module imports ``wasmtime``. It owns the process-wide Engine (fuel metering and
epoch interruption on), compiles and caches modules, runs one guest per fresh Store,
enforces the limits (fuel, memory, wall clock, watch callbacks), and translates every
trap, exit and wasmtime error into execr's vocabulary (``Outcome``, exit code, message).

Snapshot runs recycle instances: after a run, the instance's memory is put back to its
image (``_pagemap``: only the pages the run wrote are touched), its stack pointer is reset
and its WASI context replaced, so the next run starts exactly as a fresh instance would,
without the page faults of a new copy-on-write mapping. An instance whose memory grew, or
any failure to reset, retires it instead. ``EXECR_RECYCLE=0`` turns recycling off.

The wall clock is enforced twice: an epoch ticker thread wakes a per-store callback that
stops wasm code, and execr's own ``poll_oneoff`` (sleep, select) waits at most until the
deadline, so blocking calls are cut short too. ``clock_time_get`` is execr's as well, so
absolute sleeps use the same clock. Creating symlinks and hard links is refused.
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import importlib.metadata
import os
import queue
import signal
import struct
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import wasmtime as wt
from wasmtime import _bindings as ffi

from . import _cache, _pagemap
from ._exceptions import RuntimeUnavailable
from ._limits import Limits
from ._mounts import Preopen
from ._output import Capture, FileCapture
from ._results import Outcome

__all__ = ["WASMTIME_VERSION", "BootImage", "Compiled", "EntryPoint", "Host", "Launch", "RawRun", "host"]

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
ENGINE_CONFIG = "fuel+epoch;v1"
TICK = 0.005  # epoch tick (seconds): the granularity of wall-clock stops
WATCH_EVERY = 0.02  # how often a run's watch callback (file caps) is polled
UNLIMITED_FUEL = 1 << 62
KEEP_RESIDENT = 4 << 20  # private bytes a recycled instance keeps between runs (past that, all are dropped)
MAX_IDLE = max(2, min(8, os.cpu_count() or 2))  # recycled instances kept per module
EPERM, EINVAL, EFAULT = 63, 28, 21

_local = threading.local()


@dataclasses.dataclass
class _Run:
    """Per-run host state, reachable from host functions on the running thread."""

    deadline: float | None
    watch: Callable[[], str | None] | None
    cancel: threading.Event | None
    started: float = dataclasses.field(default_factory=time.monotonic)
    stop: tuple[Outcome, str] | None = None
    next_watch: float = 0.0
    exit_status: int | None = None
    outputs: tuple[tuple[str, FileCapture], ...] = ()

    def check(self) -> tuple[Outcome, str] | None:
        """Decide whether the run must stop now (and remember why)."""
        if self.stop is None:
            now = time.monotonic()
            if self.cancel is not None and self.cancel.is_set():
                self.stop = (Outcome.CANCELLED, "the run was cancelled by the host")
            elif self.deadline is not None and now >= self.deadline:
                self.stop = (Outcome.TIMED_OUT, "wall-clock limit reached")
            elif now >= self.next_watch:
                self.next_watch = now + WATCH_EVERY
                reasons = [out.poll(name) for name, out in self.outputs]
                reasons.append(self.watch() if self.watch is not None else None)
                reason = next((r for r in reasons if r is not None), None)
                if reason is not None:
                    self.stop = (Outcome.FILE_LIMIT, reason)
        return self.stop


def _current() -> _Run | None:
    return getattr(_local, "run", None)


# --- epoch ticker and per-store deadline callback ------------------------------------

_CallbackType = ffi._wasmtime_store_epoch_deadline_callback.argtypes[1]
_FinalizerType = ffi._wasmtime_store_epoch_deadline_callback.argtypes[3]


def _on_epoch(
    _ctx: object, _data: object, delta: ctypes._Pointer[ctypes.c_uint64], kind: ctypes._Pointer[ctypes.c_uint8]
) -> int:
    try:
        run = _current()
        stop = run.check() if run is not None else None
        if stop is not None:
            err = ffi.wasmtime_error_new(ctypes.c_char_p(f"execr: {stop[1]}".encode()))
            return ctypes.cast(err, ctypes.c_void_p).value or 0
        delta[0] = 1
        kind[0] = 0  # continue
        return 0
    except BaseException:  # never let an exception cross the FFI boundary
        delta[0] = 1
        return 0


_ON_EPOCH = _CallbackType(_on_epoch)
_NO_FINALIZER = _FinalizerType(lambda _data: None)


class _Ticker(threading.Thread):
    """Advances the engine's epoch every ``TICK`` while at least one run is active."""

    def __init__(self, engine: wt.Engine) -> None:
        super().__init__(name="execr-epoch", daemon=True)
        self._engine = engine
        self._active = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        with self._cond:
            self._active += 1
            self._cond.notify()

    def leave(self) -> None:
        with self._cond:
            self._active -= 1

    def run(self) -> None:
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            time.sleep(TICK)
            self._engine.increment_epoch()


class _Reaper:
    """Frees finished stores on a background thread, so a run's result returns sooner.

    Freeing an instance's memory takes ~0.3 ms; nothing reads a store after its run.
    Stores are still released deterministically: the queue is drained at exit, in
    the main thread if need be, before wasmtime's own threads wind down.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[wt.Store | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        atexit.register(self.drain)

    def close(self, store: wt.Store) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="execr-reaper", daemon=True)
                self._thread.start()
        self._queue.put(store)

    def _loop(self) -> None:
        while (store := self._queue.get()) is not None:
            store.close()

    def drain(self) -> None:
        """Close every pending store now (called at exit)."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=5)
        while True:
            try:
                store = self._queue.get_nowait()
            except queue.Empty:
                return
            if store is not None:
                store.close()


_reaper = _Reaper()


# --- trap signal handlers --------------------------------------------------------------


class _TrapHandlers:
    """Keeps wasmtime's trap handlers (SIGSEGV, SIGILL, SIGFPE, SIGBUS) installed.

    wasmtime turns a guest's out-of-bounds access or ``unreachable`` into a trap through
    these signals, and installs its handlers when the Engine is created. Anything that
    installs its own later (``faulthandler.enable()``, ``ray.init()``) would make the next
    guest trap kill the host process instead. Before each run the handlers are checked
    and, if replaced, put back (a few microseconds; no-op where ``sigaction`` is missing).
    """

    _SIGNALS = tuple(getattr(signal, n) for n in ("SIGSEGV", "SIGILL", "SIGFPE", "SIGBUS") if hasattr(signal, n))
    _SIZE = 512  # bytes, more than any libc's struct sigaction

    def __init__(self) -> None:
        self._saved: list[tuple[int, ctypes.Array[ctypes.c_char], int | None]] = []
        try:
            self._sigaction = ctypes.CDLL(None, use_errno=True).sigaction
        except (OSError, AttributeError):
            return
        self._sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        for sig in self._SIGNALS:
            buf = ctypes.create_string_buffer(self._SIZE)
            if self._sigaction(sig, None, buf) == 0:
                self._saved.append((sig, buf, ctypes.c_void_p.from_buffer(buf).value))

    def ensure(self) -> None:
        """Reinstall any of wasmtime's handlers that something else replaced."""
        if not self._saved:
            return
        now = ctypes.create_string_buffer(self._SIZE)
        for sig, saved, handler in self._saved:
            if self._sigaction(sig, None, now) == 0 and ctypes.c_void_p.from_buffer(now).value != handler:
                self._sigaction(sig, saved, None)


# --- host functions that replace WASI's ------------------------------------------------

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
    if nsubs <= 0:
        return EINVAL
    mem = caller["memory"]
    assert isinstance(mem, wt.Memory)
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
        elif tag in (1, 2):  # files are always ready
            ready.append(userdata + struct.pack("<HBx", 0, tag) + bytes(4) + struct.pack("<QH6x", 0, 0))
        else:
            return EINVAL
    if not ready and clocks:
        wait = min(t for t, _ in clocks)
        run = _current()
        end = time.monotonic() + wait
        while True:
            now = time.monotonic()
            if run is not None and run.check() is not None:
                raise wt.Trap(f"execr: {run.stop[1] if run.stop else 'stopped'}")
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


def _refuse(caller: wt.Caller, *_args: int) -> int:
    return EPERM


def _proc_exit(caller: wt.Caller, status: int) -> None:
    """Record the exit status (any i32: wasmtime's own refuses 126 and up) and unwind."""
    run = _current()
    if run is not None:
        run.exit_status = status
    raise wt.Trap("execr: proc_exit")


_I32, _I64 = wt.ValType.i32(), wt.ValType.i64()
_OVERRIDES: list[tuple[str, list[wt.ValType], list[wt.ValType], Callable[..., int | None]]] = [
    ("poll_oneoff", [_I32] * 4, [_I32], _poll_oneoff),
    ("clock_time_get", [_I32, _I64, _I32], [_I32], _clock_time_get),
    ("path_symlink", [_I32] * 5, [_I32], _refuse),
    ("path_link", [_I32] * 7, [_I32], _refuse),
    ("proc_exit", [_I32], [], _proc_exit),
]


def _no_host_tools(*_args: int) -> int:
    """``host.call``: a reactor build's tool hook; execr offers no tools (-1: "no host")."""
    return -1


# --- compiled modules, launches and results --------------------------------------------


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """How to call the Python entry function inside a snapshot instance."""

    table_index: int
    args: tuple[int, int, int]
    mailbox: int
    magic: int
    patches: tuple[tuple[int, bytes], ...] = ()
    #: A reactor's entry: source run by ``turn`` (written to ``host_alloc`` memory) instead of a table call.
    turn: bytes = b""


@dataclasses.dataclass
class Launch:
    """Everything one guest run needs from the host."""

    preopens: Sequence[Preopen]
    stdin: str | None  # a host file, or None for an empty stdin
    stdout: Capture | FileCapture
    stderr: Capture | FileCapture
    limits: Limits
    argv: Sequence[str] = ("python",)
    start: Sequence[str] = ("_start",)  # the exports a plain run (or a reactor boot) calls, in order
    env: Sequence[tuple[str, str]] = ()
    entry: EntryPoint | None = None
    more: Sequence[EntryPoint] = ()  # further requests for the same instance, in turn
    watch: Callable[[], str | None] | None = None
    cancel: threading.Event | None = None


@dataclasses.dataclass(frozen=True)
class RawRun:
    """What the engine observed: the outcome and the numbers, before outputs are attached."""

    outcome: Outcome
    exit_code: int | None
    error: str | None
    fuel_consumed: int
    memory: int
    data_len: int
    statuses: tuple[int | None, ...] = ()


@dataclasses.dataclass(frozen=True)
class BootImage:
    """Linear memory and stack pointer captured when the bootstrap aborted."""

    memory: bytes
    stack_pointer: int
    stdout: bytes
    stderr: bytes


class _Warm:
    """An instance kept between runs, with what it takes to put it back to its initial state."""

    __slots__ = ("exports", "length", "mem", "restorer", "sp", "sp0", "store")

    def __init__(self, store: wt.Store, exports: Any, mem: wt.Memory) -> None:
        sp = exports["__execr_sp"]
        assert isinstance(sp, wt.Global)
        self.store, self.exports, self.mem, self.sp = store, exports, mem, sp
        self.sp0 = sp.value(store)
        self.length = mem.data_len(store)
        base = ctypes.cast(mem.data_ptr(store), ctypes.c_void_p).value or 0
        self.restorer = _pagemap.Restorer(base, self.length, KEEP_RESIDENT)

    def reset(self) -> bool:
        """Put memory, stack pointer and WASI state back as they were at instantiation (False: retire it)."""
        try:
            if self.mem.data_len(self.store) != self.length:
                return False  # memory grew: wasm cannot shrink it
            self.restorer.reset()
            if self.sp.value(self.store) != self.sp0:  # a run that returned has already put it back
                self.sp.set_value(self.store, self.sp0)
            self.store.set_wasi(wt.WasiConfig())  # release the run's files and directories now
            return True
        except Exception:  # any doubt: retire the instance, never hand it on
            return False

    def retire(self) -> None:
        self.restorer.close()
        _reaper.close(self.store)


def _warm(store: wt.Store, exports: Any, mem: wt.Memory) -> _Warm | None:
    try:
        return _Warm(store, exports, mem)
    except (KeyError, ValueError, OSError):
        return None


class Compiled:
    """A compiled module ready to instantiate (its InstancePre is linked once).

    ``recycle``: runs through an ``EntryPoint`` may reuse instances (set for snapshots whose
    only mutable state is linear memory, the stack pointer and WASI; see ``_Warm``).
    """

    def __init__(self, host: Host, module: wt.Module) -> None:
        self.module = module
        self.pre = host._linker.instantiate_pre(module)
        mem = next(e.type for e in module.exports if e.name == "memory")
        assert isinstance(mem, wt.MemoryType)
        self.min_bytes = mem.limits.min * 65536
        self.recycle = False
        self._idle: list[_Warm] = []
        self._released = False
        self._lock = threading.Lock()
        _compiled.add(self)

    def checkout(self) -> _Warm | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def checkin(self, warm: _Warm) -> None:
        """Keep ``warm`` for the next run if it resets cleanly and there is room; else retire it."""
        if warm.reset():
            with self._lock:
                if len(self._idle) < MAX_IDLE and not self._released:
                    self._idle.append(warm)
                    return
        warm.retire()

    def release(self) -> None:
        """Retire the kept instances and keep none from now on (idempotent)."""
        with self._lock:
            idle, self._idle, self._released = self._idle, [], True
        for warm in idle:
            warm.retire()


_compiled: weakref.WeakSet[Compiled] = weakref.WeakSet()


def _release_all() -> None:
    for compiled in list(_compiled):
        compiled.release()


atexit.register(_release_all)  # runs before the reaper's drain (atexit is last-in, first-out)


def recycling() -> bool:
    """Whether snapshot runs reuse instances here (``EXECR_RECYCLE`` is not 0 and the kernel can)."""
    return os.environ.get("EXECR_RECYCLE", "1") != "0" and _pagemap.available()


class Host:
    """The process-wide wasmtime Engine, Linker and epoch ticker (thread-safe)."""

    def __init__(self) -> None:
        cfg = wt.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        self._engine = wt.Engine(cfg)
        self._traps = _TrapHandlers()  # the Engine has just installed them
        self._linker = wt.Linker(self._engine)
        self._linker.define_wasi()
        self._linker.allow_shadowing = True
        for name, params, results, fn in _OVERRIDES:
            self._linker.define_func(
                "wasi_snapshot_preview1", name, wt.FuncType(params, results), fn, access_caller=True
            )
        self._linker.define_func("host", "call", wt.FuncType([_I32] * 4, [_I32]), _no_host_tools)
        self._lock = threading.Lock()
        self._ticker: _Ticker | None = None

    # -- modules --

    def validate(self, wasm: bytes) -> None:
        """Raise ``RuntimeUnavailable`` unless ``wasm`` is a valid module for this engine."""
        try:
            wt.Module.validate(self._engine, wasm)
        except wt.WasmtimeError as e:
            raise RuntimeUnavailable(f"invalid WebAssembly module: {e}") from e

    def load_cached(self, cache: Path) -> Compiled | None:
        """The module serialized at ``cache``, or ``None`` if absent, corrupt or stale."""
        data = _cache.read_verified(cache)
        if data is None:
            return None
        try:
            return Compiled(self, wt.Module.deserialize(self._engine, data))
        except wt.WasmtimeError:
            return None

    def compile(self, wasm: bytes, cache: Path | None) -> Compiled:
        """Compile ``wasm`` and, with ``cache``, serialize it there atomically."""
        try:
            module = wt.Module(self._engine, wasm)
        except wt.WasmtimeError as e:
            raise RuntimeUnavailable(f"cannot compile the runtime: {e}") from e
        if cache is not None:
            _cache.write_verified(cache, bytes(module.serialize()))
        return Compiled(self, module)

    # -- running --

    def _ensure_ticker(self) -> _Ticker:
        with self._lock:
            if self._ticker is None or not self._ticker.is_alive():
                self._ticker = _Ticker(self._engine)
                self._ticker.start()
            return self._ticker

    def _store(self, launch: Launch) -> tuple[wt.Store, int]:
        store = wt.Store(self._engine)
        fuel = self._configure(store, launch)
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _ON_EPOCH, None, _NO_FINALIZER)
        return store, fuel

    @staticmethod
    def _configure(store: wt.Store, launch: Launch) -> int:
        """Give ``store`` the run's WASI context, fuel, memory limit and epoch deadline; return the fuel."""
        wasi = wt.WasiConfig()
        wasi.argv = list(launch.argv)
        wasi.env = [list(kv) for kv in launch.env]
        if launch.stdin is not None:
            wasi.stdin_file = launch.stdin
        if isinstance(launch.stdout, FileCapture):
            wasi.stdout_file = launch.stdout.path
        else:
            wasi.stdout_custom = launch.stdout.write
        if isinstance(launch.stderr, FileCapture):
            wasi.stderr_file = launch.stderr.path
        else:
            wasi.stderr_custom = launch.stderr.write
        for p in launch.preopens:
            wasi.preopen_dir(p.host, p.guest, p.writable)
        store.set_wasi(wasi)
        fuel = launch.limits.fuel if launch.limits.fuel is not None else UNLIMITED_FUEL
        store.set_fuel(fuel)
        limit = launch.limits.memory_limit
        store.set_limits(memory_size=-1 if limit is None else limit)
        store.set_epoch_deadline(1)
        return fuel

    def run(self, compiled: Compiled, launch: Launch) -> RawRun:
        """Run one guest in a fresh (or recycled) instance; never raises for guest behaviour."""
        self._traps.ensure()
        ticker = self._ensure_ticker()
        deadline = None if launch.limits.timeout is None else time.monotonic() + launch.limits.timeout
        outputs = tuple(
            (n, o) for n, o in (("stdout", launch.stdout), ("stderr", launch.stderr)) if isinstance(o, FileCapture)
        )
        state = _Run(deadline=deadline, watch=launch.watch, cancel=launch.cancel, outputs=outputs)
        recycle = launch.entry is not None and compiled.recycle and recycling()
        warm = compiled.checkout() if recycle else None
        if warm is not None:
            store, fuel = warm.store, self._configure(warm.store, launch)
        else:
            store, fuel = self._store(launch)
        exit_code: int | None = None
        error: str | None = None
        outcome = Outcome.COMPLETED
        memory = data_len = 0
        statuses: list[int | None] = []
        _local.run = state
        ticker.enter()
        try:
            limit = launch.limits.memory_limit
            if limit is not None and compiled.min_bytes > limit:
                raise _Early(
                    Outcome.MEMORY_LIMIT,
                    f"memory_limit {limit} is below the runtime's initial memory of {compiled.min_bytes} bytes",
                )
            if warm is not None:
                exports, mem = warm.exports, warm.mem
            else:
                instance = compiled.pre.instantiate(store)
                exports = instance.exports(store)
                fresh = exports["memory"]
                assert isinstance(fresh, wt.Memory)
                mem = fresh
                if recycle:
                    warm = _warm(store, exports, mem)  # before the guest writes anything
            try:
                if launch.entry is None:
                    exit_code = self._start(store, exports, launch.start)
                else:
                    exit_code = self._enter(store, exports, mem, launch.entry)
                    for entry in launch.more:
                        statuses.append(exit_code)
                        exit_code = self._enter(store, exports, mem, entry)
            except wt.ExitTrap as e:
                exit_code = e.code
            except (wt.Trap, wt.WasmtimeError) as e:
                outcome, exit_code, error = _classify(e, state)
            finally:
                memory, data_len = mem.size(store), mem.data_len(store)
            if error is None and exit_code is None:
                outcome, error = Outcome.CRASHED, "the entry function did not report an exit status"
            elif error is None:
                outcome = Outcome.COMPLETED if exit_code == 0 else Outcome.FAILED
        except _Early as e:
            outcome, error = e.outcome, e.message
        except (wt.Trap, wt.WasmtimeError) as e:
            outcome, exit_code, error = _classify(e, state)
            if "memory" in str(e) and launch.limits.memory_limit is not None:
                outcome = Outcome.MEMORY_LIMIT
        finally:
            ticker.leave()
            _local.run = None
            consumed = fuel - store.get_fuel()
            if warm is not None:
                compiled.checkin(warm)
            else:
                _reaper.close(store)
        return RawRun(outcome, exit_code, error, consumed, memory, data_len, (*statuses, exit_code))

    @staticmethod
    def _start(store: wt.Store, exports: Any, names: Sequence[str]) -> int:
        """Call ``names`` in order; the exit status is the last one's i32 result (0 without one)."""
        result: object = None
        for name in names:
            func = exports[name]
            assert isinstance(func, wt.Func)
            result = func(store)
        return result & 0xFF if isinstance(result, int) else 0

    @staticmethod
    def _turn(store: wt.Store, exports: Any, mem: wt.Memory, source: bytes) -> int:
        """Run ``source`` in a reactor's ``turn`` (0 ok, 1 uncaught exception, n: ``sys.exit(n)``)."""
        alloc, turn = exports["host_alloc"], exports["turn"]
        assert isinstance(alloc, wt.Func) and isinstance(turn, wt.Func)
        ptr = alloc(store, len(source))
        assert isinstance(ptr, int)
        if ptr == 0:
            raise wt.Trap("execr: host_alloc failed: out of guest memory")
        mem.write(store, source, ptr)
        status = turn(store, ptr, len(source))
        assert isinstance(status, int)
        return status

    @classmethod
    def _enter(cls, store: wt.Store, exports: Any, mem: wt.Memory, entry: EntryPoint) -> int | None:
        for addr, data in entry.patches:
            mem.write(store, data, addr)
        if entry.turn:
            cls._turn(store, exports, mem, entry.turn)
        else:
            table = exports["__execr_table"]
            assert isinstance(table, wt.Table)
            func = table.get(store, entry.table_index)
            assert isinstance(func, wt.Func)
            func(store, *entry.args)
        magic, status = struct.unpack("<Ii", bytes(mem.read(store, entry.mailbox, entry.mailbox + 8)))
        return status & 0xFF if magic == entry.magic else None

    def boot(self, compiled: Compiled, launch: Launch, turns: Sequence[bytes] = ()) -> BootImage:
        """Run ``_start`` until the bootstrap aborts; capture memory and the stack pointer.

        With ``turns`` (a reactor): call ``launch.start``, run each source in a ``turn`` (each
        must succeed), and capture between turns, where the stack pointer is back at its start.
        """
        self._traps.ensure()
        store, _fuel = self._store(launch)
        try:
            instance = compiled.pre.instantiate(store)
            exports = instance.exports(store)
            if turns:
                return self._boot_reactor(store, exports, launch, turns)
            start = exports["_start"]
            assert isinstance(start, wt.Func)
            try:
                start(store)
            except wt.Trap as e:
                if e.trap_code is not wt.TrapCode.UNREACHABLE:
                    raise RuntimeUnavailable(f"snapshot bootstrap trapped: {e.message.splitlines()[0]}") from e
            except wt.ExitTrap as e:
                raise RuntimeUnavailable(
                    f"snapshot bootstrap exited with {e.code}: {launch.stderr.value()[0][-2000:]!r}"
                ) from e
            else:
                raise RuntimeUnavailable("snapshot bootstrap returned instead of aborting")
            mem, sp = exports["memory"], exports["__execr_sp"]
            assert isinstance(mem, wt.Memory) and isinstance(sp, wt.Global)
            image = bytes(mem.read(store, 0, mem.data_len(store)))
            sp_value = sp.value(store)
            assert isinstance(sp_value, int)
            return BootImage(image, sp_value, launch.stdout.value()[0], launch.stderr.value()[0])
        finally:
            store.close()

    def _boot_reactor(self, store: wt.Store, exports: Any, launch: Launch, turns: Sequence[bytes]) -> BootImage:
        mem, sp = exports["memory"], exports["__execr_sp"]
        assert isinstance(mem, wt.Memory) and isinstance(sp, wt.Global)
        initial = sp.value(store)
        try:
            for name in launch.start:
                func = exports[name]
                assert isinstance(func, wt.Func)
                func(store)
            for source in turns:
                status = self._turn(store, exports, mem, source)
                if status != 0:
                    raise RuntimeUnavailable(
                        f"snapshot bootstrap failed (status {status}): {launch.stderr.value()[0][-2000:]!r}"
                    )
        except (wt.Trap, wt.ExitTrap, wt.WasmtimeError) as e:
            raise RuntimeUnavailable(
                f"snapshot bootstrap trapped: {str(e).splitlines()[0]}; {launch.stderr.value()[0][-2000:]!r}"
            ) from e
        sp_value = sp.value(store)
        if sp_value != initial:
            raise RuntimeUnavailable(f"snapshot: stack pointer {sp_value:#x} is not back at {initial!r} between turns")
        assert isinstance(sp_value, int)
        image = bytes(mem.read(store, 0, mem.data_len(store)))
        return BootImage(image, sp_value, launch.stdout.value()[0], launch.stderr.value()[0])


class _Early(Exception):
    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome, self.message = outcome, message


def _classify(e: Exception, state: _Run) -> tuple[Outcome, int | None, str | None]:
    """Translate a wasmtime trap or error into (outcome, exit code, message)."""
    if state.exit_status is not None:
        status = state.exit_status & 0xFF  # as a POSIX parent sees it
        return (Outcome.COMPLETED if status == 0 else Outcome.FAILED), status, None
    if state.stop is not None:
        return state.stop[0], None, state.stop[1]
    message = (e.message if isinstance(e, wt.Trap) else str(e)).strip()
    first = message.splitlines()[0] if message else type(e).__name__
    code = e.trap_code if isinstance(e, wt.Trap) else None
    if code is wt.TrapCode.OUT_OF_FUEL or "all fuel consumed" in message:
        return Outcome.OUT_OF_FUEL, None, "fuel limit reached"
    if code is wt.TrapCode.INTERRUPT or "epoch deadline" in message:
        return Outcome.TIMED_OUT, None, "wall-clock limit reached"
    if code is wt.TrapCode.STACK_OVERFLOW:
        return Outcome.CRASHED, None, "wasm stack overflow"
    if code is wt.TrapCode.UNREACHABLE:
        return Outcome.CRASHED, None, "the interpreter aborted (wasm 'unreachable' trap)"
    return Outcome.CRASHED, None, first


_host: Host | None = None
_host_lock = threading.Lock()


def host() -> Host:
    """The process-wide ``Host`` (created on first use)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = Host()
        return _host
