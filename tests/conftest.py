"""Shared fixtures: one session-wide Runtime, and ``run`` parametrized over runtimes and start-up paths.

``run`` takes every guest test through five ids: default-snapshot, default-plain (execr's own
CPython 3.13), python3.12-snapshot (the older runtime kept for a while), scientific-snapshot
and scientific-plain (CPython 3.15 with numpy and pandas pre-imported). The python3.12 and
scientific modules are built once per session, on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import execr
from execr import Result, Runtime

RunFn = Callable[..., Result]

PATHS = [("default", True), ("default", False), ("python3.12", True), ("scientific", True), ("scientific", False)]


@pytest.fixture(scope="session")
def runtime() -> Iterator[Runtime]:
    """One Runtime for the whole session (the compile and snapshot come from the user's cache)."""
    rt = Runtime()
    rt.warmup()
    assert rt.snapshot_error is None, rt.snapshot_error
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def scientific(runtime: Runtime) -> Runtime:
    """The session runtime with the scientific modules built (minutes on a cold cache, once)."""
    runtime.warmup(["scientific"])
    assert runtime.snapshot_errors["scientific"] is None, runtime.snapshot_errors
    return runtime


@pytest.fixture(scope="session")
def legacy(runtime: Runtime) -> Runtime:
    """The session runtime with the python3.12 modules built (about a minute on a cold cache, once)."""
    runtime.warmup(["python3.12"])
    assert runtime.snapshot_errors["python3.12"] is None, runtime.snapshot_errors
    return runtime


@pytest.fixture(params=PATHS, ids=[f"{name}-{'snapshot' if snap else 'plain'}" for name, snap in PATHS])
def path(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """Which runtime and start-up path a guest test takes."""
    name, snap = request.param
    if name != "default":
        request.getfixturevalue("scientific" if name == "scientific" else "legacy")
    return str(name), bool(snap)


@pytest.fixture
def snapshot(path: tuple[str, bool]) -> bool:
    """Whether the guest test takes the snapshot path."""
    return path[1]


@pytest.fixture
def runtime_name(path: tuple[str, bool]) -> str:
    """Which runtime the guest test runs on."""
    return path[0]


@pytest.fixture
def base_memory(runtime: Runtime, path: tuple[str, bool]) -> int:
    """The initial linear memory of the module the test runs (memory limits are relative to it)."""
    name, snap = path
    module = runtime._snapshot_module(name) if snap else None
    return (module.compiled if module is not None else runtime._plain_module(name)).min_bytes


@pytest.fixture
def run(runtime: Runtime, path: tuple[str, bool]) -> RunFn:
    """Run code on the session runtime on the parametrized runtime and path, checking ``result.mode``."""
    name, snapshot = path

    def _run(code: str, stdin: str | bytes = "", args: Any = None, **kw: Any) -> Result:
        kw.setdefault("runtime", name)
        result = runtime.execute(code, stdin, args, snapshot=snapshot, **kw)
        assert isinstance(result, execr.Result)
        assert result.mode == ("snapshot" if snapshot else "plain"), result
        return result

    return _run


GUEST_FIXTURES = {"runtime", "run", "scientific", "legacy", "path", "base_memory"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from what a test really uses: ``guest`` (a real wasm runtime), ``scientific`` (the 3.15 build).

    ``-m "not scientific"`` skips every test that would build or load the scientific runtime
    (minutes on a cold cache); ``-m "not guest"`` leaves the tests that run no guest at all.
    """
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if "scientific" in names or "scientific" in item.name:
            item.add_marker(pytest.mark.scientific)
        if names & GUEST_FIXTURES:
            item.add_marker(pytest.mark.guest)
