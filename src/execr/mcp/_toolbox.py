"""Toolbox: tool specs (typed input, output and annotations), their listing, and safe dispatch.

A ``ToolSpec`` pairs a pydantic input model and output model with a handler. ``Toolbox``
lists them for ``tools/list`` and runs ``tools/call``: it validates the arguments, calls the
handler, and turns every failure into a tool result with ``isError`` and a clear message,
so a bad call never crashes the server. New tool families (sessions) add their own specs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.to_thread
from mcp import types
from mcp.server.lowlevel.server import request_ctx
from pydantic import BaseModel, ValidationError

from .._exceptions import ExecrError, InvalidArgument, shown
from .._image._flavors import NAMES
from ..server._config import ServerConfig
from ..server._session_store import SessionStore
from ._backend import Backend, Busy

__all__ = ["Refused", "Services", "ToolSpec", "Toolbox", "error_result"]

log = logging.getLogger("execr.mcp")


def _describe(runtime: Any) -> dict[str, dict[str, Any]]:
    if not hasattr(runtime, "runtime_info"):  # a stand-in (execr.testing.FakeRuntime): its info() is all there is
        described: dict[str, dict[str, Any]] = runtime.info().get("runtimes", {})
        return described
    return {name: runtime.runtime_info(name) for name in NAMES}


class Refused(ExecrError):
    """A call the operator's policy refuses (a limit over the server's cap)."""


class Services:
    """What handlers share: the backend, the operator's policy, the runtime descriptions (read once),
    and the session store (``None``: no session tools)."""

    def __init__(self, backend: Backend, config: ServerConfig, sessions: SessionStore | None = None) -> None:
        self.backend = backend
        self.config = config
        self.sessions = sessions
        self._described: dict[str, dict[str, Any]] | None = None
        self._lock = anyio.Lock()

    def owner(self) -> str:
        """Who is calling: the API key's id that the HTTP edge put in the request's scope; ``"-"`` on
        stdio (one client) or without keys."""
        try:
            request = request_ctx.get().request
        except LookupError:
            return "-"
        info = getattr(request, "scope", {}).get("execr")
        kid = info.get("key_id") if isinstance(info, dict) else None
        return kid if isinstance(kid, str) and kid else "-"

    async def describe(self) -> dict[str, dict[str, Any]]:
        """Each runtime's ``Runtime.runtime_info`` entry, by name (host paths included: pick what to show)."""
        async with self._lock:
            if self._described is None:
                runtime = self.backend.info_runtime()
                self._described = await anyio.to_thread.run_sync(_describe, runtime)
            return self._described


Handler = Callable[[Services, Any], Awaitable[types.CallToolResult]]


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """One tool: its name, words for the agent, typed input and output, annotations and handler."""

    name: str
    title: str
    description: str
    input: type[BaseModel]
    output: type[BaseModel]
    annotations: types.ToolAnnotations
    handler: Handler

    def definition(self) -> types.Tool:
        """The ``tools/list`` entry."""
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            inputSchema=self.input.model_json_schema(),
            outputSchema=self.output.model_json_schema(),
            annotations=self.annotations,
        )


def error_result(message: str, structured: dict[str, Any] | None = None) -> types.CallToolResult:
    """A tool result with ``isError``: ``message`` first, then the structured content as JSON, if any."""
    content: list[types.ContentBlock] = [types.TextContent(type="text", text=message)]
    if structured is not None:
        content.append(types.TextContent(type="text", text=json.dumps(structured, ensure_ascii=False)))
    return types.CallToolResult(content=content, structuredContent=structured, isError=True)


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part!r}]" if isinstance(part, int) or out else str(part)
    return out or "arguments"


def _shown(value: object) -> str:
    if isinstance(value, str):
        return shown(value, 60)
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:  # an int too long to print
        return shown(value, 60)
    return text if len(text) <= 60 else text[:60] + "..."


def validation_message(tool: str, error: ValidationError) -> str:
    """One line per problem, naming the argument: ``timeout: Input should be greater than 0 (got -1)``."""
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        # a union reports once per member ("files['a'].str", "files['a'].Base64File.base64"): keep the path
        loc = tuple(p for p in loc if p not in ("str", "Base64File", "float", "constrained-float"))
        where = _where(loc)
        if item["type"] == "missing":
            problems.append(f"{where} is required")
        elif item["type"] == "extra_forbidden":
            problems.append(f"{where} is not an argument of {tool}" if len(loc) == 1 else f"{where} is not allowed")
        else:
            problems.append(f"{where}: {item['msg']} (got {_shown(item.get('input'))})")
    unique = list(dict.fromkeys(problems))
    return f"invalid arguments for {tool}: " + "; ".join(unique[:5]) + ("; ..." if len(unique) > 5 else "")


class Toolbox:
    """The tools a server offers, by name; ``call`` never raises for a bad call."""

    def __init__(self, specs: Iterable[ToolSpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.definitions = [spec.definition() for spec in self.specs.values()]

    async def call(self, services: Services, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        """Run tool ``name``: validation errors, refusals, a busy server and bugs all become ``isError`` results."""
        spec = self.specs.get(name)
        if spec is None:
            return error_result(f"unknown tool {name!r}; this server has: {', '.join(self.specs)}")
        try:
            args = spec.input.model_validate(arguments or {})
        except ValidationError as e:
            return error_result(validation_message(name, e))
        try:
            return await spec.handler(services, args)
        except InvalidArgument as e:
            return error_result(f"invalid arguments for {name}: {e}")
        except Refused as e:
            return error_result(f"refused: {e}")
        except Busy as e:
            return error_result(str(e))
        except ExecrError as e:  # e.g. RuntimeUnavailable: a runtime this server does not have
            return error_result(f"{name} failed: {e}")
        except Exception as e:  # a bug: say so, keep serving
            log.exception("tool %s failed", name)
            return error_result(f"internal error in {name}: {type(e).__name__}: {e}")
