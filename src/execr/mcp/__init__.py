"""execr over the Model Context Protocol: ``execr mcp`` (extra ``mcp``: the official ``mcp`` SDK).

Tools: ``run_python(code, stdin?, files?, timeout?, runtime?)`` (a fresh sandbox per call;
structured output, images and files it wrote come back), ``list_runtimes``, and the session
tools ``session_create``, ``session_run``, ``session_checkpoint``, ``session_fork``,
``session_restore`` and ``session_close`` (explicit session ids; checkpoints are kept on the
server by id). A traceback or a limit hit is a tool result with ``isError`` and a one-line hint.

Transports: stdio (default), or streamable HTTP at ``/mcp`` (``--transport http``),
stateless unless ``--stateful``, with ``execr serve``'s bearer API keys
(``$EXECR_API_KEYS``, ``--api-key-file``) and operator caps (``--max-*``).

Python API: ``add_arguments(parser)`` and ``run(args)`` (the command), ``asgi_app(config,
runner=None)`` (the stateless endpoint for ``execr serve`` to mount at ``/mcp``). Also
``python -m execr.mcp``. Importing this package is cheap: the SDK is imported by ``run``
and ``asgi_app``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..server._config import ServerConfig
    from ..server._session_store import SessionStore
    from ._backend import Runner

__all__ = ["add_arguments", "asgi_app", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``execr mcp``'s options to ``parser`` (see ``execr mcp --help``)."""
    from ._command import add_arguments as _add

    _add(parser)


def run(args: argparse.Namespace) -> int:
    """Serve MCP as ``args`` (from a parser given ``add_arguments``) say; returns the exit status."""
    from ._command import run as _run

    return _run(args)


def asgi_app(config: ServerConfig, runner: Runner | None = None, sessions: SessionStore | None = None) -> Any:
    """The stateless MCP endpoint (an ASGI app) for ``config``'s policy, to mount at ``/mcp``.

    ``runner(request)`` runs one ``Request`` and returns its ``Result`` (``execr serve``
    passes its pool's); without it, runs happen on threads of this process. ``sessions``:
    the host's session store (``execr serve`` passes its own), else one of the endpoint's.
    """
    try:
        from ._http import asgi_app as _asgi_app
    except ImportError as e:
        from .._exceptions import InvalidArgument

        raise InvalidArgument(f"execr mcp needs the 'mcp' extra (pip install 'execr[mcp]'): {e}") from e
    return _asgi_app(config, runner, sessions)
