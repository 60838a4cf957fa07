"""Tests for execr._parallel._many: execute_many, iter_results, async twin, result cache, Ray backend."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from execr import Outcome
from execr._parallel._many import ResultCache, execute_many, execute_many_async, iter_results
from execr._request import make_request

pytestmark = pytest.mark.guest

MiB = 1024 * 1024
HOSTILE = {
    "loop": ({"code": "while True: pass", "timeout": 1}, Outcome.TIMED_OUT),
    "bomb": (
        {"code": "a = []\nwhile True: a.append(bytearray(10**6))", "memory_limit": 64 * MiB},
        Outcome.MEMORY_LIMIT,
    ),
    "flood": ({"code": "for i in range(10000): print('x' * 100)", "max_stdout": 1000}, Outcome.COMPLETED),
}


def test_many_with_hostile_items():
    """200 items with hostile ones mixed in: each reports its own outcome, normal ones are correct."""
    items, expect = [], []
    for i in range(200):
        kind = ("loop", "bomb", "flood")[i // 10 % 3] if i % 10 == 5 and i < 100 else None
        if kind is None:
            items.append(f"print({i} ** 2)")
            expect.append(None)
        else:
            items.append(HOSTILE[kind][0])
            expect.append(kind)
    results = execute_many(items, workers=2, progress=False)
    assert len(results) == 200
    for i, (result, kind) in enumerate(zip(results, expect, strict=True)):
        if kind is None:
            assert result.outcome is Outcome.COMPLETED and result.stdout == f"{i**2}\n", (i, result)
        else:
            assert result.outcome is HOSTILE[kind][1], (i, kind, result.outcome, result.error)
            if kind == "flood":
                assert len(result.stdout_bytes) <= 1000 and result.stdout_dropped > 0


def test_invalid_item_is_isolated():
    """An invalid item becomes a CRASHED 'invalid request' result; the others still run."""
    results = execute_many(
        [
            "print(1)",
            {"code": "print(2)", "timeout": -5},
            42,
            {"stdin": "no code"},
            {"code": "print(3)", "bogus": 1},
            "print(4)",
        ],
        workers=1,
        progress=False,
    )
    assert [r.stdout for r in results[::5]] == ["1\n", "4\n"]
    for r in results[1:5]:
        assert r.outcome is Outcome.CRASHED and r.error.startswith("invalid request: "), r


def test_defaults_and_iter_results():
    """Keyword defaults apply to every item; iter_results yields every (index, result) once."""
    pairs = list(
        iter_results([{"code": "import sys; print(sys.argv[1:])"}] * 3 + ["print(7)"], 2, args=["a"], progress=False)
    )
    assert sorted(i for i, _ in pairs) == [0, 1, 2, 3]
    got = dict(pairs)
    assert got[0].stdout == "['a']\n" and got[3].stdout == "7\n"


def test_async_twin():
    """execute_many_async returns the same results as execute_many."""
    results = asyncio.run(execute_many_async([f"print({i})" for i in range(6)], workers=2, progress=False))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(6)]


def test_result_cache(tmp_path):
    """A cache hit returns the identical result without running; writable mounts never hit."""
    code = "import random; print(random.random())"
    first = execute_many([code, code + "  # b"], workers=2, cache=tmp_path / "c", progress=False)
    again = execute_many([code, code + "  # b"], workers=2, cache=tmp_path / "c", progress=False)
    assert again == first and first[0].stdout != first[1].stdout
    share = tmp_path / "share"
    share.mkdir()
    req = {"code": code, "mounts": [(str(share), "/data", True)]}
    assert ResultCache.key(make_request(code, mounts=[(str(share), "/data", True)])) is None
    a, b = execute_many([req, req], workers=2, cache=tmp_path / "c", progress=False)
    assert a.stdout != b.stdout  # both ran (random output differs)
    assert ResultCache.key(make_request(code)) is not None


def test_result_cache_never_serves_what_host_paths_changed(tmp_path, monkeypatch):
    """A run that reads host paths is not cached: after a read-only mount's file changes, the
    rerun sees the new content (it used to get the stale cached answer)."""
    share = tmp_path / "share"
    share.mkdir()
    (share / "v.txt").write_text("old")
    item = {"code": "print(open('/data/v.txt').read())", "mounts": [f"{share}:/data"]}
    (first,) = execute_many([item], workers=1, cache=tmp_path / "c", progress=False)
    assert first.stdout == "old\n"
    (share / "v.txt").write_text("new")
    (second,) = execute_many([item], workers=1, cache=tmp_path / "c", progress=False)
    assert second.stdout == "new\n"
    for kwargs in ({"mount_fs": share}, {"stdio": share}, {"pythonpath": share}, {"mounts": [f"{share}:/d"]}):
        assert ResultCache.key(make_request("pass", **kwargs)) is None, kwargs
    monkeypatch.setenv("EXECR_PYTHONPATH", str(share))
    assert ResultCache.key(make_request("pass")) is None


def test_result_cache_writes_through_the_cache_module(tmp_path, monkeypatch):
    """ResultCache.put stores with _cache.atomic_write (one implementation), and a failing write is harmless."""
    from execr import Result
    from execr._image import _cache

    calls = []
    real = _cache.atomic_write
    monkeypatch.setattr(_cache, "atomic_write", lambda path, data: (calls.append(path), real(path, data)))
    store = ResultCache(tmp_path / "c")
    result = Result(outcome=Outcome.COMPLETED, exit_code=0, stdout_bytes=b"x")
    key = ResultCache.key(make_request("print('x')"))
    store.put(key, result)
    assert calls and store.get(key).stdout == "x"

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_cache, "atomic_write", full)
    store.put(ResultCache.key(make_request("print('y')")), result)  # no exception


def test_junk_items_are_isolated():
    """Items of any shape (non-str keys, odd values, surrogates) become 'invalid request' results."""
    items = [{"code": "print(1)", 1: 2}, {"code": "pass", "files": {"a": "1", "a/b": "2"}}, {"code": "\ud800"}, b"x"]
    results = execute_many([*items, "print(2)"], workers=1, progress=False)
    for r in results[:4]:
        assert r.outcome is Outcome.CRASHED and r.error.startswith("invalid request: "), r
    assert results[4].stdout == "2\n"


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install ray)")
def test_ray_backend(scientific):
    """backend='ray' runs on Ray actors fed from the object store, keeps hostile items isolated, and
    ships the scientific runtime's modules when an item asks for it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        items = [f"print({i} + 1)" for i in range(30)] + [HOSTILE["loop"][0]]
        items.append({"code": "import numpy as np; print(np.arange(10).sum())", "runtime": "scientific"})
        results = execute_many(items, workers=2, backend="ray", progress=False)
        assert [r.stdout for r in results[:30]] == [f"{i + 1}\n" for i in range(30)]
        assert results[30].outcome is Outcome.TIMED_OUT
        assert (results[31].stdout, results[31].mode) == ("45\n", "snapshot"), results[31]
    finally:
        ray.shutdown()


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("print(1)",), {}, "requests must be an iterable"),
        (({"code": "pass"},), {}, "requests must be an iterable"),
        ((["pass"],), {"workers": 0}, "workers must be a whole number >= 1"),
        ((["pass"],), {"workers": "2"}, "workers must be a whole number >= 1"),
        ((["pass"],), {"backend": ["ray"]}, "backend must be"),
        ((["pass"],), {"timeout": 2**64}, "timeout must be at most"),
        ((["pass"],), {"env": {"K": "\ud800"}}, "surrogate"),
    ],
)
def test_bad_call_arguments_are_invalid_arguments(args, kwargs, message):
    """execute_many's own arguments and defaults are checked up front: InvalidArgument, not TypeError."""
    from execr import InvalidArgument

    with pytest.raises(InvalidArgument, match=message):
        execute_many(*args, progress=False, **kwargs)
