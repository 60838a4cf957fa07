"""execr's HTTP service: ``execr serve`` (FastAPI on uvicorn, runs on a ``WorkerPool``).

Routes: ``POST /v1/execute``, ``POST /v1/execute/batch``, ``GET /v1/runtime``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, docs at ``/docs``, and the MCP server at
``/mcp`` when the ``mcp`` extra is installed. Sessions (live interpreters kept in the server
process, owned by the API key that made them, bounded per key, closed when idle):
``POST /v1/sessions``, ``GET /v1/sessions``, ``GET|DELETE /v1/sessions/{id}``,
``POST /v1/sessions/{id}/run``, ``/checkpoint``, ``/fork``, and ``POST /v1/sessions/restore``.

Importing this package needs only execr; FastAPI, uvicorn and prometheus-client (the
``server`` extra) are imported by ``create_app``/``serve``/the ``serve`` command.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from .._exceptions import InvalidArgument
from .._image._flavors import NAMES
from .._options import at_least, count, seconds, size
from ._config import ServerConfig, key_id, load_api_keys

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServerConfig", "add_serve_parser", "create_app", "key_id", "load_api_keys", "serve"]


def _missing_extra(e: ImportError) -> InvalidArgument:
    return InvalidArgument(f"execr serve needs the 'server' extra (pip install 'execr[server]'): {e}")


def create_app(config: ServerConfig) -> FastAPI:
    """The FastAPI app for ``config``."""
    try:
        from ._app import create_app as _create
    except ImportError as e:
        raise _missing_extra(e) from e
    return _create(config)


def serve(config: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM, then drain (in-flight runs get ``config.grace`` seconds)."""
    try:
        from ._app import serve as _serve
    except ImportError as e:
        raise _missing_extra(e) from e
    _serve(config)


# -- the `execr serve` command --


_positive, _non_negative = at_least(1), at_least(0)


_CAP_OPTIONS = (
    ("--max-timeout", "timeout", seconds, "SECONDS", "cap on a run's wall-clock timeout"),
    ("--max-memory", "memory_limit", size, "BYTES", "cap on a run's memory_limit, e.g. 256M"),
    ("--max-fuel", "fuel", count, "N", "cap on a run's fuel (default none: no cap)"),
    ("--max-stdout", "max_stdout", size, "BYTES", "cap on max_stdout"),
    ("--max-stderr", "max_stderr", size, "BYTES", "cap on max_stderr"),
    ("--max-open-files", "max_open_files", count, "N", "cap on max_open_files (descriptors a guest holds at once)"),
)


def _add_session_options(p: argparse.ArgumentParser) -> None:
    """The session options ``execr serve`` and ``execr mcp`` share (``ServerConfig``'s session fields)."""
    p.add_argument(
        "--max-sessions-per-key",
        type=_non_negative,
        default=8,
        metavar="N",
        help="live sessions one API key (on stdio: the client) may hold; more are refused (default 8; 0: none)",
    )
    p.add_argument(
        "--session-idle-timeout",
        type=seconds,
        default=600.0,
        metavar="SECONDS",
        help="default and cap of a session's idle timeout: idle longer, it is closed (default 600)",
    )
    p.add_argument(
        "--max-session-lifetime",
        type=seconds,
        default=3600.0,
        metavar="SECONDS",
        help="default and cap of a session's lifetime (default 3600)",
    )
    p.add_argument(
        "--max-checkpoint-bytes",
        type=size,
        default=64 * 1024 * 1024,
        metavar="BYTES",
        help="largest session checkpoint, taken or restored (default 64M)",
    )


def _session_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``ServerConfig`` keywords from the options ``_add_session_options`` added."""
    if args.max_checkpoint_bytes is None:
        raise InvalidArgument("--max-checkpoint-bytes cannot be 'none'")
    return {
        "max_sessions_per_key": args.max_sessions_per_key,
        "session_idle_timeout": args.session_idle_timeout,
        "max_session_lifetime": args.max_session_lifetime,
        "max_checkpoint_bytes": args.max_checkpoint_bytes,
    }


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``execr serve`` to an argparse ``subparsers``; its handler (``args.func``) returns 0."""
    p = subparsers.add_parser(
        "serve",
        help="serve the HTTP API (needs the 'server' extra)",
        description="Serve execr over HTTP: POST /v1/execute, /v1/execute/batch, GET /v1/runtime, "
        "/healthz, /readyz, /metrics, /docs, and sessions at /v1/sessions. API keys come from "
        "$EXECR_API_KEYS (comma-separated) and --api-key-file; without keys the server only binds a "
        "loopback host unless --insecure. "
        "With keys, every route needs one except /healthz and /readyz (and /metrics, /docs with "
        "--public-metrics, --public-docs). "
        "Caps default to execr's default limits; 'none' removes a cap.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--workers", type=_positive, default=None, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("--api-key-file", metavar="PATH", default=None, help="file with one API key per line")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback host without API keys")
    p.add_argument(
        "--public-metrics",
        action="store_true",
        help="serve /metrics without an API key (default: it needs one, like every route but /healthz and /readyz)",
    )
    p.add_argument(
        "--public-docs",
        action="store_true",
        help="serve /docs and /openapi.json without an API key (default: they need one)",
    )
    for flag, _name, kind, metavar, text in _CAP_OPTIONS:
        p.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=metavar, help=text)
    p.add_argument(
        "--max-body-bytes",
        type=size,
        default=1024 * 1024,
        metavar="BYTES",
        help="largest request body (default 1M)",
    )
    p.add_argument("--max-batch", type=_positive, default=32, metavar="N", help="items per batch (default 32)")
    p.add_argument(
        "--max-queue",
        type=_non_negative,
        default=64,
        metavar="N",
        help="runs that may wait for a worker before 429 (default 64)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="at shutdown, seconds in-flight runs may take before pending ones are cancelled (default 10)",
    )
    _add_session_options(p)
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument(
        "--runtime",
        dest="runtimes",
        action="append",
        choices=NAMES,
        metavar="NAME",
        help="runtime the workers load before serving (repeatable; default: default); any runtime can be requested",
    )
    p.set_defaults(func=_cmd_serve)
    parser: argparse.ArgumentParser = p
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    from .._limits import DEFAULT_LIMITS

    caps = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, name, *_ in _CAP_OPTIONS
        if hasattr(args, flag[2:].replace("-", "_"))
    }
    max_limits = DEFAULT_LIMITS.replace(**caps)
    if args.max_body_bytes is None:
        raise InvalidArgument("--max-body-bytes cannot be 'none'")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        workers=args.workers,
        api_keys=load_api_keys(args.api_key_file, os.environ),
        max_limits=max_limits,
        default_limits=DEFAULT_LIMITS,
        max_body_bytes=args.max_body_bytes,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        insecure=args.insecure,
        public_metrics=args.public_metrics,
        public_docs=args.public_docs,
        grace=args.grace,
        log_level=args.log_level,
        runtimes=tuple(args.runtimes or ("default",)),
        **_session_settings(args),
    )
    serve(config)
    return 0
