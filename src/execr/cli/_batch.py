"""``execr batch IN.jsonl [-o OUT.jsonl]``: run a JSONL file of requests on a worker pool (see ``run_batch``)."""

from __future__ import annotations

import argparse
from typing import Any

from .._parallel._batch import add_batch_parser, run_batch
from .._parallel._pool import WorkerPool

__all__ = ["add"]


def add(sub: Any) -> None:
    """Add ``execr batch`` to ``sub`` (its options are ``add_batch_parser``'s); the handler honours the test seam."""
    add_batch_parser(sub).set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {
        "progress": False if args.no_progress else None,
        "allow_host_paths": args.allow_host_paths,
    }
    factory = getattr(args, "runtime_factory", None)
    if factory is None:
        run_batch(args.input, args.output, workers=args.workers, **options)
        return 0
    # The workers import the factory by name (``WorkerPool(runtime_factory=...)``).
    with WorkerPool(args.workers, runtime_factory=factory) as pool:
        run_batch(args.input, args.output, pool=pool, **options)
    return 0
