"""The ``execr`` command line on the fake runtime: what the user sees (output, notes, exit status) in milliseconds.

``main(argv, runtime_factory=FakeRuntime)`` runs the real parser and handlers; only the
guest is scripted (``execr.testing``). What needs real wasm (limits enforced, mounts
written, the binary's hashes, separate processes) is in ``test_cli_e2e.py``.
"""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest

import execr
from execr import Outcome, Result
from execr._image._binary import PYTHON_VERSION
from execr._options import size as _size
from execr._request import Request
from execr.cli import main
from execr.testing import FakeRuntime

Cap = pytest.CaptureFixture[bytes]


@pytest.fixture(autouse=True)
def _empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read an empty, non-terminal stdin unless a test sets one."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))


class Recorder:
    """A runtime factory whose runtimes answer with ``result`` (default: the fake's scripted answers).

    ``requests`` collects what every run was asked to do; ``options`` what the runtime was built with.
    """

    def __init__(self, result: Result | None = None) -> None:
        self.result = result
        self.requests: list[Request] = []
        self.options: list[dict[str, object]] = []

    def __call__(self, **options: object) -> FakeRuntime:
        self.options.append(options)
        rt = FakeRuntime(responder=None if self.result is None else self._answer)
        self.requests = rt.requests  # the last runtime's log
        return rt

    def _answer(self, _request: Request) -> Result:
        assert self.result is not None
        return self.result


def _run(*argv: str, factory: object = FakeRuntime) -> int:
    return main(list(argv), runtime_factory=factory)  # type: ignore[arg-type]


# -- run: output and exit status --


def test_stdout_passes_through_and_exit_0(capsysbinary: Cap) -> None:
    """`execr run -c` prints the guest's stdout exactly, nothing on stderr, and exits 0."""
    assert _run("run", "-c", "print('hello, world')") == 0
    assert capsysbinary.readouterr() == (b"hello, world\n", b"")


def test_guest_exit_code_is_the_status(capsysbinary: Cap) -> None:
    """The guest's own exit code is the CLI's exit status, with no execr note; 256 does not read as success."""
    assert _run("run", "-c", "exit(3)") == 3
    assert capsysbinary.readouterr().err == b""
    assert _run("run", "-c", "exit(256)") == 1


def test_stdout_and_stderr_bytes_are_kept_apart(capsysbinary: Cap) -> None:
    """Undecodable guest bytes reach the CLI's stdout and stderr unchanged."""
    answer = Result(stdout_bytes=b"out\xff\n", stderr_bytes=b"err\xfe\n", outcome=Outcome.FAILED, exit_code=1)
    assert _run("run", "-c", "anything", factory=Recorder(answer)) == 1
    assert capsysbinary.readouterr() == (b"out\xff\n", b"err\xfe\n")


@pytest.mark.parametrize(
    ("code", "outcome"), [("sleep(5)", "timed_out"), ("crash", "crashed")], ids=["timed-out", "crashed"]
)
def test_limit_or_crash_adds_one_note(code: str, outcome: str, capsysbinary: Cap) -> None:
    """A run a limit or a crash ended exits 1 with exactly one line `execr: OUTCOME: detail` on stderr."""
    assert _run("run", "--timeout", "0.01", "-c", code) == 1
    out, err = capsysbinary.readouterr()
    assert out == b""
    assert err.decode().startswith(f"execr: {outcome}: ") and err.count(b"\n") == 1, err


def test_dropped_output_is_noted(capsysbinary: Cap) -> None:
    """Output cut by --max-stdout/--max-stderr is reported on stderr after the guest's own stderr."""
    answer = Result(stdout_bytes=b"y" * 10, stderr_bytes=b"e\n", stdout_dropped=3977, stderr_dropped=5)
    assert _run("run", "--max-stdout", "1K", "-c", "x", factory=Recorder(answer)) == 0
    out, err = capsysbinary.readouterr()
    assert out == b"y" * 10
    assert err == (
        b"e\n"
        b"execr: stdout: 3977 bytes dropped from the middle (--max-stdout)\n"
        b"execr: stderr: 5 bytes dropped from the middle (--max-stderr)\n"
    )


def test_json_output(capsysbinary: Cap) -> None:
    """--json prints only Result.to_dict() as JSON; the exit status is still the guest's; --plain is the mode."""
    assert _run("run", "--json", "--plain", "-c", "exit(4)") == 4
    out, err = capsysbinary.readouterr()
    data = json.loads(out)
    assert (data["outcome"], data["exit_code"], data["mode"]) == ("failed", 4, "plain")
    assert err == b""
    assert _run("run", "--json", "-c", "print('x')") == 0
    assert json.loads(capsysbinary.readouterr().out)["stdout"] == "x\n"


# -- run: what reaches the guest --


def test_file_and_arguments_reach_the_guest(tmp_path: Path) -> None:
    """FILE is read on the host; words after it, and after '--', become the guest's sys.argv[1:]."""
    script = tmp_path / "prog.py"
    script.write_text("print('from file')\n")
    rec = Recorder()
    assert _run("run", str(script), "a", "--", "-x", "--", "b", factory=rec) == 0
    assert rec.requests[0].code == "print('from file')\n"
    assert rec.requests[0].args == ("a", "-x", "--", "b")
    assert _run("run", "-c", "pass", "--", "--flag", factory=rec) == 0
    assert rec.requests[0].args == ("--flag",)


def test_env_mount_file_and_limits_reach_the_run(tmp_path: Path) -> None:
    """--env, --mount, --file, --runtime, --plain and the limit options become the run's request."""
    (tmp_path / "data").mkdir()
    host_file = tmp_path / "cfg.json"
    host_file.write_bytes(b'{"k": 1}')
    rec = Recorder()
    argv = ["run", "--env", "GREETING=hi=there", "--env", "EMPTY=", "--mount", f"{tmp_path / 'data'}:/data:rw"]
    argv += ["--file", f"/etc/app/cfg.json={host_file}", "--timeout", "5", "--memory-limit", "256M"]
    argv += ["--fuel", "none", "--max-open-files", "16", "--plain", "-c", "pass"]
    assert _run(*argv, factory=rec) == 0
    request = rec.requests[0]
    assert dict(request.env) == {"GREETING": "hi=there", "EMPTY": ""}
    assert dict(request.files) == {"/etc/app/cfg.json": b'{"k": 1}'}
    assert [(str(m.guest), m.writable) for m in request.mounts] == [("/data", True)]
    assert (request.limits.timeout, request.limits.memory_limit, request.limits.fuel) == (5, 256 * 1024**2, None)
    assert request.limits.max_open_files == 16
    assert request.snapshot is False and request.runtime == "default"


def test_piped_stdin_reaches_the_guest(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-terminal stdin is read fully, as bytes, and given to the guest."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"line one\n\xff")))
    rec = Recorder()
    assert _run("run", "-c", "pass", factory=rec) == 0
    assert rec.requests[0].stdin == b"line one\n\xff"


def test_runtime_gets_the_preload_option() -> None:
    """--preload is handed to the runtime the command builds."""
    rec = Recorder()
    assert _run("run", "--preload", "numpy", "-c", "pass", factory=rec) == 0
    assert rec.options[0]["preload"] == "numpy"


# -- usage errors --


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
    """Bad flags, bad values and a missing FILE exit 2 with one `execr: error:` line, no traceback, no run."""
    rec = Recorder()
    assert _run(*argv, factory=rec) == 2
    out, err = capsysbinary.readouterr()
    assert out == b""
    text = err.decode()
    assert text.startswith("execr: error: "), text
    assert text.count("\n") == 1, text
    assert "Traceback" not in text
    assert rec.requests == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-c", "pass", "--fuel", "18446744073709551616"], b"fuel must be at most 2**62"),
        (["run", "-c", "pass", "--timeout", "1e12"], b"timeout must be at most 1e9 seconds"),
        (["run", "-c", "pass", "--max-stdout", "9999999T"], b"max_stdout must be at most 2**62"),
        (["run", "-c", "pass", "--max-open-files", "0"], b"max_open_files must be a whole number >= 1"),
        (["run", "-c", "pass", "--env", "K=\udcff"], b"env['K'] must be valid Unicode text"),
        (["run", "-c", "pass", "--", "\udcff"], b"args[0] must be valid Unicode text"),
        (["batch", "/nonexistent/in.jsonl", "-o", "/tmp/x.jsonl"], b"cannot read the input"),
        (["batch", "in.jsonl", "--workers", "0"], b"expected a whole number >= 1"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: bytes, capsysbinary: Cap) -> None:
    """Out-of-range limits, undecodable arguments (surrogate-escaped argv) and bad batch paths: exit 2, one line."""
    assert _run(*argv) == 2
    err = capsysbinary.readouterr().err
    assert message in err and b"Traceback" not in err and b"internal error" not in err


def test_size_parsing() -> None:
    """--memory-limit style sizes are powers of 1024; 'none' turns the limit off."""
    assert _size("65536") == 65536
    assert _size("64K") == 64 * 1024
    assert _size("512M") == 512 * 1024**2
    assert _size("1G") == _size("1GiB") == 1024**3
    assert _size("1.5k") == 1536
    assert _size("none") is None


def test_internal_error_is_one_line(capsysbinary: Cap, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in execr prints one `internal error` line and exits 1; EXECR_DEBUG=1 shows the traceback instead."""

    def broken(**_options: object) -> FakeRuntime:
        raise RuntimeError("boom")

    assert _run("run", "-c", "pass", factory=broken) == 1
    assert capsysbinary.readouterr().err == (
        b"execr: error: internal error: RuntimeError: boom (set EXECR_DEBUG=1 for a traceback)\n"
    )
    monkeypatch.setenv("EXECR_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        _run("run", "-c", "pass", factory=broken)


def test_ctrl_c_exits_130(capsysbinary: Cap) -> None:
    """Ctrl-C during a run prints `execr: interrupted` and exits 130."""

    def interrupted(_request: Request) -> Result:
        raise KeyboardInterrupt

    assert _run("run", "-c", "pass", factory=lambda **_: FakeRuntime(responder=interrupted)) == 130
    assert capsysbinary.readouterr().err == b"execr: interrupted\n"


# -- info, --version, --help --


def test_info_json_shows_version_and_default_limits(capsysbinary: Cap) -> None:
    """`execr info --json` gives execr's version, the runtime's own description and the default limits."""
    assert _run("info", "--json") == 0
    info = json.loads(capsysbinary.readouterr().out)
    assert info["execr_version"] == execr.__version__
    assert info["fake"] is True  # the runtime's info() is passed through
    assert info["default_limits"]["max_open_files"] == 128 and info["default_limits"]["timeout"] == 30


def test_info_text_is_aligned_and_dotted(capsysbinary: Cap) -> None:
    """`execr info` prints aligned `key: value` lines, nested keys dotted, booleans as yes/no."""
    assert _run("info") == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    rows = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines}
    assert rows["runtimes.default.available"] == "yes"
    assert rows["default_limits.timeout"] == "30.0"
    value_columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(value_columns) == 1, lines  # every value starts in the same column


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the execr and guest Python versions and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"execr {execr.__version__} (guest CPython {PYTHON_VERSION}, WASI)")


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    """`execr --help` exits 0 and lists every subcommand; `run --help` documents its options."""
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("run", "repl", "info", "warmup", "batch", "serve", "mcp"):
        assert f"    {command} " in out, command
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--timeout", "--memory-limit", "--mount", "--file", "--env", "--json", "--plain"):
        assert flag in out


# -- batch --


def test_batch_runs_on_the_factory(tmp_path: Path) -> None:
    """`execr batch IN -o OUT` writes one record per line, in order, with the runtime the test gave."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": "a", "code": "print(1)"}\nnot json\n{"id": "c", "code": "crash"}\n')
    assert _run("batch", str(src), "-o", str(out), "--workers", "1", "--no-progress") == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["line"], r["outcome"]) for r in records] == [(1, "completed"), (2, "crashed"), (3, "crashed")]
    assert records[0]["stdout"] == "1\n" and records[2]["error"] == "scripted crash"  # only the fake says that


def test_batch_refuses_host_paths_unless_allowed(tmp_path: Path, capsysbinary: Cap) -> None:
    """A batch line naming a mount is refused unless --allow-host-paths; results go to stdout without -o."""
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"code": "print(2)", "mounts": [f"{tmp_path}:/data"]}) + "\n")
    assert _run("batch", str(src), "--workers", "1", "--no-progress") == 0
    refused = json.loads(capsysbinary.readouterr().out)
    assert refused["outcome"] == "crashed" and "--allow-host-paths" in refused["error"]
    assert _run("batch", str(src), "--workers", "1", "--no-progress", "--allow-host-paths") == 0
    assert json.loads(capsysbinary.readouterr().out)["stdout"] == "2\n"


def test_batch_output_equal_to_input_is_refused(tmp_path: Path, capsysbinary: Cap) -> None:
    """`execr batch X -o X` exits 2 with one line and leaves X as it was."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"code": "print(1)"}')
    assert _run("batch", str(src), "-o", str(src), "--no-progress") == 2
    assert b"is the input file" in capsysbinary.readouterr().err
    assert src.read_text() == '{"code": "print(1)"}'


# -- mcp --


def _fake_mcp(calls: list[object]) -> types.ModuleType:
    """A stand-in ``execr.mcp`` with the two functions the CLI calls."""
    module = types.ModuleType("execr.mcp")

    def add_arguments(parser: object) -> None:
        parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")  # type: ignore[attr-defined]

    def run(args: object) -> int:
        calls.append(args)
        return 7

    module.add_arguments = add_arguments  # type: ignore[attr-defined]
    module.run = run  # type: ignore[attr-defined]
    return module


def test_mcp_hands_its_words_to_execr_mcp(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`execr mcp ...` parses with execr.mcp's options, returns its run()'s status and passes the test seam on."""
    calls: list[object] = []
    monkeypatch.setitem(sys.modules, "execr.mcp", _fake_mcp(calls))
    assert main(["mcp", "--transport", "http"], runtime_factory=FakeRuntime) == 7
    (args,) = calls
    assert args.transport == "http" and args.runtime_factory is FakeRuntime  # type: ignore[attr-defined]
    assert main(["mcp", "--help"]) == 0
    assert "--transport" in capsys.readouterr().out
    assert main(["mcp", "--transport", "carrier-pigeon"]) == 2
    assert capsys.readouterr().err.startswith("execr: error: argument --transport")


def test_mcp_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without execr.mcp (or its SDK), `execr mcp` exits 1 with one line naming the extra; --help still works."""
    monkeypatch.setitem(sys.modules, "execr.mcp", None)  # makes `import execr.mcp` raise ImportError
    assert main(["mcp"]) == 1
    assert capsys.readouterr().err == "execr: error: the MCP server needs: pip install 'execr[mcp]'\n"
    assert main(["--help"]) == 0
    assert "mcp" in capsys.readouterr().out


def test_mcp_sdk_missing_at_start_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The SDK missing when the server starts gives the same one line; any other broken import is not masked."""
    module = _fake_mcp([])

    def run(args: object) -> int:
        raise ModuleNotFoundError("No module named 'mcp'", name="mcp")

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "execr.mcp", module)
    assert main(["mcp"]) == 1
    assert capsys.readouterr().err == "execr: error: the MCP server needs: pip install 'execr[mcp]'\n"

    def broken(args: object) -> int:
        raise ModuleNotFoundError("No module named 'numpy'", name="numpy")

    module.run = broken  # type: ignore[attr-defined]
    assert main(["mcp"]) == 1
    assert "internal error: ModuleNotFoundError: No module named 'numpy'" in capsys.readouterr().err


def test_importing_the_cli_does_not_import_mcp() -> None:
    """`import execr.cli` (and building its parser for `execr --help`) loads neither execr.mcp nor the mcp SDK."""
    import subprocess

    code = (
        "import sys, execr.cli, contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    execr.cli.main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mcp' or m == 'execr.mcp'))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[]\n"
