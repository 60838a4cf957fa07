"""Session store: the live sessions a server keeps for its clients, by owner, within the operator's bounds.

Both front ends use one store: ``/v1/sessions`` (``_sessions``) and the MCP ``session_*``
tools (mounted at ``/mcp`` in ``execr serve``, they share this store, so both count against
one bound per key).

- **Owners.** A session belongs to the owner that created it: the API key's id (``"-"``
  with auth off, or the one client of a stdio MCP server). Any other owner gets
  ``SessionNotFound``, exactly as for an id that never existed.
- **Bounds.** At most ``max_sessions_per_key`` live sessions per owner (create, fork and
  restore past it raise ``TooManySessions``). Every session call is admitted like a run
  (``admit``: ``execr serve`` counts it against the queue of ``/v1/execute``), at most
  ``worker_count`` run at once, each in a thread (the instance lives in this process, not
  on the worker pool), and calls on one session run one at a time, in arrival order.
- **Caps.** Limits are checked against the operator's caps as for ``/v1/execute`` (over a
  cap: ``PolicyError``); the idle timeout and the lifetime default to the operator's
  ``session_idle_timeout`` and ``max_session_lifetime`` and may not exceed them.
- **Eviction.** A sweeper closes sessions idle past their idle timeout and forgets closed
  ones (a session also closes itself when idle or out of budget); kept checkpoints expire.
- **Kept checkpoints** (for MCP, where a blob in a tool result is no use to an agent): at
  most ``max_checkpoints_per_key`` per owner (keeping one more drops the oldest), each for
  ``max_session_lifetime`` (an hour without one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from .._checkpoint import Checkpoint
from .._exceptions import CheckpointRefused, ExecrError, InvalidArgument
from .._limits import UNSET, Limits, Unset
from .._results import Result
from .._runtime import Runtime
from .._session import Session
from ._config import ServerConfig
from ._policy import PolicyError, check_caps

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

#: Limits a single call may override (the others hold for the whole session).
PER_CALL_LIMITS = ("timeout", "fuel", "max_stdout", "max_stderr", "max_returned_file_bytes")
_SESSION_DEFAULTS = {"idle_timeout": 600.0, "lifetime": 3600.0, "max_calls": 10_000}
_KEEP_FOR = 3600.0  # kept checkpoints' time to live without a max_session_lifetime


class SessionNotFound(ExecrError, LookupError):
    """No such session (or checkpoint) for this owner: unknown, someone else's, closed or expired."""


class TooManySessions(ExecrError):
    """The owner already holds ``max_sessions_per_key`` live sessions."""


class SessionsDisabled(ExecrError):
    """The operator allows no sessions (``max_sessions_per_key`` is 0)."""


class SessionsBusy(ExecrError):
    """As many session calls are running or waiting as the server admits; retry later."""


class CheckpointTooLarge(ExecrError):
    """A checkpoint larger than the operator's ``max_checkpoint_bytes``."""


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


@dataclasses.dataclass(frozen=True)
class Kept:
    """A checkpoint the store keeps for its owner (MCP's ``session_checkpoint``)."""

    id: str
    owner: str
    checkpoint: Checkpoint = dataclasses.field(repr=False)
    size: int  # bytes of its serialized form
    sha256: str  # of its serialized form
    expires: float  # time.monotonic()


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(18)


def _shown_id(sid: object) -> str:
    text = repr(sid)
    return text if len(text) <= 80 else text[:80] + "...'"


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
        self._admit = admit or self._own_admission
        self._admitted = 0
        self._gate = asyncio.Semaphore(config.worker_count)
        self._sessions: dict[str, Entry] = {}
        self._pending: dict[str, int] = {}  # owner -> sessions being made (they count against the bound)
        self._kept: dict[str, Kept] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.closed = False

    # -- plumbing --

    def runtime(self) -> Runtime:
        """The runtime sessions run on (made on first use; call from a thread: loading it takes a while)."""
        with self._runtime_lock:
            if self._runtime is None:
                self._runtime = Runtime(snapshot=True, cache_dir=self.config.cache_dir)
            return self._runtime

    @contextlib.contextmanager
    def _own_admission(self) -> Iterator[None]:
        if self._admitted >= self.config.capacity:
            raise SessionsBusy(f"the server is busy ({self._admitted} session calls running or waiting); retry later")
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def _thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, at most ``worker_count`` at once."""
        async with self._gate:
            return await asyncio.to_thread(fn)

    async def _call(self, entry: Entry, fn: Callable[[], T]) -> T:
        """``fn()`` on ``entry``'s session: admitted, after the session's earlier calls, in a thread."""
        with self._admit():
            entry.busy += 1
            try:
                async with entry.lock:
                    return await self._thread(fn)
            finally:
                entry.busy -= 1
                entry.last = time.monotonic()
                if entry.session.closed:  # it expired (lifetime, calls) during the call
                    self._sessions.pop(entry.id, None)

    @contextlib.asynccontextmanager
    async def _new_session(self, owner: str) -> AsyncIterator[None]:
        """Hold a place for one more session of ``owner`` while it is made (``TooManySessions`` if none)."""
        bound = self.config.max_sessions_per_key
        if bound == 0:
            raise SessionsDisabled("this server keeps no sessions (its operator set max_sessions_per_key to 0)")
        held = len(self.owned(owner)) + self._pending.get(owner, 0)
        if held >= bound:
            raise TooManySessions(
                f"this API key already holds {held} sessions, the most this server keeps per key ({bound}); "
                "close one (DELETE /v1/sessions/ID or session_close) or let one expire"
            )
        self._pending[owner] = self._pending.get(owner, 0) + 1
        try:
            yield
        finally:
            self._pending[owner] -= 1
            if not self._pending[owner]:
                del self._pending[owner]

    def _add(self, owner: str, session: Session, limits: Limits) -> Entry:
        if self.closed:
            session.close()
            raise SessionNotFound("the server is shutting down")
        entry = Entry(_new_id("s_"), owner, session, limits)
        self._sessions[entry.id] = entry
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return entry

    # -- policy --

    def _limits(self, given: Mapping[str, Any] | None) -> Limits:
        return check_caps(self.config.default_limits.replace(**dict(given or {})), self.config.max_limits)

    def _budget(self, name: str, value: object, cap: float | None) -> Any:
        """A session budget: left out, the operator's (or Session's default); else at most the cap."""
        if value is UNSET:
            return cap if cap is not None else _SESSION_DEFAULTS[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidArgument(f"{name} must be a number or null; got {type(value).__name__}")
        if cap is not None and (value is None or value > cap):
            shown = "null (no limit)" if value is None else repr(value)
            raise PolicyError(f"{name}={shown} exceeds the server's cap of {cap!r}")
        return value

    def _budgets(self, idle_timeout: object, lifetime: object, max_calls: object) -> dict[str, Any]:
        cfg = self.config
        return {
            "idle_timeout": self._budget("idle_timeout", idle_timeout, cfg.session_idle_timeout),
            "lifetime": self._budget("lifetime", lifetime, cfg.max_session_lifetime),
            "max_calls": self._budget("max_calls", max_calls, None),
        }

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
            f"no session {_shown_id(sid)} for this API key: it never existed, was closed, or expired "
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
        lim = self._limits(limits)
        budgets = self._budgets(idle_timeout, lifetime, max_calls)
        async with self._new_session(owner):
            with self._admit():
                session = await self._thread(
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
        given = dict(limits or {})
        bad = sorted(set(given) - set(PER_CALL_LIMITS))
        if bad:
            raise InvalidArgument(
                f"a call can set only {', '.join(PER_CALL_LIMITS)}; {', '.join(bad)} hold for the whole session"
            )
        merged = check_caps(entry.limits.replace(**given), self.config.max_limits)
        overrides = {name: getattr(merged, name) for name in given}
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
        cap = self.config.max_checkpoint_bytes
        if len(data) > cap:
            raise CheckpointTooLarge(
                f"the checkpoint is {len(data)} bytes, more than this server's max_checkpoint_bytes ({cap}); "
                "keep less state in the session (delete big objects and files) and retry"
            )
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
        lim = self._limits(limits)
        budgets = self._budgets(idle_timeout, lifetime, max_calls)

        def make() -> Session:
            cp = checkpoint if isinstance(checkpoint, Checkpoint) else Checkpoint.from_bytes(checkpoint)
            if lim.memory_limit is not None and cp.data_len > lim.memory_limit:
                raise CheckpointRefused(
                    f"the checkpoint's memory ({cp.data_len} bytes) is over the session's memory_limit "
                    f"({lim.memory_limit})"
                )
            if lim.fuel is not None and not cp.metered:
                raise CheckpointRefused("this server limits fuel, and the checkpoint is of a session without metering")
            return Session.restore(cp, on=self.runtime(), env=env, limits=lim, **budgets)

        async with self._new_session(owner):
            with self._admit():
                session = await self._thread(make)
        return self._add(owner, session, lim)

    async def close_session(self, owner: str, sid: str) -> None:
        """Close ``owner``'s session ``sid`` (after its call in progress, if any)."""
        entry = self.get(owner, sid)
        del self._sessions[entry.id]
        await asyncio.to_thread(entry.session.close)

    # -- kept checkpoints --

    def keep(self, owner: str, cp: Checkpoint, data: bytes) -> Kept:
        """Keep ``cp`` for ``owner`` (dropping their oldest past ``max_checkpoints_per_key``)."""
        now = time.monotonic()
        self._expire(now)
        bound = self.config.max_checkpoints_per_key
        if bound == 0:
            raise SessionsDisabled("this server keeps no checkpoints (its operator set max_checkpoints_per_key to 0)")
        mine = [k for k in self._kept.values() if k.owner == owner]
        for old in mine[: max(0, len(mine) - bound + 1)]:  # insertion order: oldest first
            del self._kept[old.id]
        ttl = self.config.max_session_lifetime or _KEEP_FOR
        kept = Kept(_new_id("c_"), owner, cp, len(data), hashlib.sha256(data).hexdigest(), now + ttl)
        self._kept[kept.id] = kept
        return kept

    def kept(self, owner: str, cid: object) -> Kept:
        """``owner``'s kept checkpoint ``cid`` (``SessionNotFound`` for any other)."""
        self._expire(time.monotonic())
        kept = self._kept.get(cid) if isinstance(cid, str) else None
        if kept is None or kept.owner != owner:
            raise SessionNotFound(
                f"no checkpoint {_shown_id(cid)} for this client: it never existed, expired, or was dropped "
                f"(this server keeps the last {self.config.max_checkpoints_per_key} per key)"
            )
        return kept

    def _expire(self, now: float) -> None:
        for kept in [k for k in self._kept.values() if k.expires <= now]:
            del self._kept[kept.id]

    # -- eviction and shutdown --

    async def _sweep(self) -> None:
        idle = self.config.session_idle_timeout
        every = 5.0 if idle is None else min(5.0, max(0.05, idle / 4))
        while self._sessions or self._kept:
            await asyncio.sleep(every)
            now = time.monotonic()
            self._expire(now)
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
