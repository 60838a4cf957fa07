"""Shared command-line pieces: exit codes, the one-line-error parser, option types and the runtime options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from .._image._flavors import NAMES
from .._runtime import Runtime, snapshot_default

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_LIMIT",
    "EXIT_USAGE",
    "Parser",
    "RuntimeFactory",
    "UsageError",
    "add_runtime_option",
    "open_runtime",
    "pair",
]

#: What builds the runtime a command runs on: ``execr.Runtime`` or a stand-in such as ``execr.testing.FakeRuntime``.
RuntimeFactory = Callable[..., Any]

EXIT_LIMIT = 1  # a limit, a crash or a cancel ended the run; or execr failed
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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
            raise argparse.ArgumentTypeError(f"expected {option}; got {text!r}")
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
