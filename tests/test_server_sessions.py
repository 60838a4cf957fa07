"""``/v1/sessions`` end to end: a real ``execr serve`` on a loopback port, the real wasm runtime, two API keys."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from _live import Live  # noqa: E402
from _wait import await_state  # noqa: E402
from execr import InvalidArgument, Limits  # noqa: E402
from execr.server import ServerConfig  # noqa: E402

pytestmark = pytest.mark.guest

KEY = "session-key-0123456789"
OTHER = "session-key-other-9876543210"
BOUND = 3
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """Keys on, one worker, at most 3 sessions per key, a 64 KiB body cap and 4 MiB checkpoints."""
    server = Live(
        workers=1,
        api_keys={KEY, OTHER},
        max_limits=Limits(timeout=10),
        max_body_bytes=64 * 1024,
        max_sessions_per_key=BOUND,
        session_idle_timeout=60,
        max_checkpoint_bytes=4 * MiB,
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def c(live: Live) -> Iterator[httpx.Client]:
    """A client with KEY; the sessions it made are closed afterwards (the bound is per key)."""
    with live.client(KEY) as client:
        yield client
        for entry in client.get("/v1/sessions").json()["sessions"]:
            client.delete(f"/v1/sessions/{entry['id']}")


def _error(resp: httpx.Response, status: int, type_: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["type"] == type_, body
    assert body["error"]["request_id"] == resp.headers["x-request-id"]
    message: str = body["error"]["message"]
    return message


def _create(client: httpx.Client, **body: Any) -> str:
    resp = client.post("/v1/sessions", json=body)
    assert resp.status_code == 201, resp.text
    sid: str = resp.json()["id"]
    return sid


def _run(client: httpx.Client, sid: str, code: str, **body: Any) -> dict[str, Any]:
    resp = client.post(f"/v1/sessions/{sid}/run", json={"code": code, **body})
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


# -- configuration (no guest) --


def test_config_session_fields_are_validated() -> None:
    """The session settings take whole numbers >= 0 and seconds > 0 or None; a restore body may hold a checkpoint."""
    for bad in ({"max_sessions_per_key": -1}, {"session_idle_timeout": 0}, {"max_checkpoint_bytes": 0}):
        with pytest.raises(InvalidArgument):
            ServerConfig(**bad)  # type: ignore[arg-type]
    cfg = ServerConfig(max_body_bytes=1000, max_checkpoint_bytes=3 * MiB, session_idle_timeout=None)
    assert cfg.body_limit("/v1/execute") == 1000
    assert cfg.body_limit("/v1/sessions/restore") >= 4 * MiB  # base64 of 3 MiB, plus room for the options


def test_serve_parser_session_options() -> None:
    """`execr serve` has the session options, mapped onto ServerConfig's fields."""
    import argparse

    from execr.server import _session_settings, add_serve_parser

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--max-sessions-per-key", "2", "--session-idle-timeout", "30"])
    settings = _session_settings(args)
    assert settings["max_sessions_per_key"] == 2 and settings["session_idle_timeout"] == 30.0
    assert settings["max_session_lifetime"] == 3600.0 and settings["max_checkpoint_bytes"] == 64 * MiB
    args = parser.parse_args(["serve", "--session-idle-timeout", "none"])
    assert ServerConfig(**_session_settings(args)).session_idle_timeout is None


def test_kept_checkpoints_are_bounded_per_owner() -> None:
    """The store keeps the last max_checkpoints_per_key checkpoints per owner (MCP's ids); others cannot see them."""
    from execr._checkpoint import Checkpoint
    from execr.server._session_store import SessionNotFound, SessionStore

    store = SessionStore(ServerConfig(max_checkpoints_per_key=2))
    cp = Checkpoint(runtime="default", key="k", metered=False, data_len=0, stack_pointer=0, pages=())
    first, second, third = (store.keep("A", cp, b"data") for _ in range(3))
    with pytest.raises(SessionNotFound, match="keeps the last 2"):
        store.kept("A", first.id)
    assert store.kept("A", second.id) is second and store.kept("A", third.id) is third
    assert third.size == 4 and third.sha256 == hashlib.sha256(b"data").hexdigest()
    with pytest.raises(SessionNotFound):
        store.kept("B", third.id)


# -- the routes --


def test_state_carries_between_calls(c: httpx.Client) -> None:
    """Names defined in one call are there in the next; `value` is the last expression's repr; files, inputs, stdin."""
    resp = c.post("/v1/sessions", json={"files": {"data.txt": "40"}, "limits": {"timeout": 5}})
    assert resp.status_code == 201, resp.text
    info = resp.json()
    assert info["runtime"] == "default" and info["execution_count"] == 0 and info["limits"]["timeout"] == 5
    assert info["idle_timeout"] == 60  # the operator's default
    sid = info["id"]
    first = _run(c, sid, "x = int(open('data.txt').read())")
    assert first["outcome"] == "completed" and first["value"] is None and first["execution_count"] == 1
    second = _run(c, sid, "x + extra + int(input())", inputs={"extra": 1}, stdin="1\n")
    assert second["value"] == "42" and second["execution_count"] == 2
    assert c.get(f"/v1/sessions/{sid}").json()["execution_count"] == 2


def test_a_call_stopped_by_a_limit_is_rolled_back(c: httpx.Client) -> None:
    """A timed-out call leaves the session as before it; with atomic=true, so does one that raises."""
    sid = _create(c)
    _run(c, sid, "x = 1")
    stopped = _run(c, sid, "x = 2\nwhile True: pass", limits={"timeout": 0.5})
    assert stopped["outcome"] == "timed_out" and "rolled back" in stopped["error"]
    assert _run(c, sid, "x")["value"] == "1"
    raised = _run(c, sid, "x = 3\n1 / 0", atomic=True)
    assert raised["outcome"] == "failed" and "ZeroDivisionError" in raised["stderr"]
    assert _run(c, sid, "x")["value"] == "1"
    kept = _run(c, sid, "x = 4\n1 / 0")  # not atomic: like a REPL, what ran before the error stays
    assert kept["outcome"] == "failed"
    assert _run(c, sid, "x")["value"] == "4"


def test_checkpoint_restore(live: Live, c: httpx.Client) -> None:
    """A checkpoint (base64, with size and SHA-256) restores the state into a new session, for any key; the
    restore body may exceed max_body_bytes up to the checkpoint cap."""
    sid = _create(c)
    _run(c, sid, "import json\nrows = [1, 2, 3]\nopen('notes.txt', 'w').write('kept')")
    resp = c.post(f"/v1/sessions/{sid}/checkpoint")
    assert resp.status_code == 200, resp.text
    cp = resp.json()
    raw = base64.b64decode(cp["checkpoint"])
    assert cp["size"] == len(raw) and cp["sha256"] == hashlib.sha256(raw).hexdigest()
    assert cp["runtime"] == "default" and cp["execution_count"] == 1
    assert len(cp["checkpoint"]) > live.config.max_body_bytes  # over the ordinary body cap, within the restore's
    _run(c, sid, "rows.append(4)")
    with live.client(OTHER) as other:
        restored = other.post("/v1/sessions/restore", json={"checkpoint": cp["checkpoint"], "max_calls": 5})
        assert restored.status_code == 201, restored.text
        info = restored.json()
        assert info["execution_count"] == 1 and info["max_calls"] == 5
        out = _run(other, info["id"], "rows, open('notes.txt').read(), json.dumps(1)")
        assert out["value"] == "([1, 2, 3], 'kept', '1')"
        other.delete(f"/v1/sessions/{info['id']}")
    assert _run(c, sid, "rows")["value"] == "[1, 2, 3, 4]"


def test_tampered_or_foreign_checkpoints_are_refused(c: httpx.Client) -> None:
    """A flipped byte, a non-checkpoint, or bad base64 is refused with 422 before any session is made."""
    sid = _create(c)
    cp = bytearray(base64.b64decode(c.post(f"/v1/sessions/{sid}/checkpoint").json()["checkpoint"]))
    cp[len(cp) // 2] ^= 0xFF
    tampered = c.post("/v1/sessions/restore", json={"checkpoint": base64.b64encode(bytes(cp)).decode()})
    assert "SHA-256" in _error(tampered, 422, "checkpoint_refused")
    _error(
        c.post("/v1/sessions/restore", json={"checkpoint": base64.b64encode(b"x" * 100).decode()}),
        422,
        "checkpoint_refused",
    )
    _error(c.post("/v1/sessions/restore", json={"checkpoint": "not base64!"}), 422, "invalid_request")
    assert len(c.get("/v1/sessions").json()["sessions"]) == 1


def test_checkpoint_over_the_cap_is_refused(c: httpx.Client) -> None:
    """A session holding more than max_checkpoint_bytes cannot be checkpointed: 422, and the session goes on."""
    sid = _create(c)
    _run(c, sid, "import os\nblob = os.urandom(6 * 1024 * 1024)")
    message = _error(c.post(f"/v1/sessions/{sid}/checkpoint"), 422, "checkpoint_refused")
    assert "max_checkpoint_bytes" in message
    assert _run(c, sid, "len(blob)")["value"] == str(6 * 1024 * 1024)


def test_fork_is_independent(c: httpx.Client) -> None:
    """A fork starts from the parent's state; afterwards neither sees the other's changes; random state differs."""
    sid = _create(c)
    _run(c, sid, "import random\nx = [1]")
    resp = c.post(f"/v1/sessions/{sid}/fork")
    assert resp.status_code == 201, resp.text
    child = resp.json()["id"]
    assert child != sid
    _run(c, child, "x.append(2)")
    _run(c, sid, "x.append(3)")
    assert _run(c, sid, "x")["value"] == "[1, 3]"
    assert _run(c, child, "x")["value"] == "[1, 2]"
    assert _run(c, sid, "random.random()")["value"] != _run(c, child, "random.random()")["value"]


def test_another_key_cannot_see_a_session(live: Live, c: httpx.Client) -> None:
    """Every route answers another key's session id with the same 404 as an unknown id."""
    sid = _create(c)
    with live.client(OTHER) as other:
        assert other.get("/v1/sessions").json() == {"sessions": []}
        answers = [
            other.get(f"/v1/sessions/{sid}"),
            other.post(f"/v1/sessions/{sid}/run", json={"code": "1"}),
            other.post(f"/v1/sessions/{sid}/checkpoint"),
            other.post(f"/v1/sessions/{sid}/fork"),
            other.delete(f"/v1/sessions/{sid}"),
        ]
        unknown = other.get("/v1/sessions/s_unknown")
    messages = {_error(r, 404, "not_found") for r in answers}
    assert len(messages) == 1
    assert _error(unknown, 404, "not_found").replace("s_unknown", sid) == messages.pop()
    assert _run(c, sid, "1 + 1")["value"] == "2"  # untouched


def test_sessions_are_bounded_per_key(live: Live, c: httpx.Client) -> None:
    """Past max_sessions_per_key, create, fork and restore get 429 with a JSON body; another key is unaffected;
    closing one frees a place."""
    ids = [_create(c) for _ in range(BOUND)]
    assert "close one" in _error(c.post("/v1/sessions", json={}), 429, "too_many_sessions")
    _error(c.post(f"/v1/sessions/{ids[0]}/fork"), 429, "too_many_sessions")
    with live.client(OTHER) as other:
        theirs = _create(other)
        assert other.delete(f"/v1/sessions/{theirs}").status_code == 204
    assert c.delete(f"/v1/sessions/{ids[0]}").status_code == 204
    _create(c)


def test_idle_sessions_are_evicted(c: httpx.Client) -> None:
    """A session idle past its idle_timeout is closed and forgotten: 404, and it no longer counts for the key."""
    sid = _create(c, idle_timeout=0.2)
    assert _run(c, sid, "1")["outcome"] == "completed"
    await_state(lambda: c.get(f"/v1/sessions/{sid}").status_code == 404, "the idle session closed", 10)
    _error(c.post(f"/v1/sessions/{sid}/run", json={"code": "1"}), 404, "not_found")
    assert sid not in [s["id"] for s in c.get("/v1/sessions").json()["sessions"]]


def test_delete(c: httpx.Client) -> None:
    """DELETE closes the session (204); afterwards it is 404 everywhere, DELETE included."""
    sid = _create(c)
    resp = c.delete(f"/v1/sessions/{sid}")
    assert resp.status_code == 204 and resp.content == b""
    _error(c.post(f"/v1/sessions/{sid}/run", json={"code": "1"}), 404, "not_found")
    _error(c.delete(f"/v1/sessions/{sid}"), 404, "not_found")


def test_calls_on_one_session_run_one_at_a_time(c: httpx.Client) -> None:
    """Two concurrent read-sleep-write calls on one session do not interleave."""
    sid = _create(c)
    _run(c, sid, "import time\nn = 0")
    step = "v = n\ntime.sleep(0.3)\nn = v + 1"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: _run(c, sid, step), range(2)))
    assert [o["outcome"] for o in outs] == ["completed", "completed"]
    assert _run(c, sid, "n")["value"] == "2"


@pytest.mark.parametrize(
    ("path", "body", "status", "type_"),
    [
        ("/v1/sessions", {"limits": {"timeout": 11}}, 422, "limit_exceeded"),
        ("/v1/sessions", {"idle_timeout": 61}, 422, "limit_exceeded"),
        ("/v1/sessions", {"lifetime": None}, 422, "limit_exceeded"),
        ("/v1/sessions", {"mounts": ["/tmp"]}, 422, "invalid_request"),
        ("/v1/sessions", {"runtime": "nope"}, 422, "invalid_request"),
        ("/v1/sessions", {"nope": 1}, 422, "invalid_request"),
        ("/v1/sessions", {"files": {"a": {"base64": "!!"}}}, 422, "invalid_request"),
        ("/v1/sessions", {"max_calls": 0}, 422, "invalid_request"),
        ("/v1/sessions/restore", {}, 422, "invalid_request"),
        ("/v1/sessions/s_nope/run", {"code": "1"}, 404, "not_found"),
        ("/v1/sessions/s_nope/checkpoint", None, 404, "not_found"),
        ("/v1/sessions/s_nope/fork", None, 404, "not_found"),
    ],
)
def test_bad_requests(c: httpx.Client, path: str, body: Any, status: int, type_: str) -> None:
    """Bad ids, bodies and limits over the caps get a 4xx with the JSON error body."""
    _error(c.post(path, json=body), status, type_)


def test_bad_run_bodies(c: httpx.Client) -> None:
    """A run body with a session-wide limit, a limit over the cap, bad inputs or malformed JSON gets 4xx JSON."""
    sid = _create(c)
    _error(c.post(f"/v1/sessions/{sid}/run", json={"code": "1", "limits": {"memory_limit": 1}}), 422, "invalid_request")
    _error(c.post(f"/v1/sessions/{sid}/run", json={"code": "1", "limits": {"timeout": 11}}), 422, "limit_exceeded")
    _error(c.post(f"/v1/sessions/{sid}/run", json={"code": "1", "limits": {"fuel": 10}}), 422, "invalid_request")
    _error(c.post(f"/v1/sessions/{sid}/run", json={"stdin": "x"}), 422, "invalid_request")
    bad = c.post(f"/v1/sessions/{sid}/run", content=b"{", headers={"content-type": "application/json"})
    _error(bad, 400, "malformed_json")
    assert _run(c, sid, "1")["execution_count"] == 1  # none of them reached the session


def test_sessions_need_a_key(live: Live) -> None:
    """Without a key every session route is 401."""
    with live.client() as anonymous:
        _error(anonymous.post("/v1/sessions", json={}), 401, "unauthorized")
        _error(anonymous.get("/v1/sessions"), 401, "unauthorized")


def test_shutdown_closes_sessions() -> None:
    """Stopping the server closes its sessions (their instances and directories are freed)."""
    server = Live(workers=1)
    try:
        server.wait_ready()
        with server.client() as client:
            sid = _create(client)
            _run(client, sid, "x = 1")
        store = server.server.config.app.state.execr_sessions
        session = store.get("-", sid).session
    finally:
        server.stop()
    assert session.closed and store.closed
