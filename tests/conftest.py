"""Shared fixtures: one session-wide Runtime, and ``run`` parametrized over both start-up paths."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import execr
from execr import Result, Runtime

RunFn = Callable[..., Result]


@pytest.fixture(scope="session")
def runtime() -> Iterator[Runtime]:
    """One Runtime for the whole session (the compile and snapshot come from the user's cache)."""
    rt = Runtime()
    rt.warmup()
    assert rt.snapshot_error is None, rt.snapshot_error
    yield rt
    rt.close()


@pytest.fixture(params=[True, False], ids=["snapshot", "plain"])
def snapshot(request: pytest.FixtureRequest) -> bool:
    """Which start-up path a guest test takes."""
    return bool(request.param)


@pytest.fixture
def run(runtime: Runtime, snapshot: bool) -> RunFn:
    """Run code on the session runtime on the parametrized path, checking ``result.mode``."""

    def _run(code: str, stdin: str | bytes = "", args: Any = None, **kw: Any) -> Result:
        result = runtime.execute(code, stdin, args, snapshot=snapshot, **kw)
        assert isinstance(result, execr.Result)
        assert result.mode == ("snapshot" if snapshot else "plain"), result
        return result

    return _run
