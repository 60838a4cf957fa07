"""``execr repl``: a session fed block by block, driven through ``main`` with a scripted stdin, on real wasm."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from execr import Runtime
from execr.cli import main

pytestmark = pytest.mark.guest


def _repl(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], script: str, *options: str
) -> tuple[int, str, str]:
    """Run ``execr repl OPTIONS`` with ``script`` as its (non-terminal) stdin; the status, stdout and stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    status = main(["repl", *options])
    out, err = capsys.readouterr()
    return status, out, err


class _Terminal(io.StringIO):
    """A stdin that says it is a terminal; a line "^C" raises KeyboardInterrupt, as Ctrl-C at a prompt does."""

    def isatty(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> str:
        line = super().readline(-1 if size is None else size)
        if line == "^C\n":
            raise KeyboardInterrupt
        return line


def test_values_print_as_out_lines_and_state_carries(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each block's output comes first, then Out[n] with the repr of its last expression; names carry."""
    status, out, err = _repl(monkeypatch, capsys, "x = 40\nx + 2\nprint('hi'); x\n# a comment\n\n'a' * 3\n")
    assert (status, err) == (0, "")
    assert out == "Out[2]: 42\nhi\nOut[3]: 40\nOut[4]: 'aaa'\n"


def test_multi_line_blocks(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A def runs once complete (a blank line ends it, or a line the host cannot add to it); a multi-line
    value starts on its own line; a block still open at the end of the input runs too."""
    script = (
        "def f(n):\n    return n * 2\n\nf(21)\n"
        "def g():\n    return 'g'\ng()\n"
        "class A:\n    def __repr__(self):\n        return 'a\\nb'\n\nA()\n"
        "total = 0\nfor i in range(4):\n    total += i\n"
    )
    status, out, err = _repl(monkeypatch, capsys, script + "\ntotal\nif total:\n    print('end')")
    assert (status, err) == (0, "")
    assert out == "Out[2]: 42\nOut[3]: 'g'\nOut[5]:\na\nb\nOut[8]: 6\nend\n"


def test_an_error_shows_its_traceback_and_the_session_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An exception prints the guest's traceback on stderr; what ran before it stays, later inputs run."""
    status, out, err = _repl(monkeypatch, capsys, "x = 1\ny = 5; 1/0\nx + y\ndef bad(:\nx\n")
    assert status == 0
    assert out == "Out[3]: 6\nOut[5]: 1\n"
    assert "ZeroDivisionError: division by zero" in err and "Traceback" in err
    assert "SyntaxError" in err  # the guest's CPython judges what the host cannot compile


def test_a_timed_out_call_is_rolled_back(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--timeout stops a call; the outcome and the rollback are reported, and its count is not used."""
    script = "x = 1\nwhile True:\n    x += 1\n\nx\n"
    status, out, err = _repl(monkeypatch, capsys, script, "--timeout", "0.5")
    assert status == 0
    assert out == "Out[2]: 1\n"
    assert err.startswith("execr: timed_out: ") and "rolled back to before this call" in err, err


def test_checkpoint_restore_and_reset(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """%checkpoint writes Checkpoint bytes, %restore brings that state back (a corrupt file is refused and
    the session kept), %reset starts an empty session; unknown commands and missing FILEs are named."""
    cp, bad = tmp_path / "s.ckpt", tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    script = f"x = 7\n%checkpoint {cp}\nx = 0\n%restore {cp}\nx\n%restore {bad}\nx\n%nope\n%checkpoint\n%reset\nx\n"
    status, out, err = _repl(monkeypatch, capsys, script)
    assert status == 0
    assert cp.read_bytes().startswith(b"EXECR-CHECKPOINT")
    lines = out.splitlines()
    assert lines[0].startswith("checkpoint: ") and "execution count 1" in lines[0]
    assert lines[1:] == [
        f"restored {cp}: default runtime, execution count 1",
        "Out[2]: 7",
        "Out[3]: 7",
        "a new session",
    ]
    assert "execr: error: %restore: not an execr checkpoint" in err
    assert "unknown command '%nope'" in err and "usage: %checkpoint FILE" in err
    assert "NameError: name 'x' is not defined" in err


def test_exit_and_end_of_input_end_with_status_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """exit() ends the loop before the rest of the input; an empty input ends at once."""
    assert _repl(monkeypatch, capsys, "1\nexit()\n2\n") == (0, "Out[1]: 1\n", "")
    assert _repl(monkeypatch, capsys, "") == (0, "", "")


def test_on_a_terminal_prompts_history_and_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, runtime: Runtime
) -> None:
    """On a terminal: a banner, In [n] and ...: prompts, Ctrl-C clears the open input, Ctrl-D ends with 0,
    and the history file is written in the home directory."""
    monkeypatch.setenv("EXECR_CACHE_DIR", str(runtime.cache_dir))  # the cache would follow HOME
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "stdin", _Terminal("x = 2\ndef f():\n^C\nx * 3\ndef f():\n    return x\n\nf()\n"))
    assert main(["repl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("execr repl: Python 3.13")
    body = out.split("exit() or Ctrl-D ends.\n", 1)[1]
    assert body == (
        "In [1]: In [2]:    ...: \nKeyboardInterrupt\n"
        "In [2]: Out[2]: 6\nIn [3]:    ...:    ...: In [4]: Out[4]: 2\nIn [5]: \n"
    )
    if "readline" in sys.modules:
        assert (tmp_path / ".execr_history").exists()


def test_no_readline_is_fine(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Without readline the terminal loop still works (no history)."""
    monkeypatch.setitem(sys.modules, "readline", None)
    monkeypatch.setattr(sys, "stdin", _Terminal("6 * 7\n"))
    assert main(["repl"]) == 0
    assert "Out[1]: 42\n" in capsys.readouterr().out


def test_a_piped_process() -> None:
    """`execr repl < script` in a real process: Out lines on stdout, limits from the command line, exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "execr", "repl", "--memory-limit", "64M", "--env", "WHO=you"],
        input=b"import os\nos.environ['WHO']\nb = bytearray(200 * 2**20)\nlen(b'ok')\n",
        capture_output=True,
        timeout=120,
        env={**os.environ, "EXECR_QUIET": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"Out[2]: 'you'\nOut[3]: 2\n"
    assert b"execr: memory_limit: " in proc.stderr and b"rolled back" in proc.stderr
