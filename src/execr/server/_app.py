"""The HTTP app: FastAPI routes over a ``WorkerPool``, plus ``serve()`` (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from fastapi import FastAPI

from .. import __version__
from .._exceptions import InvalidArgument, RuntimeClosed
from .._parallel._pool import PoolFull, WorkerPool
from .._request import Request as RunRequest
from .._request import make_request
from .._results import Outcome, Result
from ._auth import Authenticator
from ._config import ServerConfig, is_loopback
from ._errors import ApiError, _BodyTooLarge, _error_response, install_error_handlers
from ._metrics import Metrics
from ._routes import add_info_routes, add_run_routes, openapi_for
from ._sessions import add_session_routes

__all__ = ["ApiError", "create_app", "serve"]

log = logging.getLogger("execr.server")
access_log = logging.getLogger("execr.server.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _public_runtime(entry: dict[str, Any]) -> dict[str, Any]:
    """One runtime's entry of ``Runtime.info()`` without host paths (clients see versions and state)."""
    keep = ("python_version", "description", "available", "can_import", "packages", "preload", "binary_sha256")
    out = {key: entry[key] for key in keep if key in entry}
    if "snapshot" in entry:
        out["snapshot_cached"] = entry["snapshot"]["cached"]
    if entry.get("available") is False:
        out["error"] = "not installed on this server"
    return out


class _State:
    """Everything the app shares between requests."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.pool: WorkerPool | None = None
        self.auth = Authenticator(config.api_keys)
        self.admitted = 0  # runs queued or in flight (event-loop owned, no lock needed)
        self.capacity = config.capacity
        self.ready = False
        self.draining = False
        self.start_error: str | None = None
        self.runtime_info: dict[str, Any] = {}
        self.metrics = Metrics(
            lambda: float(self.pool.pending) if self.pool else 0.0,
            lambda: float(self.pool.in_flight) if self.pool else 0.0,
        )
        self._drained: asyncio.Task[None] | None = None

    # -- admission --

    def admit(self, n: int) -> None:
        if self.draining or self.pool is None or self.pool.closed:
            self.metrics.rejected.labels("unavailable").inc()
            raise ApiError(503, "unavailable", "the server is shutting down or not started", {"Retry-After": "1"})
        if self.admitted + n > self.capacity:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(
                429,
                "queue_full",
                f"too many runs queued ({self.admitted} of {self.capacity} slots in use); retry later",
                {"Retry-After": "1"},
            )
        self.admitted += n

    def release(self, n: int) -> None:
        self.admitted -= n

    async def run(self, request: RunRequest) -> tuple[Result, float]:
        """Run one request on the pool: (result, ms spent waiting for a worker)."""
        assert self.pool is not None
        t0 = time.perf_counter()
        try:
            future = self.pool.submit(request, block=False)
        except PoolFull as e:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(429, "queue_full", f"too many runs queued: {e}", {"Retry-After": "1"}) from e
        except RuntimeClosed as e:
            self.metrics.rejected.labels("unavailable").inc()
            raise ApiError(503, "unavailable", "the server is shutting down") from e
        try:
            result = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            self.pool.cancel(future)  # the client went away or the server is stopping
            raise
        waited = (time.perf_counter() - t0) - result.duration
        self.metrics.runs.labels(result.outcome.value).inc()
        self.metrics.duration.observe(result.duration)
        return result, max(0.0, waited * 1000.0)

    # -- lifecycle --

    async def start(self) -> None:
        cfg = self.config
        self.pool = await asyncio.to_thread(
            WorkerPool,
            cfg.worker_count,
            snapshot=cfg.snapshot,
            cache_dir=cfg.cache_dir,
            max_queue=cfg.max_queue + cfg.worker_count,
            runtimes=cfg.runtimes,
            runtime_factory=cfg.runtime_factory,
        )
        asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        assert self.pool is not None
        try:
            from .._runtime import Runtime

            info = await asyncio.to_thread(
                lambda: Runtime(snapshot=self.config.snapshot, cache_dir=self.config.cache_dir).info()
            )
            self.runtime_info = {
                "execr_version": __version__,
                "python_version": info["python_version"],
                "binary_sha256": info["binary_sha256"],
                "wasmtime_version": info["wasmtime_version"],
                "bootstrap_version": info["bootstrap_version"],
                "snapshot": self.config.snapshot,
                "runtimes": {name: _public_runtime(entry) for name, entry in info["runtimes"].items()},
            }
            ok = await asyncio.to_thread(self.pool.wait_ready, None)
            if ok:
                result = await asyncio.wrap_future(self.pool.submit(make_request("pass", pythonpath=None)))
                ok = result.outcome is Outcome.COMPLETED
                if not ok:
                    self.start_error = f"warm-up run ended {result.outcome.value}: {result.error}"
            self.ready = ok and not self.pool.closed
            if self.ready:
                log.info("execr server ready: %d workers warm", self.pool.workers)
            elif self.start_error:
                log.error("execr server not ready: %s", self.start_error)
        except Exception as e:  # keep serving /healthz; /readyz says why
            self.start_error = f"{type(e).__name__}: {e}"
            log.exception("execr server warm-up failed")

    async def drain(self, grace: float) -> None:
        """Stop admitting; let in-flight runs finish for up to ``grace`` s; cancel the rest; close the pool."""
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_task(self._drain(grace))
        await asyncio.shield(self._drained)

    async def _drain(self, grace: float) -> None:
        self.draining = True
        self.ready = False
        pool = self.pool
        if pool is None:
            return
        deadline = time.monotonic() + grace
        while (pool.pending or pool.in_flight) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if pool.pending or pool.in_flight:
            log.warning("grace period over: cancelling %d pending and %d running runs", pool.pending, pool.in_flight)
        await asyncio.to_thread(pool.close, True)


# -- the edge: request ids, auth, body size, access log (pure ASGI, cheap) --


class _Edge:
    def __init__(self, app: Any, state: _State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        state = self.state
        headers = dict(scope["headers"])  # lower-case names; a repeated header keeps its last value
        rid_in = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = rid_in if _REQUEST_ID.match(rid_in) else uuid.uuid4().hex
        info: dict[str, Any] = {"request_id": rid, "key_id": None, "outcome": None, "queue_ms": None}
        scope["execr"] = info
        status = [500]
        rid_header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            path: str = scope["path"]
            if not state.config.is_public(path):  # unknown paths too: 401 before 404 says nothing
                kid = state.auth.check(headers.get(b"authorization"))
                if kid is None:
                    state.metrics.rejected.labels("unauthorized").inc()
                    await _error_response(
                        scope,
                        401,
                        "unauthorized",
                        "missing or invalid API key (Authorization: Bearer KEY)",
                        {"WWW-Authenticate": "Bearer"},
                    )(scope, receive, send_with_id)
                    return
                info["key_id"] = kid
            if scope.get("method") not in ("GET", "HEAD"):
                limit = state.config.body_limit(path)
                length = headers.get(b"content-length")
                if length is not None:
                    try:
                        too_big = int(length) > limit
                    except ValueError:
                        too_big = False
                    if too_big:
                        state.metrics.rejected.labels("too_large").inc()
                        await _error_response(
                            scope, 413, "payload_too_large", f"request body larger than {limit} bytes"
                        )(scope, receive, send_with_id)
                        return
                receive = _limited(receive, limit, state)
            await self.app(scope, receive, send_with_id)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                _log_access(scope, info, status[0], t0)


def _log_access(scope: Scope, info: dict[str, Any], status: int, t0: float) -> None:
    """One JSON line per request on the ``execr.server.access`` logger."""
    line = {
        "request_id": info["request_id"],
        "key_id": info["key_id"],
        "method": scope.get("method"),
        "path": scope.get("path"),
        "status": status,
        "outcome": info["outcome"],
        "duration_ms": round((time.perf_counter() - t0) * 1000.0, 3),
        "queue_ms": info["queue_ms"],
    }
    access_log.info(json.dumps(line, separators=(",", ":")))


def _limited(receive: Receive, limit: int, state: _State) -> Receive:
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                state.metrics.rejected.labels("too_large").inc()
                raise _BodyTooLarge(limit)
        return message

    return wrapped


# -- the app --


def _mount_mcp(app: FastAPI, state: _State, config: ServerConfig) -> None:
    """``/mcp``: the MCP server (extra ``mcp``) behind the same edge (keys, body cap), caps, pool and sessions."""
    if importlib.util.find_spec("mcp") is None:
        return
    from ..mcp import asgi_app

    async def run_for_mcp(request: RunRequest) -> Result:
        state.admit(1)  # MCP runs count against the same queue as /v1/execute
        try:
            return (await state.run(request))[0]
        finally:
            state.release(1)

    endpoint = asgi_app(config, run_for_mcp, sessions=getattr(app.state, "execr_sessions", None))
    app.add_route("/mcp", endpoint, methods=["GET", "POST", "DELETE"], include_in_schema=False)


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI app for ``config`` (the pool starts with the app's lifespan)."""
    if not isinstance(config, ServerConfig):
        raise InvalidArgument(f"create_app() takes a ServerConfig; got {type(config).__name__}")
    state = _State(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not config.api_keys:
            if is_loopback(config.host):
                log.warning("no API keys configured: authentication is OFF (serving loopback %s only)", config.host)
            else:
                log.warning("no API keys configured: authentication is OFF on non-loopback %s (insecure)", config.host)
        await state.start()
        try:
            yield
        finally:
            await state.drain(config.grace)

    app = FastAPI(
        title="execr",
        version=__version__,
        description="Run untrusted Python in CPython compiled to WebAssembly, on wasmtime. "
        "When the server has API keys, every route needs `Authorization: Bearer KEY` except "
        "/healthz and /readyz (and /metrics or /docs if the operator made them public).",
        lifespan=lifespan,
    )
    app.state.execr = state
    install_error_handlers(app, state)
    add_run_routes(app, state, config)
    add_info_routes(app, state, config)
    add_session_routes(app, state, config)
    _mount_mcp(app, state, config)
    app.openapi = openapi_for(app, config)  # type: ignore[method-assign]
    app.add_middleware(_Edge, state=state)
    return app


# -- serving --


def _setup_logging(level: str) -> None:
    root = logging.getLogger("execr.server")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(level.upper())


class _Server(uvicorn.Server):
    """uvicorn, with shutdown ordered as: stop accepting, drain runs for the grace period, cancel the rest."""

    def __init__(self, config: uvicorn.Config, state: _State) -> None:
        super().__init__(config)
        self.execr_state = state

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in getattr(self, "servers", []):
            server.close()
        drain = asyncio.get_running_loop().create_task(self.execr_state.drain(self.execr_state.config.grace))
        try:
            await super().shutdown(sockets)
        finally:
            await drain


def uvicorn_config(config: ServerConfig, app: Any | None = None, **overrides: Any) -> uvicorn.Config:
    """The uvicorn ``Config`` ``serve`` uses (tests and benchmarks reuse it)."""
    app = app if app is not None else create_app(config)
    cap = config.max_limits.timeout
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "log_level": config.log_level,
        "access_log": False,  # execr.server.access logs one JSON line per request instead
        "ws": "none",
        "lifespan": "on",
        "timeout_graceful_shutdown": config.grace + (cap if cap is not None else 60.0) + 10.0,
        "server_header": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def make_server(config: ServerConfig, **overrides: Any) -> uvicorn.Server:
    """A uvicorn server for ``config`` whose shutdown drains the pool (``server.run()`` to serve)."""
    app = create_app(config)
    return _Server(uvicorn_config(config, app, **overrides), app.state.execr)


def serve(config: ServerConfig) -> None:
    """Serve ``config`` until SIGINT/SIGTERM (then drain gracefully)."""
    _setup_logging(config.log_level)
    server = make_server(config)
    server.run()
