"""Session routes: ``/v1/sessions`` (create, run, checkpoint, fork, restore, close) over a ``SessionStore``.

A session lives in this server process (it holds a live wasm instance), not on the worker
pool; its calls run in threads, count against the same queue as ``/v1/execute`` and run one
at a time per session. It belongs to the API key that created it: any other key gets 404,
as for an id that never existed. Checkpoints travel as base64 in JSON: the client holds
them, so a session can move to another replica (or outlive this process) by restoring one
there; the server keeps none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .._exceptions import CheckpointRefused, InvalidArgument, RuntimeClosed, RuntimeUnavailable
from ._config import ServerConfig
from ._errors import _JSON, ApiError
from ._policy import PolicyError, _b64
from ._session_models import CheckpointOut, SessionCreate, SessionInfo, SessionRestore, SessionRun
from ._session_store import (
    CheckpointTooLarge,
    SessionNotFound,
    SessionsBusy,
    SessionsDisabled,
    SessionStore,
    TooManySessions,
)

if TYPE_CHECKING:
    from ._app import _State

__all__ = ["add_session_routes"]

_Docs = dict[int | str, dict[str, Any]]  # the documented error responses of each route


@contextlib.contextmanager
def _answers(state: _State) -> Iterator[None]:
    """Map the store's and the session's refusals to HTTP errors (the JSON error body)."""
    rejected = state.metrics.rejected
    try:
        yield
    except (SessionNotFound, RuntimeClosed) as e:  # SessionExpired is a RuntimeClosed
        raise ApiError(404, "not_found", str(e)) from e
    except TooManySessions as e:
        rejected.labels("queue_full").inc()
        raise ApiError(429, "too_many_sessions", str(e)) from e
    except SessionsBusy as e:
        rejected.labels("queue_full").inc()
        raise ApiError(429, "queue_full", str(e), {"Retry-After": "1"}) from e
    except SessionsDisabled as e:
        raise ApiError(403, "forbidden", str(e)) from e
    except PolicyError as e:
        rejected.labels("limit_exceeded").inc()
        raise ApiError(422, "limit_exceeded", str(e)) from e
    except (CheckpointRefused, CheckpointTooLarge) as e:
        rejected.labels("invalid").inc()
        raise ApiError(422, "checkpoint_refused", str(e)) from e
    except InvalidArgument as e:
        rejected.labels("invalid").inc()
        raise ApiError(422, "invalid_request", str(e)) from e
    except RuntimeUnavailable as e:
        raise ApiError(503, "unavailable", str(e)) from e


def _owner(request: Request) -> str:
    owner: str = request.scope["execr"]["key_id"]
    return owner


def _files(files: dict[str, Any]) -> dict[str, str | bytes]:
    return {p: v if isinstance(v, str) else _b64(f"files[{p!r}].base64", v.base64) for p, v in files.items()}


def add_session_routes(app: FastAPI, state: _State, config: ServerConfig) -> None:
    """The ``/v1/sessions`` routes over one ``SessionStore`` (also ``app.state.execr_sessions``, for ``/mcp``),
    closed with the app."""
    store = _open_store(app, state, config)
    docs: _Docs = {
        code: {"description": desc}
        for code, desc in (
            (401, "missing or wrong API key"),
            (404, "no such session for this API key (unknown, someone else's, closed or expired)"),
            (422, "invalid request, a limit over the server's cap, or a refused checkpoint"),
            (429, "too many sessions for this API key, or the queue is full"),
        )
    }
    _add_create_routes(app, state, store, docs)
    _add_read_routes(app, state, store, docs)
    _add_call_routes(app, state, store, docs)


def _open_store(app: FastAPI, state: _State, config: ServerConfig) -> SessionStore:
    """The app's ``SessionStore``: its calls count against the queue of ``/v1/execute``; closed with the app."""

    @contextlib.contextmanager
    def admit() -> Iterator[None]:
        state.admit(1)  # a session call counts against the queue of /v1/execute (and 503 while draining)
        try:
            yield
        finally:
            state.release(1)

    store = SessionStore(config, admit=admit)
    app.state.execr_sessions = store
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as value:
            try:
                yield value
            finally:
                await store.close()

    app.router.lifespan_context = lifespan
    return store


def _add_create_routes(app: FastAPI, state: _State, store: SessionStore, docs: _Docs) -> None:
    """``POST /v1/sessions`` and ``POST /v1/sessions/restore``."""

    @app.post("/v1/sessions", status_code=201, response_model=SessionInfo, responses=docs, summary="Create a session")
    async def create(body: SessionCreate, request: Request) -> JSONResponse:
        """A live interpreter: state carries from one `/run` to the next. It closes when idle past
        its `idle_timeout`, past its `lifetime` or out of `max_calls` (each at most the server's)."""
        with _answers(state):
            entry = await store.create(
                _owner(request),
                runtime=body.runtime,
                env=body.env,
                files=_files(body.files),
                limits=body.limits.given(),
                **body.budgets(),
            )
        return _JSON(entry.info(), status_code=201)

    @app.post("/v1/sessions/restore", status_code=201, response_model=SessionInfo, responses=docs)
    async def restore(body: SessionRestore, request: Request) -> JSONResponse:
        """A new session from a checkpoint taken here or on another server with the same runtime
        build. Its lifetime and calls budgets carry over; the ones given here can only tighten them.
        The body may be up to the server's max_checkpoint_bytes (in base64) plus 64 KiB."""
        with _answers(state):
            data = await asyncio.to_thread(_b64, "checkpoint", body.checkpoint)
            entry = await store.restore(
                _owner(request), data, env=body.env, limits=body.limits.given(), **body.budgets()
            )
        return _JSON(entry.info(), status_code=201)


def _add_read_routes(app: FastAPI, state: _State, store: SessionStore, docs: _Docs) -> None:
    """``GET /v1/sessions`` and ``GET /v1/sessions/{id}``."""

    @app.get("/v1/sessions", summary="This key's sessions")
    async def listing(request: Request) -> JSONResponse:
        return _JSON({"sessions": [entry.info() for entry in store.owned(_owner(request))]})

    @app.get("/v1/sessions/{session_id}", response_model=SessionInfo, responses=docs, summary="A session")
    async def show(session_id: str, request: Request) -> JSONResponse:
        with _answers(state):
            return _JSON(store.get(_owner(request), session_id).info())


def _add_call_routes(app: FastAPI, state: _State, store: SessionStore, docs: _Docs) -> None:
    """One session's ``/run``, ``/checkpoint``, ``/fork``, and ``DELETE`` to close it."""

    @app.post("/v1/sessions/{session_id}/run", responses=docs, summary="Run code in a session")
    async def run(session_id: str, body: SessionRun, request: Request) -> JSONResponse:
        """The body is `Result.to_dict()`, with `value` (the repr of the code's last expression) and
        `execution_count`. A call the sandbox stopped (timeout, fuel, memory, a crash) is rolled
        back: the session is as before it, and `error` says so. Guest failures are status 200."""
        info = request.scope["execr"]
        with _answers(state):
            if body.stdin_base64 is not None:
                if body.stdin:
                    raise InvalidArgument("give stdin or stdin_base64, not both")
                stdin: str | bytes = _b64("stdin_base64", body.stdin_base64)
            else:
                stdin = body.stdin
            result = await store.run(
                _owner(request),
                session_id,
                body.code,
                stdin=stdin,
                inputs=body.inputs or None,
                atomic=body.atomic,
                limits=body.limits.given(),
            )
        info["outcome"] = result.outcome.value
        return _JSON(result.to_dict())

    @app.post("/v1/sessions/{session_id}/checkpoint", response_model=CheckpointOut, responses=docs)
    async def checkpoint(session_id: str, request: Request) -> JSONResponse:
        """The session's state (memory it changed, files, counters, budgets) as base64; restore it
        with `POST /v1/sessions/restore`, here or on another replica. At most the server's
        max_checkpoint_bytes (else 422)."""
        with _answers(state):
            cp, data = await store.checkpoint(_owner(request), session_id)
        encoded, digest = await asyncio.to_thread(
            lambda: (base64.b64encode(data).decode("ascii"), hashlib.sha256(data).hexdigest())
        )
        out = {
            "checkpoint": encoded,
            "size": len(data),
            "sha256": digest,
            "runtime": cp.runtime,
            "execution_count": cp.info.get("execution_count", 0),
        }
        return _JSON(out)

    @app.post("/v1/sessions/{session_id}/fork", status_code=201, response_model=SessionInfo, responses=docs)
    async def fork(session_id: str, request: Request) -> JSONResponse:
        """A new, independent session from this one's state (fresh random state), with its limits and budgets."""
        with _answers(state):
            entry = await store.fork(_owner(request), session_id)
        return _JSON(entry.info(), status_code=201)

    @app.delete("/v1/sessions/{session_id}", status_code=204, responses=docs, summary="Close a session")
    async def close(session_id: str, request: Request) -> Response:
        with _answers(state):
            await store.close_session(_owner(request), session_id)
        return Response(status_code=204)
