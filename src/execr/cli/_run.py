"""``execr run``: run a Python file or ``-c CODE`` once in a fresh sandbox and pass its output and exit code through.

Standard input is handed to the guest when it is not a terminal; ``--json`` prints the whole
``Result`` instead of the guest's output. A run that a limit, a crash or a cancel ended adds
one line ``execr: OUTCOME: ...`` on stderr, and dropped output is noted the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .._results import Outcome, Result
from ._common import (
    EXIT_LIMIT,
    UsageError,
    add_input_options,
    add_limit_options,
    add_runtime_option,
    limit_values,
    open_runtime,
    read_files,
    write_bytes,
)

__all__ = ["add", "exit_status"]


def add(sub: Any) -> None:
    """Add ``execr run`` to ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser(
        "run",
        help="run a Python file or -c CODE in a fresh sandbox",
        description=(
            "Run FILE (or -c CODE) as 'python main.py ARGS' in a fresh WebAssembly sandbox. "
            "The guest sees only what the options give it. Standard input is passed through "
            "when it is not a terminal. Guest arguments that start with '-' go after '--'."
        ),
        usage="%(prog)s [options] (FILE | -c CODE) [ARGS...] [-- ARGS...]",
        epilog=(
            "Limits accept 'none' to turn them off. Exit status: the guest's exit code; 1 when a "
            "limit or a crash ended the run (a line 'execr: OUTCOME: ...' on stderr); 2 for usage errors."
        ),
    )
    p.add_argument("target", nargs="?", metavar="FILE", help="the Python file to run (read on the host)")
    p.add_argument("args", nargs="*", metavar="ARGS", help="arguments for the guest (its sys.argv[1:])")
    p.add_argument("-c", dest="code", metavar="CODE", help="run CODE instead of a file")
    add_limit_options(p)
    io = add_input_options(p)
    io.add_argument("--mount-fs", metavar="DIR", help="host directory used as the guest's writable root")
    out = p.add_argument_group("mode and output")
    add_runtime_option(out)
    out.add_argument("--plain", action="store_true", help="take the plain start-up path, not the snapshot")
    out.add_argument("--json", action="store_true", help="print the whole result as JSON instead of the guest's output")
    p.set_defaults(func=_command, guest_args=True)


def _read_code(args: argparse.Namespace) -> tuple[str, list[str]]:
    """The code to run and the guest's arguments."""
    rest = list(args.args) + list(args.extra)
    if args.code is not None:
        return args.code, ([args.target] if args.target is not None else []) + rest
    if args.target is None:
        raise UsageError("run needs FILE or -c CODE (see 'execr run --help')")
    if args.target == "-":
        raise UsageError("FILE '-' is not supported: stdin is passed to the guest; give a file or -c CODE")
    try:
        with open(args.target, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {args.target!r}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8"), rest
    except UnicodeDecodeError as e:
        raise UsageError(f"{args.target!r} is not UTF-8 text: {e}") from None


def _read_stdin() -> bytes:
    """All of the CLI's stdin when it is piped or redirected; nothing from a terminal."""
    stream = sys.stdin
    if stream is None:
        return b""
    try:
        if stream.isatty():
            return b""
        buffer = getattr(stream, "buffer", None)
        data = buffer.read() if buffer is not None else stream.read()
    except (OSError, ValueError):  # closed or unreadable stdin: the guest gets none
        return b""
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def exit_status(result: Result) -> int:
    """The CLI's exit status for a result: the guest's exit code, else 1."""
    if result.outcome is Outcome.COMPLETED:
        return 0
    if result.outcome is Outcome.FAILED and result.exit_code is not None:
        return (result.exit_code & 0xFF) or EXIT_LIMIT  # 256 must not read as success
    return EXIT_LIMIT


def _command(args: argparse.Namespace) -> int:
    code, guest_args = _read_code(args)
    files = read_files(args.file)
    limits = limit_values(args)
    stdin = _read_stdin()
    with open_runtime(args) as runtime:
        result: Result = runtime.execute(
            code,
            stdin,
            guest_args,
            runtime=args.runtime or "default",
            mount_fs=args.mount_fs,
            env=dict(args.env),
            files=files,
            mounts=args.mount,
            pythonpath=args.pythonpath,
            snapshot=not args.plain,
            **limits,
        )
    status = exit_status(result)
    if args.json:
        write_bytes(sys.stdout, (json.dumps(result.to_dict()) + "\n").encode("utf-8"))
        return status
    write_bytes(sys.stdout, result.stdout_bytes)
    write_bytes(sys.stderr, result.stderr_bytes)
    notes = []
    if result.outcome not in (Outcome.COMPLETED, Outcome.FAILED):
        notes.append(f"execr: {result.outcome.value}: {result.error or 'no detail'}")
    for name, dropped in (("stdout", result.stdout_dropped), ("stderr", result.stderr_dropped)):
        if dropped:
            notes.append(f"execr: {name}: {dropped} bytes dropped from the middle (--max-{name})")
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    return status
