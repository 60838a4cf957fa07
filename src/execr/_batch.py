"""Batch: ``execr batch IN.jsonl [-o OUT.jsonl]`` — one request per line in, one result per line out.

Each input line is a JSON object of ``execute()`` keyword arguments (``code``, ``stdin``,
``args``, ``env``, ``files``, ``timeout``, ...) plus an optional ``id``. Each output line is
``{"line": n, "id": ..., **result.to_dict()}``, in input order, written (and flushed) as
soon as it and every earlier line are done. With ``-o``, lines already in OUT are skipped
and OUT is appended, so an interrupted batch resumes where it stopped. A malformed line
gives ``{"line": n, "outcome": "crashed", "error": "invalid request: ..."}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ._many import iter_results

__all__ = ["add_batch_parser", "run_batch"]


def _read_input(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def _done_lines(out: Path) -> set[int]:
    """Line numbers already in OUT; a torn last line (interrupted write) is cut off."""
    if not out.exists():
        return set()
    done: set[int] = set()
    with open(out, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            f.truncate(end)
        for raw in data[:end].splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("line"), int):
                done.add(record["line"])
    return done


def _parse(n: int, line: str) -> tuple[Any, dict[str, Any] | None, str | None]:
    """(id, request mapping, error)."""
    try:
        obj = json.loads(line)
    except ValueError as e:
        return None, None, f"line {n} is not valid JSON: {e}"
    if not isinstance(obj, dict):
        return None, None, f"line {n} must be a JSON object; got {type(obj).__name__}"
    ident = obj.pop("id", None)
    return ident, obj, None


def run_batch(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    **defaults: Any,
) -> int:
    """Run a JSONL batch; return the number of result lines written this time."""
    src = Path(in_path)
    out = None if out_path is None else Path(out_path)
    skip = _done_lines(out) if out is not None else set()
    lines: list[int] = []
    ids: list[Any] = []
    items: list[Any] = []
    errors: dict[int, str] = {}  # position in `lines` -> error
    for n, line in _read_input(src):
        if n in skip:
            continue
        ident, request, error = _parse(n, line)
        if error is not None:
            errors[len(lines)] = error
            request = {"code": ""}  # placeholder; never run (replaced below)
        lines.append(n)
        ids.append(ident)
        items.append(None if error is not None else request)
    runnable = [i for i in range(len(items)) if i not in errors]
    stream: TextIO = sys.stdout if out is None else open(out, "a", encoding="utf-8")  # noqa: SIM115
    written = 0
    try:
        ready: dict[int, dict[str, Any]] = {}
        next_pos = 0

        def flush() -> None:
            nonlocal next_pos, written
            wrote = False
            while next_pos in ready:
                stream.write(json.dumps(ready.pop(next_pos), ensure_ascii=False) + "\n")
                next_pos += 1
                written += 1
                wrote = True
            if wrote:
                stream.flush()

        for pos, error in errors.items():
            ready[pos] = {
                "line": lines[pos],
                "id": ids[pos],
                "outcome": "crashed",
                "error": f"invalid request: {error}",
            }
        flush()
        pairs = iter_results([items[i] for i in runnable], workers, progress=progress, **defaults)
        for k, result in pairs:
            pos = runnable[k]
            ready[pos] = {"line": lines[pos], "id": ids[pos], **result.to_dict()}
            flush()
    finally:
        if out is not None:
            stream.close()
    return written


def _command(ns: argparse.Namespace) -> int:
    run_batch(ns.input, ns.output, workers=ns.workers, progress=False if ns.no_progress else None)
    return 0


def add_batch_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``execr batch IN [-o OUT] [--workers N] [--no-progress]``; its handler is
    ``parser.get_default("handler")`` (also set as ``func``): ``handler(ns) -> int``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "batch",
        help="run a JSONL file of requests in parallel",
        description=(__doc__ or "").split("\n\n", 1)[-1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="JSONL file: one request object per line")
    p.add_argument("-o", "--output", metavar="OUT", help="JSONL results file (appended; resumes); default stdout")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(handler=_command, func=_command)
    return p
