"""Worker processes: how a pool worker starts (never importing the caller's ``__main__``) and serves runs."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
from typing import Any

__all__ = ["WORKER_CODE", "worker_main"]

#: What a worker runs (``python -c``): it takes the caller's ``sys.path`` from its first message, then serves.
WORKER_CODE = """\
import signal, sys
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, signal.SIG_IGN)
from multiprocessing.connection import Connection
_conn, _control = Connection(int(sys.argv[1])), Connection(int(sys.argv[2]), writable=False)
del sys.argv[1:]
_init = _conn.recv()
sys.path[:] = _init.pop("sys_path")
from execr._parallel._worker import worker_main
worker_main(_conn, _control, **_init)
"""


def _resolve(spec: str) -> Any:
    """The object named ``module:qualname`` (a runtime factory, e.g. ``execr.testing:FakeRuntime``)."""
    module, _, name = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def worker_main(
    conn: Any,
    control: Any,
    snapshot: bool,
    cache_dir: str | None,
    runtimes: tuple[str, ...] = ("default",),
    factory: str | None = None,
) -> None:
    """Entry point of a worker process: warm up, then run requests until told to stop.

    Workers ignore SIGINT and SIGTERM: a signal to the whole process group (Ctrl-C, a
    process manager) must not kill runs mid-way; the parent drains and closes them. When
    the parent goes away (its end of the control pipe closes), the run in progress is
    cancelled and the worker exits instead of running on as an orphan.
    """
    from .._runtime import Runtime

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, signal.SIG_IGN)

    try:
        runtime: Any = _resolve(factory)() if factory else Runtime(snapshot=snapshot, cache_dir=cache_dir)
        runtime.warmup(runtimes)
    except BaseException as e:  # report why, then exit
        with contextlib.suppress(Exception):
            conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    lock = threading.Lock()
    current: list[Any] = [None, None]  # [seq, Event] of the run in progress

    def watch_control() -> None:
        while True:
            try:
                msg = control.recv()
            except (EOFError, OSError):  # the parent is gone: stop what runs
                with lock:
                    if current[1] is not None:
                        current[1].set()
                return
            with lock:
                if msg[0] == "cancel" and current[0] == msg[1] and current[1] is not None:
                    current[1].set()

    threading.Thread(target=watch_control, name="execr-worker-control", daemon=True).start()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] != "run":
            return
        _, seq, request = msg
        event = threading.Event()
        with lock:
            current[0], current[1] = seq, event
        try:
            reply: tuple[Any, ...] = ("result", seq, runtime.run(request, cancel=event))
        except Exception as e:
            reply = ("error", seq, f"{type(e).__name__}: {e}")
        with lock:
            current[0] = current[1] = None
        try:
            conn.send(reply)
        except (OSError, ValueError):
            return
