"""execr.testing: the fake runtime answers in microseconds, validates like the real one, and a pool runs it."""

from __future__ import annotations

import pytest

import execr
from execr import InvalidArgument, Outcome
from execr.testing import FakeRuntime


def test_fake_runtime_answers_the_scripted_language():
    """print, exit, sleep and crash give the outcomes the module docstring promises."""
    with FakeRuntime() as rt:
        assert rt.execute("print('hi')").stdout == "hi\n"
        assert rt.execute("exit(3)").outcome is Outcome.FAILED
        assert rt.execute("sleep(5)", timeout=0.05).outcome is Outcome.TIMED_OUT
        assert rt.execute("crash").outcome is Outcome.CRASHED
        assert len(rt.requests) == 4
    with pytest.raises(execr.RuntimeClosed):
        rt.execute("print(1)")


def test_fake_runtime_validates_like_the_real_one():
    """Bad input raises InvalidArgument before any answer."""
    with FakeRuntime() as rt, pytest.raises(InvalidArgument, match="timeout"):
        rt.execute("print(1)", timeout=-1)


def test_pool_runs_the_fake_runtime_fast():
    """A WorkerPool with runtime_factory=FakeRuntime answers a hundred runs without wasm (speed: bench/)."""
    with execr.WorkerPool(2, runtime_factory=FakeRuntime) as pool:
        assert pool.wait_ready(60)
        futures = [pool.execute(f"print({i})") for i in range(100)]
        results = [f.result(timeout=30) for f in futures]
        assert pool.execute("crash").result(timeout=30).outcome is Outcome.CRASHED  # scripted: it is the fake
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(100)]
    assert all(r.fuel_consumed is None for r in results)  # no wasm ran


def test_pool_refuses_a_factory_it_cannot_import():
    """A factory the workers could not import by name is refused up front."""
    with pytest.raises(InvalidArgument, match="importable"):
        execr.WorkerPool(1, runtime_factory=lambda: FakeRuntime())


def test_server_runs_on_the_fake_runtime():
    """execr serve's app takes ServerConfig(runtime_factory=FakeRuntime): HTTP round trips without wasm."""
    import httpx

    from execr.server import ServerConfig

    pytest.importorskip("fastapi")
    from _live import Live  # a real server on a loopback socket, stopped by the test

    live = Live(workers=1, runtime_factory=FakeRuntime)
    try:
        live.wait_ready()
        with httpx.Client(base_url=live.url, timeout=30) as c:
            body = c.post("/v1/execute", json={"code": "print('fake')"}).json()
            assert body["stdout"] == "fake\n" and body["outcome"] == "completed"
            assert c.post("/v1/execute", json={"code": "crash"}).json()["outcome"] == "crashed"  # only the fake
            assert body["fuel_consumed"] is None  # no wasm ran
    finally:
        live.stop()
    assert ServerConfig(runtime_factory=FakeRuntime).runtime_factory is FakeRuntime


def test_batch_and_execute_many_take_a_pool_with_the_fake(tmp_path):
    """execute_many and run_batch accept a pool=WorkerPool(runtime_factory=FakeRuntime)."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": "a", "code": "print(1)"}\n{"id": "b", "code": "crash"}\n')
    with execr.WorkerPool(1, runtime_factory=FakeRuntime) as pool:
        results = execr.execute_many(["print(7)", "crash"], pool=pool)
        assert [r.outcome for r in results] == [Outcome.COMPLETED, Outcome.CRASHED]
        assert execr.run_batch(src, out, pool=pool) == 2
    lines = out.read_text().splitlines()
    assert '"completed"' in lines[0] and '"crashed"' in lines[1]
