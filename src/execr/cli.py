"""Command line: ``execr run``, ``execr info``, ``execr warmup``, ``execr batch``, ``execr serve`` (``execr --help``).

Every subcommand is a thin shell over the Python API: its options map one to one onto
``execute()``/``Runtime`` arguments and it has no power of its own. To add a subcommand,
write ``_add_NAME(subparsers)`` and ``_cmd_NAME(args) -> int`` and list the former in
``_SUBCOMMANDS``.

Exit status: the guest's own exit code (masked to 0..255) when it has one; 1 when a
limit, a crash or a cancel ended the run, or when execr itself failed (one line
``execr: error: ...``, never a traceback); 2 for usage errors; 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

from . import __version__
from ._exceptions import ExecrError, InvalidArgument
from ._image._binary import PYTHON_VERSION
from ._image._flavors import NAMES
from ._limits import DEFAULT_LIMITS, UNSET
from ._options import count, seconds, size
from ._results import Outcome, Result
from ._runtime import Runtime, quiet, snapshot_default

__all__ = ["main"]

EXIT_LIMIT = 1  # a limit, a crash or a cancel ended the run; or execr failed
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command line that cannot be acted on (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``execr: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"execr: error: {message} (see '{self.prog} --help')\n")


def _pair(option: str, sep: str = "=") -> Callable[[str], tuple[str, str]]:
    def parse(text: str) -> tuple[str, str]:
        key, found, value = text.partition(sep)
        if not found or not key:
            raise argparse.ArgumentTypeError(f"expected {option}; got {text!r}")
        return key, value

    return parse


# -- subcommand: run --

_LIMIT_OPTIONS: tuple[tuple[str, Callable[[str], Any], str, str], ...] = (
    ("--timeout", seconds, "SECONDS", "wall-clock limit in seconds (default 30)"),
    ("--memory-limit", size, "BYTES", "guest linear memory limit, e.g. 256M (default 512M, at most 4G)"),
    ("--fuel", count, "N", "wasm instruction budget (default none: measured, not limited)"),
    ("--max-stdout", size, "BYTES", "stdout bytes kept; the middle is dropped beyond it (default 1M)"),
    ("--max-stderr", size, "BYTES", "stderr bytes kept; the middle is dropped beyond it (default 1M)"),
    ("--max-file-bytes", size, "BYTES", "total bytes the guest may write into writable mounts (default 64M)"),
    ("--max-files", count, "N", "number of files the guest may create in writable mounts (default 1000)"),
    ("--max-returned-file-bytes", size, "BYTES", "content returned per changed file with --json (default 1M)"),
    ("--max-open-files", count, "N", "descriptors the guest may hold open at once, beyond stdio (default 128)"),
)


def _add_run(sub: Any) -> None:
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
    group = p.add_argument_group("limits")
    for flag, kind, metavar, text in _LIMIT_OPTIONS:
        group.add_argument(flag, type=kind, default=UNSET, metavar=metavar, help=text)
    io = p.add_argument_group("inputs")
    io.add_argument(
        "--env", type=_pair("K=V"), action="append", default=[], metavar="K=V", help="guest environment variable"
    )
    io.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOST:GUEST[:rw]",
        help="show host directory HOST at GUEST (read-only unless :rw)",
    )
    io.add_argument(
        "--file",
        type=_pair("GUEST=HOSTFILE"),
        action="append",
        default=[],
        metavar="GUEST=HOSTFILE",
        help="write the content of HOSTFILE at guest path GUEST before the run",
    )
    io.add_argument("--mount-fs", metavar="DIR", help="host directory used as the guest's writable root")
    io.add_argument(
        "--pythonpath",
        default=UNSET,
        metavar="DIR",
        help="directory of packages, read-only (default $EXECR_PYTHONPATH)",
    )
    out = p.add_argument_group("mode and output")
    _add_runtime_option(out)
    out.add_argument("--plain", action="store_true", help="take the plain start-up path, not the snapshot")
    out.add_argument("--json", action="store_true", help="print the whole result as JSON instead of the guest's output")
    p.set_defaults(func=_cmd_run, guest_args=True)


def _add_runtime_option(p: Any, many: bool = False) -> None:
    names = ", ".join(NAMES)
    if many:
        p.add_argument(
            "--runtime",
            dest="runtimes",
            action="append",
            choices=NAMES,
            metavar="NAME",
            help=f"which CPython to build: {names} (repeatable; default: default)",
        )
    else:
        p.add_argument(
            "--runtime", choices=NAMES, default=None, metavar="NAME", help=f"which CPython: {names} (default: default)"
        )
    p.add_argument(
        "--preload",
        metavar="MODULES",
        default=None,
        help="modules the scientific snapshot imports, comma-separated (default: numpy,pandas)",
    )


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


def _read_files(pairs: Sequence[tuple[str, str]]) -> dict[str, bytes]:
    files = {}
    for guest, host in pairs:
        try:
            with open(host, "rb") as f:
                files[guest] = f.read()
        except OSError as e:
            raise UsageError(f"--file {guest}={host}: cannot read {host!r}: {e.strerror or e}") from None
    return files


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


def _binary_out(stream: IO[str]) -> IO[bytes]:
    return getattr(stream, "buffer", None) or stream  # type: ignore[return-value]


def _cmd_run(args: argparse.Namespace) -> int:
    code, guest_args = _read_code(args)
    files = _read_files(args.file)
    limits = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, *_ in _LIMIT_OPTIONS}
    stdin = _read_stdin()
    with Runtime(snapshot=snapshot_default(), preload=args.preload) as runtime:
        result = runtime.execute(
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
        _write(sys.stdout, (json.dumps(result.to_dict()) + "\n").encode("utf-8"))
        return status
    _write(sys.stdout, result.stdout_bytes)
    _write(sys.stderr, result.stderr_bytes)
    notes = []
    if result.outcome not in (Outcome.COMPLETED, Outcome.FAILED):
        notes.append(f"execr: {result.outcome.value}: {result.error or 'no detail'}")
    for name, dropped in (("stdout", result.stdout_dropped), ("stderr", result.stderr_dropped)):
        if dropped:
            notes.append(f"execr: {name}: {dropped} bytes dropped from the middle (--max-{name})")
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    return status


def _write(stream: IO[str], data: bytes) -> None:
    if not data:
        return
    stream.flush()
    out = _binary_out(stream)
    out.write(data)
    out.flush()


# -- subcommand: info --


def _add_info(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help="show the runtimes, versions, hashes and cache paths",
        description="Show Runtime().info(): each runtime's Python version, what it can import and its cache state.",
    )
    p.add_argument("--json", action="store_true", help="print as JSON")
    _add_runtime_option(p)
    p.set_defaults(func=_cmd_info)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, bool):
            rows.append((prefix + key, "yes" if value else "no"))
        else:
            rows.append((prefix + key, "-" if value is None else str(value)))
    return rows


def _packages_inline(data: dict[str, Any]) -> dict[str, Any]:
    """``packages`` tables as one 'name version, ...' line (for the text listing)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "packages" and isinstance(value, dict):
            out[key] = ", ".join(f"{name} {version}" for name, version in value.items()) or "-"
        elif isinstance(value, dict):
            out[key] = _packages_inline(value)
        else:
            out[key] = value
    return out


def _cmd_info(args: argparse.Namespace) -> int:
    runtime = Runtime(snapshot=snapshot_default(), preload=args.preload)
    if args.runtime is None:
        info = {"execr_version": __version__, **runtime.info(), "default_limits": DEFAULT_LIMITS.to_dict()}
    else:
        info = {
            "execr_version": __version__,
            "runtime": args.runtime,
            "wasmtime_version": runtime.info()["wasmtime_version"],
            "cache_dir": str(runtime.cache_dir),
            **runtime.runtime_info(args.runtime),
            "default_limits": DEFAULT_LIMITS.to_dict(),
        }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        rows = _flatten(_packages_inline(info))
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            print(f"{key + ':':<{width + 1}} {value}")
    return 0


# -- subcommand: warmup --


def _add_warmup(sub: Any) -> None:
    p = sub.add_parser(
        "warmup",
        help="build the compiled module and snapshot now (first build takes a while)",
        description=(
            "Compile the CPython module and build the start-up snapshot into the cache, showing progress. "
            "The scientific runtime takes several minutes on 2 cores and ~700 MB of cache."
        ),
    )
    _add_runtime_option(p, many=True)
    p.set_defaults(func=_cmd_warmup)


def _cmd_warmup(args: argparse.Namespace) -> int:
    started = time.perf_counter()

    def progress(message: str) -> None:
        if not quiet():
            print(f"execr: [{time.perf_counter() - started:5.1f}s] {message}", file=sys.stderr, flush=True)

    names = list(dict.fromkeys(args.runtimes or ["default"]))
    progress(f"loading the CPython binary, compiled module and snapshot ({', '.join(names)})")
    with Runtime(snapshot=snapshot_default(), progress=progress, preload=args.preload) as runtime:
        runtime.warmup(names)
        infos = {name: runtime.runtime_info(name) for name in names}
        cache = runtime.cache_dir
    took = time.perf_counter() - started
    print(f"cache dir:       {cache}")
    for name, info in infos.items():
        if len(infos) > 1 or name != "default":
            print(f"{name} (Python {info['python_version']}):")
        print(f"compiled module: {info['plain_module']['path']}")
        error = info["snapshot"]["error"]
        if not info["snapshot"]["enabled"]:
            print("snapshot:        disabled (EXECR_SNAPSHOT=0)")
        elif error:
            print(f"snapshot:        unavailable ({error}); runs take the plain path")
        else:
            print(f"snapshot:        {info['snapshot']['path']}")
    print(f"ready in {took:.1f}s")
    return 0


# -- parser and entry point --


def _add_serve(sub: Any) -> None:
    from .server import add_serve_parser

    add_serve_parser(sub)


def _add_batch(sub: Any) -> None:
    from ._parallel._batch import add_batch_parser

    add_batch_parser(sub)


_SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (_add_run, _add_info, _add_warmup, _add_serve, _add_batch)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="execr",
        description="Run untrusted Python in CPython compiled to WebAssembly, on wasmtime.",
        epilog="Environment: EXECR_PYTHONPATH, EXECR_BINARY, EXECR_CACHE_DIR, EXECR_SNAPSHOT=0, EXECR_QUIET=1.",
    )
    parser.add_argument(
        "--version", action="version", version=f"execr {__version__} (guest CPython {PYTHON_VERSION}, WASI)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; the words after the first ``--`` are guest arguments, never options."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a COMMAND is required")
    if extra and not getattr(args, "guest_args", False):
        parser.error(f"'{args.command}' takes no arguments after '--'")
    args.extra = extra
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the ``execr`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = _parse(argv)
        except SystemExit as e:  # --help, --version, and usage errors
            return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        func: Callable[[argparse.Namespace], int] = args.func
        try:
            return func(args)
        except (UsageError, InvalidArgument) as e:
            print(f"execr: error: {e}", file=sys.stderr, flush=True)
            return EXIT_USAGE
        except ExecrError as e:
            print(f"execr: error: {e}", file=sys.stderr, flush=True)
            return EXIT_LIMIT
        except BrokenPipeError:
            # the reader went away (e.g. `execr run ... | head`): stop quietly
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_LIMIT
        except Exception as e:
            if os.environ.get("EXECR_DEBUG") == "1":
                raise
            print(
                f"execr: error: internal error: {type(e).__name__}: {e} (set EXECR_DEBUG=1 for a traceback)",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_LIMIT
    except KeyboardInterrupt:
        print("execr: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
