"""Session admission: how many sessions an owner may hold, and how many session calls run or wait.

At most ``max_sessions_per_key`` live sessions per owner, counting those being made (past it:
``TooManySessions``; 0: ``SessionsDisabled``). Every session call is admitted like a run
(``admit``; by default at most ``config.capacity`` running or waiting, else ``SessionsBusy``),
and at most ``worker_count`` run at once, each in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

from ._config import ServerConfig
from ._session_errors import SessionsBusy, SessionsDisabled, TooManySessions

__all__ = ["Admission"]

T = TypeVar("T")


class Admission:
    """The bounds of one store's sessions and calls (see the module docstring). Its state belongs to the event loop."""

    def __init__(
        self, config: ServerConfig, admit: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    ) -> None:
        self.config = config
        self.admit = admit or self._own_admission
        self._admitted = 0
        self._gate = asyncio.Semaphore(config.worker_count)
        self._pending: dict[str, int] = {}  # owner -> sessions being made (they count against the bound)

    @contextlib.contextmanager
    def _own_admission(self) -> Iterator[None]:
        if self._admitted >= self.config.capacity:
            raise SessionsBusy(f"the server is busy ({self._admitted} session calls running or waiting); retry later")
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def thread(self, fn: Callable[[], T]) -> T:
        """``fn()`` in a worker thread, at most ``worker_count`` at once."""
        async with self._gate:
            return await asyncio.to_thread(fn)

    @contextlib.asynccontextmanager
    async def new_session(self, owner: str, live: Callable[[], int]) -> AsyncIterator[None]:
        """Hold a place for one more session of ``owner`` (who holds ``live()`` sessions) while it is made
        (``TooManySessions`` if none)."""
        bound = self.config.max_sessions_per_key
        if bound == 0:
            raise SessionsDisabled("this server keeps no sessions (its operator set max_sessions_per_key to 0)")
        held = live() + self._pending.get(owner, 0)
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
