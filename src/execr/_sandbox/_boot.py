"""Booting a snapshot: run the bootstrap once and capture linear memory and the stack pointer."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import wasmtime as wt

from .._exceptions import RuntimeUnavailable
from .._exports import SP_EXPORT
from ._entry import turn
from ._run import _local, _Run

if TYPE_CHECKING:
    from ._host import Launch
    from ._recycle import Compiled

__all__ = ["BootImage", "boot"]


@dataclasses.dataclass(frozen=True)
class BootImage:
    """Linear memory and stack pointer captured when the bootstrap aborted."""

    memory: bytes
    stack_pointer: int
    stdout: bytes
    stderr: bytes


def boot(store: wt.Store, compiled: Compiled, launch: Launch, turns: Sequence[bytes] = ()) -> BootImage:
    """Run ``_start`` until the bootstrap aborts; capture memory and the stack pointer.

    With ``turns`` (a reactor): call ``launch.start``, run each source in a ``turn`` (each
    must succeed), and capture between turns, where the stack pointer is back at its start.
    """
    # ``launch.cancel`` stops a background build (a preload set) at the next epoch check
    state = _local.run = _Run(deadline=None, cancel=launch.cancel, files=launch.files)
    try:
        instance = compiled.pre.instantiate(store)
        exports = instance.exports(store)
        if turns:
            return _boot_reactor(store, exports, launch, turns)
        start = exports["_start"]
        assert isinstance(start, wt.Func)
        try:
            start(store)
        except wt.Trap as e:
            if state.exit_status is not None:  # proc_exit (it returns; a trap follows): the bootstrap failed
                raise RuntimeUnavailable(
                    f"snapshot bootstrap exited with {state.exit_status}: {launch.stderr.value()[0][-2000:]!r}"
                ) from e
            if e.trap_code is not wt.TrapCode.UNREACHABLE:
                raise RuntimeUnavailable(f"snapshot bootstrap trapped: {e.message.splitlines()[0]}") from e
        except wt.ExitTrap as e:
            raise RuntimeUnavailable(
                f"snapshot bootstrap exited with {e.code}: {launch.stderr.value()[0][-2000:]!r}"
            ) from e
        else:
            raise RuntimeUnavailable("snapshot bootstrap returned instead of aborting")
        mem, sp = exports["memory"], exports[SP_EXPORT]
        assert isinstance(mem, wt.Memory) and isinstance(sp, wt.Global)
        image = bytes(mem.read(store, 0, mem.data_len(store)))
        sp_value = sp.value(store)
        assert isinstance(sp_value, int)
        return BootImage(image, sp_value, launch.stdout.value()[0], launch.stderr.value()[0])
    finally:
        _local.run = None
        store.close()


def _boot_reactor(store: wt.Store, exports: Any, launch: Launch, turns: Sequence[bytes]) -> BootImage:
    mem, sp = exports["memory"], exports[SP_EXPORT]
    assert isinstance(mem, wt.Memory) and isinstance(sp, wt.Global)
    initial = sp.value(store)
    try:
        for name in launch.start:
            func = exports[name]
            assert isinstance(func, wt.Func)
            func(store)
        for source in turns:
            status = turn(store, exports, mem, source)
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
