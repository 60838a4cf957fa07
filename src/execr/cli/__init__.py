"""The ``execr`` command line: ``main(argv)`` runs a subcommand: run, repl, info, warmup, batch, serve or mcp.

Every subcommand is a thin shell over the Python API: its options map one to one onto
``execute()``/``Runtime`` arguments and it has no power of its own. Each lives in its own
module (``_run``, ``_repl``, ``_info``, ``_batch``, ``_serve``, ``_mcp``) that exposes
``add(subparsers)``; the handler it registers as ``func`` takes the parsed namespace and
returns the exit status. To add a subcommand, write such a module and list its ``add`` in
``_parser.SUBCOMMANDS``.

Exit status: the guest's own exit code (masked to 0..255) when it has one; 1 when a
limit, a crash or a cancel ended the run, or when execr itself failed (one line
``execr: error: ...``, never a traceback); 2 for usage errors; 130 on Ctrl-C.

Tests pass ``main(argv, runtime_factory=execr.testing.FakeRuntime)`` to run the command
line without wasm (see ``main``).
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
