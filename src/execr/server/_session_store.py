"""Session store: the live sessions a server keeps for its clients, by owner, within the operator's bounds.

Both front ends use one store: ``/v1/sessions`` (``_sessions``) and the MCP ``session_*``
tools (mounted at ``/mcp`` in ``execr serve``, they share this store, so both count against
one bound per key).

- **Owners.** A session belongs to the owner that created it: the API key's id (``"-"``
  with auth off, or the one client of a stdio MCP server). Any other owner gets
  ``SessionNotFound``, exactly as for an id that never existed.
- **Bounds** (``_session_admission``). At most ``max_sessions_per_key`` live sessions per
  owner (create, fork and restore past it raise ``TooManySessions``). Every session call is
  admitted like a run (``admit``: ``execr serve`` counts it against the queue of
  ``/v1/execute``), at most ``worker_count`` run at once, each in a thread (the instance
  lives in this process, not on the worker pool), and calls on one session run one at a
  time, in arrival order.
- **Caps** (``_session_policy``). Limits are checked against the operator's caps as for
  ``/v1/execute`` (over a cap: ``PolicyError``); the idle timeout and the lifetime default to
  the operator's ``session_idle_timeout`` and ``max_session_lifetime`` and may not exceed them.
- **Eviction.** A sweeper closes sessions idle past their idle timeout and forgets closed
  ones (a session also closes itself when idle or out of budget); kept checkpoints expire.
- **Kept checkpoints** (``_kept``; for MCP, where a blob in a tool result is no use to an
  agent): at most ``max_checkpoints_per_key`` per owner (keeping one more drops the oldest),
  each for ``max_session_lifetime`` (an hour without one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .._checkpoint import Checkpoint
from .._limits import UNSET, Limits, Unset
from .._results import Result
from .._runtime import Runtime
from .._session import Session
from ._config import ServerConfig
from ._kept import Kept, KeptCheckpoints
from ._session_admission import Admission
from ._session_errors import (
    CheckpointTooLarge,
    SessionNotFound,
    SessionsBusy,
    SessionsDisabled,
    TooManySessions,
    new_id,
    shown_id,
)
from ._session_policy import (
    PER_CALL_LIMITS,
    call_overrides,
    check_checkpoint_size,
    check_restore,
    session_budgets,
    session_limits,
)

__all__ = [
    "PER_CALL_LIMITS",
    "CheckpointTooLarge",
    "Entry",
    "Kept",
    "SessionNotFound",
    "SessionStore",
    "SessionsBusy",
    "SessionsDisabled",
    "TooManySessions",
]

T = TypeVar("T")


@dataclasses.dataclass(eq=False)
class Entry:
    """One live session the store keeps: its owner, its limits (within the caps) and its call lock."""

    id: str
    owner: str
    session: Session
    limits: Limits
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    last: float = dataclasses.field(default_factory=time.monotonic)
    busy: int = 0

    def info(self) -> dict[str, Any]:
        """The session as JSON: id, runtime, counters, budgets and limits."""
        s = self.session
        return {
            "id": self.id,
            "runtime": s.runtime,
            "execution_count": s.execution_count,
            "calls": s.calls,
            "idle_timeout": s.idle_timeout,
            "lifetime": s.lifetime,
            "max_calls": s.max_calls,
            "limits": self.limits.to_dict(),
        }


class SessionStore:
    """The live sessions of a server (see the module docstring). Its state belongs to the event loop.

    ``runtime`` runs the sessions (default: a ``Runtime`` made on first use and closed with
    the store). ``admit()`` is entered around each call: it raises to refuse one (default:
    at most ``config.capacity`` calls running or waiting, else ``SessionsBusy``).
    """

    def __init__(
        self,
        config: ServerConfig,
        runtime: Runtime | None = None,
        admit: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
    ) -> None:
        self.config = config
        self._runtime = runtime
        self._own_runtime = runtime is None
        self._runtime_lock = threading.Lock()
        self._admission = Admission(config, admit)
        self._sessions: dict[str, Entry] = {}
        self._kept = KeptCheckpoints(config)
        self._sweeper: asyncio.Task[None] | None = None
        self.closed = False

    # -- plumbing --

    def runtime(self) -> Runtime:
        """The runtime sessions run on (made on first use; call from a thread: loading it takes a while)."""
        with self._runtime_lock:
            if self._runtime is None:
                self._runtime = Runtime(snapshot=True, cache_dir=self.config.cache_dir)
            return self._runtime

    async def _call(self, entry: Entry, fn: Callable[[], T]) -> T:
        """``fn()`` on ``entry``'s session: admitted, after the session's earlier calls, in a thread."""
        with self._admission.admit():
            entry.busy += 1
            try:
                async with entry.lock:
                    return await self._admission.thread(fn)
            finally:
                entry.busy -= 1
                entry.last = time.monotonic()
                if entry.session.closed:  # it expired (lifetime, calls) during the call
                    self._sessions.pop(entry.id, None)

    def _new_session(self, owner: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold a place for one more session of ``owner`` while it is made (``TooManySessions`` if none)."""
        return self._admission.new_session(owner, lambda: len(self.owned(owner)))

    def _add(self, owner: str, session: Session, limits: Limits) -> Entry:
        if self.closed:
            session.close()
            raise SessionNotFound("the server is shutting down")
        entry = Entry(new_id("s_"), owner, session, limits)
        self._sessions[entry.id] = entry
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return entry

    # -- lookups --

    def owned(self, owner: str) -> list[Entry]:
        """``owner``'s live sessions (closed ones are forgotten on the way)."""
        out = []
        for entry in list(self._sessions.values()):
            if entry.owner != owner:
                continue
            if entry.session.closed:
                del self._sessions[entry.id]
            else:
                out.append(entry)
        return out

    def get(self, owner: str, sid: object) -> Entry:
        """``owner``'s session ``sid``; ``SessionNotFound`` for any other id, owner, or a closed session."""
        entry = self._sessions.get(sid) if isinstance(sid, str) else None
        if entry is not None and entry.owner == owner and not entry.session.closed:
            return entry
        if entry is not None and entry.owner == owner:
            del self._sessions[entry.id]
        raise SessionNotFound(
            f"no session {shown_id(sid)} for this API key: it never existed, was closed, or expired "
            "(idle past its idle_timeout, past its lifetime, or out of calls)"
        )

    # -- operations --

    async def create(
        self,
        owner: str,
        *,
        runtime: str = "default",
        env: Mapping[str, str] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        limits: Mapping[str, Any] | None = None,
        idle_timeout: float | Unset | None = UNSET,
        lifetime: float | Unset | None = UNSET,
        max_calls: int | Unset | None = UNSET,
    ) -> Entry:
        """A new session for ``owner``."""
        lim = session_limits(self.config, limits)
        budgets = session_budgets(self.config, idle_timeout, lifetime, max_calls)
        async with self._new_session(owner):
            with self._admission.admit():
                session = await self._admission.thread(
                    lambda: Session(runtime, on=self.runtime(), env=env, files=files, limits=lim, **budgets)
                )
        return self._add(owner, session, lim)

    async def run(
        self,
        owner: str,
        sid: str,
        code: str,
        *,
        stdin: str | bytes = "",
        inputs: Mapping[str, Any] | None = None,
        atomic: bool = False,
        limits: Mapping[str, Any] | None = None,
    ) -> Result:
        """``Session.run`` on ``owner``'s session ``sid``; ``limits`` override the per-call ones within the caps."""
        entry = self.get(owner, sid)
        overrides = call_overrides(self.config, entry.limits, dict(limits or {}))
        session = entry.session
        return await self._call(
            entry, lambda: session.run(code, stdin=stdin, inputs=inputs, atomic=atomic, **overrides)
        )

    async def checkpoint(self, owner: str, sid: str) -> tuple[Checkpoint, bytes]:
        """The state of ``owner``'s session ``sid``, and its serialized form (``CheckpointTooLarge`` over the cap)."""
        entry = self.get(owner, sid)
        session = entry.session

        def take() -> tuple[Checkpoint, bytes]:
            cp = session.checkpoint()
            return cp, cp.to_bytes()

        cp, data = await self._call(entry, take)
        check_checkpoint_size(self.config, data)
        return cp, data

    async def fork(self, owner: str, sid: str) -> Entry:
        """A new session for ``owner`` from session ``sid``'s state (fresh random state; same limits and budgets)."""
        entry = self.get(owner, sid)
        async with self._new_session(owner):
            child = await self._call(entry, entry.session.fork)
        return self._add(owner, child, entry.limits)

    async def restore(
        self,
        owner: str,
        checkpoint: Checkpoint | bytes,
        *,
        env: Mapping[str, str] | None = None,
        limits: Mapping[str, Any] | None = None,
        idle_timeout: float | Unset | None = UNSET,
        lifetime: float | Unset | None = UNSET,
        max_calls: int | Unset | None = UNSET,
    ) -> Entry:
        """A new session for ``owner`` from a checkpoint (``CheckpointRefused`` if corrupt, foreign or too big).

        Its lifetime and calls budgets are the checkpoint's, tightened by these (within the caps).
        """
        lim = session_limits(self.config, limits)
        budgets = session_budgets(self.config, idle_timeout, lifetime, max_calls)

        def make() -> Session:
            cp = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.from_bytes(checkpoint)
            check_restore(cp, lim)
            return Session.restore(cp, on=self.runtime(), env=env, limits=lim, **budgets)

        async with self._new_session(owner):
            with self._admission.admit():
                session = await self._admission.thread(make)
        return self._add(owner, session, lim)

    async def close_session(self, owner: str, sid: str) -> None:
        """Close ``owner``'s session ``sid`` (after its call in progress, if any)."""
        entry = self.get(owner, sid)
        del self._sessions[entry.id]
        await asyncio.to_thread(entry.session.close)

    # -- kept checkpoints --

    def keep(self, owner: str, cp: Checkpoint, data: bytes) -> Kept:
        """Keep ``cp`` for ``owner`` (dropping their oldest past ``max_checkpoints_per_key``)."""
        return self._kept.keep(owner, cp, data)

    def kept(self, owner: str, cid: object) -> Kept:
        """``owner``'s kept checkpoint ``cid`` (``SessionNotFound`` for any other)."""
        return self._kept.get(owner, cid)

    # -- eviction and shutdown --

    async def _sweep(self) -> None:
        idle = self.config.session_idle_timeout
        every = 5.0 if idle is None else min(5.0, max(0.05, idle / 4))
        while self._sessions or self._kept:
            await asyncio.sleep(every)
            now = time.monotonic()
            self._kept.expire(now)
            for entry in list(self._sessions.values()):
                timeout = entry.session.idle_timeout
                stale = timeout is not None and not entry.busy and now - entry.last > timeout
                if entry.session.closed or stale:
                    self._sessions.pop(entry.id, None)
                    if stale:
                        await asyncio.to_thread(entry.session.close)

    async def close(self) -> None:
        """Close every session and forget every checkpoint (idempotent); a runtime the store made is closed too."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        entries, self._sessions = list(self._sessions.values()), {}
        self._kept.clear()

        def shut() -> None:
            for entry in entries:
                entry.session.close()
            if self._own_runtime and self._runtime is not None:
                self._runtime.close()

        await asyncio.to_thread(shut)
