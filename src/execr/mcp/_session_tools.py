"""Session tools: ``session_create``, ``session_run``, ``session_checkpoint``, ``session_fork``,
``session_restore`` and ``session_close``, over the server's ``SessionStore``.

The server stays stateless at the protocol level: every call names its session (or
checkpoint) by id, so clients that drop ``Mcp-Session-Id`` work. A session belongs to the
caller that made it (the API key over HTTP; the one client on stdio), counts against
``max_sessions_per_key``, and closes when idle. Checkpoints stay on the server, named by an id
(a blob in a tool result is no use to an agent): the last ``max_checkpoints_per_key`` per
caller, each for ``max_session_lifetime`` at most.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from mcp import types

from .._results import Outcome
from ..server._policy import PolicyError, _b64
from ..server._session_store import Entry, SessionNotFound, SessionStore
from ._backend import Busy
from ._hints import hint
from ._render import render
from ._session_models import (
    SessionCheckpointInput,
    SessionCheckpointOutput,
    SessionCloseInput,
    SessionCloseOutput,
    SessionCreateInput,
    SessionForkInput,
    SessionOutput,
    SessionRestoreInput,
    SessionRunInput,
    SessionRunOutput,
)
from ._toolbox import Refused, Services, ToolSpec

__all__ = ["SESSION_TOOLS"]

_KEPT = (Outcome.COMPLETED, Outcome.FAILED)


def _store(services: Services) -> SessionStore:
    if services.sessions is None:
        raise SessionNotFound("this server has no session tools configured")
    return services.sessions


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """The store's and the host's refusals as the toolbox's (``Refused``, ``Busy``)."""
    try:
        yield
    except PolicyError as e:
        raise Refused(f"{e}; ask for at most the cap (list_runtimes shows this server's limits)") from e
    except Exception as e:
        if getattr(e, "status", None) in (429, 503):  # execr serve's queue_full / unavailable, when mounted at /mcp
            raise Busy(f"the server is busy: {e}") from e
        raise


def _session(entry: Entry) -> types.CallToolResult:
    info = entry.info()
    out = SessionOutput(
        session_id=entry.id,
        runtime=info["runtime"],
        execution_count=info["execution_count"],
        idle_timeout=info["idle_timeout"],
        lifetime=info["lifetime"],
        max_calls=info["max_calls"],
    )
    return _structured(out.model_dump(mode="json"), f"session {entry.id} is ready")


def _structured(data: dict[str, Any], line: str) -> types.CallToolResult:
    text = f"{line}\n{json.dumps(data, ensure_ascii=False)}"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], structuredContent=data)


def _call_limits(timeout: float | None) -> dict[str, Any]:
    return {} if timeout is None else {"timeout": timeout}


async def session_create(services: Services, args: SessionCreateInput) -> types.CallToolResult:
    """A new session for the caller."""
    store = _store(services)
    files = {p: v if isinstance(v, str) else _b64(f"files[{p!r}].base64", v.base64) for p, v in args.files.items()}
    budgets: dict[str, Any] = {} if args.idle_timeout is None else {"idle_timeout": args.idle_timeout}
    with _refusals():
        entry = await store.create(
            services.owner(), runtime=args.runtime, files=files, limits=_call_limits(args.timeout), **budgets
        )
    return _session(entry)


async def session_run(services: Services, args: SessionRunInput) -> types.CallToolResult:
    """One call in the caller's session: rendered like run_python's, plus ``value`` and whether it was undone."""
    store = _store(services)
    owner = services.owner()
    with _refusals():
        entry = store.get(owner, args.session_id)
        result = await store.run(
            owner,
            args.session_id,
            args.code,
            stdin=args.stdin,
            inputs=args.inputs or None,
            atomic=args.atomic,
            limits=_call_limits(args.timeout),
        )
    undone = result.outcome not in _KEPT or (args.atomic and not result.ok)  # as Session.run decides
    why = hint(
        result, entry.session.runtime, entry.limits.replace(**_call_limits(args.timeout)), services.config.max_limits
    )
    if why is not None and undone:
        why += "; the session was rolled back: its state is as it was before this call"
    elif why is not None:
        why += "; what ran before the error stays done in the session"
    return render(
        result,
        entry.session.runtime,
        why,
        SessionRunOutput,
        session_id=entry.id,
        value=result.value,
        execution_count=None if undone else result.execution_count,
        rolled_back=undone,
    )


async def session_checkpoint(services: Services, args: SessionCheckpointInput) -> types.CallToolResult:
    """Keep the session's state on the server; the id restores it."""
    store = _store(services)
    owner = services.owner()
    with _refusals():
        cp, data = await store.checkpoint(owner, args.session_id)
        kept = store.keep(owner, cp, data)
    out = SessionCheckpointOutput(
        checkpoint_id=kept.id,
        session_id=args.session_id,
        execution_count=int(cp.info.get("execution_count", 0)),
        size=kept.size,
        sha256=kept.sha256,
        expires_in=round(max(0.0, kept.expires - time.monotonic()), 3),
    )
    return _structured(out.model_dump(mode="json"), f"checkpoint {kept.id} kept")


async def session_fork(services: Services, args: SessionForkInput) -> types.CallToolResult:
    """A new session from the caller's session's state."""
    store = _store(services)
    with _refusals():
        entry = await store.fork(services.owner(), args.session_id)
    return _session(entry)


async def session_restore(services: Services, args: SessionRestoreInput) -> types.CallToolResult:
    """A new session from a kept checkpoint."""
    store = _store(services)
    owner = services.owner()
    budgets: dict[str, Any] = {} if args.idle_timeout is None else {"idle_timeout": args.idle_timeout}
    with _refusals():
        kept = store.kept(owner, args.checkpoint_id)
        entry = await store.restore(owner, kept.checkpoint, limits=_call_limits(args.timeout), **budgets)
    return _session(entry)


async def session_close(services: Services, args: SessionCloseInput) -> types.CallToolResult:
    """Close the caller's session."""
    store = _store(services)
    with _refusals():
        await store.close_session(services.owner(), args.session_id)
    out = SessionCloseOutput(session_id=args.session_id, closed=True)
    return _structured(out.model_dump(mode="json"), f"session {args.session_id} is closed")


def _annotations(title: str, *, read_only: bool = False, destructive: bool = False, idempotent: bool = False) -> Any:
    return types.ToolAnnotations(
        title=title,
        readOnlyHint=read_only,
        destructiveHint=destructive,
        idempotentHint=idempotent,
        openWorldHint=False,  # no network
    )


SESSION_CREATE = ToolSpec(
    name="session_create",
    title="Start a Python session",
    description=(
        "Start a live Python session (a sandbox like run_python's that keeps its state): variables, imports and "
        "files from one session_run are there in the next, like notebook cells. Returns session_id: pass it to "
        "session_run, session_checkpoint, session_fork and session_close. A session is closed after idle_timeout "
        "seconds without a call (the server's default and most), at the end of its lifetime, or by session_close; "
        "each caller may hold a few at once (close the ones you are done with)."
    ),
    input=SessionCreateInput,
    output=SessionOutput,
    annotations=_annotations("Start a Python session"),
    handler=session_create,
)

SESSION_RUN = ToolSpec(
    name="session_run",
    title="Run Python in a session",
    description=(
        "Run code in a session from session_create: earlier calls' names are defined, and `value` is the repr of "
        "the code's last expression (as a REPL shows it). Output, files written and errors come back as with "
        "run_python. A call stopped by a limit (timeout, memory) or a crash is undone: the session is as it was "
        "before it (rolled_back). If the code raises, what ran before the error stays done, unless atomic=true."
    ),
    input=SessionRunInput,
    output=SessionRunOutput,
    annotations=_annotations("Run Python in a session"),
    handler=session_run,
)

SESSION_CHECKPOINT = ToolSpec(
    name="session_checkpoint",
    title="Checkpoint a session",
    description=(
        "Save a session's whole state (variables, imports, files) on the server and return its checkpoint_id; the "
        "session goes on unchanged. session_restore(checkpoint_id) starts a new session from it, any number of "
        "times: try something risky, or branch. The bytes are kept on the server and not returned; it keeps the "
        "last few checkpoints per caller (the oldest are dropped first) for expires_in seconds at most."
    ),
    input=SessionCheckpointInput,
    output=SessionCheckpointOutput,
    annotations=_annotations("Checkpoint a session"),
    handler=session_checkpoint,
)

SESSION_FORK = ToolSpec(
    name="session_fork",
    title="Fork a session",
    description=(
        "Start a new, independent session from a session's current state (fresh random numbers); returns the new "
        "session_id. Changes in one do not affect the other."
    ),
    input=SessionForkInput,
    output=SessionOutput,
    annotations=_annotations("Fork a session"),
    handler=session_fork,
)

SESSION_RESTORE = ToolSpec(
    name="session_restore",
    title="Restore a checkpoint",
    description=(
        "Start a new session from a checkpoint_id that session_checkpoint returned; returns the new session_id. "
        "The checkpoint stays and can be restored again."
    ),
    input=SessionRestoreInput,
    output=SessionOutput,
    annotations=_annotations("Restore a checkpoint"),
    handler=session_restore,
)

SESSION_CLOSE = ToolSpec(
    name="session_close",
    title="Close a session",
    description="Close a session and discard its state (its checkpoints stay). Use it when you are done with one.",
    input=SessionCloseInput,
    output=SessionCloseOutput,
    annotations=_annotations("Close a session", destructive=True, idempotent=True),
    handler=session_close,
)

#: This module's tools, in the order ``tools/list`` shows them.
SESSION_TOOLS = (SESSION_CREATE, SESSION_RUN, SESSION_CHECKPOINT, SESSION_FORK, SESSION_RESTORE, SESSION_CLOSE)
