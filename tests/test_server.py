"""execr's HTTP service, end to end: a real uvicorn server on 127.0.0.1, driven with httpx."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from _live import Live  # noqa: E402  (a real server on a loopback socket)
from _wait import await_state  # noqa: E402
from execr import InvalidArgument, Limits  # noqa: E402
from execr.server import ServerConfig, create_app, key_id, load_api_keys  # noqa: E402

pytestmark = pytest.mark.guest

KEY = "test-key-0123456789abcdef"
OTHER_KEY = "second-key-fedcba9876543210"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Live, Live]]:
    # A: auth on, two workers, tight caps. B: auth off, one worker, a queue of one.
    a = Live(
        workers=2,
        api_keys={KEY, OTHER_KEY},
        max_limits=Limits(timeout=10, memory_limit=128 * 1024 * 1024),
        max_body_bytes=64 * 1024,
        max_batch=4,
    )
    b = Live(workers=1, max_queue=1)
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


@pytest.fixture(scope="module")
def a(servers: tuple[Live, Live]) -> Live:
    return servers[0]


@pytest.fixture(scope="module")
def b(servers: tuple[Live, Live]) -> Live:
    return servers[1]


def _is_error(resp: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"type", "message", "request_id"} <= set(err)
    assert isinstance(err["message"], str) and err["message"]
    assert err["request_id"] == resp.headers["x-request-id"]
    if type_ is not None:
        assert err["type"] == type_, err
    return err


# -- configuration --


def test_config_refuses_public_host_without_keys() -> None:
    with pytest.raises(InvalidArgument, match="without API keys"):
        ServerConfig(host="0.0.0.0")
    assert ServerConfig(host="0.0.0.0", insecure=True).insecure
    assert ServerConfig(host="0.0.0.0", api_keys={"k"}).api_keys == {"k"}
    assert ServerConfig(host="::1").host == "::1"


def test_config_clamps_defaults_to_caps() -> None:
    cfg = ServerConfig(max_limits=Limits(timeout=5))
    assert cfg.default_limits.timeout == 5
    assert cfg.capacity == cfg.max_queue + cfg.worker_count


def test_load_api_keys(tmp_path: Any) -> None:
    f = tmp_path / "keys"
    f.write_text("# comment\nalpha\n\n  beta  \n")
    assert load_api_keys(f, {"EXECR_API_KEYS": "gamma, delta,"}) == {"alpha", "beta", "gamma", "delta"}
    assert load_api_keys(None, {}) == frozenset()
    with pytest.raises(InvalidArgument):
        load_api_keys(tmp_path / "missing", {})
    assert len(key_id("alpha")) == 8


def test_add_serve_parser() -> None:
    import argparse

    from execr.server import add_serve_parser

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--port", "0", "--workers", "2", "--max-timeout", "5", "--max-memory", "64M"])
    assert (args.port, args.workers, args.max_timeout, args.max_memory) == (0, 2, 5.0, 64 * 1024 * 1024)
    assert callable(args.func)


def test_serve_command_refuses_public_host_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from execr.server import add_serve_parser

    monkeypatch.delenv("EXECR_API_KEYS", raising=False)
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--host", "0.0.0.0"])
    with pytest.raises(InvalidArgument, match="without API keys"):
        args.func(args)


# -- basics --


def test_hello_world(a: Live) -> None:
    with a.client(KEY) as c:
        r = c.post(
            "/v1/execute",
            json={"code": "import sys; print('hello', sys.argv[1:], input())", "stdin": "world\n", "args": ["x"]},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "completed" and body["exit_code"] == 0
    assert body["stdout"] == "hello ['x'] world\n"
    assert len(r.headers["x-request-id"]) >= 8


def test_request_id_echoed(a: Live) -> None:
    with a.client(KEY) as c:
        r = c.post("/v1/execute", json={"code": "pass"}, headers={"X-Request-ID": "my-id-42"})
    assert r.headers["x-request-id"] == "my-id-42"


def test_files_env_binary_output(a: Live) -> None:
    code = (
        "import os, sys\n"
        "print(open('data.txt').read(), open('blob.bin','rb').read().hex(), os.environ['GREETING'])\n"
        "sys.stdout.flush(); sys.stdout.buffer.write(b'\\xff\\xfe')\n"
    )
    with a.client(KEY) as c:
        r = c.post(
            "/v1/execute",
            json={
                "code": code,
                "env": {"GREETING": "hi"},
                "files": {"data.txt": "text", "blob.bin": {"base64": "AAEC"}},
                "stdin_base64": "AA==",
            },
        )
    body = r.json()
    assert body["outcome"] == "completed", body
    assert body["stdout"].startswith("text 000102 hi\n")
    assert "stdout_base64" in body


def test_auth(a: Live) -> None:
    with a.client() as c:
        err = _is_error(c.post("/v1/execute", json={"code": "pass"}), 401, "unauthorized")
        assert "API key" in err["message"]
        _is_error(c.get("/v1/runtime"), 401)
        # probes and metrics stay open
        assert c.get("/healthz").status_code == 200
    with a.client("wrong-key") as c:
        r = c.post("/v1/execute", json={"code": "pass"})
        _is_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
    for key in (KEY, OTHER_KEY):
        with a.client(key) as c:
            assert c.post("/v1/execute", json={"code": "pass"}).json()["outcome"] == "completed"
    with httpx.Client(base_url=a.url, headers={"Authorization": f"Basic {KEY}"}) as c:
        _is_error(c.post("/v1/execute", json={"code": "pass"}), 401)


def test_auth_off(b: Live) -> None:
    with b.client() as c:
        r = c.post("/v1/execute", json={"code": "print(6 * 7)"})
    assert r.status_code == 200 and r.json()["stdout"] == "42\n"


def test_runtime(a: Live) -> None:
    with a.client(KEY) as c:
        info = c.get("/v1/runtime").json()
    assert info["python_version"].startswith("3.")
    assert len(info["binary_sha256"]) == 64
    assert info["wasmtime_version"]
    assert info["limits"]["caps"]["timeout"] == 10
    assert info["limits"]["defaults"]["timeout"] == 10  # clamped to the cap
    assert info["limits"]["caps"]["fuel"] is None
    assert set(info["runtimes"]) == {"default", "python3.12", "scientific"}
    sci = info["runtimes"]["scientific"]
    assert sci["python_version"] == "3.15.0" and sci["available"] is True
    assert "numpy" in sci["packages"] and "snapshot_cached" in sci
    assert not any("/" in str(v) for v in sci.values() if not isinstance(v, dict))  # no host paths


def test_scientific_runtime_over_http(b: Live, scientific: Any) -> None:
    """POST /v1/execute takes "runtime"; an unknown one is a 422 naming the choices."""
    with b.client() as c:
        r = c.post(
            "/v1/execute", json={"code": "import numpy as np; print(np.arange(10).sum())", "runtime": "scientific"}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["outcome"], r.json()["stdout"]) == ("completed", "45\n"), r.json()
        err = _is_error(c.post("/v1/execute", json={"code": "pass", "runtime": "nope"}), 422, "invalid_request")
        assert "'default', 'python3.12', 'scientific'" in err["message"]


def test_probes_and_docs(a: Live) -> None:
    """Probes answer without a key; docs, the OpenAPI and unknown paths need one when keys are configured."""
    with a.client() as c:
        assert c.get("/healthz").json() == {"status": "alive"}
        assert c.get("/readyz").status_code == 200
        for path in ("/docs", "/openapi.json", "/metrics", "/redoc", "/nope"):
            _is_error(c.get(path), 401, "unauthorized")
    with a.client(KEY) as c:
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
        assert "/v1/execute" in spec["paths"] and "/v1/execute/batch" in spec["paths"]
        assert spec["paths"]["/v1/execute"]["post"]["security"] == [{"bearer": []}]
        assert spec["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}]
        assert "security" not in spec["paths"]["/healthz"]["get"]
        _is_error(c.get("/nope"), 404, "not_found")
        _is_error(c.get("/v1/execute"), 405, "method_not_allowed")


def test_public_metrics_and_docs_are_an_operator_choice() -> None:
    """--public-metrics / --public-docs open exactly those routes; /v1 still needs a key (real server)."""
    live = Live(workers=1, api_keys={KEY}, public_metrics=True, public_docs=True)
    try:
        live.wait_started()
        with live.client() as c:
            assert c.get("/metrics").status_code == 200
            assert c.get("/docs").status_code == 200
            assert "security" not in c.get("/openapi.json").json()["paths"]["/metrics"]["get"]
            _is_error(c.get("/v1/runtime"), 401, "unauthorized")
            _is_error(c.post("/v1/execute", json={"code": "pass"}), 401, "unauthorized")
    finally:
        live.stop()


def test_serve_flags_for_public_routes_and_open_files() -> None:
    """`execr serve` takes --public-metrics, --public-docs and a --max-open-files cap."""
    import argparse

    from execr.server import add_serve_parser

    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers())
    args = parser.parse_args(["serve", "--public-metrics", "--public-docs", "--max-open-files", "16"])
    assert (args.public_metrics, args.public_docs, args.max_open_files) == (True, True, 16)
    args = parser.parse_args(["serve"])
    assert (args.public_metrics, args.public_docs) == (False, False)
    cfg = ServerConfig(api_keys={"k"})
    assert not cfg.is_public("/metrics") and not cfg.is_public("/openapi.json") and cfg.is_public("/readyz")


# -- policy --


@pytest.mark.parametrize(
    ("limits", "name"),
    [
        ({"timeout": 11}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"memory_limit": 256 * 1024 * 1024}, "memory_limit"),
        ({"memory_limit": None}, "memory_limit"),
    ],
)
def test_caps(a: Live, limits: dict[str, Any], name: str) -> None:
    with a.client(KEY) as c:
        err = _is_error(c.post("/v1/execute", json={"code": "pass", "limits": limits}), 422, "limit_exceeded")
    assert name in err["message"] and "cap" in err["message"]


def test_within_caps_ok(a: Live) -> None:
    with a.client(KEY) as c:
        r = c.post("/v1/execute", json={"code": "pass", "limits": {"timeout": 10, "fuel": None, "max_stdout": 10}})
    assert r.json()["outcome"] == "completed"


@pytest.mark.parametrize("key", ["mounts", "mount_fs", "pythonpath", "stdio"])
def test_no_host_paths(a: Live, key: str) -> None:
    """A body naming a host-path field is a 422 naming it, on /v1/execute and per batch item (never ignored)."""
    with a.client(KEY) as c:
        err = _is_error(c.post("/v1/execute", json={"code": "pass", key: "/etc"}), 422, "invalid_request")
        assert key in err["message"]
        r = c.post("/v1/execute/batch", json={"requests": [{"code": "pass", key: ["/etc"]}, {"code": "pass"}]})
    assert r.status_code == 200
    first, second = r.json()["results"]
    assert first["error"]["type"] == "invalid_request" and key in first["error"]["message"]
    assert second["outcome"] == "completed"


def test_max_open_files_policy_and_cap(a: Live) -> None:
    """max_open_files is in the limits body and the policy; asking past the cap is a 422 naming it."""
    with a.client(KEY) as c:
        policy = c.get("/v1/runtime").json()["limits"]
        assert policy["defaults"]["max_open_files"] == 128 and policy["caps"]["max_open_files"] == 128
        ok = c.post("/v1/execute", json={"code": "pass", "limits": {"max_open_files": 8}})
        assert ok.json()["outcome"] == "completed", ok.text
        err = _is_error(c.post("/v1/execute", json={"code": "pass", "limits": {"max_open_files": 129}}), 422)
        assert "max_open_files" in err["message"]
        err = _is_error(c.post("/v1/execute", json={"code": "pass", "limits": {"max_open_files": 0}}), 422)
        assert "max_open_files" in err["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"code": 1},
        {},
        {"code": "pass", "limits": {"timeout": "x"}},
        {"code": "pass", "limits": {"bogus": 1}},
        {"code": "pass", "limits": {"timeout": -1}},
        {"code": "pass", "args": "x"},
        {"code": "pass", "env": {"A=B": "c"}},
        {"code": "pass", "files": {"../x": "y"}},
        {"code": "pass", "stdin_base64": "%%%"},
        {"code": "pass", "extra": 1},
        [1, 2],
        "text",
    ],
)
def test_invalid_bodies(a: Live, body: Any) -> None:
    with a.client(KEY) as c:
        _is_error(c.post("/v1/execute", json=body), 422, "invalid_request")


@pytest.mark.parametrize("raw", [b"{bad", b"", b'{"code": "x"', b"\xff\xfe", b"nul\x00"])
def test_malformed_json(a: Live, raw: bytes) -> None:
    with a.client(KEY) as c:
        r = c.post("/v1/execute", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500
    _is_error(r, r.status_code)


def test_body_too_large(a: Live) -> None:
    big = {"code": "x = '" + "a" * 70_000 + "'"}
    with a.client(KEY) as c:
        _is_error(c.post("/v1/execute", json=big), 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is checked
            yield b'{"code": "'
            for _ in range(100):
                yield b"a" * 1000
            yield b'"}'

        r = c.post("/v1/execute", content=chunks(), headers={"Content-Type": "application/json"})
        _is_error(r, 413, "payload_too_large")
        # the server is fine afterwards
        assert c.post("/v1/execute", json={"code": "pass"}).json()["outcome"] == "completed"


# -- hostile code --


def test_infinite_loop_times_out(a: Live) -> None:
    with a.client(KEY) as c:
        r = c.post("/v1/execute", json={"code": "while True: pass", "limits": {"timeout": 1}})
        assert r.status_code == 200 and r.json()["outcome"] == "timed_out"


def test_memory_bomb(a: Live) -> None:
    with a.client(KEY) as c:
        r = c.post("/v1/execute", json={"code": "x = bytearray(1 << 30)", "limits": {"memory_limit": 32 << 20}})
    assert r.status_code == 200 and r.json()["outcome"] == "memory_limit", r.text


def test_hostile_run_does_not_block_others(a: Live) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as ex, a.client(KEY) as c:
        slow = ex.submit(c.post, "/v1/execute", json={"code": "while True: pass", "limits": {"timeout": 3}})
        await_state(lambda: a.state.pool.in_flight >= 1, "the hostile run started")
        assert c.get("/healthz").status_code == 200
        assert c.post("/v1/execute", json={"code": "print(1)"}).json()["stdout"] == "1\n"
        assert not slow.done()  # served while the hostile run still spins
        assert slow.result().json()["outcome"] == "timed_out"


# -- batch --


def test_batch(a: Live) -> None:
    with a.client(KEY) as c:
        r = c.post(
            "/v1/execute/batch",
            json={
                "requests": [
                    {"code": "print(1)"},
                    {"code": 5},
                    {"code": "print(3)", "limits": {"timeout": 999}},
                    {"code": "raise SystemExit(4)"},
                ]
            },
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x.get("outcome") for x in results] == ["completed", None, None, "failed"]
        assert results[0]["stdout"] == "1\n"
        assert results[1]["error"]["type"] == "invalid_request" and results[1]["error"]["index"] == 1
        assert results[2]["error"]["type"] == "limit_exceeded"
        assert results[3]["exit_code"] == 4
        err = _is_error(c.post("/v1/execute/batch", json={"requests": [{"code": "pass"}] * 5}), 422)
        assert "at most 4" in err["message"]
        _is_error(c.post("/v1/execute/batch", json={"requests": 1}), 422)
        assert c.post("/v1/execute/batch", json={"requests": []}).json() == {"results": []}


# -- overload, crashes, metrics (server B: one worker, a queue of one) --


def test_overload_429(b: Live) -> None:
    def one(_: int) -> httpx.Response:
        with b.client() as c:
            return c.post("/v1/execute", json={"code": "import time; time.sleep(1.5)"})

    with concurrent.futures.ThreadPoolExecutor(5) as ex:
        responses = list(ex.map(one, range(5)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(429) >= 2 and codes.count(200) >= 1, codes
    for r in responses:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            _is_error(r, 429, "queue_full")
        else:
            assert r.json()["outcome"] == "completed"


def _worker_pids(live: Live) -> list[int]:
    """PIDs of the worker processes of ``live``'s pool (read from its dispatcher threads' frames)."""
    pool = live.state.pool
    if hasattr(pool, "worker_pids"):
        return list(pool.worker_pids())
    pids = []
    for frame in sys._current_frames().values():
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "_dispatch" and f.f_locals.get("self") is pool:
                worker = f.f_locals.get("worker")
                if worker is not None and worker.proc.pid:
                    pids.append(worker.proc.pid)
                break
            f = f.f_back
    return pids


def _children() -> set[int]:
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out.add(int(name))
    return out


def test_killed_worker(b: Live) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as ex, b.client() as c:
        running = ex.submit(c.post, "/v1/execute", json={"code": "import time; time.sleep(20)"})
        await_state(lambda: b.state.pool.in_flight >= 1, "the run started", timeout=10)
        pids = _worker_pids(b)
        assert len(pids) == 1 and pids[0] in _children()
        os.kill(pids[0], signal.SIGKILL)
        r = running.result(timeout=30)
        assert r.status_code == 200
        assert r.json()["outcome"] == "crashed" and "died" in r.json()["error"]
        assert c.get("/healthz").status_code == 200
        r = c.post("/v1/execute", json={"code": "print('after')"})
        assert r.json()["stdout"] == "after\n"


def test_metrics(a: Live, b: Live) -> None:
    with a.client(KEY) as c:
        c.post("/v1/execute", json={"code": "pass"})
        c.post("/v1/execute", json={"code": "pass", "limits": {"timeout": 99}})
    with httpx.Client(base_url=a.url) as c:
        c.post("/v1/execute", json={"code": "pass"})
    with a.client(KEY) as c:
        text = c.get("/metrics").text
    assert 'execr_runs_total{outcome="completed"}' in text
    assert "execr_run_duration_seconds_bucket" in text
    assert "execr_queue_depth" in text and "execr_in_flight" in text
    assert 'execr_rejected_total{reason="limit_exceeded"}' in text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values['execr_runs_total{outcome="completed"}'] >= 1
    assert values['execr_rejected_total{reason="unauthorized"}'] >= 1
    assert values['execr_rejected_total{reason="limit_exceeded"}'] >= 1
    with httpx.Client(base_url=b.url) as c:
        text = c.get("/metrics").text
    assert 'execr_rejected_total{reason="queue_full"}' in text
    assert not text.count('execr_rejected_total{reason="queue_full"} 0.0')
    assert 'execr_runs_total{outcome="crashed"}' in text


def test_access_log(a: Live, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="execr.server.access"), a.client(KEY) as c:
        r = c.post("/v1/execute", json={"code": "pass"}, headers={"X-Request-ID": "log-me"})
        assert r.status_code == 200
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "execr.server.access"]
    mine = [x for x in lines if x["request_id"] == "log-me"]
    assert mine, lines
    entry = mine[0]
    assert entry["key_id"] == key_id(KEY) and entry["status"] == 200 and entry["outcome"] == "completed"
    assert entry["method"] == "POST" and entry["path"] == "/v1/execute"
    assert entry["duration_ms"] >= 0 and entry["queue_ms"] >= 0


def test_readyz_and_graceful_shutdown() -> None:
    live = Live(workers=1, grace=0.5)
    try:
        live.wait_started()
        with live.client() as c:
            first = c.get("/readyz")
            if first.status_code != 200:
                _is_error(first, 503, "not_ready")
        live.wait_ready()
        with concurrent.futures.ThreadPoolExecutor(3) as ex, live.client() as c:
            runs = [ex.submit(c.post, "/v1/execute", json={"code": "import time; time.sleep(3)"}) for _ in range(2)]
            await_state(lambda: live.state.pool.pending + live.state.pool.in_flight >= 2, "both runs admitted", 10)
            live.server.should_exit = True
            outcomes = sorted(r.result(timeout=30).json()["outcome"] for r in runs)
        assert outcomes == ["cancelled", "cancelled"] or outcomes == ["cancelled", "completed"], outcomes
    finally:
        live.stop()
    assert live.state.pool.closed


def test_create_app_is_fastapi() -> None:
    from fastapi import FastAPI

    assert isinstance(create_app(ServerConfig(workers=1)), FastAPI)


def test_worker_killed_under_load() -> None:
    """Several concurrent requests on a real server, one worker SIGKILLed mid-run: every response is a
    JSON result (the killed runs `crashed`, saying the worker died), and the server keeps serving."""
    live = Live(workers=2, max_queue=16)
    try:
        live.wait_ready()
        code = "import time; time.sleep(1.5); print('done')"
        with concurrent.futures.ThreadPoolExecutor(8) as ex, live.client() as c:
            runs = [ex.submit(c.post, "/v1/execute", json={"code": code}) for _ in range(8)]
            await_state(lambda: live.state.pool.in_flight >= 2, "both workers busy")
            workers = _worker_pids(live)
            assert len(workers) == 2 and set(workers) <= _children(), workers
            os.kill(workers[0], signal.SIGKILL)
            responses = [r.result(timeout=120) for r in runs]
            bodies = [r.json() for r in responses]
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            outcomes = sorted(b["outcome"] for b in bodies)
            assert outcomes.count("crashed") == 1, bodies
            assert outcomes.count("completed") == 7, bodies
            (crashed,) = [b for b in bodies if b["outcome"] == "crashed"]
            assert "died" in crashed["error"], crashed
            assert all(b["stdout"] == "done\n" for b in bodies if b["outcome"] == "completed")
            again = c.post("/v1/execute", json={"code": "print('after')"})
            assert again.json()["stdout"] == "after\n"
            assert c.get("/readyz").status_code == 200
    finally:
        live.stop()


def test_no_channel_between_api_keys(a: Live) -> None:
    """Two tenants (API keys) on one server: what one run does to its files' metadata never reaches the other's."""
    write = (
        "import os\nos.utime('/', (1234567, 1234567))\n"
        "for i in range(200): open(f'n{i}', 'w').close()\n"
        "for i in range(200): os.unlink(f'n{i}')\n"
    )
    read = (
        "import os\nst = os.stat('/')\nopen('probe', 'w').close()\np = os.stat('probe')\n"
        "print(int(st.st_mtime) == 1234567, st.st_ino, st.st_size, p.st_ino, os.listdir('/'))\n"
    )
    with a.client(KEY) as tenant_a, a.client(OTHER_KEY) as tenant_b:
        baseline = tenant_b.post("/v1/execute", json={"code": read}).json()["stdout"]
        assert baseline.startswith("False ")
        for _ in range(4):  # both workers, several reused roots
            assert tenant_a.post("/v1/execute", json={"code": write}).json()["outcome"] == "completed"
            assert tenant_b.post("/v1/execute", json={"code": read}).json()["stdout"] == baseline
