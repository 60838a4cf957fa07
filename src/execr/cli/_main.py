"""The entry point: parse ``argv``, run the chosen subcommand, turn every failure into one line and an exit status."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable

from .._exceptions import ExecrError, InvalidArgument
from ._common import EXIT_INTERRUPTED, EXIT_LIMIT, EXIT_USAGE, RuntimeFactory, UsageError
from ._parser import parse

__all__ = ["main"]


def main(argv: list[str] | None = None, *, runtime_factory: RuntimeFactory | None = None) -> int:
    """Run the ``execr`` command line (``argv`` defaults to ``sys.argv[1:]``); return the exit status.

    ``runtime_factory`` replaces ``execr.Runtime`` for every run, e.g.
    ``execr.testing.FakeRuntime``: ``run``, ``info`` and ``warmup`` call it with the
    ``Runtime`` keyword arguments, ``batch`` starts its workers with
    ``WorkerPool(runtime_factory=...)`` (so it must be importable by name) and ``mcp``
    finds it as ``args.runtime_factory``. ``serve`` does not take it (use
    ``ServerConfig(runtime_factory=...)``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = parse(argv)
        except SystemExit as e:  # --help, --version, and usage errors
            return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        args.runtime_factory = runtime_factory
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
