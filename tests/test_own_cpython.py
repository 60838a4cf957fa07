"""The default runtime: execr's own CPython 3.13 build, its files, its patches and its two engines."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import execr
from execr import Outcome, Runtime, RuntimeUnavailable
from execr._image import _binary


def test_default_runtime_is_the_own_build(runtime: Runtime) -> None:
    """The default runtime is CPython 3.13.15 built by tools/cpython-wasi, from the package's files."""
    r = runtime.execute("import sys; print(sys.version.split()[0], sys.platform, sys.path[1])")
    assert r.stdout == "3.13.15 wasi /usr/local/lib/python313.zip\n", r
    info = runtime.runtime_info("default")
    assert info["python_version"] == "3.13.15" and info["fuel_free_module"] is True
    assert info["binary_sha256"] == _binary.SHA256 == hashlib.sha256(execr.binary()).hexdigest()
    assert info["stdlib_sha256"] == _binary.STDLIB_SHA256


def test_the_stdlib_users_expect_works(runtime: Runtime) -> None:
    """zlib, bz2, sqlite3, _decimal, pyexpat and the builtin hashes are built in and work."""
    code = """
import bz2, decimal, hashlib, sqlite3, zlib
from xml.parsers import expat
data = b"execr" * 1000
assert zlib.decompress(zlib.compress(data)) == data and bz2.decompress(bz2.compress(data)) == data
db = sqlite3.connect(":memory:")
db.execute("create table t (x)"); db.executemany("insert into t values (?)", [(i,) for i in range(10)])
print(db.execute("select sum(x) from t").fetchone()[0])
print(decimal.Decimal(1) / decimal.Decimal(7), type(decimal.Context()).__module__)
print(*(hashlib.new(n, b"a").hexdigest()[:8] for n in ("sha256", "blake2b", "sha3_256")))
p = expat.ParserCreate(); seen = []
p.StartElementHandler = lambda name, attrs: seen.append(name); p.Parse("<a><b/></a>", True)
print(seen)
"""
    r = runtime.execute(code)
    assert r.ok, r.stderr
    assert r.stdout.splitlines() == [
        "45",
        "0.1428571428571428571428571429 decimal",
        "ca978112 333fcb4e 80084bf2",
        "['a', 'b']",
    ]


def test_sum_fast_path_patch_is_exact(runtime: Runtime) -> None:
    """The 64-bit sum() fast path (patch 0001) gives native results, across the 2**31 and 2**63 edges."""
    code = """
print(sum(range(10**6)))
print(sum([2**62, 2**62, 2**62]) == 3 * 2**62)
print(sum([-(2**63), -1]) == -(2**63) - 1)
print(sum([2**31 - 1, 1, 0.5]))
print(sum([1, 2**70, -(2**70)]))
print(sum(range(-10**6, 10**6 + 1)))
"""
    r = runtime.execute(code)
    assert r.stdout.splitlines() == ["499999500000", "True", "True", "2147483648.5", "1", "0"], r


@pytest.mark.parametrize(
    "code",
    [
        'import json; json.loads("[" * 200000 + "]" * 200000)',
        "def f(x): return list(map(f, [x]))\nf(1)",
        "class A:\n    def __getattr__(self, n): return getattr(self, n)\nA().x",
        "import copy; x = []\nfor _ in range(100000): x = [x]\ncopy.deepcopy(x)",
        "eval('-' * 100000 + '1')",
    ],
)
def test_deep_recursion_raises_instead_of_trapping(runtime: Runtime, code: str) -> None:
    """Deep C recursion raises RecursionError (or the parser's MemoryError) in the guest: the 2 MiB
    wasm stack fits the build's C recursion budget, so the run fails cleanly and does not crash."""
    r = runtime.execute(code)
    assert r.outcome is Outcome.FAILED, r
    assert "RecursionError" in r.stderr or "MemoryError" in r.stderr, r.stderr[-500:]


def test_runs_without_a_fuel_limit_are_not_metered(runtime: Runtime) -> None:
    """Without a fuel limit the fuel-free module runs (fuel_consumed None); a fuel limit meters and stops."""
    free = runtime.execute("print(sum(range(1000)))")
    assert (free.stdout, free.fuel_consumed) == ("499500\n", None)
    metered = runtime.execute("print(sum(range(1000)))", fuel=10**9)
    assert metered.stdout == "499500\n" and metered.fuel_consumed is not None and 0 < metered.fuel_consumed < 10**9
    seed = execr.execute("print(1)", use_fuel=True)
    assert seed.fuel_consumed is not None and seed.fuel_consumed > 0
    stopped = runtime.execute("while True: pass", fuel=5_000_000)
    assert stopped.outcome is Outcome.OUT_OF_FUEL and stopped.fuel_consumed == 5_000_000
    plain = runtime.execute("print(2)", snapshot=False)
    assert (plain.stdout, plain.fuel_consumed, plain.mode) == ("2\n", None, "plain")


def test_stdlib_directory_is_read_only_and_holds_only_the_zip(runtime: Runtime) -> None:
    """The guest sees /usr/local/lib with the zip alone; it cannot write there, and mounts cannot cover it."""
    r = runtime.execute(
        "import os\nprint(os.listdir('/usr/local/lib'))\n"
        "try:\n    open('/usr/local/lib/x', 'w')\nexcept OSError as e:\n    print(e.errno)\n"
        "try:\n    os.remove('/usr/local/lib/python313.zip')\nexcept OSError as e:\n    print(e.errno)\n"
    )
    assert r.stdout.splitlines()[0] == "['python313.zip']", r
    assert len(r.stdout.splitlines()) == 3, r
    with pytest.raises(execr.InvalidArgument, match="/usr/local/lib"):
        runtime.execute("pass", mounts=[execr.Mount(str(Path.cwd()), "/usr/local/lib")])


def test_host_channel_answers_nothing_without_tools(runtime: Runtime) -> None:
    """The built-in _execr module exists; with no host function registered, a call raises RuntimeError."""
    r = runtime.execute("import _execr\ntry:\n    _execr.call(b'x')\nexcept RuntimeError as e:\n    print(e)")
    assert r.stdout == "no host functions in this run\n", r


def test_tampered_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A binary or stdlib zip that is not the pinned build, or an extra file beside the zip, is refused
    before anything runs (RuntimeUnavailable naming the file), never loaded."""
    own = tmp_path / "cpython"
    shutil.copytree(_binary.OWN_DIR, own)
    wasm = execr.binary()
    monkeypatch.setattr(_binary, "OWN_DIR", own)
    _binary._load.cache_clear()
    try:
        assert _binary.load().stdlib == own / "lib"
        _binary._load.cache_clear()
        (own / "lib" / "extra.py").write_text("x = 1")
        with pytest.raises(RuntimeUnavailable, match="must hold only"):
            _binary.load()
        (own / "lib" / "extra.py").unlink()
        with (own / "lib" / "python313.zip").open("r+b") as f:
            f.seek(1000)
            f.write(b"X")
        with pytest.raises(RuntimeUnavailable, match=r"standard library .* corrupt"):
            _binary.load()
        bad = tmp_path / "python.wasm"
        bad.write_bytes(wasm[:100] + bytes([wasm[100] ^ 1]) + wasm[101:])
        with pytest.raises(RuntimeUnavailable, match="corrupt or not the pinned build"):
            _binary.load(bad)
    finally:
        _binary._load.cache_clear()


def test_a_host_thread_with_a_small_stack_does_not_crash_the_host() -> None:
    """A caller's thread with less native stack than the guest may use (256 KiB here, as musl's
    threads or a small threading.stack_size()) runs the guest on one of execr's own threads: deep
    guest recursion still ends as a clean RecursionError, and the host process lives on."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import threading, execr
        out = []
        def go():
            deep = ['import json; json.loads("[" * 100000 + "]" * 100000)', 'def f(x): return list(map(f, [x]))\\nf(1)']
            for src in deep:
                r = execr.execute(src)
                out.append((r.outcome.value, "RecursionError" in r.stderr))
        threading.stack_size(256 * 1024)
        t = threading.Thread(target=go)
        t.start()
        t.join()
        print(out)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[('failed', True), ('failed', True)]"
