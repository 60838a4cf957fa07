"""Host: the process-wide Engine and Linker; compiling, running and booting guests."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any

import wasmtime as wt
from wasmtime import _bindings as ffi

from .. import _guestfs
from .._exceptions import RuntimeUnavailable
from .._exports import GROW_FAILURES_EXPORT
from .._limits import Limits
from .._output import Capture
from .._process import Phase, at_exit
from .._results import Outcome
from .._tools import ToolRun
from .._verdict import Evidence, Trap, verdict
from . import _stack
from ._boot import BootImage, boot
from ._call import Raw, global_i32, memory_span
from ._consts import MAX_WASM_STACK, UNLIMITED_FUEL, engine_config
from ._entry import enter, start
from ._entry import value as read_value
from ._live import Live
from ._recycle import Compiled, _warm, recycling
from ._run import _NO_FINALIZER, _ON_EPOCH, _catch_sigint, _local, _Run, restore_sigint
from ._signals import _TrapHandlers
from ._threads import _reaper, _Ticker
from ._wasi import define_raw


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """How to call the Python entry function inside a snapshot instance."""

    table_index: int
    args: tuple[int, int, int]
    mailbox: int  # the mailbox's address (its layout and magic: ``_mailbox``)
    patches: tuple[tuple[int, bytes], ...] = ()
    #: A reactor's entry: source run by ``turn`` (written to ``host_alloc`` memory) instead of a table call.
    turn: bytes = b""

    def patched(self, patches: tuple[tuple[int, bytes], ...]) -> EntryPoint:
        """This entry with ``patches`` (``dataclasses.replace`` costs more than the run's other steps)."""
        return EntryPoint(self.table_index, self.args, self.mailbox, patches, self.turn)


@dataclasses.dataclass
class Launch:
    """Everything one guest run needs from the host."""

    files: _guestfs.GuestFiles  # the guest's descriptors: stdio, preopens, everything it opens
    stdout: Capture  # the sinks behind fds 1 and 2 (also given to ``files``)
    stderr: Capture
    limits: Limits
    argv: Sequence[str] = ("python",)
    start: Sequence[str] = ("_start",)  # the exports a plain run (or a reactor boot) calls, in order
    env: Sequence[tuple[str, str]] = ()
    entry: EntryPoint | None = None
    more: Sequence[EntryPoint] = ()  # further requests for the same instance, in turn
    cancel: threading.Event | None = None
    tools: ToolRun | None = None  # the run's host functions (``ToolBox.begin()``); None: ``host.call`` gives -1


@dataclasses.dataclass(frozen=True)
class RawRun:
    """What the engine observed: the outcome and the numbers, before outputs are attached."""

    outcome: Outcome
    exit_code: int | None
    error: str | None
    fuel_consumed: int | None  # None: the run was not metered (the fuel-free engine)
    memory: int
    data_len: int
    statuses: tuple[int | None, ...] = ()
    evidence: Evidence = dataclasses.field(default_factory=Evidence)
    value: bytes | None = None  # the last entry's value (see ``_mailbox``), when it finished with one


class Host:
    """A process-wide wasmtime Engine, Linker and epoch ticker (thread-safe).

    There are two, made on first use: one meters fuel (runs with a fuel limit), one does not
    (runs without one: metering costs about a quarter of the guest's speed). Each compiles its
    own modules; a ``Compiled`` runs on the host that compiled it.
    """

    def __init__(self, fuel: bool = True, stack: int = MAX_WASM_STACK) -> None:
        cfg = wt.Config()
        cfg.consume_fuel = fuel
        cfg.epoch_interruption = True
        cfg.max_wasm_stack = stack
        if stack > _ASYNC_STACK:  # wasmtime refuses a wasm stack larger than its (unused) async stack
            ffi.wasmtime_config_async_stack_size_set(cfg.ptr(), stack)
        self.fuel = fuel
        self.stack = stack  # above MAX_WASM_STACK, guests run on execr's deep-stack threads (``_stack``)
        self.config = engine_config(fuel, stack)
        self._engine = wt.Engine(cfg)
        self._traps = _trap_handlers()
        self._linker = wt.Linker(self._engine)
        self._linker.define_wasi()
        self._linker.allow_shadowing = True
        define_raw(self._linker)  # host.call and the WASI calls execr serves, as raw callbacks (see _wasi)
        self._lock = threading.Lock()
        self._ticker: _Ticker | None = None

    # -- modules --

    def validate(self, wasm: bytes) -> None:
        """Raise ``RuntimeUnavailable`` unless ``wasm`` is a valid module for this engine."""
        try:
            wt.Module.validate(self._engine, wasm)
        except wt.WasmtimeError as e:
            raise RuntimeUnavailable(f"invalid WebAssembly module: {e}") from e

    def load(self, data: bytes | None) -> Compiled | None:
        """A module from ``Compiled.serialize()`` bytes, or ``None`` if absent or unusable (stale, other engine)."""
        if data is None:
            return None
        try:
            return Compiled(self, wt.Module.deserialize(self._engine, data))
        except wt.WasmtimeError:
            return None

    def compile(self, wasm: bytes) -> Compiled:
        """Compile ``wasm`` (``RuntimeUnavailable`` if it is not a module this engine can run)."""
        try:
            return Compiled(self, wt.Module(self._engine, wasm))
        except wt.WasmtimeError as e:
            raise RuntimeUnavailable(f"cannot compile the runtime: {e}") from e

    # -- running --

    def _ensure_ticker(self) -> _Ticker:
        with self._lock:
            if self._ticker is None or not self._ticker.is_alive():
                self._ticker = _Ticker(self._engine, self._traps)
                self._ticker.start()
            return self._ticker

    def _store(self, launch: Launch) -> tuple[wt.Store, int | None]:
        store = wt.Store(self._engine)
        _set_wasi(store, launch)
        fuel = self._configure(store, launch)
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _ON_EPOCH, None, _NO_FINALIZER)
        return store, fuel

    def _configure(self, store: wt.Store, launch: Launch) -> int | None:
        """Give ``store`` the run's fuel, memory limit and epoch deadline; return the fuel.

        A new store also gets its WASI context (``_set_wasi``); a kept one (recycled, a
        session's) runs through the snapshot entry, which takes its arguments and environment
        from the request, so its context stays the empty one it was made with.
        """
        if not self.fuel:
            fuel = None
        else:
            fuel = launch.limits.fuel if launch.limits.fuel is not None else UNLIMITED_FUEL
            store.set_fuel(fuel)
        limit = launch.limits.memory_limit
        store.set_limits(memory_size=-1 if limit is None else limit)
        store.set_epoch_deadline(1)
        return fuel

    def run(self, compiled: Compiled, launch: Launch, live: Live | None = None) -> RawRun:
        """Run one guest in a fresh (or recycled) instance, or in ``live`` (a session's instance,
        kept after the run); never raises for guest behaviour.

        Ctrl-C during the run stops the guest, cleans up, and raises ``KeyboardInterrupt`` here.
        """
        if self.stack <= MAX_WASM_STACK and _stack.fits(self.stack):
            return self._run(compiled, launch, live)
        cancel = launch.cancel = launch.cancel or threading.Event()  # Ctrl-C while waiting sets it
        return _stack.call(self.stack, lambda: self._run(compiled, launch, live), cancel.set)

    def live(self, compiled: Compiled) -> Live:
        """A new instance of ``compiled`` (a snapshot) kept across runs: a session's."""
        self._traps.ensure()
        store = wt.Store(self._engine)
        store.set_wasi(wt.WasiConfig())  # arguments and environment come with each request
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _ON_EPOCH, None, _NO_FINALIZER)
        if self.fuel:
            store.set_fuel(0)
        try:
            instance = compiled.pre.instantiate(store)
        except (wt.Trap, wt.WasmtimeError) as e:
            _reaper.put(store)
            raise RuntimeUnavailable(f"cannot start a session instance: {str(e).splitlines()[0]}") from e
        return Live(store, instance.exports(store))

    def _run(self, compiled: Compiled, launch: Launch, live: Live | None = None) -> RawRun:
        self._traps.ensure()
        ticker = self._ensure_ticker()
        limit = launch.limits.memory_limit
        deadline = None if launch.limits.timeout is None else time.monotonic() + launch.limits.timeout
        state = _Run(deadline=deadline, cancel=launch.cancel, files=launch.files, tools=launch.tools)
        recycle = live is None and launch.entry is not None and compiled.recycle and recycling()
        warm = compiled.checkout() if recycle else None
        if live is not None:
            store, fuel = live.store, self._configure(live.store, launch)
        elif warm is not None:
            store, fuel = warm.store, self._configure(warm.store, launch)
        else:
            store, fuel = self._store(launch)
        exit_status: int | None = None
        trap: str | None = None
        refused: tuple[Outcome, str] | None = None
        grow = memory = data_len = 0
        value: bytes | None = None
        statuses: list[int | None] = []
        _local.run = state
        ticker.enter()
        sigint = _catch_sigint(state)
        try:
            if limit is not None and compiled.min_bytes > limit:
                refused = (
                    Outcome.MEMORY_LIMIT,
                    f"memory_limit {limit} is below the runtime's initial memory of {compiled.min_bytes} bytes",
                )
            else:
                calls: dict[int, Raw] = {}  # the instance's entry functions, resolved once
                if live is not None:
                    exports, mem, calls = live.exports, live.mem, live.calls
                elif warm is not None:
                    exports, mem, calls = warm.exports, warm.mem, warm.calls
                else:
                    instance = compiled.pre.instantiate(store)
                    exports = instance.exports(store)
                    fresh = exports["memory"]
                    assert isinstance(fresh, wt.Memory)
                    mem = fresh
                    if recycle:
                        warm = _warm(store, exports, mem)  # before the guest writes anything
                state.memory = mem
                try:
                    if launch.entry is None:
                        exit_status = start(store, exports, launch.start)
                    else:
                        exit_status = enter(store, exports, mem, launch.entry, calls)
                        for entry in launch.more:
                            statuses.append(exit_status)
                            exit_status = enter(store, exports, mem, entry, calls)
                        if exit_status is not None:
                            value = read_value(store, mem, launch.more[-1] if launch.more else launch.entry)
                except wt.ExitTrap as e:
                    exit_status = e.code
                except (wt.Trap, wt.WasmtimeError) as e:
                    trap = _trap_kind(e)
                finally:
                    data_len = memory_span(store, mem)[1]
                    memory = data_len // 65536  # in wasm pages
                    grow = _take_grow_failures(store, exports)
        except (wt.Trap, wt.WasmtimeError) as e:  # instantiation refused
            if "memory" in str(e) and limit is not None:
                refused = (Outcome.MEMORY_LIMIT, f"memory_limit of {limit} bytes: {str(e).splitlines()[0]}")
            else:
                trap = _trap_kind(e)
        finally:
            if sigint is not None:
                restore_sigint(sigint)
            ticker.leave()
            _local.run = None
            consumed = None if fuel is None else fuel - store.get_fuel()
            if warm is not None:
                compiled.checkin(warm)
            elif live is None:
                _reaper.put(store)
        if state.interrupted:
            raise KeyboardInterrupt
        if state.exit_status is not None:  # proc_exit: the guest's own status, whatever trap followed
            exit_status = state.exit_status
        evidence = Evidence(exit_status, state.stop, trap, grow, limit, refused)
        outcome, exit_code, error = verdict(evidence)
        return RawRun(outcome, exit_code, error, consumed, memory, data_len, (*statuses, exit_code), evidence, value)

    def boot(self, compiled: Compiled, launch: Launch, turns: Sequence[bytes] = ()) -> BootImage:
        """Run the bootstrap and capture its image (see ``_boot.boot``)."""
        self._traps.ensure()
        store, _fuel = self._store(launch)
        ticker = self._ensure_ticker()  # epoch checks: a boot stops when ``launch.cancel`` is set
        ticker.enter()
        try:
            if self.stack <= MAX_WASM_STACK and _stack.fits(self.stack):
                return boot(store, compiled, launch, turns)
            return _stack.call(self.stack, lambda: boot(store, compiled, launch, turns), lambda: None)
        finally:
            ticker.leave()


def _set_wasi(store: wt.Store, launch: Launch) -> None:
    """A new store's WASI context: the arguments and the environment only (no preopens, no stdio:
    every descriptor call is served by ``launch.files``, ``_guestfs``)."""
    wasi = wt.WasiConfig()
    wasi.argv = list(launch.argv)
    wasi.env = [list(kv) for kv in launch.env]
    store.set_wasi(wasi)


def _trap_kind(e: Exception) -> str:
    """A wasmtime trap or error as evidence (``_verdict.Trap``), or its first line."""
    message = (e.message if isinstance(e, wt.Trap) else str(e)).strip()
    code = e.trap_code if isinstance(e, wt.Trap) else None
    if code is wt.TrapCode.OUT_OF_FUEL or "all fuel consumed" in message:
        return Trap.FUEL
    if code is wt.TrapCode.INTERRUPT or "epoch deadline" in message:
        return Trap.INTERRUPT
    if code is wt.TrapCode.STACK_OVERFLOW:
        return Trap.STACK
    if code is wt.TrapCode.UNREACHABLE:
        return Trap.UNREACHABLE
    return message.splitlines()[0] if message else type(e).__name__


def _take_grow_failures(store: wt.Store, exports: Any) -> int:
    """Read and clear the refused-``memory.grow`` counter (``GROW_FAILURES_EXPORT``; 0 without one)."""
    try:
        counter = exports[GROW_FAILURES_EXPORT]
    except KeyError:
        return 0
    if not isinstance(counter, wt.Global):
        return 0
    try:
        value = global_i32(store, counter)
    except TypeError:
        return 0
    if value == 0:
        return 0
    counter.set_value(store, 0)  # a recycled instance starts the next run at 0
    return value


_traps: _TrapHandlers | None = None


def _trap_handlers() -> _TrapHandlers:
    """wasmtime's trap handlers, recorded once: the first Engine installs them for the process."""
    global _traps
    if _traps is None:
        _traps = _TrapHandlers()
    return _traps


_hosts: dict[tuple[bool, int], Host] = {}
_host_lock = threading.Lock()
_ASYNC_STACK = 2 << 20  # wasmtime's default async stack size


def _close_linkers() -> None:
    """At exit, after the stores: free the Linkers while wasmtime's bindings still work (left to
    finalizers during interpreter shutdown, they fail noisily)."""
    for h in list(_hosts.values()):
        with contextlib.suppress(Exception):
            h._linker.close()


at_exit(Phase.STORES, _close_linkers)


def host(fuel: bool = True, stack: int | None = None) -> Host:
    """The process-wide ``Host`` that meters fuel (or, ``fuel=False``, the one that does not), with a
    ``max_wasm_stack`` of ``stack`` bytes (``None``: ``MAX_WASM_STACK``)."""
    key = (fuel, stack or MAX_WASM_STACK)
    with _host_lock:
        if key not in _hosts:
            _hosts[key] = Host(*key)
        return _hosts[key]
