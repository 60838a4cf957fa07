"""The MCP session tools end to end: the official MCP client drives ``python -m execr.mcp`` over stdio and over
streamable HTTP with two API keys, on the real wasm runtime.

The stdio server keeps at most 2 sessions for its one client; the HTTP server 1 per key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("mcp")

from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import types

from test_mcp import ENV, Client, http_server, http_session, stdio_session, structured, text

pytestmark = pytest.mark.guest

KEY, OTHER = "mcp-session-key-1", "mcp-session-key-2"
SESSION_TOOLS = {"session_create", "session_run", "session_checkpoint", "session_fork", "session_restore"}
MAKERS = {"session_create", "session_fork", "session_restore"}


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as p:
        yield p


@pytest.fixture(scope="module")
def stdio(portal: BlockingPortal) -> Iterator[Client]:
    args = ("--max-timeout", "10", "--max-sessions-per-key", "2", "--session-idle-timeout", "120")
    with portal.wrap_async_context_manager(stdio_session(*args)) as session:
        yield Client(portal, session, "stdio")


@pytest.fixture
def s(stdio: Client) -> Iterator[Client]:
    """The stdio client; the sessions a test leaves open are closed after it (the bound is 2)."""
    opened: list[str] = []
    original = stdio.call

    def call(tool: str, arguments: dict[str, Any] | None = None) -> types.CallToolResult:
        result = original(tool, arguments)
        if (
            not result.isError
            and result.structuredContent
            and tool in {"session_create", "session_fork", "session_restore"}
        ):
            opened.append(result.structuredContent["session_id"])
        return result

    stdio.call = call  # type: ignore[method-assign]
    try:
        yield stdio
    finally:
        stdio.call = original  # type: ignore[method-assign]
        for sid in opened:
            original("session_close", {"session_id": sid})


def create(client: Client, **arguments: Any) -> str:
    result = client.call("session_create", arguments)
    assert not result.isError, text(result)
    sid: str = structured(result)["session_id"]
    return sid


def run(client: Client, sid: str, code: str, **arguments: Any) -> types.CallToolResult:
    return client.call("session_run", {"session_id": sid, "code": code, **arguments})


def value(client: Client, sid: str, code: str) -> str | None:
    result = run(client, sid, code)
    assert not result.isError, text(result)
    out: str | None = structured(result)["value"]
    return out


def test_session_tools_are_listed(stdio: Client) -> None:
    """tools/list has the six session tools, each with typed schemas; the id is an explicit argument."""
    tools = stdio.tools()
    assert SESSION_TOOLS | {"session_close", "run_python", "list_runtimes"} == set(tools)
    for name in SESSION_TOOLS | {"session_close"}:
        tool = tools[name]
        assert tool.title and tool.description and tool.outputSchema is not None
        assert tool.inputSchema["additionalProperties"] is False
        assert tool.annotations is not None and tool.annotations.openWorldHint is False
    for name in ("session_run", "session_checkpoint", "session_fork", "session_close"):
        assert tools[name].inputSchema["required"][0] == "session_id"
    assert tools["session_restore"].inputSchema["required"] == ["checkpoint_id"]
    assert {"value", "execution_count", "rolled_back", "stdout", "outcome"} <= set(
        tools["session_run"].outputSchema["properties"]  # type: ignore[index]
    )
    assert "not returned" in (tools["session_checkpoint"].description or "")
    assert tools["session_close"].annotations.destructiveHint is True  # type: ignore[union-attr]


def test_state_carries_and_value_comes_back(s: Client) -> None:
    """Names from one session_run are there in the next; `value` is the last expression's repr."""
    sid = create(s, files={"n.txt": "40"}, timeout=5)
    first = run(s, sid, "x = int(open('n.txt').read())")
    assert not first.isError and structured(first)["value"] is None and structured(first)["execution_count"] == 1
    second = run(s, sid, "print('hi')\nx + extra", inputs={"extra": 2})
    out = structured(second)
    assert out["value"] == "42" and out["stdout"] == "hi\n" and out["execution_count"] == 2
    assert out["session_id"] == sid and out["rolled_back"] is False


def test_a_stopped_call_is_rolled_back_with_a_hint(s: Client) -> None:
    """A timeout is isError with a hint saying the session was rolled back; the state is as before."""
    sid = create(s)
    run(s, sid, "x = 1")
    stopped = run(s, sid, "x = 2\nwhile True: pass", timeout=0.5)
    assert stopped.isError
    assert text(stopped).startswith("timed_out: the 0.5 s timeout stopped it")
    assert "rolled back" in text(stopped)
    assert structured(stopped)["rolled_back"] is True and structured(stopped)["execution_count"] is None
    assert value(s, sid, "x") == "1"
    raised = run(s, sid, "x = 3\n1 / 0")
    assert raised.isError and "ZeroDivisionError" in text(raised) and "stays done" in text(raised)
    assert value(s, sid, "x") == "3"


def test_checkpoint_restore_and_fork(s: Client) -> None:
    """A checkpoint is kept on the server by id and restores the state; a fork is independent of its parent."""
    sid = create(s)
    run(s, sid, "rows = [1, 2]")
    cp = s.call("session_checkpoint", {"session_id": sid})
    assert not cp.isError, text(cp)
    kept = structured(cp)
    assert kept["checkpoint_id"].startswith("c_") and kept["size"] > 0 and len(kept["sha256"]) == 64
    assert kept["execution_count"] == 1 and 0 < kept["expires_in"] <= 3600
    run(s, sid, "rows.append(3)")
    closed = s.call("session_close", {"session_id": sid})
    assert not closed.isError and structured(closed) == {"session_id": sid, "closed": True}
    restored = s.call("session_restore", {"checkpoint_id": kept["checkpoint_id"]})
    assert not restored.isError, text(restored)
    back = structured(restored)["session_id"]
    assert value(s, back, "rows") == "[1, 2]"
    forked = s.call("session_fork", {"session_id": back})
    assert not forked.isError, text(forked)
    child = structured(forked)["session_id"]
    run(s, child, "rows.append('child')")
    assert value(s, back, "rows") == "[1, 2]"
    assert value(s, child, "rows") == "[1, 2, 'child']"


def test_bound_unknown_ids_and_closed_sessions(s: Client) -> None:
    """Past --max-sessions-per-key a new session is an error naming the bound; unknown or closed ids are errors."""
    a, _ = create(s), create(s)
    over = s.call("session_create", {})
    assert over.isError and "the most this server keeps per key (2)" in text(over)
    s.call("session_close", {"session_id": a})
    gone = run(s, a, "1")
    assert gone.isError and "no session" in text(gone)
    unknown = s.call("session_restore", {"checkpoint_id": "c_nope"})
    assert unknown.isError and "no checkpoint 'c_nope'" in text(unknown)
    bad = s.call("session_run", {"code": "1"})
    assert bad.isError and "session_id is required" in text(bad)


def test_http_sessions_belong_to_their_key(portal: BlockingPortal) -> None:
    """Over HTTP a session and a checkpoint belong to the key that made them; the bound is per key."""
    env = {**ENV, "EXECR_API_KEYS": f"{KEY},{OTHER}"}
    with http_server("--workers", "0", "--max-sessions-per-key", "1", env=env) as url:

        async def go() -> dict[str, types.CallToolResult]:
            out: dict[str, types.CallToolResult] = {}
            async with http_session(url, KEY) as (mine, _), http_session(url, OTHER) as (theirs, _):
                made = await mine.call_tool("session_create", {})
                sid = (made.structuredContent or {})["session_id"]
                await mine.call_tool("session_run", {"session_id": sid, "code": "secret = 7"})
                cp = await mine.call_tool("session_checkpoint", {"session_id": sid})
                cid = (cp.structuredContent or {})["checkpoint_id"]
                out["second"] = await mine.call_tool("session_create", {})
                out["their_run"] = await theirs.call_tool("session_run", {"session_id": sid, "code": "secret"})
                out["their_restore"] = await theirs.call_tool("session_restore", {"checkpoint_id": cid})
                out["their_create"] = await theirs.call_tool("session_create", {})
                out["mine"] = await mine.call_tool("session_run", {"session_id": sid, "code": "secret"})
            return out

        out = portal.call(go)
    assert out["second"].isError and "(1)" in text(out["second"])
    assert out["their_run"].isError and "no session" in text(out["their_run"])
    assert out["their_restore"].isError and "no checkpoint" in text(out["their_restore"])
    assert not out["their_create"].isError
    assert (out["mine"].structuredContent or {})["value"] == "7"


def test_mounted_in_execr_serve_shares_the_http_sessions(portal: BlockingPortal) -> None:
    """execr serve's /mcp uses the same store as /v1/sessions: a key's session is reachable from both, the bound
    counts both, and another key sees neither."""
    pytest.importorskip("fastapi")
    from _live import Live

    live = Live(workers=1, api_keys={KEY, OTHER}, max_sessions_per_key=1)
    try:
        live.wait_ready()
        with live.client(KEY) as c:
            made = c.post("/v1/sessions", json={})
            assert made.status_code == 201, made.text
            sid = made.json()["id"]
            assert c.post(f"/v1/sessions/{sid}/run", json={"code": "x = 5"}).status_code == 200

        async def go() -> list[types.CallToolResult]:
            async with (
                http_session(live.url + "/mcp", KEY) as (mine, _),
                http_session(live.url + "/mcp", OTHER) as (
                    theirs,
                    _,
                ),
            ):
                return [
                    await mine.call_tool("session_run", {"session_id": sid, "code": "x * 2"}),
                    await mine.call_tool("session_create", {}),
                    await theirs.call_tool("session_run", {"session_id": sid, "code": "x"}),
                ]

        ran, over, theirs = portal.call(go)
    finally:
        live.stop()
    assert not ran.isError and structured(ran)["value"] == "10"
    assert over.isError and "the most this server keeps per key (1)" in text(over)
    assert theirs.isError and "no session" in text(theirs)
