"""Tests for the ``execr`` command line (execr.cli): run, info, warmup, --version."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import execr
from execr._image import _binary
from execr._options import size as _size
from execr.cli import main

pytestmark = pytest.mark.guest

Cap = pytest.CaptureFixture[bytes]


@pytest.fixture(autouse=True)
def _empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read an empty, non-terminal stdin unless a test sets one."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


def _cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m execr ARGS`` as a real process."""
    return subprocess.run(
        [sys.executable, "-m", "execr", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_hello_world(capsysbinary: Cap) -> None:
    """`execr run -c` prints the guest's stdout exactly and exits 0."""
    assert main(["run", "-c", "print('hello, world')"]) == 0
    out, err = capsysbinary.readouterr()
    assert out == b"hello, world\n"
    assert err == b""


def test_run_file_with_args(tmp_path: Path, capsysbinary: Cap) -> None:
    """FILE is read on the host; words after it, and after '--', become the guest's sys.argv[1:]."""
    script = tmp_path / "prog.py"
    script.write_text("import sys\nprint(sys.argv[1:])\n")
    assert main(["run", str(script), "a", "--", "-x", "--", "b"]) == 0
    assert capsysbinary.readouterr().out == b"['a', '-x', '--', 'b']\n"
    assert main(["run", "-c", "import sys; print(sys.argv[1:])", "--", "--flag"]) == 0
    assert capsysbinary.readouterr().out == b"['--flag']\n"


def test_exit_code_passthrough(capsysbinary: Cap) -> None:
    """The guest's own exit code is the CLI's exit status, with no execr note."""
    assert main(["run", "-c", "import sys; sys.exit(3)"]) == 3
    assert capsysbinary.readouterr().err == b""


def test_uncaught_exception(capsysbinary: Cap) -> None:
    """An uncaught guest exception exits 1 with the guest's traceback on stderr."""
    assert main(["run", "-c", "1/0"]) == 1
    out, err = capsysbinary.readouterr()
    assert out == b""
    assert b"Traceback" in err
    assert err.rstrip().endswith(b"ZeroDivisionError: division by zero")


def test_json_output(capsysbinary: Cap) -> None:
    """--json prints only Result.to_dict() as JSON; the exit status is still the guest's."""
    assert main(["run", "--json", "--plain", "-c", "import sys; print('x'); sys.exit(4)"]) == 4
    out, err = capsysbinary.readouterr()
    data = json.loads(out)
    assert data["outcome"] == "failed"
    assert data["exit_code"] == 4
    assert data["stdout"] == "x\n"
    assert data["mode"] == "plain"
    assert err == b""


def test_timeout(capsysbinary: Cap) -> None:
    """--timeout stops an infinite loop: exit 1 and an `execr: timed_out: ...` line."""
    assert main(["run", "--timeout", "1", "-c", "while True: pass"]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert err.startswith("execr: timed_out: "), err
    assert err.count("\n") == 1


def test_limit_note_and_suffixes(capsysbinary: Cap) -> None:
    """Size suffixes and 'none' are accepted; dropped output is reported on stderr."""
    args = ["run", "--max-stdout", "1K", "--memory-limit", "256M", "--fuel", "none", "--max-files", "none"]
    assert main([*args, "-c", "print('y' * 5000)"]) == 0
    out, err = capsysbinary.readouterr()
    assert len(out) == 1024
    assert err == b"execr: stdout: 3977 bytes dropped from the middle (--max-stdout)\n"
    assert main(["run", "--fuel", "1000", "-c", "print(1)"]) == 1
    assert capsysbinary.readouterr().err.startswith(b"execr: out_of_fuel: ")


def test_size_parsing() -> None:
    """--memory-limit style sizes are powers of 1024; 'none' turns the limit off."""
    assert _size("65536") == 65536
    assert _size("64K") == 64 * 1024
    assert _size("512M") == 512 * 1024**2
    assert _size("1G") == _size("1GiB") == 1024**3
    assert _size("1.5k") == 1536
    assert _size("none") is None


def test_env_mount_file(tmp_path: Path, capsysbinary: Cap) -> None:
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
    assert main(argv) == 0
    out, err = capsysbinary.readouterr()
    assert err == b""
    lines = out.decode().splitlines()
    assert lines[0].startswith("hi=there True ['EMPTY', 'GREETING'")
    assert lines[1] == "from host"
    assert lines[2] == '{"k": 1}'
    assert (out_dir / "result.txt").read_text() == "written"


def test_read_only_mount(tmp_path: Path, capsysbinary: Cap) -> None:
    """A --mount without :rw cannot be written by the guest."""
    assert main(["run", "--mount", f"{tmp_path}:/data", "-c", "open('/data/x', 'w')"]) == 1
    assert b"Error" in capsysbinary.readouterr().err
    assert not (tmp_path / "x").exists()


def test_stdin_piped() -> None:
    """Piped stdin reaches the guest byte for byte."""
    proc = _cli("run", "-c", "import sys; d = sys.stdin.buffer.read(); print(len(d), d[::-1])", stdin=b"abc\xff\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"5 b'\\n\\xffcba'\n"


def test_stdin_in_process(monkeypatch: pytest.MonkeyPatch, capsysbinary: Cap) -> None:
    """A non-terminal stdin is read fully and given to the guest."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"line one\nline two\n")))
    assert main(["run", "-c", "import sys; print(sys.stdin.readlines())"]) == 0
    assert capsysbinary.readouterr().out == b"['line one\\n', 'line two\\n']\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--timeout", "-1", "-c", "print(1)"],
        ["run", "--timeout", "soon", "-c", "print(1)"],
        ["run", "--memory-limit", "abc", "-c", "print(1)"],
        ["run", "--memory-limit", "8G", "-c", "print(1)"],
        ["run", "--max-files", "-3", "-c", "print(1)"],
        ["run", "--mount", "/nonexistent-execr-test:/x", "-c", "print(1)"],
        ["run", "--mount", "nocolon", "-c", "print(1)"],
        ["run", "--env", "NOEQUALS", "-c", "print(1)"],
        ["run", "--file", "/a=/nonexistent-execr-test.txt", "-c", "print(1)"],
        ["run", "/nonexistent-execr-test.py"],
        ["run", "-"],
        ["run"],
        ["run", "--no-such-flag", "-c", "print(1)"],
        ["info", "--", "x"],
        ["nosuchcommand"],
        [],
    ],
)
def test_usage_errors(argv: list[str], capsysbinary: Cap) -> None:
    """Bad flags, bad values and a missing FILE exit 2 with one `execr: error:` line and no traceback."""
    assert main(argv) == 2
    out, err = capsysbinary.readouterr()
    assert out == b""
    text = err.decode()
    assert text.startswith("execr: error: "), text
    assert text.count("\n") == 1, text
    assert "Traceback" not in text


def test_usage_error_subprocess() -> None:
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


def test_info_json(capsysbinary: Cap) -> None:
    """`info --json` reports the guest Python version and the pinned binary's sha256."""
    assert main(["info", "--json"]) == 0
    data = json.loads(capsysbinary.readouterr().out)
    assert data["python_version"] == "3.12.0"
    assert data["binary_sha256"] == _binary.SHA256
    assert len(data["binary_sha256"]) == 64
    assert data["execr_version"] == execr.__version__


def test_info_text(capsysbinary: Cap) -> None:
    """`info` prints aligned `key: value` lines, nested keys dotted."""
    assert main(["info"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    keys = {line.split(":", 1)[0] for line in lines}
    assert {"python_version", "binary_sha256", "cache_dir", "snapshot.path", "plain_module.cached"} <= keys


def test_warmup(capsysbinary: Cap) -> None:
    """`warmup` loads (or builds) the module and snapshot, then says where they are and how long it took."""
    assert main(["warmup"]) == 0
    out, err = capsysbinary.readouterr()
    text = out.decode()
    assert "compiled module: " in text
    assert "snapshot: " in text
    assert text.rstrip().splitlines()[-1].startswith("ready in ")
    assert err.startswith(b"execr: [")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the execr and guest Python versions and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"execr {execr.__version__} (guest CPython 3.12.0")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` exits 0 and documents the options."""
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--timeout", "--memory-limit", "--mount", "--file", "--env", "--json", "--plain"):
        assert flag in out


def test_many_processes_no_panic() -> None:
    """25 separate `execr run` processes all exit 0 and none panics at interpreter exit."""
    for i in range(25):
        proc = _cli("run", "-c", "print(1)")
        assert proc.returncode == 0, (i, proc.stderr)
        assert proc.stdout == b"1\n"
        assert b"panic" not in proc.stderr, (i, proc.stderr)


def test_max_open_files_option(capsysbinary: Cap) -> None:
    """`execr run --max-open-files N` reaches the run's limits; a bad value is a usage error naming it."""
    from execr import cli

    ns = cli._parse(["run", "-c", "pass", "--max-open-files", "16"])
    assert ns.max_open_files == 16
    assert main(["run", "-c", "print('x')", "--max-open-files", "16"]) == 0
    assert capsysbinary.readouterr().out == b"x\n"
    assert main(["run", "-c", "pass", "--max-open-files", "0"]) == 2
    assert b"max_open_files must be a whole number >= 1" in capsysbinary.readouterr().err


def test_info_shows_the_default_limits(capsysbinary: Cap) -> None:
    """`execr info --json` lists the default limits, max_open_files included."""
    assert main(["info", "--json"]) == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert info["default_limits"]["max_open_files"] == 128 and info["default_limits"]["timeout"] == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-c", "pass", "--fuel", "18446744073709551616"], b"fuel must be at most 2**62"),
        (["run", "-c", "pass", "--timeout", "1e12"], b"timeout must be at most 1e9 seconds"),
        (["run", "-c", "pass", "--max-stdout", "9999999T"], b"max_stdout must be at most 2**62"),
        (["run", "-c", "pass", "--env", "K=\udcff"], b"env['K'] must be valid Unicode text"),
        (["run", "-c", "pass", "--", "\udcff"], b"args[0] must be valid Unicode text"),
        (["batch", "/nonexistent/in.jsonl", "-o", "/tmp/x.jsonl"], b"cannot read the input"),
        (["batch", "in.jsonl", "--workers", "0"], b"expected a whole number >= 1"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: bytes, capsysbinary: Cap) -> None:
    """Out-of-range limits, undecodable arguments (surrogate-escaped argv) and bad batch paths: exit 2, one line."""
    assert main(argv) == 2
    err = capsysbinary.readouterr().err
    assert message in err and b"Traceback" not in err and b"internal error" not in err
