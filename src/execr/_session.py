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
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ._checkpoint import Checkpoint, pack_files, unpack_files
from ._exceptions import CheckpointRefused, InvalidArgument, RuntimeClosed, RuntimeUnavailable, SessionExpired
from ._image._flavors import flavor
from ._limits import UNSET, Limits, Unset, _number
from ._mounts import Mount
from ._process import Phase, at_exit
from ._request import make_request
from ._results import Outcome, Result
from ._runtime import Runtime, SessionSlot, default_runtime
from ._tools import DEFAULT_MAX_CALLS, ToolBox
from ._workspace import Workspace

__all__ = ["AsyncSession", "Session"]

_KEPT = (Outcome.COMPLETED, Outcome.FAILED)  # outcomes whose state stands (the guest's own end)
_PER_CALL = ("timeout", "fuel", "max_stdout", "max_stderr", "max_returned_file_bytes")


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
        day = "1e9 s (about 31 years)"
        self.idle_timeout: float | None = _number(
            "idle_timeout", idle_timeout, integer=False, minimum=0, maximum=1e9, why=day
        )
        self.lifetime: float | None = _number("lifetime", lifetime, integer=False, minimum=0, maximum=1e9, why=day)
        self.max_calls: int | None = _number(
            "max_calls", max_calls, integer=True, minimum=1, maximum=2**62, why="2**62"
        )
        self._tools = ToolBox.of(tools, tool_permission, max_tool_calls)
        if self._tools is not None and not flavor(self._base.runtime).host_calls:
            raise InvalidArgument(f"tools= needs a runtime with host functions; {self._base.runtime!r} has none")
        self._lock = threading.RLock()
        self._closed: str | None = None
        self._calls = 0
        self._count = 0
        self._age = 0.0  # seconds lived before this process (a restored session's past)
        self._cp: Checkpoint | None = None  # the last checkpoint, while no call has run since
        spec = flavor(self._base.runtime)
        self._metered = spec.metered(self._base.limits.fuel)
        if _checkpoint is not None:
            self._metered = _checkpoint.metered
        snap = self._rt._snapshot_module(spec.name, self._metered)
        if snap is None:
            raise RuntimeUnavailable(f"sessions need the {spec.name} snapshot: {self._rt.snapshot_errors[spec.name]}")
        if not snap.compiled.recycle:
            raise RuntimeUnavailable(f"the {spec.name} runtime's instances cannot be saved and rolled back")
        self._key = _key(self._rt, spec.name, self._metered)
        live = snap.compiled.host.live(snap.compiled)
        try:
            ws = Workspace(
                root=None,
                mounts=self._base.mounts,
                packages=self._base.pythonpath,
                files={} if _checkpoint is not None else dict(self._base.files),
            )
        except BaseException:
            live.close()
            raise
        self._slot = SessionSlot(live=live, snap=snap, workspace=ws)
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
        if cp.key != self._key or cp.runtime != self._base.runtime:
            raise CheckpointRefused(
                f"checkpoint is for another runtime or binary ({cp.runtime}, {cp.key}); this session is "
                f"{self._base.runtime}, {self._key}"
            )
        limit = self._base.limits.memory_limit
        if limit is not None and cp.data_len > limit:
            raise CheckpointRefused(f"checkpoint memory of {cp.data_len} bytes is over the memory_limit of {limit}")
        unpack_files(cp.files, self._slot.workspace.root)
        problem = self._slot.workspace.rebase()
        if problem is not None:
            raise CheckpointRefused(f"checkpoint files cannot be restored: {problem}")
        try:
            self._slot.live.map(_image(cp))
        except (ValueError, OSError) as e:
            raise CheckpointRefused(f"checkpoint memory cannot be restored: {e}") from None
        info = cp.info
        self._count = int(info.get("execution_count", 0))
        self._calls = int(info.get("calls", 0))
        self._age = float(info.get("age", 0.0))
        self._slot.fresh = self._count == 0 and self._calls == 0
        for name, mine in (("max_calls", self.max_calls), ("lifetime", self.lifetime)):
            theirs = info.get(name)
            if theirs is not None and (mine is None or theirs < mine):
                setattr(self, name, theirs)  # a restore can only tighten

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
        why = None
        if self.idle_timeout is not None and now - self._last > self.idle_timeout:
            why = f"expired: idle for more than {self.idle_timeout:g} s"
        elif self.lifetime is not None and self._age + now - self._born > self.lifetime:
            why = f"expired: older than its lifetime of {self.lifetime:g} s"
        elif self.max_calls is not None and self._calls >= self.max_calls:
            why = f"expired: it made its {self.max_calls} calls"
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
        bad = set(limit_kwargs) - set(_PER_CALL)
        if bad:
            raise InvalidArgument(f"per-call limits are {', '.join(_PER_CALL)}; got {', '.join(sorted(bad))}")
        if "fuel" in limit_kwargs and limit_kwargs["fuel"] is not None and not self._metered:
            raise InvalidArgument("a per-call fuel limit needs a metered session: create it with fuel=N")
        if not isinstance(atomic, bool):
            raise InvalidArgument(f"atomic must be a bool; got {type(atomic).__name__}")
        base = self._base
        request = make_request(
            code,
            stdin,
            runtime=base.runtime,
            env=dict(base.env),
            mounts=base.mounts,
            pythonpath=base.pythonpath,
            limits=base.limits.replace(**limit_kwargs),
            inputs=inputs,
        )
        with self._lock:
            self._check()
            self._calls += 1
            slot = self._slot
            saved = slot.live.save(reuse=True)
            self._cp = None
            result = self._rt.run(request, value=True, session=slot, tools=self._tools)
            undo = result.outcome not in _KEPT or (atomic and not result.ok)
            if undo:
                try:
                    slot.live.rollback(saved)
                except OSError as e:
                    self._shut(f"closed: a failed call could not be rolled back ({e})")
                    raise RuntimeClosed(f"this session was closed: a failed call could not be rolled back ({e})") from e
                note = "the session was rolled back to before this call"
                result = _replace(result, error=f"{result.error}; {note}" if result.error else note, value=None)
            else:
                self._count += 1
                slot.fresh = False
                result = _replace(result, execution_count=self._count)
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
            self._cp = Checkpoint(
                runtime=self._base.runtime,
                key=self._key,
                metered=self._metered,
                data_len=image.data_len,
                stack_pointer=image.stack_pointer,
                pages=image.pages(),  # type: ignore[arg-type]  # read-only views of the image
                files=pack_files(self._slot.workspace.root),
                info=info,
            )
            object.__setattr__(self._cp, "_image", image)  # forks and restores of it map the image
            return self._cp

    def fork(self) -> Session:
        """A new, independent session starting from this one's state, with fresh random state."""
        cp = self.checkpoint()
        child = Session._from(cp, self._rt, self._base, self.idle_timeout)
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

    @classmethod
    def _from(cls, cp: Checkpoint, rt: Runtime, base: Any, idle: float | None) -> Session:
        return cls(
            cp.runtime,
            on=rt,
            env=dict(base.env),
            mounts=base.mounts,
            pythonpath=base.pythonpath,
            limits=base.limits,
            idle_timeout=idle,
            lifetime=None,
            max_calls=None,
            _checkpoint=cp,
        )

    # -- lifecycle --

    def _idle(self) -> None:
        """Close the session if it has been idle past ``idle_timeout`` (called by the reaper thread)."""
        if not self._lock.acquire(blocking=False):
            return  # a call is running: not idle
        try:
            idle = self.idle_timeout
            if self._closed is None and idle is not None and time.monotonic() - self._last > idle:
                self._shut(f"expired: idle for more than {idle:g} s")
        finally:
            self._lock.release()

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


_keys: weakref.WeakKeyDictionary[Runtime, dict[tuple[str, bool], str]] = weakref.WeakKeyDictionary()


def _key(rt: Runtime, name: str, metered: bool) -> str:
    """The snapshot key a checkpoint must match (its cache entry's name), computed once per Runtime."""
    keys = _keys.setdefault(rt, {})
    if (name, metered) not in keys:
        keys[(name, metered)] = rt.artifacts(name, metered).dir.name
    return keys[(name, metered)]


def _image(cp: Checkpoint) -> Any:
    """``cp``'s pages in a memfd, made once per Checkpoint object (forks and restores map it)."""
    from ._sandbox import Image, State

    image = cp.__dict__.get("_image")
    if image is None:
        image = Image(State(cp.data_len, cp.stack_pointer, cp.pages))
        object.__setattr__(cp, "_image", image)
    return image


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
            if session.idle_timeout is None:
                return
            self._sessions.add(session)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="execr-session-reaper", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(self.TICK)
            with self._lock:
                sessions = list(self._sessions)
            for session in sessions:
                if session.closed:
                    with self._lock:
                        self._sessions.discard(session)
                else:
                    session._idle()

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


class AsyncSession:
    """``Session`` for asyncio: the same arguments; ``run``, ``checkpoint``, ``fork``, ``restore`` and
    ``close`` are awaitable and run the session in a worker thread."""

    def __init__(self, runtime: str = "default", **kwargs: Any) -> None:
        self._kwargs = dict(kwargs, runtime=runtime)
        self._session: Session | None = None

    @classmethod
    def _wrap(cls, session: Session) -> AsyncSession:
        out = cls.__new__(cls)
        out._kwargs, out._session = {}, session
        return out

    async def start(self) -> AsyncSession:
        """Create the session (``async with`` does this)."""
        if self._session is None:
            kwargs = dict(self._kwargs)
            session = await asyncio.to_thread(lambda: Session(**kwargs))
            if session._tools is not None:  # async tools run on this event loop
                session._tools = session._tools.with_loop(asyncio.get_running_loop())
            self._session = session
        return self

    @property
    def session(self) -> Session:
        """The underlying ``Session``."""
        if self._session is None:
            raise RuntimeClosed("the session is not started: use 'async with AsyncSession(...)' or await start()")
        return self._session

    async def run(self, code: str, **kwargs: Any) -> Result:
        """``Session.run`` in a worker thread."""
        session = self.session
        return await asyncio.to_thread(lambda: session.run(code, **kwargs))

    async def checkpoint(self) -> Checkpoint:
        """``Session.checkpoint`` in a worker thread."""
        return await asyncio.to_thread(self.session.checkpoint)

    async def fork(self) -> AsyncSession:
        """``Session.fork`` in a worker thread."""
        return AsyncSession._wrap(await asyncio.to_thread(self.session.fork))

    @classmethod
    async def restore(cls, checkpoint: Checkpoint | bytes, **kwargs: Any) -> AsyncSession:
        """``Session.restore`` in a worker thread."""
        return cls._wrap(await asyncio.to_thread(lambda: Session.restore(checkpoint, **kwargs)))

    async def close(self) -> None:
        """``Session.close`` in a worker thread."""
        if self._session is not None:
            await asyncio.to_thread(self._session.close)

    async def __aenter__(self) -> AsyncSession:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
