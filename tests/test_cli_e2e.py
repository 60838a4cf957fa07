"""The ``execr`` command line end to end: real processes (``python -m execr``) on the real wasm runtime.

These check what only the real thing shows: limits enforced, mounts written back, the
binary's hashes, stdin through a pipe, and clean process exits. Everything else about the
command line runs on the fake runtime in ``test_cli.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import execr
from execr._image import _binary

pytestmark = pytest.mark.guest


def _cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m execr ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "execr", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_hello_world() -> None:
    """`execr run -c` prints the guest's stdout exactly, nothing else, and exits 0."""
    proc = _cli("run", "-c", "print('hello, world')")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"hello, world\n", b"")


def test_exit_code_and_uncaught_exception() -> None:
    """The guest's exit code is the status; an uncaught exception exits 1 with the guest's traceback."""
    assert _cli("run", "-c", "import sys; sys.exit(3)").returncode == 3
    proc = _cli("run", "-c", "1/0")
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"Traceback" in proc.stderr
    assert proc.stderr.rstrip().endswith(b"ZeroDivisionError: division by zero")


def test_limits_are_enforced_and_reported() -> None:
    """--timeout stops an infinite loop; --max-stdout keeps 1K and says how much was dropped; --fuel runs out."""
    proc = _cli("run", "--timeout", "1", "-c", "while True: pass")
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.startswith("execr: timed_out: ") and err.count("\n") == 1, err
    proc = _cli("run", "--max-stdout", "1K", "--memory-limit", "256M", "--fuel", "none", "-c", "print('y' * 5000)")
    assert proc.returncode == 0 and len(proc.stdout) == 1024
    assert proc.stderr == b"execr: stdout: 3977 bytes dropped from the middle (--max-stdout)\n"
    proc = _cli("run", "--fuel", "1000", "-c", "print(1)")
    assert proc.returncode == 1 and proc.stderr.startswith(b"execr: out_of_fuel: ")


def test_env_mount_file(tmp_path: Path) -> None:
    """--env sets the guest environment, --mount shows a host dir (rw writes back), --file places content."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    host_file = tmp_path / "cfg.json"
    host_file.write_bytes(b'{"k": 1}')
    code = (
        "import os\n"
        "print(os.environ['GREETING'], os.environ['EMPTY'] == '', sorted(os.environ))\n"
        "print(open('/data/in.txt').read())\n"
        "print(open('/etc/app/cfg.json').read())\n"
        "open('/out/result.txt', 'w').write('written')\n"
    )
    argv = ["run", "--env", "GREETING=hi=there", "--env", "EMPTY=", "--mount", f"{data}:/data"]
    argv += ["--mount", f"{out_dir}:/out:rw", "--file", f"/etc/app/cfg.json={host_file}", "-c", code]
    proc = _cli(*argv)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith("hi=there True ['EMPTY', 'GREETING'")
    assert lines[1] == "from host"
    assert lines[2] == '{"k": 1}'
    assert (out_dir / "result.txt").read_text() == "written"


def test_read_only_mount(tmp_path: Path) -> None:
    """A --mount without :rw cannot be written by the guest."""
    proc = _cli("run", "--mount", f"{tmp_path}:/data", "-c", "open('/data/x', 'w')")
    assert proc.returncode == 1 and b"Error" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_stdin_piped() -> None:
    """Piped stdin reaches the guest byte for byte."""
    proc = _cli("run", "-c", "import sys; d = sys.stdin.buffer.read(); print(len(d), d[::-1])", stdin=b"abc\xff\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"5 b'\\n\\xffcba'\n"


def test_usage_error() -> None:
    """As a real process, a bad value still gives exit 2, one line, no traceback."""
    proc = _cli("run", "--timeout", "-1", "-c", "print(1)")
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"execr: error: timeout must be")
    assert proc.stderr.count(b"\n") == 1
    assert proc.stdout == b""


def test_runtime_unavailable(tmp_path: Path) -> None:
    """An unusable binary is an execr error: exit 1, one line, no traceback."""
    bad = tmp_path / "python.wasm"
    bad.write_bytes(b"not wasm")
    proc = _cli("run", "-c", "print(1)", env={"EXECR_BINARY": str(bad)})
    assert proc.returncode == 1
    last = proc.stderr.decode().splitlines()[-1]
    assert last.startswith("execr: error: the CPython binary at "), proc.stderr
    assert "corrupt" in last
    assert b"Traceback" not in proc.stderr


def test_info() -> None:
    """`info --json` reports the guest Python version and the pinned binary's sha256; `info` prints dotted keys."""
    proc = _cli("info", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["python_version"] == _binary.PYTHON_VERSION
    assert data["binary_sha256"] == _binary.SHA256 and len(data["binary_sha256"]) == 64
    assert data["execr_version"] == execr.__version__
    proc = _cli("info")
    keys = {line.split(":", 1)[0] for line in proc.stdout.decode().splitlines()}
    assert {"python_version", "binary_sha256", "cache_dir", "snapshot.path", "plain_module.cached"} <= keys


def test_warmup() -> None:
    """`warmup` loads (or builds) the module and snapshot, then says where they are and how long it took."""
    proc = _cli("warmup", env={"EXECR_QUIET": ""})
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert "compiled module: " in text
    assert "snapshot: " in text
    assert text.rstrip().splitlines()[-1].startswith("ready in ")
    assert proc.stderr.startswith(b"execr: [")


def test_many_processes_no_panic() -> None:
    """25 separate `execr run` processes all exit 0 and none panics at interpreter exit."""
    for i in range(25):
        proc = _cli("run", "-c", "print(1)")
        assert proc.returncode == 0, (i, proc.stderr)
        assert proc.stdout == b"1\n"
        assert b"panic" not in proc.stderr, (i, proc.stderr)
