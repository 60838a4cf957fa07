"""Errors over HTTP: the one JSON error body, and handlers that turn every failure into it (never a bare 500)."""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from ._app import _State

__all__ = ["ApiError", "install_error_handlers"]

Scope = MutableMapping[str, Any]

log = logging.getLogger("execr.server")


_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "queue_full",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answered with ``{"error": {"type", "message", "request_id"}}``."""

    def __init__(self, status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers or {}


class _JSON(JSONResponse):
    """A JSON response that always renders: text that is not valid Unicode (a lone surrogate
    echoed from the request) is sent \\u-escaped instead of failing with a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _clean(text: str) -> str:
    """``text`` as valid Unicode (lone surrogates from a request shown as ``\\udXXX``)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error_body(type_: str, message: str, request_id: str | None, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": _clean(message), "request_id": request_id, **extra}}


def _error_response(
    scope: Scope, status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    rid = scope.get("execr", {}).get("request_id")
    return _JSON(_error_body(type_, message, rid), status_code=status, headers=headers)


class _BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        msg = str(err.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def install_error_handlers(app: FastAPI, state: _State) -> None:
    """Every error becomes the JSON error body (``{"error": {type, message, request_id}}``), never a bare 500."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(request.scope, exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            state.metrics.rejected.labels("invalid").inc()
            return _error_response(
                request.scope, 400, "malformed_json", f"the body is not valid JSON: {_validation_message(errors)}"
            )
        state.metrics.rejected.labels("invalid").inc()
        return _error_response(request.scope, 422, "invalid_request", _validation_message(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "error")
        return _error_response(request.scope, exc.status_code, type_, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(request.scope, 500, "internal_error", "internal server error")
