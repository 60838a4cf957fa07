"""``execr mcp``: serve execr to MCP clients; the options and the server are ``execr.mcp``'s, imported only when chosen.

``execr --help`` lists the subcommand without importing ``execr.mcp`` (nor the ``mcp``
SDK). ``execr mcp ...`` imports it, lets ``execr.mcp.add_arguments(parser)`` define the
options, parses the words after ``mcp`` with them and calls ``execr.mcp.run(args)`` for the
exit status (``args.runtime_factory`` carries ``main``'s test seam). Without the SDK it
fails with one line naming the extra to install.
"""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType
from typing import Any

from .._exceptions import ExecrError
from ._common import Parser

__all__ = ["MISSING", "add", "parse"]

MISSING = "the MCP server needs: pip install 'execr[mcp]'"
_HELP = "serve execr to MCP clients (needs the 'mcp' extra)"
_DESCRIPTION = "Serve execr to MCP clients: stdio by default (needs the 'mcp' extra)."


def add(sub: Any) -> None:
    """List ``execr mcp`` in ``execr --help``; ``parse`` builds its real parser when it is chosen."""
    sub.add_parser("mcp", help=_HELP, add_help=False)


def _is_missing_sdk(e: ImportError) -> bool:
    """Whether ``e`` says execr.mcp or the ``mcp`` SDK is not installed (not some other broken import)."""
    name = e.name or ""
    return name == "execr.mcp" or name.split(".")[0] == "mcp"


def _missing(_args: argparse.Namespace) -> int:
    raise ExecrError(MISSING)


def parse(words: list[str]) -> argparse.Namespace:
    """Parse the words after ``execr mcp`` with ``execr.mcp``'s options (``--help`` exits here, as argparse does)."""
    try:
        module = importlib.import_module("execr.mcp")
        parser = Parser(prog="execr mcp", description=_DESCRIPTION)
        module.add_arguments(parser)
    except ImportError as e:
        if not _is_missing_sdk(e):
            raise
        return argparse.Namespace(command="mcp", func=_missing)
    args = parser.parse_args(words)
    args.command = "mcp"
    args.func = lambda ns: _run(module, ns)
    return args


def _run(module: ModuleType, args: argparse.Namespace) -> int:
    try:
        status: int = module.run(args)
    except ImportError as e:  # an SDK imported only when the server starts
        if not _is_missing_sdk(e):
            raise
        raise ExecrError(MISSING) from e
    return status
