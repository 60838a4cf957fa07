"""Tests for execr._parallel._pool.WorkerPool: ordering, crash isolation, hostile items, cancel, close,
interpreter exit and garbage collection, and callers whose ``__main__`` workers must not import."""

from __future__ import annotations

import gc
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _wait import await_state
from execr import Outcome, RuntimeClosed
from execr._parallel._pool import WorkerPool
from execr._request import make_request

pytestmark = pytest.mark.guest


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as p:
        assert p.wait_ready(120)
        yield p


def _exists(pid: int) -> bool:
    """Whether a process ``pid`` exists at all (running, or a zombie nobody reaped)."""
    return Path(f"/proc/{pid}").exists()


def _still_running(pidfds: list[int], timeout: float) -> list[int]:
    """Wait until every process behind ``pidfds`` has exited (a pidfd reads ready then); those that have not."""
    deadline = time.monotonic() + timeout
    waiting = list(pidfds)
    while waiting and time.monotonic() < deadline:
        ready, _, _ = select.select(waiting, [], [], deadline - time.monotonic())
        waiting = [fd for fd in waiting if fd not in ready]
    return waiting


def test_results_in_order(pool):
    """Submitted requests resolve to their own results."""
    futures = [pool.submit(make_request(f"print({i} * 2)")) for i in range(40)]
    assert [f.result(60).stdout for f in futures] == [f"{i * 2}\n" for i in range(40)]
    assert pool.pending == 0


def test_killed_worker_is_isolated(pool):
    """A worker killed mid-run gives CRASHED for that item only and is replaced."""
    before = pool.worker_pids()
    spin = pool.submit(make_request("while True: pass", timeout=60))
    others = [pool.submit(make_request(f"print({i})")) for i in range(10)]
    assert [f.result(60).stdout for f in others] == [f"{i}\n" for i in range(10)]
    # One queue, first in first out: the spin was taken before the others, which the other worker served.
    assert pool.in_flight == 1 and not spin.done()
    pidfds = [os.pidfd_open(pid) for pid in before]
    try:
        for pid in before:  # the spinning worker and the idle one: no need to tell them apart
            os.kill(pid, signal.SIGKILL)
        assert _still_running(pidfds, 10) == []  # gone, so the idle one's dispatcher sees it dead
    finally:
        for fd in pidfds:
            os.close(fd)
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
        await_state(lambda: p.in_flight == 1, "the worker took the first run")
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
    import execr._parallel._pool as pool_module

    real = pool_module.WorkerProcess
    broken = {"on": True}

    def worker(*args):
        if broken["on"]:
            raise OSError(24, "Too many open files")
        return real(*args)

    monkeypatch.setattr(pool_module, "WorkerProcess", worker)
    with WorkerPool(1) as p:
        r = p.submit(make_request("print(1)")).result(60)
        assert r.outcome is Outcome.CRASHED and "Too many open files" in (r.error or "")
        broken["on"] = False
        assert p.submit(make_request("print(2)")).result(120).stdout == "2\n"


# -- interpreter exit, garbage collection --

_UNCLOSED = """
import atexit, sys, time
futures = []
# Registered before execr is imported, so it runs after execr's own exit handler (LIFO).
atexit.register(lambda: print("OUTCOMES", *sorted({f.result(0).outcome.value for f in futures}), flush=True))
from execr._parallel._pool import WorkerPool
from execr._request import make_request
if __name__ == "__main__":  # so that the code before this change fails by hanging, not by re-running this
    pool = WorkerPool(2)
    assert pool.submit(make_request("print(7)")).result(120).stdout == "7\\n"
    futures.append(pool.submit(make_request("while True: pass", timeout=60)))
    futures.extend(pool.submit(make_request("import time; time.sleep(60)", timeout=60)) for _ in range(5))
    while pool.in_flight < 2:  # no event says "a worker took it": poll the count (the test bounds the wait)
        time.sleep(0.01)
    print("PIDS", *pool.worker_pids(), flush=True)
"""


def test_unclosed_pool_does_not_hold_up_exit(tmp_path: Path) -> None:
    """A script that returns with a pool never closed, runs in flight and more queued, exits
    within a couple of seconds; its futures end CANCELLED and no worker process is left,
    running or unreaped."""
    script = tmp_path / "unclosed.py"
    script.write_text(_UNCLOSED)
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        returned = time.monotonic()
        assert line.startswith("PIDS "), line
        pids = [int(x) for x in line.split()[1:]]
        assert len(pids) == 2
        try:
            proc.wait(30)
        finally:
            proc.kill()
        exit_took = time.monotonic() - returned
        rest = proc.stdout.read()
    assert proc.returncode == 0
    assert exit_took < 4.0, exit_took  # EXIT_GRACE (1.5 s), then kill, reap and a last join (1 s)
    assert "OUTCOMES cancelled\n" in rest, rest
    assert [pid for pid in pids if _exists(pid)] == []


def test_parent_killed_worker_stops(tmp_path: Path) -> None:
    """When the parent dies without any clean-up (SIGKILL), its workers cancel their runs and
    exit at once instead of running on as orphans until the runs' timeouts."""
    script = tmp_path / "killed.py"
    script.write_text(_UNCLOSED + "    import time\n    time.sleep(120)\n")
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            assert line.startswith("PIDS "), line
            pidfds = [os.pidfd_open(int(pid)) for pid in line.split()[1:]]
        finally:
            proc.kill()
    try:
        assert _still_running(pidfds, 10) == [], "a worker outlived its killed parent by 10 s"
    finally:
        for fd in pidfds:
            os.close(fd)


def test_garbage_collected_pool_finishes_queue_and_stops_workers() -> None:
    """A pool dropped without close() still delivers what was queued, then stops and reaps
    its workers (its dispatcher threads do not keep it alive)."""
    pool = WorkerPool(2)
    futures = [pool.submit(make_request(f"print({i})")) for i in range(6)]
    core = pool._core
    del pool
    gc.collect()
    assert [f.result(120).stdout for f in futures] == [f"{i}\n" for i in range(6)]
    for t in core._threads:
        t.join(30)
        assert not t.is_alive()
    assert core.worker_pids() == []
    assert core.stats()["completed"] == 6


# -- callers whose __main__ a worker must not import --

_MANY = (
    "import execr; "
    "print([(r.outcome.value, r.stdout) for r in execr.execute_many(['print(1)', 'print(2)'], workers=2)])"
)
_EXPECTED = "[('completed', '1\\n'), ('completed', '2\\n')]"


def _python(*args: str, stdin: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=180, cwd=cwd)


def test_execute_many_from_stdin_script(tmp_path: Path) -> None:
    """``python -`` (the script on standard input) can use execute_many: workers do not try to
    re-read the caller's main module."""
    proc = _python("-", stdin=_MANY + "\n", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _EXPECTED + "\n", proc.stderr


def test_execute_many_from_dash_c(tmp_path: Path) -> None:
    """``python -c`` can use execute_many."""
    proc = _python("-c", _MANY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _EXPECTED + "\n", proc.stderr


def test_execute_many_from_unguarded_script(tmp_path: Path) -> None:
    """A script without the ``if __name__ == "__main__"`` guard can use execute_many, and its
    top level runs once: workers never re-run it."""
    script = tmp_path / "unguarded.py"
    script.write_text("print('top level ran')\n" + _MANY + "\n")
    proc = _python(str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "top level ran\n" + _EXPECTED + "\n", proc.stderr


def test_execute_many_from_repl(tmp_path: Path) -> None:
    """The interactive interpreter (``python -i`` reading its input from a pipe) can use execute_many."""
    proc = _python("-i", stdin=_MANY + "\n", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _EXPECTED + "\n", proc.stderr


_FORK = """
import os, sys, time
from execr._parallel._pool import WorkerPool
from execr._request import make_request
if __name__ == "__main__":
    pool = WorkerPool(1)
    future = pool.submit(make_request("import time; time.sleep(1); print('done')", timeout=30))
    while pool.in_flight < 1:  # no event says "a worker took it": poll the count (the test bounds the wait)
        time.sleep(0.01)
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a normal exit, so the child runs its atexit handlers
    os.waitpid(pid, 0)
    result = future.result(60)
    print(result.outcome.value, result.stdout.strip())
    pool.close()
"""


def test_forked_child_exit_leaves_parent_pool_alone(tmp_path: Path) -> None:
    """A child forked from a process with a pool does not shut that pool down when it exits:
    the parent's run in flight still completes."""
    script = tmp_path / "fork.py"
    script.write_text(_FORK)
    proc = _python(str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "completed done\n", proc.stderr
