"""Config: how ``execr mcp`` serves (a frozen ``McpConfig`` around ``execr serve``'s ``ServerConfig``).

The API keys, the operator's caps, the queue, the host and port and the worker count are
``execr serve``'s own ``ServerConfig``, so both services take the same flags and enforce
the same policy. Importing this module needs nothing beyond execr (no MCP SDK).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from .._exceptions import InvalidArgument, shown
from ..server._config import ServerConfig, is_loopback

__all__ = ["TRANSPORTS", "McpConfig", "rebinding_guard"]

Transport = Literal["stdio", "http"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "http")


@dataclasses.dataclass(frozen=True)
class McpConfig:
    """How ``execr mcp`` runs.

    - ``server``: keys, caps, queue, host, port, workers and runtimes, exactly as for
      ``execr serve`` (keys and host matter only with the ``http`` transport).
    - ``transport``: ``"stdio"`` (one client: the process that started the server) or
      ``"http"`` (streamable HTTP at ``/mcp``).
    - ``stateful``: HTTP only. By default every request stands alone (no ``Mcp-Session-Id``),
      which works with clients that drop that header; ``True`` keeps SDK sessions.
    - ``in_process``: runs happen on threads of the server process (at most
      ``server.worker_count`` at once) rather than in a ``WorkerPool`` of
      ``server.worker_count`` processes.
    """

    server: ServerConfig = dataclasses.field(default_factory=ServerConfig)
    transport: Transport = "stdio"
    stateful: bool = False
    in_process: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.server, ServerConfig):
            raise InvalidArgument(f"server must be an execr.server.ServerConfig; got {type(self.server).__name__}")
        if self.transport not in TRANSPORTS:
            raise InvalidArgument(
                f"transport must be one of {', '.join(map(repr, TRANSPORTS))}; got {shown(self.transport)}"
            )
        for flag in ("stateful", "in_process"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidArgument(f"{flag} must be a bool; got {shown(getattr(self, flag))}")
        if self.stateful and self.transport != "http":
            raise InvalidArgument("stateful applies to the http transport only")

    @property
    def concurrency(self) -> int:
        """Runs executing at once (threads in process, or worker processes)."""
        return self.server.worker_count


def rebinding_guard(config: ServerConfig) -> tuple[list[str], list[str]] | None:
    """(allowed Host values, allowed Origin values) for DNS-rebinding protection, or None when off.

    Without API keys a loopback server is reachable by any web page the user opens through
    DNS rebinding, so Host and Origin must name this machine. With keys (a page cannot
    know one) or on a public host the operator opened with ``--insecure``, it is off.
    """
    if config.api_keys or not is_loopback(config.host):
        return None
    names = ["127.0.0.1", "localhost", "[::1]"]
    if config.host not in names and ":" not in config.host:
        names.append(config.host)
    return [f"{n}:*" for n in names] + names, [f"http://{n}:*" for n in names] + [f"http://{n}" for n in names]
