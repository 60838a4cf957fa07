"""``execr mcp`` end to end: the official MCP client drives real servers over stdio and streamable HTTP.

One server per transport for the module: ``python -m execr.mcp`` as a subprocess over stdio
(runs in the server process), and over HTTP on a loopback port with API keys and a pool of
one worker (``--max-queue 0``: a second concurrent run is refused as busy). Both are capped
at ``--max-timeout 10``. A keyless, stateful HTTP server checks sessions and the
DNS-rebinding guard. The tests are synchronous: the client sessions live in one
``anyio`` blocking portal (a thread with its own event loop).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters, types  # noqa: E402
from mcp.client import streamable_http  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

pytestmark = pytest.mark.guest

KEY = "test-key-1"
CAP = 10.0
ENV = {**os.environ, "EXECR_QUIET": "1"}


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid PNG of black pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


# -- clients ----------------------------------------------------------------------------------


class Client:
    """A synchronous face over one ``ClientSession`` living in the portal's event loop."""

    def __init__(self, portal: BlockingPortal, session: ClientSession, name: str) -> None:
        self.portal = portal
        self.session = session
        self.name = name

    def call(self, tool: str, arguments: dict[str, Any] | None = None) -> types.CallToolResult:
        return self.portal.call(self.session.call_tool, tool, arguments or {})

    def tools(self) -> dict[str, types.Tool]:
        return {t.name: t for t in self.portal.call(self.session.list_tools).tools}

    def run(self, code: str, **arguments: Any) -> types.CallToolResult:
        return self.call("run_python", {"code": code, **arguments})


@contextlib.asynccontextmanager
async def stdio_session(*args: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "execr.mcp", *args], env=ENV)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@contextlib.asynccontextmanager
async def http_session(url: str, key: str | None = KEY) -> AsyncIterator[tuple[ClientSession, Any]]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with contextlib.AsyncExitStack() as stack:
        if hasattr(streamable_http, "streamable_http_client"):
            http = await stack.enter_async_context(httpx.AsyncClient(headers=headers, timeout=60))
            transport = streamable_http.streamable_http_client(url, http_client=http)
        else:
            transport = streamable_http.streamablehttp_client(url, headers=headers)
        read, write, session_id = await stack.enter_async_context(transport)
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        yield session, session_id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def http_server(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m execr.mcp --transport http`` on a free loopback port; yields its /mcp URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "execr.mcp", "--transport", "http", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield base + "/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as p:
        yield p


@pytest.fixture(scope="module")
def stdio(portal: BlockingPortal) -> Iterator[Client]:
    """An stdio server capped at 10 s and 4 KiB of stdout, running in process."""
    with portal.wrap_async_context_manager(stdio_session("--max-timeout", str(CAP), "--max-stdout", "4K")) as session:
        yield Client(portal, session, "stdio")


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """An HTTP server with a key, one worker process and no queue."""
    env = {**ENV, "EXECR_API_KEYS": f"{KEY},other-key"}
    with http_server("--workers", "1", "--max-queue", "0", "--max-timeout", str(CAP), env=env) as url:
        yield url


@pytest.fixture(scope="module")
def http(portal: BlockingPortal, http_url: str) -> Iterator[Client]:
    with portal.wrap_async_context_manager(http_session(http_url)) as (session, _):
        yield Client(portal, session, "http")


@pytest.fixture(params=["stdio", "http"])
def client(request: pytest.FixtureRequest) -> Client:
    """Each transport in turn."""
    value: Client = request.getfixturevalue(request.param)
    return value


def text(result: types.CallToolResult, index: int = 0) -> str:
    block = result.content[index]
    assert isinstance(block, types.TextContent), block
    return block.text


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert result.structuredContent is not None, result
    return result.structuredContent


# -- listing ----------------------------------------------------------------------------------


def test_tools_are_listed_with_schemas_and_annotations(client: Client) -> None:
    """tools/list shows run_python and list_runtimes with typed input and output schemas and safe annotations
    (and the session tools: ``test_mcp_sessions``)."""
    tools = client.tools()
    assert {"run_python", "list_runtimes"} == {name for name in tools if not name.startswith("session_")}
    run = tools["run_python"]
    assert run.inputSchema["required"] == ["code"]
    assert set(run.inputSchema["properties"]) == {"code", "stdin", "files", "timeout", "runtime"}
    assert run.inputSchema["additionalProperties"] is False
    assert "default" in run.inputSchema["properties"]["runtime"]["enum"]
    assert run.outputSchema is not None
    out = run.outputSchema["properties"]
    assert {"stdout", "stderr", "outcome", "exit_code", "duration", "files", "hint"} <= set(out)
    assert "timed_out" in out["outcome"]["enum"]
    for tool in (run, tools["list_runtimes"]):
        assert tool.description and tool.title
        assert tool.annotations is not None
        assert tool.annotations.readOnlyHint is True
        assert tool.annotations.destructiveHint is False
        assert tool.annotations.openWorldHint is False
    listing = tools["list_runtimes"]
    assert listing.inputSchema.get("properties", {}) == {}
    assert listing.outputSchema is not None and "runtimes" in listing.outputSchema["properties"]


# -- run_python -------------------------------------------------------------------------------


def test_run_python_prints(client: Client) -> None:
    """A completed run: structured stdout and outcome, and the same JSON as the first text block."""
    result = client.run("print(6 * 7)")
    assert not result.isError
    out = structured(result)
    assert out["stdout"] == "42\n"
    assert out["outcome"] == "completed" and out["exit_code"] == 0 and out["hint"] is None
    assert 0 < out["duration"] < CAP
    assert out["runtime"] == "default"
    assert json.loads(text(result)) == out


def test_stdin_and_files_in(client: Client) -> None:
    """stdin and input files (text, and bytes as base64) reach the program; unchanged inputs do not come back."""
    code = "import sys\nprint(sys.stdin.read().upper(), open('data.csv').read().count(','), open('b.bin','rb').read())"
    files = {"data.csv": "a,b\n1,2\n", "b.bin": {"base64": base64.b64encode(b"\x00\xff").decode()}}
    out = structured(client.run(code, stdin="hi", files=files))
    assert out["stdout"] == "HI 2 b'\\x00\\xff'\n", out
    assert out["files"] == []


def test_traceback_is_an_error_with_a_hint(client: Client) -> None:
    """A traceback is isError, with the outcome and the exception named on the first line."""
    result = client.run("x = 1\n1 / 0")
    assert result.isError
    first = text(result)
    assert first.startswith("failed: it raised ZeroDivisionError: division by zero"), first
    out = structured(result)
    assert out["outcome"] == "failed" and out["exit_code"] == 1
    assert "Traceback" in out["stderr"] and out["hint"] in first


def test_exit_code_without_traceback(stdio: Client) -> None:
    """sys.exit(3) is a failure naming the exit code."""
    result = stdio.run("import sys; print('bye'); sys.exit(3)")
    assert result.isError
    assert structured(result)["exit_code"] == 3
    assert text(result) == "failed: it exited with code 3 without a traceback; see stdout and stderr"


def test_timeout_is_an_error_with_a_hint(client: Client) -> None:
    """A run stopped by its timeout says so, and which larger timeout the server would allow."""
    result = client.run("while True: pass", timeout=0.3)
    assert result.isError
    assert text(result) == (
        "timed_out: the 0.3 s timeout stopped it; pass a larger timeout (this server allows up to 10 s) "
        "or make it faster"
    )
    assert structured(result)["outcome"] == "timed_out"


def test_timeout_over_the_cap_is_refused(client: Client) -> None:
    """Like execr serve, a timeout above the operator's cap is refused, naming the cap; at the cap it runs."""
    result = client.run("print(1)", timeout=CAP + 1)
    assert result.isError and result.structuredContent is None
    assert text(result).startswith("refused: timeout=11.0 exceeds the server's cap of 10.0"), text(result)
    assert structured(client.run("print(1)", timeout=CAP))["stdout"] == "1\n"


def test_missing_module_points_to_the_runtime_that_has_it(stdio: Client) -> None:
    """import numpy on the default runtime: the hint names the runtime that ships numpy, if this host has it."""
    result = stdio.run("import numpy")
    assert result.isError
    line = text(result)
    assert line.startswith("failed: ModuleNotFoundError: No module named 'numpy'")
    assert "runtime='scientific'" in line or "list_runtimes" in line, line


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "invalid arguments for run_python: code is required"),
        ({"code": 5}, "code: Input should be a valid string (got 5)"),
        ({"code": "1", "timeout": -1}, "timeout: Input should be greater than 0 (got -1)"),
        ({"code": "1", "timeout": "5"}, "timeout: Input should be a valid number"),
        ({"code": "1", "bogus": 1}, "bogus is not an argument of run_python"),
        ({"code": "1", "files": {"a": 1}}, "files['a']"),
        ({"code": "1", "files": {"../x": "y"}}, "invalid arguments for run_python: files key must not contain '..'"),
        ({"code": "1", "runtime": "nope"}, "runtime must be one of"),
        ({"code": "1", "files": {"a": {"base64": "!!"}}}, "is not valid base64"),
    ],
)
def test_invalid_arguments_are_clear_tool_errors(stdio: Client, arguments: dict[str, Any], message: str) -> None:
    """Bad arguments give an isError result naming the argument; the server keeps serving."""
    result = stdio.call("run_python", arguments)
    assert result.isError
    assert message in text(result), text(result)
    assert structured(stdio.run("print('still here')"))["stdout"] == "still here\n"


def test_unknown_tool(stdio: Client) -> None:
    """Calling a tool the server does not have is an isError result listing the tools."""
    result = stdio.call("rm_rf", {})
    assert result.isError
    assert text(result).startswith("unknown tool 'rm_rf'; this server has: run_python, list_runtimes, session_create")


def test_large_request_over_stdio(stdio: Client) -> None:
    """A request line of several MB (an input file) goes through the stdio transport whole."""
    out = structured(stdio.run("print(len(open('big.txt').read()))", files={"big.txt": "x" * 3_000_000}))
    assert out["stdout"] == "3000000\n", out


def test_output_over_the_cap_is_cut(stdio: Client) -> None:
    """The operator's --max-stdout cap lowers the default: the middle of a long stdout is dropped, the tail kept."""
    out = structured(stdio.run("print('x' * 10000); print('END')"))
    assert out["outcome"] == "completed"
    assert out["stdout_dropped"] > 0 and out["stdout"].endswith("END\n")


# -- files the program writes ------------------------------------------------------------------


def test_images_and_files_come_back(client: Client) -> None:
    """A PNG comes back as image content, text files and SVG as text resources, bytes as a blob resource."""
    image = png(2, 2)
    code = (
        "open('plot.png', 'wb').write(open('in.png', 'rb').read())\n"
        "open('table.csv', 'w').write('a,b\\n1,2\\n')\n"
        "open('fig.svg', 'w').write('<svg xmlns=\"http://www.w3.org/2000/svg\"/>')\n"
        "open('raw.bin', 'wb').write(bytes([0, 255, 1]))\n"
    )
    result = client.run(code, files={"in.png": {"base64": base64.b64encode(image).decode()}})
    assert not result.isError, result
    files = {f["path"]: f for f in structured(result)["files"]}
    assert set(files) == {"/plot.png", "/table.csv", "/fig.svg", "/raw.bin"}
    assert files["/plot.png"] == {
        "path": "/plot.png",
        "size": len(image),
        "mime_type": "image/png",
        "truncated": False,
        "returned_as": "image",
    }
    images = [b for b in result.content if isinstance(b, types.ImageContent)]
    assert len(images) == 1 and images[0].mimeType == "image/png"
    assert base64.b64decode(images[0].data) == image
    resources = {str(b.resource.uri): b.resource for b in result.content if isinstance(b, types.EmbeddedResource)}
    assert set(resources) == {"execr:///table.csv", "execr:///fig.svg", "execr:///raw.bin"}
    csv = resources["execr:///table.csv"]
    assert isinstance(csv, types.TextResourceContents) and csv.text == "a,b\n1,2\n" and csv.mimeType == "text/csv"
    svg = resources["execr:///fig.svg"]
    assert isinstance(svg, types.TextResourceContents) and svg.mimeType == "image/svg+xml"
    raw = resources["execr:///raw.bin"]
    assert isinstance(raw, types.BlobResourceContents) and base64.b64decode(raw.blob) == b"\x00\xff\x01"
    assert {f["returned_as"] for f in files.values()} == {"image", "resource"}


def test_attachments_stay_within_caps(stdio: Client) -> None:
    """At most 16 files come back; a cut image (over the 1 MiB per-file cap) is listed, never sent."""
    code = (
        "for i in range(20): open(f'f{i:02}.txt', 'w').write(str(i))\n"
        "open('big.png', 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + bytes(2 * 1024 * 1024))\n"
    )
    result = stdio.run(code)
    out = structured(result)
    files = {f["path"]: f for f in out["files"]}
    assert len(files) == 21
    assert files["/big.png"]["truncated"] is True and files["/big.png"]["returned_as"] is None
    sent = [f for f in files.values() if f["returned_as"]]
    assert len(sent) == 16
    assert not [b for b in result.content if isinstance(b, types.ImageContent)]
    assert len([b for b in result.content if isinstance(b, types.EmbeddedResource)]) == 16


# -- list_runtimes ----------------------------------------------------------------------------


def test_list_runtimes(client: Client) -> None:
    """Each runtime with its Python version and packages, no host paths, and the limit policy with the caps."""
    result = client.call("list_runtimes")
    assert not result.isError
    out = structured(result)
    runtimes = {r["name"]: r for r in out["runtimes"]}
    assert out["default"] == "default" and "default" in runtimes
    default = runtimes["default"]
    assert default["available"] is True and default["python_version"].startswith("3.")
    assert default["packages"] == {} and default["can_import"] == "the standard library"
    assert out["limits"]["caps"]["timeout"] == CAP
    assert out["limits"]["defaults"]["timeout"] == CAP  # the default (30 s) is lowered to the cap
    assert '"/' not in json.dumps(out["runtimes"]), "host paths leaked"


# -- HTTP: auth, capacity, sessions -----------------------------------------------------------


def _statuses(error: BaseException) -> list[int]:
    if isinstance(error, BaseExceptionGroup):
        return [s for e in error.exceptions for s in _statuses(e)]
    if isinstance(error, httpx.HTTPStatusError):
        return [error.response.status_code]
    return [s for e in (error.__cause__, error.__context__) if e is not None for s in _statuses(e)]


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_http_refuses_a_missing_or_wrong_key(portal: BlockingPortal, http_url: str, key: str | None) -> None:
    """Without the right bearer key the MCP client gets 401 (execr serve's keys and Authenticator)."""

    async def connect() -> None:
        with anyio.fail_after(30):
            async with http_session(http_url, key):
                pass

    with pytest.raises(BaseException) as info:
        portal.call(connect)
    assert 401 in _statuses(info.value), info.value
    raw = httpx.post(http_url, json={}, headers={"Authorization": "Bearer nope"})
    assert raw.status_code == 401 and raw.headers["www-authenticate"] == "Bearer"
    assert httpx.get(http_url.removesuffix("/mcp") + "/healthz").status_code == 200  # the probe stays public


def test_http_body_cap(http_url: str) -> None:
    """A body over --max-body-bytes (1 MiB by default) is refused with 413, declared or streamed."""
    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    big = b"x" * (1024 * 1024 + 1)
    assert httpx.post(http_url, content=big, headers=auth).status_code == 413
    assert httpx.post(http_url, content=iter([big[:1000], big[1000:]]), headers=auth).status_code == 413


def test_http_second_key_and_no_session_id(portal: BlockingPortal, http_url: str) -> None:
    """Any configured key works; the stateless endpoint hands out no Mcp-Session-Id."""

    async def go() -> tuple[str | None, dict[str, Any] | None]:
        async with http_session(http_url, "other-key") as (session, session_id):
            result = await session.call_tool("run_python", {"code": "print('k2')"})
            return session_id(), result.structuredContent

    sid, out = portal.call(go)
    assert sid is None
    assert out is not None and out["stdout"] == "k2\n"


def test_http_busy_when_the_workers_and_queue_are_full(portal: BlockingPortal, http: Client) -> None:
    """One worker and --max-queue 0: a second run at the same time is an isError 'busy', the first completes."""

    async def both() -> list[types.CallToolResult]:
        results: list[types.CallToolResult] = []

        async def one(delay: float) -> None:
            await anyio.sleep(delay)
            results.append(await http.session.call_tool("run_python", {"code": "import time; time.sleep(1.5)"}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, 0.0)
            tg.start_soon(one, 0.5)
        return results

    results = portal.call(both)
    errors = [r for r in results if r.isError]
    assert len(errors) == 1, results
    assert "busy" in text(errors[0])
    assert [structured(r)["outcome"] for r in results if not r.isError] == ["completed"]


def test_stateful_keyless_server_and_rebinding_guard(portal: BlockingPortal) -> None:
    """--stateful keeps an Mcp-Session-Id; a keyless loopback server refuses foreign Host and Origin headers."""
    with http_server("--stateful", "--workers", "0") as url:

        async def go() -> tuple[str | None, dict[str, Any] | None]:
            async with http_session(url, None) as (session, session_id):
                result = await session.call_tool("run_python", {"code": "print('s')"})
                return session_id(), result.structuredContent

        sid, out = portal.call(go)
        assert sid and out is not None and out["stdout"] == "s\n"
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        accept = {"accept": "application/json, text/event-stream"}
        assert httpx.post(url, json=body, headers={**accept, "host": "evil.example"}).status_code == 421
        assert httpx.post(url, json=body, headers={**accept, "origin": "http://evil.example"}).status_code == 403


# -- the plotting example (scientific runtime) ------------------------------------------------


@pytest.mark.scientific
def test_scientific_csv(stdio: Client) -> None:
    """The README's example, first step: pandas loads a CSV given in files."""
    code = "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.groupby('region')['units'].sum().to_dict())"
    files = {"sales.csv": "region,units\nnorth,3\nsouth,5\nnorth,4\n"}
    out = structured(stdio.run(code, files=files, runtime="scientific", timeout=CAP))
    assert out["stdout"] == "{'north': 7, 'south': 5}\n", out


@pytest.mark.scientific
def test_scientific_plot_comes_back_as_an_image(stdio: Client) -> None:
    """The README's example, second step: a matplotlib PNG comes back as image content."""
    code = (
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [2, 4, 9])\nplt.savefig('plot.png')\n"
    )
    result = stdio.run(code, runtime="scientific", timeout=CAP)
    assert not result.isError, text(result)
    assert [b.mimeType for b in result.content if isinstance(b, types.ImageContent)] == ["image/png"]
