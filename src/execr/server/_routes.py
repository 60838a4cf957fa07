"""Routes: ``/v1/execute``, ``/v1/execute/batch``, ``/v1/runtime``, the probes, ``/metrics``, and the OpenAPI schema."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from .._exceptions import InvalidArgument
from .._request import Request as RunRequest
from ._config import ServerConfig
from ._errors import _JSON, ApiError, _error_body, _error_response, _validation_message
from ._metrics import CONTENT_TYPE_LATEST
from ._models import BatchRequest, ExecuteRequest
from ._policy import PolicyError, build_request, policy_dict

if TYPE_CHECKING:
    from ._app import _State

__all__ = ["add_info_routes", "add_run_routes", "openapi_for"]


def _to_run(state: _State, body: ExecuteRequest) -> RunRequest:
    cfg = state.config
    try:
        return build_request(body, cfg.default_limits, cfg.max_limits)
    except PolicyError as e:
        state.metrics.rejected.labels("limit_exceeded").inc()
        raise ApiError(422, "limit_exceeded", str(e)) from e
    except InvalidArgument as e:
        state.metrics.rejected.labels("invalid").inc()
        raise ApiError(422, "invalid_request", str(e)) from e


def add_run_routes(app: FastAPI, state: _State, config: ServerConfig) -> None:
    """``POST /v1/execute`` and ``POST /v1/execute/batch``."""
    error_doc: dict[int | str, dict[str, Any]] = {
        code: {"description": desc}
        for code, desc in (
            (400, "malformed JSON"),
            (401, "missing or wrong API key"),
            (413, "body too large"),
            (422, "invalid request or a limit over the server's cap"),
            (429, "queue full; retry after 1 s"),
        )
    }

    @app.post("/v1/execute", responses=error_doc, summary="Run one program")
    async def execute(body: ExecuteRequest, request: Request) -> JSONResponse:
        """Run `code` as `python main.py ARGS` in a fresh sandbox; the body is `Result.to_dict()`.

        Guest failures (tracebacks, timeouts, memory, crashes) are data: status 200 with
        an `outcome` other than `completed`."""
        info = request.scope["execr"]
        run = _to_run(state, body)
        state.admit(1)
        try:
            result, queue_ms = await state.run(run)
        finally:
            state.release(1)
        info["outcome"] = result.outcome.value
        info["queue_ms"] = round(queue_ms, 3)
        return _JSON(result.to_dict())

    @app.post("/v1/execute/batch", responses=error_doc, summary="Run several programs")
    async def execute_batch(body: BatchRequest, request: Request) -> JSONResponse:
        """Run up to `max_batch` programs; `results` are in request order. An invalid item
        gets `{"error": {...}}` in its place; the others still run."""
        info = request.scope["execr"]
        rid = info["request_id"]
        if len(body.requests) > config.max_batch:
            state.metrics.rejected.labels("invalid").inc()
            raise ApiError(
                422,
                "invalid_request",
                f"requests: at most {config.max_batch} items per batch; got {len(body.requests)}",
            )
        slots: list[dict[str, Any] | RunRequest] = []
        for i, raw in enumerate(body.requests):
            try:
                slots.append(_to_run(state, ExecuteRequest.model_validate(raw)))
            except ValidationError as e:
                state.metrics.rejected.labels("invalid").inc()
                slots.append(_error_body("invalid_request", _validation_message(e.errors()), rid, index=i))
            except ApiError as e:
                slots.append(_error_body(e.type, e.message, rid, index=i))
        runs = [s for s in slots if isinstance(s, RunRequest)]
        width = min(len(runs), state.capacity)
        out: list[dict[str, Any]] = []
        if runs:
            state.admit(width)
            gate = asyncio.Semaphore(width)
            waits: list[float] = []

            async def one(r: RunRequest) -> dict[str, Any]:
                async with gate:
                    result, q = await state.run(r)
                    waits.append(q)
                    return result.to_dict()

            try:
                done = iter(await asyncio.gather(*(one(r) for r in runs)))
            finally:
                state.release(width)
            info["queue_ms"] = round(max(waits, default=0.0), 3)
            out = [next(done) if isinstance(s, RunRequest) else s for s in slots]
        else:
            out = [s for s in slots if isinstance(s, dict)]
        info["outcome"] = "batch"
        return _JSON({"results": out})


def add_info_routes(app: FastAPI, state: _State, config: ServerConfig) -> None:
    """``GET /v1/runtime``, ``/healthz``, ``/readyz`` and ``/metrics``."""

    @app.get("/v1/runtime", summary="Versions and the limit policy")
    async def runtime() -> JSONResponse:
        return JSONResponse(
            {
                **state.runtime_info,
                "workers": config.worker_count,
                "max_queue": config.max_queue,
                "max_batch": config.max_batch,
                "max_body_bytes": config.max_body_bytes,
                "limits": policy_dict(config.default_limits, config.max_limits),
            }
        )

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @app.get("/readyz", summary="Readiness: 200 once the workers are warm")
    async def readyz(request: Request) -> JSONResponse:
        if state.ready and not state.draining:
            return JSONResponse({"status": "ready", "workers": config.worker_count})
        why = "shutting down" if state.draining else (state.start_error or "workers are warming up")
        return _error_response(request.scope, 503, "not_ready", why, {"Retry-After": "1"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def openapi_for(app: FastAPI, config: ServerConfig) -> Callable[[], dict[str, Any]]:
    """The OpenAPI schema, with bearer security on every route that needs a key."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, ops in schema.get("paths", {}).items():
                if config.api_keys and not config.is_public(path):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi
