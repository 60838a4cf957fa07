"""The ``execr`` argument parser: the subcommands, and the split of ``argv`` at ``--`` into guest arguments."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .. import __version__
from .._image._binary import PYTHON_VERSION
from . import _batch, _info, _mcp, _repl, _run, _serve
from ._common import Parser

__all__ = ["SUBCOMMANDS", "build_parser", "parse"]

#: Each adds one subcommand to the top-level subparsers, in ``execr --help`` order.
SUBCOMMANDS: tuple[Callable[[Any], None], ...] = (
    _run.add,
    _repl.add,
    _info.add_info,
    _info.add_warmup,
    _serve.add,
    _batch.add,
    _mcp.add,
)


def build_parser() -> argparse.ArgumentParser:
    """The whole ``execr`` parser (``mcp`` as a placeholder: see ``_mcp``)."""
    parser = Parser(
        prog="execr",
        description="Run untrusted Python in CPython compiled to WebAssembly, on wasmtime.",
        epilog="Environment: EXECR_PYTHONPATH, EXECR_BINARY, EXECR_CACHE_DIR, EXECR_SNAPSHOT=0, EXECR_QUIET=1, "
        "EXECR_DEBUG=1.",
    )
    parser.add_argument(
        "--version", action="version", version=f"execr {__version__} (guest CPython {PYTHON_VERSION}, WASI)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; the words after the first ``--`` are guest arguments, never options.

    ``execr mcp`` hands every word after ``mcp`` to ``execr.mcp``'s own parser. Raises
    ``SystemExit`` for ``--help``, ``--version`` and usage errors, as argparse does.
    """
    parser = build_parser()
    head = argv[: argv.index("--")] if "--" in argv else argv
    command = next((word for word in head if not word.startswith("-")), None)
    if command == "mcp":
        cut = argv.index("mcp") + 1
        parser.parse_args(argv[:cut])  # the top-level options (--help, --version) still apply
        return _mcp.parse(argv[cut:])
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = parser.parse_args(argv)
    if args.command is None:
        parser.error("a COMMAND is required")
    if extra and not getattr(args, "guest_args", False):
        parser.error(f"'{args.command}' takes no arguments after '--'")
    args.extra = extra
    return args
