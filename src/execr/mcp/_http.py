"""HTTP: the streamable-HTTP endpoint (stateless by default), its key check, and the standalone server.

``Endpoint`` answers each POST on its own: a fresh SDK transport and server session per
request, so no ``Mcp-Session-Id`` is needed (many clients drop it) and no lifespan either,
which lets ``execr serve`` mount it at ``/mcp`` as it is. ``create_app`` wraps it (or, with
``stateful``, the SDK's session manager) in the same bearer-key check, body cap and
DNS-rebinding guard as ``execr serve``, plus ``/healthz``; ``serve_http`` runs it on uvicorn.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from anyio.abc import TaskStatus
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from ..server._auth import Authenticator
from ..server._config import ServerConfig
from ..server._session_store import SessionStore
from ._backend import Backend, HostBackend, LocalBackend, Runner, local_runtime
from ._config import McpConfig, rebinding_guard
from ._server import build_server, make_backend, session_store
from ._toolbox import Services

__all__ = ["Endpoint", "asgi_app", "create_app", "serve_http"]

log = logging.getLogger("execr.mcp")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/mcp"


def security(config: ServerConfig) -> TransportSecuritySettings:
    """Host/Origin checks when the server has no keys on loopback (see ``rebinding_guard``)."""
    guard = rebinding_guard(config)
    if guard is None:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts, origins = guard
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


async def _json(send: Send, status: int, body: dict[str, Any], headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": data})


class Endpoint:
    """A stateless MCP endpoint: each HTTP request gets its own transport and server session."""

    def __init__(self, server: Server[Any, Any], settings: TransportSecuritySettings) -> None:
        self.server = server
        self.settings = settings
        self.options = server.create_initialization_options()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        transport = StreamableHTTPServerTransport(
            mcp_session_id=None, is_json_response_enabled=True, security_settings=self.settings
        )

        async def serve(*, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            async with transport.connect() as (read, write):
                task_status.started()
                try:
                    await self.server.run(read, write, self.options, stateless=True)
                except Exception:  # the request gets the transport's error reply; the server keeps serving
                    log.exception("MCP request failed")

        async with anyio.create_task_group() as tg:
            await tg.start(serve)
            try:
                await transport.handle_request(scope, receive, send)
            finally:
                with anyio.CancelScope(shield=True):
                    await transport.terminate()


def asgi_app(config: ServerConfig, runner: Runner | None = None, sessions: SessionStore | None = None) -> ASGIApp:
    """The stateless MCP endpoint as an ASGI app, to mount at ``/mcp`` in ``execr serve``.

    ``runner`` runs a request through the host's pool (sharing its queue and metrics); without
    one, runs happen on threads of this process. ``sessions`` is the host's session store
    (``execr serve`` shares its own, so a key's sessions count once); without one, the endpoint
    makes its own. Keys, body size and logging are the host's job here (``execr serve``'s edge
    middleware covers every mounted route, and puts the caller's key id in the scope).
    """
    backend: Backend
    if runner is not None:
        backend = HostBackend(runner)
    else:
        backend = LocalBackend(
            local_runtime(config),
            config.worker_count,
            config.max_queue,
            config.runtimes,
        )
    store = sessions if sessions is not None else SessionStore(config)
    return Endpoint(build_server(Services(backend, config, store)), security(config))


class _Guard:
    """Bearer keys (``execr serve``'s ``Authenticator``) and the body cap, in front of the app.

    ``/healthz`` needs no key. A body over ``max_body_bytes`` (declared or streamed) gets 413
    before the MCP layer parses anything.
    """

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.auth = Authenticator(config.api_keys)
        self.limit = config.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        kid = self.auth.check(headers.get(b"authorization"))
        if kid is None:
            message = "missing or invalid API key (Authorization: Bearer KEY)"
            await _json(send, 401, {"error": {"type": "unauthorized", "message": message}}, _BEARER)
            return
        scope["execr"] = {"key_id": kid}  # who owns the sessions this request makes or uses
        too_big = {"error": {"type": "payload_too_large", "message": f"request body larger than {self.limit} bytes"}}
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await _json(send, 413, too_big)
            return
        body, more = bytearray(), True
        while more:  # read the whole (capped) body first, then replay it
            chunk = await receive()
            if chunk["type"] != "http.request":
                break
            body += chunk.get("body", b"")
            more = chunk.get("more_body", False)
            if len(body) > self.limit:
                await _json(send, 413, too_big)
                return
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


_BEARER = ((b"www-authenticate", b"Bearer"),)


def create_app(config: McpConfig) -> ASGIApp:
    """The standalone HTTP app: ``/mcp`` (stateless unless ``config.stateful``) and ``/healthz``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    cfg = config.server
    backend = make_backend(config)
    sessions = session_store(config, backend)
    server = build_server(Services(backend, cfg, sessions))
    manager: StreamableHTTPSessionManager | None = None
    endpoint: ASGIApp
    if config.stateful:
        manager = StreamableHTTPSessionManager(server, json_response=True, security_settings=security(cfg))
        endpoint = manager.handle_request
    else:
        endpoint = Endpoint(server, security(cfg))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not cfg.api_keys:
            log.warning("no API keys configured: authentication is OFF (%s)", cfg.host)
        await backend.start()
        try:
            if manager is not None:
                async with manager.run():
                    yield
            else:
                yield
        finally:
            await sessions.close()
            await backend.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    class _Mcp:  # a class, so Starlette passes the raw ASGI call through
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await endpoint(scope, receive, send)

    app = Starlette(
        routes=[Route(PATH, endpoint=_Mcp(), methods=["GET", "POST", "DELETE"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )
    return _Guard(app, cfg)


def serve_http(config: McpConfig) -> None:
    """Serve ``config`` on uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    cfg = config.server
    logging.getLogger("execr.mcp").setLevel(cfg.log_level.upper())
    uvicorn.run(
        create_app(config),
        host=cfg.host,
        port=cfg.port,
        log_level=cfg.log_level,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=int(cfg.grace) + 1,
    )
