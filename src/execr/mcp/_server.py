"""Server: the MCP server object (the SDK's low-level ``Server`` over a ``Toolbox``) and the stdio transport."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from .. import __version__
from .._runtime import Runtime
from ..server._session_store import SessionStore
from ._backend import Backend, LocalBackend, PoolBackend, local_runtime
from ._config import McpConfig
from ._run_tools import TOOLS
from ._session_tools import SESSION_TOOLS
from ._stdio import protocol_streams
from ._toolbox import Services, Toolbox, ToolSpec

__all__ = ["INSTRUCTIONS", "build_server", "make_backend", "serve_stdio", "session_store"]

INSTRUCTIONS = (
    "execr runs Python in a fresh WebAssembly sandbox per call: CPython compiled to WASI, no network, "
    "no access to the host's files, limits on time, memory and output. Use run_python to compute, parse, "
    "test or plot; print the results you need. Give input data in `files`; files the program writes come "
    "back (images as images). list_runtimes shows the Python versions, the packages each runtime can "
    "import (runtime='scientific' has numpy, pandas, scipy, matplotlib...) and the limits. To keep state "
    "between calls (load data once, then explore it), use session_create and session_run with the session_id; "
    "session_checkpoint, session_fork and session_restore branch a session's state; session_close ends one."
)


def make_backend(config: McpConfig) -> Backend:
    """The backend ``config`` asks for: threads of this process, or a ``WorkerPool``."""
    cfg = config.server
    if config.in_process:
        return LocalBackend(local_runtime(cfg), config.concurrency, cfg.max_queue, cfg.runtimes)
    return PoolBackend(
        cfg.worker_count,
        cfg.max_queue,
        snapshot=cfg.snapshot,
        cache_dir=cfg.cache_dir,
        runtimes=cfg.runtimes,
        runtime_factory=cfg.runtime_factory,
    )


def session_store(config: McpConfig, backend: Backend) -> SessionStore:
    """The store for the session tools: on the in-process backend's runtime when it has a real one."""
    runtime = getattr(backend, "runtime", None)
    return SessionStore(config.server, runtime=runtime if isinstance(runtime, Runtime) else None)


def build_server(services: Services, tools: Iterable[ToolSpec] = (*TOOLS, *SESSION_TOOLS)) -> Server[Any, Any]:
    """The MCP server: ``tools/list`` and ``tools/call`` over ``tools`` (validated by the toolbox, not the SDK)."""
    toolbox = Toolbox(tools)
    server: Server[Any, Any] = Server("execr", version=__version__, instructions=INSTRUCTIONS)

    listing = types.ServerResult(types.ListToolsResult(tools=toolbox.definitions))

    async def list_tools(request: types.ListToolsRequest) -> types.ServerResult:
        return listing

    async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
        return types.ServerResult(await toolbox.call(services, request.params.name, request.params.arguments))

    # Registered as plain request handlers, not through the SDK's decorators: the toolbox validates
    # with the input models (clearer messages than a JSON-schema check, and cheaper) and returns
    # whole results, which every mcp 1.x passes through unchanged.
    server.request_handlers[types.ListToolsRequest] = list_tools
    server.request_handlers[types.CallToolRequest] = call_tool
    return server


async def serve_stdio(config: McpConfig) -> None:
    """Serve one client over stdin/stdout until stdin closes."""
    backend = make_backend(config)
    await backend.start()
    sessions = session_store(config, backend)
    try:
        server = build_server(Services(backend, config.server, sessions))
        async with protocol_streams() as (stdin, stdout), stdio_server(stdin, stdout) as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        await sessions.close()
        await backend.close()
