"""Recycled instances: a run after any other run starts exactly as a fresh instance would.

Snapshot runs reuse instances whose memory is put back to the image (``_pagemap``). These
tests first check that recycling is really in effect, then try to leave traces behind in
every way a guest can (memory, modules, builtins, environment, cwd, open files, the
allocator, traps mid-run, memory growth) and check the next run sees none of them.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import random

import pytest

from execr import Outcome, Runtime, _sandbox
from execr._sandbox import _pagemap

pytestmark = pytest.mark.guest

needs_scan = pytest.mark.skipif(not _pagemap.available(), reason="kernel without PAGEMAP_SCAN (Linux < 6.7)")

SECRET = "LEFT-BEHIND-4b1d"

#: What a run can observe of the state it starts in (compared between runs).
PROBE = """
import builtins, gc, json, os, random, sys
fds = []
for fd in range(3, 64):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:
        pass
def leftovers():
    mark = "LEFT-" + "BEHIND"  # never whole in this source (linecache holds it)
    kinds = (dict, list, bytearray, str)
    return sum(1 for o in gc.get_objects() if isinstance(o, kinds) and mark in repr(o)[:100000])
print(json.dumps({
    "addresses": [id(o) for o in [object() for _ in range(64)]],  # the allocator's state
    "modules": sorted(sys.modules),
    "builtins": sorted(vars(builtins)),
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "fds": fds,
    "path": sys.path,
    "recursion": sys.getrecursionlimit(),
    "trace": sys.gettrace() is not None,
    "stdout": type(sys.stdout).__name__,
    "leftovers": leftovers(),
    "json_attr": hasattr(json, "SECRET"),
    "globals": sorted(k for k in globals() if not k.startswith("__")),
    "random": random.random(),
}))
"""

POLLUTE = f"""
import builtins, json, os, random, sys
SECRET = {SECRET!r}
big = bytearray(SECRET.encode() * 200_000)        # ~3 MB of marked heap
keep = [SECRET + str(i) for i in range(20_000)]
builtins.SECRET = SECRET
json.SECRET = SECRET
sys.modules["planted"] = type(sys)("planted")
os.environ["PLANTED"] = SECRET
os.makedirs("/elsewhere", exist_ok=True)
os.chdir("/elsewhere")
handles = [open(f"/elsewhere/f{{i}}", "w") for i in range(5)]
sys.path.append("/elsewhere")
sys.setrecursionlimit(123)
sys.settrace(lambda *a: None)
random.seed(1)
class Loud:
    def write(self, s): return 0
    def flush(self): pass
sys.stdout = Loud()
del builtins.len
print("polluted", file=sys.__stdout__)
"""


def probe(runtime: Runtime, name: str, **kw) -> dict:
    r = runtime.execute(PROBE, runtime=name, **kw)
    assert r.outcome is Outcome.COMPLETED, (r.outcome, r.error, r.stderr[-2000:])
    return json.loads(r.stdout)


def clean(state: dict) -> dict:
    """The state minus what is meant to differ between runs (fresh random numbers)."""
    return {k: v for k, v in state.items() if k != "random"}


@pytest.fixture(params=["default", "python3.12", "scientific"])
def name(request: pytest.FixtureRequest, runtime: Runtime) -> str:
    if request.param != "default":
        request.getfixturevalue("scientific" if request.param == "scientific" else "legacy")
    return str(request.param)


def idle(runtime: Runtime, name: str) -> int:
    snap = runtime._snapshot_module(name)
    assert snap is not None
    return len(snap.compiled._idle)


@needs_scan
def test_snapshot_runs_recycle_instances(runtime, name):
    """Recycling is in effect for both runtimes (else the tests below would prove nothing)."""
    snap = runtime._snapshot_module(name)
    assert snap is not None and snap.compiled.recycle
    assert runtime.runtime_info(name)["snapshot"]["recycled_instances"] is True  # what `execr info` shows
    runtime.execute("pass", runtime=name)
    assert idle(runtime, name) >= 1
    r = runtime.execute("print(6 * 7)", runtime=name)
    assert r.stdout == "42\n" and r.mode == "snapshot"


@needs_scan
def test_nothing_survives_a_polluting_run(runtime, name):
    """Memory, modules, builtins, env, cwd, open files, sys settings and the allocator all start over."""
    before = probe(runtime, name)
    polluted = runtime.execute(POLLUTE, runtime=name)
    assert polluted.ok and polluted.stdout == "polluted\n", polluted.stderr[-2000:]
    after = probe(runtime, name)
    assert clean(after) == clean(before)
    assert after["leftovers"] == 0 and after["random"] != before["random"]
    assert probe(runtime, name)["addresses"] == before["addresses"]  # the same allocator state every time


@needs_scan
@pytest.mark.parametrize(
    ("code", "limits", "outcome"),
    [
        (f"x = {SECRET!r} * 1000\nwhile True: pass", {"timeout": 0.3}, Outcome.TIMED_OUT),
        (f"x = {SECRET!r} * 1000\nwhile True: pass", {"fuel": 50_000_000}, Outcome.OUT_OF_FUEL),
        (f"import os\nx = {SECRET!r} * 1000\nos.abort()", {}, Outcome.CRASHED),
        (f"import sys\nx = {SECRET!r}\nsys.exit(3)", {}, Outcome.FAILED),
        (f"x = {SECRET!r}\ndef f(n): return f(n + 1)\nf(0)", {}, Outcome.FAILED),
        (f"x = [{SECRET!r}]\ny = bytearray(1 << 30)", {"memory_limit": 64 << 20}, Outcome.MEMORY_LIMIT),
    ],
    ids=["timeout", "fuel", "abort", "exit", "recursion", "memory-limit"],
)
def test_a_run_stopped_midway_leaves_nothing(runtime, code, limits, outcome):
    """Runs cut off by a trap or limit (the guest's state half-updated) do not leak into the next run."""
    before = probe(runtime, "default")
    r = runtime.execute(code, **limits)
    assert r.outcome is outcome, (r.outcome, r.error, r.stderr[-500:])
    snap = runtime._snapshot_module("default")
    assert snap is not None
    for warm in snap.compiled._idle:  # a trap leaves the stack pointer mid-stack: it was put back
        assert warm.sp.value(warm.store) == warm.sp0
    assert clean(probe(runtime, "default")) == clean(before)


@needs_scan
def test_grown_memory_is_not_reused(runtime, base_memory_default):
    """An instance whose memory grew is retired: the next run starts at the image's size."""
    r = runtime.execute("x = bytearray(64 * 1024 * 1024)\nprint(len(x))")
    assert r.ok and r.data_len > base_memory_default + 60 * 1024 * 1024
    after = runtime.execute("print(1)")
    assert after.ok and after.data_len == base_memory_default


@needs_scan
def test_parallel_recycled_runs_stay_apart(runtime):
    """Threads running at once each get their own instance; outputs never mix."""
    from concurrent.futures import ThreadPoolExecutor

    code = "import sys\nv = sys.argv[1]\nx = [v] * 1000\nprint(v * 3)"
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda i: runtime.execute(code, args=[f"<{i}>"]), range(40)))
    assert [r.stdout for r in results] == [f"<{i}>" * 3 + "\n" for i in range(40)]
    assert idle(runtime, "default") <= _sandbox.MAX_IDLE


def test_recycling_can_be_turned_off(monkeypatch, tmp_path):
    """EXECR_RECYCLE=0: every run gets a new instance; results are the same."""
    monkeypatch.setenv("EXECR_RECYCLE", "0")
    rt = Runtime()
    try:
        assert rt.execute("print('off')").stdout == "off\n"
        assert rt.execute("print('off')").stdout == "off\n"
        assert idle(rt, "default") == 0
        assert rt.info()["snapshot"]["recycled_instances"] is False
    finally:
        rt.close()


@needs_scan
def test_close_releases_kept_instances():
    rt = Runtime()
    rt.execute("pass")
    snap = rt._snapshot_module("default")
    assert snap is not None and len(snap.compiled._idle) == 1
    rt.close()
    assert snap.compiled._idle == []


# -- the restorer on its own, against a file-backed private mapping like wasmtime's --


@needs_scan
@pytest.mark.parametrize("keep", [0, 64 * mmap.PAGESIZE, 1 << 30], ids=["drop-all", "small-keep", "keep-all"])
def test_restorer_puts_every_page_back(tmp_path, keep):
    """Random writes over an image mapping and a zero tail: after each reset, memory equals the original."""
    page, pages, image_pages = mmap.PAGESIZE, 256, 192
    rng = random.Random(7)
    original = bytes(rng.getrandbits(8) for _ in range(image_pages * page)) + bytes((pages - image_pages) * page)
    path = tmp_path / "image"
    path.write_bytes(original[: image_pages * page])
    region = mmap.mmap(-1, pages * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = ctypes.c_char.from_buffer(region)
    base = ctypes.addressof(view)
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        flags = mmap.MAP_PRIVATE | 0x10  # MAP_FIXED
        got = libc.mmap(base, image_pages * page, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
        assert got == base
        restorer = _pagemap.Restorer(base, pages * page, keep)
        for _ in range(6):
            for _ in range(rng.randrange(1, 80)):
                at = rng.randrange(pages * page)
                region[at] = (region[at] + 1) % 256
            _ = region[rng.randrange(pages * page)]  # a read-only touch
            restorer.reset()
            assert region[:] == original
        restorer.close()
    finally:
        del view
        region.close()
        os.close(fd)


@pytest.fixture
def base_memory_default(runtime: Runtime) -> int:
    snap = runtime._snapshot_module("default")
    assert snap is not None
    return snap.compiled.min_bytes


def test_kernel_without_pagemap_scan_gives_new_instances(monkeypatch):
    """On a kernel without PAGEMAP_SCAN (Linux < 6.7: the ioctl fails) runs work as before, unrecycled."""
    monkeypatch.setattr(_pagemap, "_PAGEMAP_SCAN", 0xC0606600)  # an ioctl no kernel knows: ENOTTY
    monkeypatch.setattr(_pagemap, "_probed", None)
    assert _pagemap.available() is False
    rt = Runtime()
    try:
        assert [rt.execute("print(5)").stdout for _ in range(2)] == ["5\n", "5\n"]
        assert idle(rt, "default") == 0
        assert rt.info()["snapshot"]["recycled_instances"] is False
    finally:
        rt.close()
