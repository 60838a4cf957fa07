"""Command: the ``execr mcp`` arguments, and turning them into an ``McpConfig`` and a running server.

The key, cap, queue and body options are ``execr serve``'s (same names, same parsing, same
``ServerConfig``), so an operator sets one policy for both services.
"""

from __future__ import annotations

import argparse
import os

from .._exceptions import InvalidArgument
from .._image._flavors import NAMES
from .._limits import DEFAULT_LIMITS
from .._options import at_least, size
from ..server import _CAP_OPTIONS, _add_session_options, _session_settings
from ..server._config import ServerConfig, load_api_keys
from ._config import TRANSPORTS, McpConfig

__all__ = ["DESCRIPTION", "add_arguments", "config_from_args", "run"]

DESCRIPTION = (
    "Serve execr to AI agents over the Model Context Protocol (needs the 'mcp' extra). Tools: "
    "run_python (a fresh sandbox per call), list_runtimes, and session_create, session_run, session_checkpoint, "
    "session_fork, session_restore, session_close (live sessions in the server process, by explicit id). "
    "stdio by default (for an agent that starts "
    "the server itself); --transport http serves streamable HTTP at /mcp, stateless unless --stateful, "
    "with execr serve's API keys ($EXECR_API_KEYS, --api-key-file; without keys only a loopback host "
    "unless --insecure) and caps (a run asking for more than a --max-* cap is refused; 'none' removes one)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``execr mcp``'s options to ``parser`` (and its description, if it has none)."""
    if parser.description is None:
        parser.description = DESCRIPTION
    parser.add_argument("--transport", choices=TRANSPORTS, default="stdio", help="stdio (default) or http")
    parser.add_argument("--host", default="127.0.0.1", help="http: address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="http: port (default 8000; 0 picks a free one)")
    parser.add_argument(
        "--stateful",
        action="store_true",
        help="http: keep MCP sessions (Mcp-Session-Id); by default every request stands alone",
    )
    parser.add_argument(
        "--workers",
        type=at_least(0),
        default=None,
        metavar="N",
        help="runs at once, in N worker processes; 0 runs them on threads of the server process "
        "(default: 0 for stdio, the CPU count for http)",
    )
    parser.add_argument("--api-key-file", metavar="PATH", default=None, help="http: file with one API key per line")
    parser.add_argument("--insecure", action="store_true", help="http: allow a non-loopback host without API keys")
    for flag, _name, kind, metavar, text in _CAP_OPTIONS:
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=metavar, help=text)
    parser.add_argument(
        "--max-body-bytes", type=size, default=1024 * 1024, metavar="BYTES", help="http: largest request (default 1M)"
    )
    parser.add_argument(
        "--max-queue",
        type=at_least(0),
        default=64,
        metavar="N",
        help="runs that may wait for a free worker; more are refused as busy (default 64)",
    )
    parser.add_argument(
        "--runtime",
        dest="runtimes",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help="runtime loaded before the first call (repeatable; default: default); any runtime can be used",
    )
    _add_session_options(parser)
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def config_from_args(args: argparse.Namespace) -> McpConfig:
    """The ``McpConfig`` for parsed ``execr mcp`` arguments (``InvalidArgument`` on a bad combination)."""
    caps = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, name, *_ in _CAP_OPTIONS
        if hasattr(args, flag[2:].replace("-", "_"))
    }
    if args.max_body_bytes is None:
        raise InvalidArgument("--max-body-bytes cannot be 'none'")
    http = args.transport == "http"
    if not http:
        for flag, value in (("--stateful", args.stateful), ("--api-key-file", args.api_key_file)):
            if value:
                raise InvalidArgument(f"{flag} applies to --transport http only")
    workers = args.workers
    server = ServerConfig(
        host=args.host,
        port=args.port,
        workers=workers or None,
        api_keys=load_api_keys(args.api_key_file, os.environ) if http else frozenset(),
        max_limits=DEFAULT_LIMITS.replace(**caps),
        default_limits=DEFAULT_LIMITS,
        max_body_bytes=args.max_body_bytes,
        max_queue=args.max_queue,
        insecure=args.insecure,
        log_level=args.log_level,
        runtimes=tuple(args.runtimes or ("default",)),
        runtime_factory=getattr(args, "runtime_factory", None),  # the CLI's test seam (execr.testing.FakeRuntime)
        **_session_settings(args),
    )
    in_process = workers == 0 or (workers is None and not http)
    return McpConfig(server=server, transport=args.transport, stateful=args.stateful, in_process=in_process)


def run(args: argparse.Namespace) -> int:
    """Serve as ``args`` say until the client goes away (stdio) or SIGINT/SIGTERM (http); returns 0."""
    config = config_from_args(args)
    try:
        import mcp  # noqa: F401
    except ImportError as e:
        raise InvalidArgument(f"execr mcp needs the 'mcp' extra (pip install 'execr[mcp]'): {e}") from e
    if config.transport == "http":
        from ._http import serve_http

        serve_http(config)
    else:
        import anyio

        from ._server import serve_stdio

        anyio.run(serve_stdio, config)
    return 0
