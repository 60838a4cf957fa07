"""Tests for execr._pool.WorkerPool: ordering, crash isolation, hostile items, cancel, close."""

from __future__ import annotations

import os
import signal
import time

import pytest

from execr import Outcome, RuntimeClosed
from execr._pool import WorkerPool
from execr._request import make_request

pytestmark = pytest.mark.guest


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as p:
        assert p.wait_ready(120)
        yield p


def _worker_pids() -> set[int]:
    import multiprocessing

    return {c.pid for c in multiprocessing.active_children() if c.name == "execr-worker"}


def test_results_in_order(pool):
    """Submitted requests resolve to their own results."""
    futures = [pool.submit(make_request(f"print({i} * 2)")) for i in range(40)]
    assert [f.result(60).stdout for f in futures] == [f"{i * 2}\n" for i in range(40)]
    assert pool.pending == 0


def test_killed_worker_is_isolated(pool):
    """A worker killed mid-run gives CRASHED for that item only and is replaced."""
    before = _worker_pids()
    spin = pool.submit(make_request("while True: pass", timeout=60))
    others = [pool.submit(make_request(f"print({i})")) for i in range(10)]
    assert [f.result(60).stdout for f in others] == [f"{i}\n" for i in range(10)]
    deadline = time.monotonic() + 10
    while pool.in_flight < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    # The spinning worker is the one using CPU: kill each candidate until the spin resolves.
    for pid in sorted(before):
        if spin.done():
            break
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    result = spin.result(30)
    assert result.outcome is Outcome.CRASHED
    assert result.error.startswith("worker process died (exit code -9)")
    after = [pool.submit(make_request(f"print({i})")) for i in range(10)]
    assert [f.result(60).stdout for f in after] == [f"{i}\n" for i in range(10)]
    assert pool.stats()["restarts"] >= 1


def test_cancel_running_and_pending():
    """cancel() stops a running request and a pending one, both CANCELLED."""
    with WorkerPool(1) as p:
        running = p.submit(make_request("while True: pass", timeout=60))
        queued = p.submit(make_request("print(1)"))
        deadline = time.monotonic() + 30
        while p.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.cancel(queued)
        assert queued.result(5).outcome is Outcome.CANCELLED
        assert p.cancel(running)
        assert running.result(15).outcome is Outcome.CANCELLED
        assert p.submit(make_request("print(2)")).result(30).stdout == "2\n"


def test_close_cancels_pending_and_refuses_new():
    """close(cancel_pending=True) resolves queued work CANCELLED; submit after close raises."""
    p = WorkerPool(1)
    futures = [p.submit(make_request("import time; time.sleep(0.2)")) for _ in range(20)]
    p.close(cancel_pending=True)
    p.close()
    outcomes = {f.result(10).outcome for f in futures}
    assert Outcome.CANCELLED in outcomes
    with pytest.raises(RuntimeClosed):
        p.submit(make_request("print(1)"))


def test_worker_that_cannot_start_fails_the_item_not_the_pool(monkeypatch):
    """When no worker process can be started (no fds or processes left), the item gets a CRASHED
    result naming why instead of hanging, and the pool recovers once workers can start again."""
    import execr._pool as pool_module

    real = pool_module._Worker
    broken = {"on": True}

    def worker(*args):
        if broken["on"]:
            raise OSError(24, "Too many open files")
        return real(*args)

    monkeypatch.setattr(pool_module, "_Worker", worker)
    with WorkerPool(1) as p:
        r = p.submit(make_request("print(1)")).result(60)
        assert r.outcome is Outcome.CRASHED and "Too many open files" in (r.error or "")
        broken["on"] = False
        assert p.submit(make_request("print(2)")).result(120).stdout == "2\n"
