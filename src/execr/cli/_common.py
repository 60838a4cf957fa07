"""Shared command-line pieces: exit codes, the one-line-error parser, option types, runtime, limit and input options."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import IO, Any, NoReturn

from .._exceptions import shown
from .._image._flavors import NAMES
from .._limits import UNSET
from .._options import count, seconds, size
from .._runtime import Runtime, snapshot_default

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_LIMIT",
    "EXIT_USAGE",
    "LIMIT_OPTIONS",
    "Parser",
    "RuntimeFactory",
    "UsageError",
    "add_input_options",
    "add_limit_options",
    "add_runtime_option",
    "limit_values",
    "open_runtime",
    "pair",
    "read_files",
    "write_bytes",
]

#: What builds the runtime a command runs on: ``execr.Runtime`` or a stand-in such as ``execr.testing.FakeRuntime``.
RuntimeFactory = Callable[..., Any]

EXIT_LIMIT = 1  # a limit, a crash or a cancel ended the run; or execr failed
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: The limit options of ``run`` and ``repl``: flag, type, metavar, help. Each maps onto the API keyword of its name.
LIMIT_OPTIONS: tuple[tuple[str, Callable[[str], Any], str, str], ...] = (
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


class UsageError(Exception):
    """A command line that cannot be acted on (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``execr: error: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"execr: error: {message} (see '{self.prog} --help')\n")


def pair(option: str, sep: str = "=") -> Callable[[str], tuple[str, str]]:
    """An argparse type for ``KEY<sep>VALUE`` (``option`` names the expected form in the error)."""

    def parse(text: str) -> tuple[str, str]:
        key, found, value = text.partition(sep)
        if not found or not key:
            raise argparse.ArgumentTypeError(f"expected {option}; got {shown(text)}")
        return key, value

    return parse


def add_runtime_option(p: Any, many: bool = False) -> None:
    """``--runtime NAME`` (repeatable into ``runtimes`` when ``many``) and ``--preload MODULES``."""
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


def open_runtime(args: argparse.Namespace, **options: Any) -> Any:
    """The runtime for this command: ``args.runtime_factory`` (a test seam) or ``Runtime``, with the CLI's defaults."""
    factory: RuntimeFactory = getattr(args, "runtime_factory", None) or Runtime
    return factory(snapshot=snapshot_default(), preload=args.preload, **options)


def add_limit_options(p: Any, skip: Sequence[str] = ()) -> None:
    """The ``LIMIT_OPTIONS`` (but those in ``skip``) as a "limits" group of ``p``; each defaults to ``UNSET``."""
    group = p.add_argument_group("limits")
    for flag, kind, metavar, text in LIMIT_OPTIONS:
        if flag not in skip:
            group.add_argument(flag, type=kind, default=UNSET, metavar=metavar, help=text)


def limit_values(args: argparse.Namespace) -> dict[str, Any]:
    """The limit keywords that ``add_limit_options`` added to ``args`` (``UNSET`` where not given)."""
    names = (flag[2:].replace("-", "_") for flag, *_ in LIMIT_OPTIONS)
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def add_input_options(p: Any) -> Any:
    """``--env``, ``--mount``, ``--file`` and ``--pythonpath`` as an "inputs" group of ``p``; returns the group."""
    io = p.add_argument_group("inputs")
    io.add_argument(
        "--env", type=pair("K=V"), action="append", default=[], metavar="K=V", help="guest environment variable"
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
        type=pair("GUEST=HOSTFILE"),
        action="append",
        default=[],
        metavar="GUEST=HOSTFILE",
        help="write the content of HOSTFILE at guest path GUEST before the run",
    )
    io.add_argument(
        "--pythonpath",
        default=UNSET,
        metavar="DIR",
        help="directory of packages, read-only (default $EXECR_PYTHONPATH)",
    )
    return io


def read_files(pairs: Sequence[tuple[str, str]]) -> dict[str, bytes]:
    """The content of each ``--file GUEST=HOSTFILE``, by guest path (``UsageError`` if one cannot be read)."""
    files = {}
    for guest, host in pairs:
        try:
            with open(host, "rb") as f:
                files[guest] = f.read()
        except OSError as e:
            raise UsageError(f"--file {guest}={host}: cannot read {host!r}: {e.strerror or e}") from None
    return files


def write_bytes(stream: IO[str], data: bytes) -> None:
    """Write ``data`` to the binary side of ``stream`` (after what was already written to its text side)."""
    if not data:
        return
    stream.flush()
    out: IO[bytes] = getattr(stream, "buffer", None) or stream  # type: ignore[assignment]
    out.write(data)
    out.flush()
