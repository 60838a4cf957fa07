"""execr.testing: the fake runtime answers in microseconds, validates like the real one, and a pool runs it."""

from __future__ import annotations

import time

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
    """A WorkerPool with runtime_factory=FakeRuntime answers without wasm: a hundred runs in well under a second."""
    with execr.WorkerPool(2, runtime_factory=FakeRuntime) as pool:
        assert pool.wait_ready(60)
        started = time.monotonic()
        futures = [pool.execute(f"print({i})") for i in range(100)]
        results = [f.result(timeout=30) for f in futures]
        took = time.monotonic() - started
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(100)]
    assert took < 5, took


def test_pool_refuses_a_factory_it_cannot_import():
    """A factory the workers could not import by name is refused up front."""
    with pytest.raises(InvalidArgument, match="importable"):
        execr.WorkerPool(1, runtime_factory=lambda: FakeRuntime())
