"""``execr repl``: an interactive ``Session`` in the terminal, fed one complete block of input at a time.

The host decides when the input is complete, with ``codeop.compile_command`` as the stdlib
``code`` module does. Input the host cannot compile goes to the guest as it is: the guest's
CPython (maybe newer than the host's) runs it or reports the ``SyntaxError``. Each block runs
in the session with the limits of the command line. Its stdout and stderr print, then
``Out[n]: VALUE`` when it ended in an expression. A call that a limit stopped prints
``execr: OUTCOME: ...`` and is rolled back.

On a terminal: prompts ``In [n]:`` and ``...:``, readline history in ``~/.execr_history``
when readline is there, Ctrl-C clears the input, and Ctrl-D, ``exit()`` or ``quit()`` ends.
Otherwise standard input is a script, run block by block without prompts. A call cannot be
interrupted (its ``--timeout`` ends it); a Ctrl-C during one is reported and waits for it, so
the session is never left half-way through a call. The guest's own stdin is always empty.
"""

from __future__ import annotations

import argparse
import codeop
import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import IO, Any, TypeVar

from .._exceptions import ExecrError
from .._image._flavors import flavor
from .._results import Outcome, Result
from .._session import Session
from ._common import (
    add_input_options,
    add_limit_options,
    add_runtime_option,
    limit_values,
    open_runtime,
    read_files,
    write_bytes,
)

__all__ = ["HISTORY", "MAGICS", "add"]

T = TypeVar("T")

#: Where the terminal's input history is kept (when the host Python has readline).
HISTORY = "~/.execr_history"

#: The REPL's own commands, at the start of an input, with what each does.
MAGICS = {
    "%checkpoint FILE": "write the session's checkpoint (Checkpoint.to_bytes()) to the host file FILE",
    "%restore FILE": "replace the session with the one in checkpoint FILE (the options here apply)",
    "%reset": "close the session and start a new, empty one",
}

_EXITS = frozenset({"exit", "exit()", "quit", "quit()"})


def add(sub: Any) -> None:
    """Add ``execr repl`` to ``sub`` (an argparse subparsers action)."""
    commands = "\n".join(f"  {name:<18}{text}" for name, text in MAGICS.items())
    p = sub.add_parser(
        "repl",
        help="an interactive session: state carries from one input to the next",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run Python interactively in one sandboxed session (execr.Session): what an input\n"
            "defines stays for the next. An input that ends in an expression prints Out[n]: its repr.\n"
            "A call that a limit stopped is rolled back: the session is as it was before it.\n"
            "From a terminal: history in ~/.execr_history, Ctrl-C clears the input, Ctrl-D or exit() ends.\n"
            "Otherwise standard input is read as a script, block by block, without prompts."
        ),
        epilog=(
            f"commands (at the start of an input):\n{commands}\n\n"
            "Session budgets (idle timeout, lifetime, call count) are off; the limits apply to each call,\n"
            "--memory-limit and the file limits to the whole session. Exit status: 0 at the end of the\n"
            "input or exit(); 1 when the session cannot start; 2 for usage errors; 130 for Ctrl-C in a script."
        ),
    )
    add_limit_options(p, skip=("--max-returned-file-bytes",))
    add_input_options(p)
    add_runtime_option(p.add_argument_group("runtime"))
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    stdin = sys.stdin
    interactive = stdin is not None and _isatty(stdin)
    with open_runtime(args) as runtime:
        repl = Repl(args, runtime, stdin, interactive)
        try:
            return repl.loop()
        finally:
            repl.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):
        return False


class Repl:
    """The loop: read a complete block, run it in the session, show what it did."""

    def __init__(self, args: argparse.Namespace, runtime: Any, stdin: IO[str] | None, interactive: bool) -> None:
        self._rt = runtime
        self._stdin = stdin
        self._interactive = interactive
        self._options: dict[str, Any] = {
            "env": dict(args.env),
            "mounts": list(args.mount),
            "pythonpath": args.pythonpath,
            "idle_timeout": None,  # a person at a prompt may be away for a while
            "lifetime": None,
            "max_calls": None,
            **limit_values(args),
        }
        self._files = read_files(args.file)
        self.session = Session(args.runtime or "default", on=runtime, files=self._files, **self._options)
        self._save_history: Callable[[], None] = lambda: None

    def close(self) -> None:
        """Close the session and keep the history (idempotent)."""
        self.session.close()
        self._save_history()

    # -- the loop --

    def loop(self) -> int:
        """Read and run blocks until the input ends or ``exit()``; return the exit status (0)."""
        if self._interactive:
            self._save_history = _history()
            name = self.session.runtime
            self._say(
                f"execr repl: Python {flavor(name).python_version} ({name} runtime) in a WebAssembly sandbox.\n"
                f"Commands: {', '.join(MAGICS)}; exit() or Ctrl-D ends."
            )
        lines: list[str] = []
        while True:
            try:
                line = self._read(self._prompt(more=bool(lines)))
            except KeyboardInterrupt:
                if not self._interactive:
                    raise
                self._say("\nKeyboardInterrupt")
                lines.clear()
                continue
            if line is None:  # end of input: run what is left
                if lines:
                    self._run("\n".join(lines))
                if self._interactive:
                    self._say("")
                return 0
            if not lines:
                word = line.strip()
                if not word or word.startswith("#"):
                    continue
                if word in _EXITS:
                    return 0
                if word.startswith("%"):
                    self._magic(word)
                    continue
            lines.append(line)
            source = "\n".join(lines)
            if _complete(source):
                lines.clear()
                self._run(source)

    def _prompt(self, more: bool) -> str:
        first = f"In [{self.session.execution_count + 1}]: "
        return " " * (len(first) - 5) + "...: " if more else first

    def _read(self, prompt: str) -> str | None:
        """One line without its newline, or None at the end of the input."""
        if self._interactive:
            try:
                return input(prompt)
            except EOFError:
                return None
        line = self._stdin.readline() if self._stdin is not None else ""
        return line.rstrip("\r\n") if line else None

    # -- calls --

    def _run(self, source: str) -> None:
        session = self.session
        try:
            result = self._call(lambda: session.run(source))
        except ExecrError as e:
            self._error(f"{e} ('%reset' starts a new session)" if session.closed else str(e))
            return
        self._show(result)

    def _show(self, result: Result) -> None:
        write_bytes(sys.stdout, result.stdout_bytes)
        if self._interactive and result.stdout_bytes and not result.stdout_bytes.endswith(b"\n"):
            write_bytes(sys.stdout, b"\n")
        write_bytes(sys.stderr, result.stderr_bytes)
        notes = []
        if result.outcome not in (Outcome.COMPLETED, Outcome.FAILED):
            error = result.error or "no detail"
            if "rolled back" not in error:
                error += "; the session was rolled back to before this call"
            notes.append(f"execr: {result.outcome.value}: {error}")
        for name, dropped in (("stdout", result.stdout_dropped), ("stderr", result.stderr_dropped)):
            if dropped:
                notes.append(f"execr: {name}: {dropped} bytes dropped from the middle (--max-{name})")
        for note in notes:
            print(note, file=sys.stderr, flush=True)
        if result.value is not None:
            sep = "\n" if "\n" in result.value else " "
            self._say(f"Out[{result.execution_count}]:{sep}{result.value}")

    def _call(self, work: Callable[[], T]) -> T:
        """``work()`` on a worker thread: a Ctrl-C meanwhile is reported, and waits for the call to end.

        A session call cannot be cancelled, and a ``KeyboardInterrupt`` raised inside one would
        leave the session half-way through it. In a script, the Ctrl-C ends the loop after the call.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = work()
            except BaseException as e:
                box["error"] = e
            finally:
                done.set()

        threading.Thread(target=target, name="execr-repl-call", daemon=True).start()
        interrupted = False
        while not done.is_set():
            try:
                done.wait(0.25)
            except KeyboardInterrupt:
                if not interrupted:
                    note = "execr: a call cannot be interrupted; waiting for it to end (its --timeout bounds it)"
                    print(f"\n{note}" if self._interactive else note, file=sys.stderr, flush=True)
                interrupted = True
        if interrupted and not self._interactive:
            raise KeyboardInterrupt
        if "error" in box:
            raise box["error"]
        value: T = box["value"]
        return value

    # -- commands --

    def _magic(self, line: str) -> None:
        name, _, arg = line.partition(" ")
        path = os.path.expanduser(arg.strip())
        usage = next((cmd for cmd in MAGICS if cmd.split()[0] == name), None)
        if usage is None:
            self._error(f"unknown command {line!r}: the commands are {', '.join(MAGICS)} (see 'execr repl --help')")
            return
        if bool(path) != (" " in usage):
            self._error(f"usage: {usage}")
            return
        try:
            if name == "%checkpoint":
                session = self.session
                data = self._call(lambda: session.checkpoint().to_bytes())
                with open(path, "wb") as f:
                    f.write(data)
                self._say(
                    f"checkpoint: {len(data):,} bytes written to {path} (execution count {session.execution_count})"
                )
            elif name == "%restore":
                with open(path, "rb") as f:
                    data = f.read()
                restored = self._call(lambda: Session.restore(data, on=self._rt, **self._options))
                self.session.close()
                self.session = restored
                self._say(f"restored {path}: {restored.runtime} runtime, execution count {restored.execution_count}")
            else:  # %reset
                fresh = self._call(
                    lambda: Session(self.session.runtime, on=self._rt, files=self._files, **self._options)
                )
                self.session.close()
                self.session = fresh
                self._say("a new session")
        except OSError as e:
            self._error(f"{name}: {path}: {e.strerror or e}")
        except ExecrError as e:
            self._error(f"{name}: {e}")

    # -- output --

    def _say(self, text: str) -> None:
        print(text, flush=True)

    def _error(self, text: str) -> None:
        print(f"execr: error: {text}", file=sys.stderr, flush=True)


def _complete(source: str) -> bool:
    """Whether ``source`` is a complete input (what the host cannot compile counts as complete)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return codeop.compile_command(source, "<input>", "single") is not None
        except (SyntaxError, ValueError, OverflowError):
            return True


def _history() -> Callable[[], None]:
    """Load the readline history (if the host has readline); return what saves it."""
    try:
        import readline
    except ImportError:
        return lambda: None
    path = os.path.expanduser(HISTORY)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(1000)
    # Tab indents (the host cannot complete the guest's names)
    readline.parse_and_bind("bind ^I ed-insert" if "libedit" in (readline.__doc__ or "") else "tab: tab-insert")

    def save() -> None:
        with contextlib.suppress(OSError):
            readline.write_history_file(path)

    return save
