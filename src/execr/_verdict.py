"""Verdict: the one place a run's outcome is decided, from host evidence only.

What the guest prints or raises never decides an outcome: a guest that writes
``MemoryError`` to stderr, or raises ``MemoryError("mine")``, simply failed. The evidence
is what the host saw: the exit status (``proc_exit``, the entry's mailbox), a stop the host
made (deadline, cancel, a file cap refused at the call), the trap wasmtime raised (fuel,
stack, ``unreachable``), the count of ``memory.grow`` calls the store limiter refused (a
counter execr's instrumentation keeps outside linear memory, where the guest cannot reach
it), and a writable tree that could not be read after the run.
"""

from __future__ import annotations

import dataclasses

from ._results import Outcome

__all__ = ["Evidence", "Trap", "verdict"]


class Trap:
    """The kinds of wasmtime traps the verdict tells apart (anything else is a message)."""

    FUEL = "fuel"
    INTERRUPT = "interrupt"
    STACK = "stack"
    UNREACHABLE = "unreachable"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """What the host observed about one run."""

    exit_status: int | None = None  # the guest's own exit status, as it reported it
    stop: tuple[Outcome, str] | None = None  # the host stopped the run, and why
    trap: str | None = None  # a ``Trap`` kind, or wasmtime's message for any other trap
    grow_refused: int = 0  # memory.grow calls that returned -1 (the limiter or wasm32's 4 GiB)
    memory_limit: int | None = None
    refused: tuple[Outcome, str] | None = None  # the run could not start (memory below the minimum)


def verdict(ev: Evidence, file_problem: str | None = None) -> tuple[Outcome, int | None, str | None]:
    """(outcome, exit code, error) for ``ev``; ``file_problem``: a writable tree unreadable after the run."""
    outcome, code, error = _decide(ev)
    if file_problem is not None and outcome in (Outcome.COMPLETED, Outcome.FAILED):
        return Outcome.FILE_LIMIT, None, file_problem
    return outcome, code, error


def _memory(ev: Evidence) -> str:
    limit = "wasm32's 4 GiB" if ev.memory_limit is None else f"memory_limit of {ev.memory_limit} bytes"
    return f"{limit} reached: {ev.grow_refused} memory.grow call(s) refused"


def _decide(ev: Evidence) -> tuple[Outcome, int | None, str | None]:
    if ev.refused is not None:
        return ev.refused[0], None, ev.refused[1]
    if ev.stop is not None and (ev.stop[0] is Outcome.FILE_LIMIT or ev.exit_status is None):
        return ev.stop[0], None, ev.stop[1]
    if ev.exit_status is not None:
        status = ev.exit_status & 0xFF  # as a POSIX parent sees it
        if status == 0:
            return Outcome.COMPLETED, 0, None
        if ev.grow_refused:
            return Outcome.MEMORY_LIMIT, status, _memory(ev)
        return Outcome.FAILED, status, None
    if ev.trap == Trap.FUEL:
        return Outcome.OUT_OF_FUEL, None, "fuel limit reached"
    if ev.trap == Trap.INTERRUPT:
        return Outcome.TIMED_OUT, None, "wall-clock limit reached"
    if ev.grow_refused:
        return Outcome.MEMORY_LIMIT, None, _memory(ev)
    if ev.trap == Trap.STACK:
        return Outcome.CRASHED, None, "wasm stack overflow"
    if ev.trap == Trap.UNREACHABLE:
        return Outcome.CRASHED, None, "the interpreter aborted (wasm 'unreachable' trap)"
    if ev.trap is not None:
        return Outcome.CRASHED, None, ev.trap
    return Outcome.CRASHED, None, "the entry function did not report an exit status"
