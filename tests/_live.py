"""A real ``execr serve`` (uvicorn) for tests: a background thread of the test process, on a socket bound first.

The listening socket is bound before the server thread starts, so a client never races the
start-up: its connection waits in the socket's backlog until uvicorn serves it. If the
server thread ends, the socket is closed and waiting clients get a reset instead of hanging.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx

from _wait import await_state
from execr.server import ServerConfig
from execr.server._app import make_server

__all__ = ["Live"]


class Live:
    """A real server in a background thread; ``stop()`` it when done."""

    def __init__(self, log_level: str = "warning", **options: Any) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.config = ServerConfig(host="127.0.0.1", port=self._sock.getsockname()[1], **options)
        self.server = make_server(self.config, log_level=log_level)
        self.state = self.server.config.app.state.execr
        self.url = f"http://127.0.0.1:{self.config.port}"
        self.thread = threading.Thread(target=self._serve, name="test-uvicorn", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            self.server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def wait_started(self, timeout: float = 240.0) -> None:
        """Return once the server answers HTTP (the first request waits in the backlog until then)."""
        try:
            with httpx.Client(base_url=self.url, timeout=timeout) as c:
                c.get("/healthz")
        except httpx.TransportError as e:
            raise AssertionError(f"the server did not start (thread alive: {self.thread.is_alive()}): {e!r}") from e

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Return once ``/readyz`` says ready: the server started, its workers warmed up, its warm-up run passed."""
        deadline = time.monotonic() + timeout
        self.wait_started(timeout)
        assert self.state.pool.wait_ready(max(0.0, deadline - time.monotonic())), "the workers did not start"
        with httpx.Client(base_url=self.url) as c:
            await_state(lambda: c.get("/readyz").status_code == 200, "/readyz", max(1.0, deadline - time.monotonic()))

    def client(self, key: str | None = None, timeout: float = 60.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        assert not self.thread.is_alive()
