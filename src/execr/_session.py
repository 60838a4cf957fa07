"""Sessions: a live interpreter that keeps its state between calls, with checkpoint, fork and restore.

A ``Session`` holds one instance of a runtime's snapshot for its whole life, plus a working
directory of its own. Each ``run()`` enters it like a fresh run does, but keeps ``__main__``
(``value`` is the repr of the code's last expression, as a REPL shows it). Before each call
the instance's state is saved (``_sandbox.Live``: the pages it changed since the snapshot);
a call the host had to stop (timeout, fuel, memory, output or file limit, a crash, a cancel)
is rolled back, so the session is exactly as it was before that call. A Python exception is
not a stop: like a REPL, the statements before it stay done (``atomic=True`` rolls those back
too). Files a rolled-back call wrote in the working directory stay (they are reported in its
``Result.files``); descriptors never outlive a call.

Budgets: per call, the usual limits (the session's are the defaults); per session,
``memory_limit``, ``idle_timeout``, ``lifetime`` and ``max_calls``. ``checkpoint()`` captures
the state (memory pages, working directory, counters, budgets) as a ``Checkpoint``
(``to_bytes()`` for another process or machine); ``Session.restore`` and ``fork()`` start a
new session from one, with fresh random state for a fork; a restore can only tighten budgets.

``_session_state`` opens a session's instance and takes and loads its checkpoints;
``_session_budget`` validates and checks its budgets and a call's limits; ``AsyncSession``
(``_async_session``) runs it from asyncio.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._checkpoint import Checkpoint
from ._exceptions import InvalidArgument, RuntimeClosed, SessionExpired
from ._image._flavors import flavor
from ._limits import UNSET, Limits, Unset
from ._mounts import Mount
from ._process import Phase, at_exit
from ._request import make_request
from ._results import Outcome, Result
from ._runtime import Runtime, default_runtime
from ._session_budget import budgets, call_request, expiry, tightened
from ._session_state import load_checkpoint, open_slot, take_checkpoint
from ._tools import DEFAULT_MAX_CALLS, ToolBox

__all__ = ["Session"]

_KEPT = (Outcome.COMPLETED, Outcome.FAILED)  # outcomes whose state stands (the guest's own end)


class Session:
    """A live interpreter: state carries from one ``run()`` to the next (see the module docstring).

    ``runtime`` names the CPython ("default", "scientific", ...); ``on`` is the ``Runtime`` to
    run it on (default: the process-wide one). ``limits`` and the limit keywords are the defaults
    of each call, except ``memory_limit``, ``max_files``, ``max_file_bytes`` and
    ``max_open_files``, which hold for the session. A fuel limit here makes every call metered.
    ``tools``, ``tool_permission`` and ``max_tool_calls`` (per call) are ``execute()``'s host
    functions; a fork keeps them, a restore takes them again as arguments.
    """

    def __init__(
        self,
        runtime: str = "default",
        *,
        on: Runtime | None = None,
        env: Mapping[str, str] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        mounts: Iterable[Mount | str | tuple[Any, ...]] = (),
        pythonpath: str | os.PathLike[str] | Unset | None = UNSET,
        limits: Limits | Mapping[str, Any] | None = None,
        idle_timeout: float | None = 600.0,
        lifetime: float | None = 3600.0,
        max_calls: int | None = 10_000,
        tools: Mapping[str, Callable[..., Any]] | None = None,
        tool_permission: Callable[[str, dict[str, Any]], Any] | None = None,
        max_tool_calls: int | None = DEFAULT_MAX_CALLS,
        _checkpoint: Checkpoint | None = None,
        **limit_kwargs: Any,
    ) -> None:
        self._rt = on if on is not None else default_runtime()
        if not isinstance(self._rt, Runtime):
            raise InvalidArgument(f"on must be a Runtime; got {type(on).__name__}")
        self._base = make_request(
            "",
            runtime=runtime,
            env=env,
            files=files,
            mounts=mounts,
            pythonpath=pythonpath,
            limits=limits,
            **limit_kwargs,
        )
        self.idle_timeout, self.lifetime, self.max_calls = budgets(idle_timeout, lifetime, max_calls)
        self._tools = ToolBox.of(tools, tool_permission, max_tool_calls)
        if self._tools is not None and not flavor(self._base.runtime).host_calls:
            raise InvalidArgument(f"tools= needs a runtime with host functions; {self._base.runtime!r} has none")
        self._lock = threading.RLock()
        self._closed: str | None = None
        self._calls = 0
        self._count = 0
        self._age = 0.0  # seconds lived before this process (a restored session's past)
        self._cp: Checkpoint | None = None  # the last checkpoint, while no call has run since
        self._slot, self._key, self._metered = open_slot(self._rt, self._base, _checkpoint)
        if _checkpoint is not None:
            try:
                self._load(_checkpoint)
            except BaseException:
                self._release()
                raise
        self._born = time.monotonic()
        self._last = self._born
        _reaper.watch(self)

    # -- state --

    def _load(self, cp: Checkpoint) -> None:
        info = load_checkpoint(self._slot, cp, self._base.runtime, self._key, self._base.limits.memory_limit)
        self._count = int(info.get("execution_count", 0))
        self._calls = int(info.get("calls", 0))
        self._age = float(info.get("age", 0.0))
        self._slot.fresh = self._count == 0 and self._calls == 0
        self.max_calls, self.lifetime = tightened(info, self.max_calls, self.lifetime)  # a restore can only tighten

    @property
    def execution_count(self) -> int:
        """Calls that took effect so far (a rolled-back call does not count)."""
        return self._count

    @property
    def calls(self) -> int:
        """Calls made so far, rolled back or not (what ``max_calls`` counts)."""
        return self._calls

    @property
    def runtime(self) -> str:
        """The runtime's name."""
        return self._base.runtime

    @property
    def closed(self) -> bool:
        """Whether the session was closed (or expired)."""
        return self._closed is not None

    def _check(self) -> None:
        if self._closed is not None:
            cls = SessionExpired if self._closed != "closed" else RuntimeClosed
            raise cls(f"this session is {self._closed}")
        now = time.monotonic()
        idle, age = now - self._last, self._age + now - self._born
        why = expiry(self.idle_timeout, self.lifetime, self.max_calls, idle=idle, age=age, calls=self._calls)
        if why is not None:
            self._shut(why)
            raise SessionExpired(f"this session {why}")

    # -- running --

    def run(
        self,
        code: str,
        *,
        stdin: str | bytes = "",
        inputs: Mapping[str, Any] | None = None,
        atomic: bool = False,
        **limit_kwargs: Any,
    ) -> Result:
        """Run ``code`` in the session; ``Result.value`` is the repr of its last expression (or None).

        The limit keywords (``timeout``, ``fuel``, ``max_stdout``, ``max_stderr``,
        ``max_returned_file_bytes``) override the session's for this call. A call the host
        stopped is rolled back; with ``atomic=True`` so is one that raised.
        """
        request = call_request(self._base, code, stdin, inputs, atomic, self._metered, limit_kwargs)
        with self._lock:
            self._check()
            self._calls += 1
            slot = self._slot
            saved = slot.live.save()
            self._cp = None
            slot.count = self._count + 1
            result = self._rt.run(request, value=True, session=slot, tools=self._tools)
            undo = result.outcome not in _KEPT or (atomic and not result.ok)
            if undo:
                try:
                    slot.live.rollback(saved)
                except OSError as e:
                    self._shut(f"closed: a failed call could not be rolled back ({e})")
                    raise RuntimeClosed(f"this session was closed: a failed call could not be rolled back ({e})") from e
                note = "the session was rolled back to before this call"
                error = f"{result.error}; {note}" if result.error else note
                result = _replace(result, error=error, value=None, execution_count=None)
            else:
                self._count += 1
                slot.fresh = False
            slot.workspace.rebase()
            self._last = time.monotonic()
            return result

    # -- checkpoints --

    def checkpoint(self) -> Checkpoint:
        """The session's state now: memory pages, working directory, counters and budgets.

        The cost grows with the pages the session changed since the snapshot; until the next
        ``run()``, checkpoints (and forks) reuse this one.
        """
        with self._lock:
            self._check()
            if self._cp is not None:
                return self._cp
            image = self._slot.live.image()
            info = {
                "execution_count": self._count,
                "calls": self._calls,
                "age": self._age + time.monotonic() - self._born,
                "max_calls": self.max_calls,
                "lifetime": self.lifetime,
                "fresh": self._slot.fresh,
            }
            self._cp = take_checkpoint(self._slot, image, self._base.runtime, self._key, self._metered, info)
            return self._cp

    def fork(self) -> Session:
        """A new, independent session starting from this one's state, with fresh random state."""
        cp, base = self.checkpoint(), self._base
        child = Session(
            cp.runtime,
            on=self._rt,
            env=dict(base.env),
            mounts=base.mounts,
            pythonpath=base.pythonpath,
            limits=base.limits,
            idle_timeout=self.idle_timeout,
            lifetime=None,
            max_calls=None,
            _checkpoint=cp,
        )
        child._tools = self._tools
        child._slot.live.reseed(child._slot.snap.rng, os.urandom)
        return child

    @classmethod
    def restore(
        cls,
        checkpoint: Checkpoint | bytes,
        *,
        on: Runtime | None = None,
        mounts: Iterable[Mount | str | tuple[Any, ...]] = (),
        env: Mapping[str, str] | None = None,
        limits: Limits | Mapping[str, Any] | None = None,
        idle_timeout: float | None = 600.0,
        lifetime: float | None = None,
        max_calls: int | None = None,
        **limit_kwargs: Any,
    ) -> Session:
        """A session from ``checkpoint`` (a ``Checkpoint`` or its bytes), in this process or another.

        ``CheckpointRefused`` if it is corrupt or for another runtime or binary. Budgets carry
        over; ``lifetime`` and ``max_calls`` given here can only tighten them.
        """
        cp = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.from_bytes(checkpoint)
        return cls(
            cp.runtime,
            on=on,
            env=env,
            mounts=mounts,
            limits=limits,
            idle_timeout=idle_timeout,
            lifetime=lifetime,
            max_calls=max_calls,
            _checkpoint=cp,
            **limit_kwargs,
        )

    # -- lifecycle --

    def _shut(self, why: str) -> None:
        if self._closed is None:
            self._closed = why
            self._release()

    def _release(self) -> None:
        self._slot.live.close()
        self._slot.workspace.close()

    def close(self) -> None:
        """Free the instance and the working directory (idempotent)."""
        with self._lock:
            self._shut("closed")

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if sys.is_finalizing():  # the at-exit step closed every session already
            return
        with contextlib.suppress(Exception):
            if getattr(self, "_closed", "closed") is None:
                self._shut("closed")


class _Reaper:
    """One daemon thread for all sessions: closes those idle past their ``idle_timeout`` (checked
    every ``TICK`` seconds), so an abandoned session's instance is freed without a thread of its own."""

    TICK = 1.0

    def __init__(self) -> None:
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()  # those with an idle timeout
        self._all: weakref.WeakSet[Session] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, session: Session) -> None:
        with self._lock:
            self._all.add(session)
            if session.idle_timeout is not None:
                self._sessions.add(session)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="execr-session-reaper", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.TICK)
            with self._lock:
                sessions = list(self._sessions)
                idle = list(self._all)
            now = time.monotonic()
            for session in idle:  # an idle session gives back the buffer its calls reuse
                if not session.closed and now - session._last > 2 * self.TICK:
                    self._trim(session)
            for session in sessions:
                if session.closed:
                    with self._lock:
                        self._sessions.discard(session)
                else:
                    self._close_if_idle(session)

    @staticmethod
    def _trim(session: Session) -> None:
        """Give back what an idle session need not hold (``Live.trim``), unless a call is running."""
        if not session._lock.acquire(blocking=False):
            return
        try:
            if session._closed is None:
                session._slot.live.trim()
        finally:
            session._lock.release()

    @staticmethod
    def _close_if_idle(session: Session) -> None:
        """Close ``session`` if it has been idle past its ``idle_timeout``."""
        if not session._lock.acquire(blocking=False):
            return  # a call is running: not idle
        try:
            idle = session.idle_timeout
            if session._closed is None and idle is not None and time.monotonic() - session._last > idle:
                session._shut(f"expired: idle for more than {idle:g} s")
        finally:
            session._lock.release()

    def close_all(self) -> None:
        """At exit: close every session still open (their instances go to the store reaper in time)."""
        with self._lock:
            sessions = list(self._all)
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()


_reaper = _Reaper()
at_exit(Phase.RUNS, _reaper.close_all)


def _replace(result: Result, **changes: Any) -> Result:
    import dataclasses

    return dataclasses.replace(result, **changes)
