"""AsyncSession: ``Session`` for asyncio, each call run in a worker thread."""

from __future__ import annotations

import asyncio
from typing import Any

from ._checkpoint import Checkpoint
from ._exceptions import RuntimeClosed
from ._results import Result
from ._session import Session

__all__ = ["AsyncSession"]


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
