"""``execr.mcp``'s parts without a real sandbox: hints, rendering, arguments, the mountable endpoint, import cost."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("mcp")

from typing import get_args

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client import streamable_http
from starlette.applications import Starlette
from starlette.routing import Mount

import execr.mcp
from execr import InvalidArgument, Limits, Outcome, OutputFile, Result
from execr._request import Request
from execr.mcp._command import config_from_args
from execr.mcp._config import McpConfig, rebinding_guard
from execr.mcp._hints import exception_line, hint, missing_module, runtimes_with
from execr.mcp._models import OutcomeName
from execr.mcp._render import MAX_ATTACHED_FILES, mime_type, render, resource_uri
from execr.server import ServerConfig

LIMITS = Limits(timeout=5)
CAP = Limits(timeout=30)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="execr mcp")
    execr.mcp.add_arguments(parser)
    return parser.parse_args(argv)


# -- the package ------------------------------------------------------------------------------


def test_import_is_cheap() -> None:
    """import execr.mcp loads neither the MCP SDK, pydantic, nor wasmtime."""
    code = (
        "import sys, execr.mcp\n"
        "heavy = [m for m in ('mcp', 'pydantic', 'wasmtime', 'starlette') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert execr.mcp.__all__ == ['add_arguments', 'asgi_app', 'run']"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_outcome_names_match_execr() -> None:
    """The output schema's outcome enum is exactly execr.Outcome's values."""
    assert list(get_args(OutcomeName)) == [o.value for o in Outcome]


def test_python_m_execr_mcp_help() -> None:
    """python -m execr.mcp --help describes the command; a bad combination exits 2 with one line."""
    out = subprocess.run([sys.executable, "-m", "execr.mcp", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--transport" in out.stdout and "Model Context Protocol" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "execr.mcp", "--stateful"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "execr mcp: error: --stateful applies to --transport http only"


# -- arguments --------------------------------------------------------------------------------


def test_stdio_defaults() -> None:
    """stdio runs in process, keys are not read, caps default to execr's default limits."""
    config = config_from_args(parse())
    assert config.transport == "stdio" and config.in_process and not config.stateful
    assert config.server.api_keys == frozenset()
    assert config.server.max_limits == Limits()


def test_http_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """http reads execr serve's keys and caps; workers default to a pool, 0 means in process."""
    monkeypatch.setenv("EXECR_API_KEYS", "a,b")
    config = config_from_args(parse("--transport", "http", "--max-timeout", "5", "--max-memory", "none"))
    assert config.server.api_keys == {"a", "b"} and not config.in_process
    assert config.server.max_limits.timeout == 5 and config.server.max_limits.memory_limit is None
    assert config.server.default_limits.timeout == 5  # the default is lowered to the cap, as in execr serve
    assert config_from_args(parse("--transport", "http", "--workers", "0")).in_process
    assert config_from_args(parse("--workers", "2")).server.workers == 2


def test_public_host_without_keys_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in execr serve: a non-loopback host needs keys or --insecure."""
    monkeypatch.delenv("EXECR_API_KEYS", raising=False)
    with pytest.raises(InvalidArgument, match="refusing to serve on non-loopback host"):
        config_from_args(parse("--transport", "http", "--host", "0.0.0.0"))
    assert config_from_args(parse("--transport", "http", "--host", "0.0.0.0", "--insecure")).server.insecure


def test_config_validation() -> None:
    """McpConfig names the bad field."""
    with pytest.raises(InvalidArgument, match="transport must be one of 'stdio', 'http'; got 'ws'"):
        McpConfig(transport="ws")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="stateful applies to the http transport only"):
        McpConfig(stateful=True)


def test_rebinding_guard_only_without_keys_on_loopback() -> None:
    """Host/Origin checks apply to a keyless loopback server only."""
    guard = rebinding_guard(ServerConfig())
    assert guard is not None and "127.0.0.1:*" in guard[0] and "http://localhost:*" in guard[1]
    assert rebinding_guard(ServerConfig(api_keys=frozenset({"k"}))) is None
    assert rebinding_guard(ServerConfig(host="0.0.0.0", insecure=True)) is None


# -- hints ------------------------------------------------------------------------------------


def failed(stderr: str, exit_code: int = 1) -> Result:
    return Result.build(stderr=stderr.encode(), outcome=Outcome.FAILED, exit_code=exit_code)


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (Result(), None),
        (
            failed("Traceback (most recent call last):\n  ...\nKeyError: 'x'\n"),
            "it raised KeyError: 'x' (the traceback is in stderr); fix the code and run again",
        ),
        (
            failed('  File "/main.py", line 1\n    def f(:\n SyntaxError: invalid syntax\n'),
            "SyntaxError: invalid syntax: the code does not parse; fix it and run again",
        ),
        (failed("", 4), "it exited with code 4 without a traceback; see stdout and stderr"),
        (
            Result.failure(Outcome.TIMED_OUT, "wall-clock limit reached"),
            "the 5 s timeout stopped it; pass a larger timeout (this server allows up to 30 s) or make it faster",
        ),
        (
            Result.failure(Outcome.MEMORY_LIMIT, "memory"),
            "it hit the 512 MiB memory limit; use less memory (smaller data, work in chunks)",
        ),
        (
            Result.failure(Outcome.CANCELLED, "stop"),
            "the run was cancelled before it finished (the call was cancelled or the server is stopping); retry",
        ),
    ],
)
def test_hints(result: Result, expected: str | None) -> None:
    """Each outcome gets one line saying why and what to try next."""
    assert hint(result, "default", LIMITS, CAP) == expected


def test_timeout_hint_at_the_cap() -> None:
    """At the cap, the hint does not suggest a larger timeout."""
    out = hint(Result.failure(Outcome.TIMED_OUT, "x"), "default", CAP, CAP)
    assert out == "the 30 s timeout (this server's most) stopped it; make it faster or do less"


def test_missing_module_hints() -> None:
    """A ModuleNotFoundError names the runtimes that ship the module (distribution names mapped)."""
    stderr = "Traceback (most recent call last):\nModuleNotFoundError: No module named 'sklearn.linear_model'\n"
    assert missing_module(stderr) == "sklearn"
    packages = {"default": [], "scientific": ["numpy", "scikit-learn"]}
    assert runtimes_with("sklearn", packages) == ["scientific"]
    assert runtimes_with("requests", packages) == []
    out = hint(failed(stderr), "default", LIMITS, CAP, ["scientific"])
    assert out is not None and out.endswith(
        "'sklearn' is not in the 'default' runtime; pass runtime='scientific', which has it"
    )
    assert exception_line("hello\n") is None


# -- rendering --------------------------------------------------------------------------------


def test_render_completed_and_mime_types() -> None:
    """A completed result: not an error, JSON text first, files typed by content and name."""
    files = (
        OutputFile("/a.jpg", 4, b"\xff\xd8\xff\x00"),
        OutputFile("/b.txt", 2, b"hi"),
        OutputFile("/c", 2, b"\xff\x00"),
        OutputFile("/d/e f.json", 2, b"{}"),
    )
    result = render(Result(files=files), "default", None)
    assert not result.isError
    assert [mime_type(f) for f in files] == ["image/jpeg", "text/plain", "application/octet-stream", "application/json"]
    assert [b.type for b in result.content] == ["text", "image", "resource", "resource", "resource"]
    assert resource_uri("/d/e f.json") == "execr:///d/e%20f.json"


def test_render_caps_the_number_of_files() -> None:
    """Files past MAX_ATTACHED_FILES are listed but not attached."""
    files = tuple(OutputFile(f"/{i}.txt", 1, b"x") for i in range(MAX_ATTACHED_FILES + 3))
    result = render(Result(files=files), "default", None)
    assert result.structuredContent is not None
    returned = [f["returned_as"] for f in result.structuredContent["files"]]
    assert returned.count("resource") == MAX_ATTACHED_FILES and returned.count(None) == 3


# -- the endpoint mounted in another app (what execr serve does) ----------------------------


@contextlib.asynccontextmanager
async def mounted(runner: Any) -> AsyncIterator[ClientSession]:
    app = Starlette(routes=[Mount("/mcp", app=execr.mcp.asgi_app(ServerConfig(), runner))])
    url = "http://127.0.0.1:8000/mcp/"

    def client(**kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), **kwargs)

    async with contextlib.AsyncExitStack() as stack:
        if hasattr(streamable_http, "streamable_http_client"):  # mcp >= 1.2x
            http = await stack.enter_async_context(client())
            transport = streamable_http.streamable_http_client(url, http_client=http)
        else:
            transport = streamable_http.streamablehttp_client(url, httpx_client_factory=client)
        read, write, _ = await stack.enter_async_context(transport)
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        yield session


def test_asgi_app_mounted_uses_the_hosts_runner() -> None:
    """asgi_app(config, runner) serves stateless MCP under a mount; runs go to the runner; its 429 is 'busy'."""
    seen: list[Request] = []

    class QueueFull(Exception):
        status = 429

    async def runner(request: Request) -> Result:
        seen.append(request)
        if request.code == "busy":
            raise QueueFull("too many runs queued")
        return Result.build(stdout=b"from the host\n", duration=0.001)

    async def go() -> tuple[types.CallToolResult, types.CallToolResult, list[str]]:
        async with mounted(runner) as session:
            tools = [t.name for t in (await session.list_tools()).tools]
            ok = await session.call_tool("run_python", {"code": "print(1)", "timeout": 2})
            busy = await session.call_tool("run_python", {"code": "busy"})
            return ok, busy, tools

    ok, busy, tools = anyio.run(go)
    assert tools[:2] == ["run_python", "list_runtimes"] and all(t.startswith("session_") for t in tools[2:])
    assert ok.structuredContent is not None and ok.structuredContent["stdout"] == "from the host\n"
    assert seen[0].limits.timeout == 2 and seen[0].code == "print(1)"
    assert busy.isError
    first = busy.content[0]
    assert isinstance(first, types.TextContent) and first.text == "the server is busy: too many runs queued"


def test_mounted_in_execr_serve() -> None:
    """execr serve mounts /mcp behind its edge (keys) on its pool (a fake runtime here)."""
    from execr.server import create_app
    from execr.testing import FakeRuntime

    config = ServerConfig(api_keys=frozenset({"k"}), workers=1, runtime_factory=FakeRuntime)
    app = create_app(config)

    async def go() -> tuple[int, dict[str, Any] | None]:
        async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
            asgi = httpx.ASGITransport(app=app)
            anonymous = await stack.enter_async_context(httpx.AsyncClient(transport=asgi))
            refused = (await anonymous.post("http://127.0.0.1:8000/mcp", json={})).status_code

            def client(**kwargs: Any) -> httpx.AsyncClient:
                headers = {**(kwargs.pop("headers", None) or {}), "Authorization": "Bearer k"}
                return httpx.AsyncClient(transport=asgi, headers=headers, **kwargs)

            url = "http://127.0.0.1:8000/mcp"
            if hasattr(streamable_http, "streamable_http_client"):
                http = await stack.enter_async_context(client())
                transport = streamable_http.streamable_http_client(url, http_client=http)
            else:
                transport = streamable_http.streamablehttp_client(url, httpx_client_factory=client)
            read, write, _ = await stack.enter_async_context(transport)
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            result = await session.call_tool("run_python", {"code": "print(7)"})
            return refused, result.structuredContent

    refused, out = anyio.run(go)
    assert refused == 401
    assert out is not None and out["stdout"] == "7\n" and out["outcome"] == "completed"
