"""WorkerProcess: the parent's handle on one pool worker: start it, run a job on it over its pipes, stop or kill it.

The worker is a fresh interpreter (``python -c WORKER_CODE``) with one duplex pipe for
requests and results, a one-way control pipe for cancellation, and a sentinel pipe whose
write end only the worker holds, so the parent reads end-of-file exactly when it exits.
One dispatcher thread owns each handle.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import multiprocessing.spawn
import os
import subprocess
import sys
import threading
import time
from typing import Any

from .._results import Outcome, Result
from ._jobs import Job, failure
from ._worker import WORKER_CODE

__all__ = ["CANCEL_GRACE", "HANG_GRACE", "WorkerProcess"]

HANG_GRACE = 30.0  # seconds past a request's own timeout before a silent worker is killed
CANCEL_GRACE = 5.0  # seconds a cancelled run may take to stop before its worker is killed
_CANCELLED = "the run was cancelled by the host"


class WorkerProcess:
    """One worker process and its pipes (owned by one dispatcher thread)."""

    def __init__(
        self,
        snapshot: bool,
        cache_dir: str | None,
        runtimes: tuple[str, ...] = ("default",),
        factory: str | None = None,
    ) -> None:
        self.conn, child = multiprocessing.Pipe(duplex=True)
        control_read, self.control = multiprocessing.Pipe(duplex=False)
        self.sentinel, sentinel_write = os.pipe()
        self._pipes_lock = threading.Lock()
        self._pipes_open = True
        fds = (child.fileno(), control_read.fileno(), sentinel_write)
        try:
            self.proc = subprocess.Popen(
                [multiprocessing.spawn.get_executable(), "-c", WORKER_CODE, str(fds[0]), str(fds[1])],
                pass_fds=fds,
                stdin=subprocess.DEVNULL,  # the caller's stdin may be its script (python -) or a REPL
            )
        except BaseException:
            self.close_pipes()
            raise
        finally:
            child.close()
            control_read.close()
            os.close(sentinel_write)  # the worker now holds the only write end
        self.send_lock = threading.Lock()
        init = {
            "sys_path": list(sys.path),
            "snapshot": snapshot,
            "cache_dir": cache_dir,
            "runtimes": runtimes,
            "factory": factory,
        }
        with contextlib.suppress(OSError, ValueError):  # a worker that died at once shows in wait_ready
            self.conn.send(init)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float) -> str | None:
        """None when the worker is ready, else why it is not."""
        ready = multiprocessing.connection.wait([self.conn, self.sentinel], timeout)
        if self.conn in ready:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                msg = None
            if msg is not None and msg[0] == "ready":
                return None
            if msg is not None and msg[0] == "failed":
                return str(msg[1])
        if not ready:
            return f"worker did not start within {timeout:.0f} s"
        return f"worker process died during start-up (exit code {self.exit_code()})"

    def alive(self) -> bool:
        """Whether the process still runs (its sentinel has not reached end-of-file)."""
        return not multiprocessing.connection.wait([self.sentinel], 0)

    def run(self, job: Job) -> tuple[Result, bool]:
        """Run ``job`` here: (its result, whether this worker is still usable).

        A worker that stays silent ``HANG_GRACE`` seconds past the run's timeout, or
        ``CANCEL_GRACE`` seconds past a cancel, is given up (the caller kills it).
        """
        started = time.perf_counter()
        try:
            self.conn.send(("run", job.seq, job.request))
        except (OSError, ValueError) as e:
            return failure(job.request, Outcome.CRASHED, f"worker process died (sending the request: {e})"), False
        limit = job.request.limits.timeout
        hang = None if limit is None else limit + HANG_GRACE
        cancel_deadline: float | None = None
        waitables: list[Any] = [self.conn, self.sentinel]
        while True:
            # Wake at least twice a second so a cancel that raced the start is re-sent
            # and an unresponsive worker is noticed.
            wait_for = 0.5 if hang is None else min(0.5, max(0.0, started + hang - time.perf_counter()))
            if job.cancelled and cancel_deadline is None:
                cancel_deadline = time.perf_counter() + CANCEL_GRACE
                self.cancel(job.seq)
            ready = multiprocessing.connection.wait(waitables, wait_for)
            if self.conn in ready:
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    return self._died(job, started), False
                if msg[0] == "result" and msg[1] == job.seq:
                    return msg[2], True
                if msg[0] == "error" and msg[1] == job.seq:
                    return failure(job.request, Outcome.CRASHED, f"execr error in worker: {msg[2]}", started), True
                continue  # a stale message; keep waiting
            if self.sentinel in ready:
                return self._died(job, started), False
            now = time.perf_counter()
            if cancel_deadline is not None and now >= cancel_deadline:
                return failure(job.request, Outcome.CANCELLED, _CANCELLED, started), False
            if hang is not None and now >= started + hang:
                error = f"worker process unresponsive {hang:.0f} s into a run with timeout {limit} s; killed"
                return failure(job.request, Outcome.CRASHED, error, started), False

    def _died(self, job: Job, started: float) -> Result:
        """The result of ``job`` when this worker exited during it (a cancel, or a crash)."""
        code = self.exit_code()
        if job.cancelled:
            return failure(job.request, Outcome.CANCELLED, _CANCELLED, started)
        return failure(job.request, Outcome.CRASHED, f"worker process died (exit code {code})", started)

    def cancel(self, seq: int) -> None:
        """Ask the worker to stop run ``seq`` (ignored if it already finished)."""
        with self.send_lock, contextlib.suppress(OSError, ValueError):
            self.control.send(("cancel", seq))

    def exit_code(self) -> int | None:
        """The exit code (negative: killed by that signal), reaping the process; None if it still runs after 5 s."""
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self.close_pipes()

    def kill(self) -> None:
        """Kill the process and reap it."""
        with contextlib.suppress(OSError):
            self.proc.kill()  # a no-op once it has been reaped
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def close_pipes(self) -> None:
        """Close the parent's ends of the pipes (once)."""
        with self._pipes_lock:
            if not self._pipes_open:
                return
            self._pipes_open = False
        for c in (self.conn, self.control):
            with contextlib.suppress(OSError):
                c.close()
        with contextlib.suppress(OSError):
            os.close(self.sentinel)
