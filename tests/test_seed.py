"""The seed document's examples work as written (execr.executor.core is the seed's API)."""

from __future__ import annotations

import hashlib
import pathlib
import tempfile
import uuid

import pytest

import execr
from execr import _roots, _runtime
from execr.executor.core import Result, RuntimeConfig, _execute, binary, execute

pytestmark = pytest.mark.guest

PINNED_SHA256 = "eae1276aabb3dc65e750e7fbe217120f3b4f0699bd0b254cb62674f8a05695ac"  # the default runtime


@pytest.fixture(autouse=True)
def default_is_session_runtime(runtime, monkeypatch):
    """Let the seed's execute() (which uses the process-wide default runtime) share the session's."""
    monkeypatch.setattr(_runtime, "_default", runtime)


def test_seed_imports():
    """The seed's names import from execr.executor.core, and execute from execr too."""
    from execr import execute as top_execute

    assert top_execute is execute
    assert Result is execr.Result
    assert callable(binary) and RuntimeConfig().use_fuel is False


def test_seed_basic_execution():
    """The seed's basic example prints from WASM Python and reports fuel and memory."""
    result = execute("print('Hello from WASM Python!')")
    assert result.stdout == "Hello from WASM Python!\n"
    assert result.stderr == ""
    assert result.memory > 0
    assert result.memory * 64 * 1024 == result.data_len
    assert result.fuel_consumed is None  # the seed: "only if use_fuel"
    metered = execute("print('Hello from WASM Python!')", use_fuel=True)
    assert isinstance(metered.fuel_consumed, int) and metered.fuel_consumed > 0


def test_seed_stdin_and_args():
    """The seed's stdin-and-args example sees its args and the stdin length."""
    code = """
import sys
data = sys.stdin.read()
print("Args:", sys.argv[1:])
print("Data len:", len(data))
"""
    result = execute(code=code, stdin="sample input", args=["first", "second"])
    assert result.stdout == "Args: ['first', 'second']\nData len: 12\n"


def test_seed_fuel_accounting():
    """The seed's fuel example reports honestly: completed within 50M fuel, or out_of_fuel at 50M."""
    result = execute("sum(range(10_000_000))", use_fuel=True, fuel=50_000_000)
    assert result.fuel_consumed is not None
    if result.outcome is execr.Outcome.COMPLETED:
        assert 0 < result.fuel_consumed <= 50_000_000
    else:
        assert result.outcome is execr.Outcome.OUT_OF_FUEL, (result.outcome, result.error)
        assert result.fuel_consumed == 50_000_000


def test_seed_small_fuel_budget_completes():
    """With use_fuel and a budget that suffices, the run completes and reports the fuel it used."""
    result = execute("print(sum(range(1000)))", use_fuel=True, fuel=50_000_000)
    assert result.outcome is execr.Outcome.COMPLETED and result.stdout == "499500\n"
    assert 0 < result.fuel_consumed <= 50_000_000


def test_seed_mount_fs_and_stdio(tmp_path):
    """The seed's mount_fs example leaves output.txt in the caller's dir; stdio gets the three files."""
    mount_dir = tempfile.mkdtemp(dir=tmp_path)
    stdio_dir = tempfile.mkdtemp(dir=tmp_path)
    code = "open('output.txt', 'w').write('Generated file')"
    res = execute(code, mount_fs=mount_dir, stdio=stdio_dir)
    assert res.ok, res.stderr
    assert res.stdout == ""
    assert [p.name for p in pathlib.Path(mount_dir).iterdir()] == ["output.txt"]
    assert (pathlib.Path(mount_dir) / "output.txt").read_text() == "Generated file"
    assert sorted(p.name for p in pathlib.Path(stdio_dir).iterdir()) == ["stderr.txt", "stdin.txt", "stdout.txt"]


def test_seed_stdio_contents(tmp_path):
    """The stdio dir receives the run's stdin, stdout and stderr as files."""
    code = "import sys\nprint(sys.stdin.read()[::-1])\nprint('warn', file=sys.stderr)"
    res = execute(code, stdin="abc", stdio=tmp_path)
    assert (tmp_path / "stdin.txt").read_text() == "abc"
    assert (tmp_path / "stdout.txt").read_text() == "cba\n" == res.stdout
    assert (tmp_path / "stderr.txt").read_text() == "warn\n" == res.stderr


def test_seed_execute_private_leaves_no_residue():
    """_execute with a default RuntimeConfig leaves none of the guest's files on disk."""
    tmp = pathlib.Path(tempfile.gettempdir())
    before = set(tmp.glob("execr-run-*"))
    marker = f"residue-{uuid.uuid4().hex}.txt"
    res = _execute(f"open({marker!r}, 'w').write('x')\nprint('done')", cfg=RuntimeConfig())
    assert res.stdout == "done\n" and res.file(marker) is not None
    _roots.trash.drain()  # used roots are removed on a background thread
    after = set(tmp.glob("execr-run-*"))
    assert all(not any(p.iterdir()) for p in after - before), "only empty roots are kept (for reuse)"
    assert not list(tmp.glob(f"execr-run-*/{marker}"))


def test_seed_execute_private_with_fuel():
    """_execute honours RuntimeConfig(use_fuel=True, fuel=...)."""
    res = _execute("while True: pass", cfg=RuntimeConfig(use_fuel=True, fuel=5_000_000))
    assert res.outcome is execr.Outcome.OUT_OF_FUEL and res.fuel_consumed == 5_000_000


def test_seed_binary_is_pinned():
    """binary() returns the default runtime's WASI bytes (execr's CPython 3.13) with the pinned SHA-256."""
    data = binary()
    assert isinstance(data, bytes)
    assert data[:4] == b"\0asm"
    assert hashlib.sha256(data).hexdigest() == PINNED_SHA256
    assert binary() is data  # cached per process
