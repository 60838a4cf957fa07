"""execr.testing: a fake runtime that answers with scripted results, for tests where wasm is not the subject.

``FakeRuntime`` has the surface of ``execr.Runtime`` that callers use (``execute``, ``run``,
``warmup``, ``info``, ``close``, a context manager) and validates requests exactly like
the real one (bad input still raises ``InvalidArgument``), but never starts a guest: each
request is answered in microseconds by a *responder*.

The default responder understands a tiny language, enough to script a pool, a server or a
CLI under test:

- ``print(<literal>)``: completes with the literal's ``str`` and a newline on stdout;
- ``exit(<n>)``: fails with exit code n;
- ``sleep(<seconds>)``: sleeps on the host (in the worker), then completes, or times out when
  the request's timeout is shorter (outcome ``timed_out``); a cancel ends it ``cancelled``;
- ``crash``: the ``crashed`` outcome; anything else: completes with the code echoed on stdout.

Pass your own responder (``FakeRuntime(responder=fn)``; ``fn(request) -> Result``) for
anything else. A ``WorkerPool`` runs it in its workers with
``WorkerPool(runtime_factory=execr.testing.FakeRuntime)`` (a factory importable by name).
"""

from __future__ import annotations

import ast
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Unpack

from ._exceptions import RuntimeClosed
from ._limits import UNSET, Unset
from ._request import Request, make_request
from ._results import Mode, Outcome, Result
from ._run_options import RunOptions

__all__ = ["FakeRuntime", "respond"]

Responder = Callable[[Request], Result]


def respond(request: Request, cancel: threading.Event | None = None) -> Result:
    """The default responder (see the module docstring)."""
    code = request.code.strip()
    mode: Mode = "snapshot" if request.snapshot else "plain"
    call = _call(code)
    if call is not None:
        name, value = call
        if name == "print":
            return Result(stdout_bytes=f"{value}\n".encode(), mode=mode)
        if name == "exit" and isinstance(value, int):
            return Result(outcome=Outcome.FAILED if value else Outcome.COMPLETED, exit_code=value & 0xFF, mode=mode)
        if name == "sleep" and isinstance(value, (int, float)):
            timeout = request.limits.timeout
            wait = float(value) if timeout is None else min(float(value), timeout)
            if cancel is not None and cancel.wait(wait):
                return Result.failure(Outcome.CANCELLED, "the run was cancelled by the host", mode=mode)
            if cancel is None:
                time.sleep(wait)
            if timeout is not None and value > timeout:
                return Result.failure(Outcome.TIMED_OUT, "wall-clock limit reached", mode=mode, duration=wait)
            return Result(mode=mode, duration=wait)
    if code == "crash":
        return Result.failure(Outcome.CRASHED, "scripted crash", mode=mode)
    return Result(stdout_bytes=request.code.encode("utf-8", "surrogatepass"), mode=mode)


def _call(code: str) -> tuple[str, Any] | None:
    """``name(literal)`` as (name, value), else None."""
    try:
        node = ast.parse(code, mode="eval").body
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1):
        return None
    try:
        return node.func.id, ast.literal_eval(node.args[0])
    except ValueError:
        return None


class FakeRuntime:
    """A stand-in for ``execr.Runtime`` that answers each request with ``responder(request)``.

    ``requests`` lists every request it ran, in order (for assertions).
    """

    def __init__(self, responder: Responder | None = None, **_runtime_options: Any) -> None:
        self._responder = responder
        self.requests: list[Request] = []
        self._closed = False
        self._lock = threading.Lock()

    def warmup(self, runtimes: Iterable[str] = ("default",)) -> None:
        """Nothing to build."""
        self._check_open()

    def info(self) -> dict[str, Any]:
        """A minimal description (marked fake)."""
        return {"fake": True, "runtimes": {"default": {"available": True}}}

    def execute(
        self,
        code: str,
        stdin: str | bytes = "",
        args: Sequence[str] | None = None,
        use_fuel: bool = False,
        fuel: int | Unset | None = UNSET,
        mount_fs: str | None = None,
        stdio: str | None = None,
        **options: Unpack[RunOptions],
    ) -> Result:
        """Validate like ``Runtime.execute``, then answer."""
        request = make_request(
            code, stdin, args, use_fuel=use_fuel, fuel=fuel, mount_fs=mount_fs, stdio=stdio, **options
        )
        return self.run(request)

    def run(self, request: Request, cancel: threading.Event | None = None) -> Result:
        """Answer one validated request."""
        self._check_open()
        with self._lock:
            self.requests.append(request)
        if self._responder is not None:
            return self._responder(request)
        return respond(request, cancel)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosed("this FakeRuntime is closed")

    def close(self) -> None:
        """Later use raises ``RuntimeClosed`` (idempotent)."""
        self._closed = True

    def __enter__(self) -> FakeRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
