"""``python -m execr.mcp``: the ``execr mcp`` command on its own.

Exit status: 0, 1 on an execr error, 2 on a usage error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys

from . import add_arguments, run


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and serve; returns the exit status."""
    from .._exceptions import ExecrError, InvalidArgument

    parser = argparse.ArgumentParser(prog="execr mcp")
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        return run(args)
    except InvalidArgument as e:
        print(f"execr mcp: error: {e}", file=sys.stderr, flush=True)
        return 2
    except ExecrError as e:
        print(f"execr mcp: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
