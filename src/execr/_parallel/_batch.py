"""Batch: ``execr batch IN.jsonl [-o OUT.jsonl]`` — one request per line in, one result per line out.

Each input line is a JSON object of ``execute()`` keyword arguments (``code``, ``stdin``,
``args``, ``env``, ``files``, ``timeout``, ...) plus an optional ``id``. Each output line is
``{"line": n, "id": ..., **result.to_dict()}``, in input order, written (and flushed) as
soon as it and every earlier line are done. With ``-o``, lines already in OUT are skipped
and OUT is appended, so an interrupted batch resumes where it stopped. A malformed line
gives ``{"line": n, "outcome": "crashed", "error": "invalid request: ..."}``.

A line may not name host paths (``mounts``, ``mount_fs``, ``stdio``, ``pythonpath``):
whoever wrote the file would choose which host directories the guest reads or writes.
The operator allows them with ``--allow-host-paths`` (``allow_host_paths=True``). OUT may
not be IN (under any name: a symlink, a hard link, another spelling): that is refused
before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from .._exceptions import InvalidArgument
from .._options import positive
from .._request import HOST_PATH_FIELDS
from ._many import iter_results

__all__ = ["add_batch_parser", "run_batch"]


def _read_input(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of IN, numbered from 1 (undecodable bytes become U+FFFD)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    except OSError as e:
        raise InvalidArgument(f"cannot read the input {str(path)!r}: {e.strerror or e}") from None


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


def _parse(n: int, line: str, allow_host_paths: bool) -> tuple[Any, dict[str, Any] | None, str | None]:
    """(id, request mapping, error)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting too deep to parse
        return None, None, f"line {n} is not valid JSON: {type(e).__name__}: {e}"
    if not isinstance(obj, dict):
        return None, None, f"line {n} must be a JSON object; got {type(obj).__name__}"
    ident = obj.pop("id", None)
    named = [k for k in HOST_PATH_FIELDS if k in obj]
    if named and not allow_host_paths:
        return (
            ident,
            None,
            (
                f"line {n}: {', '.join(named)} cannot be set from a batch file (it names host paths); "
                "the operator may allow it with --allow-host-paths"
            ),
        )
    return ident, obj, None


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _dumps(record: dict[str, Any]) -> str:
    """One output line; always valid UTF-8 JSON on one line, whatever the record holds.

    U+0085, U+2028 and U+2029 are escaped too: JSON allows them raw inside strings, but
    ``str.splitlines()`` and many JSONL readers break lines there.
    """
    try:
        text = json.dumps(record, ensure_ascii=False)
        text.encode("utf-8")
        return text.translate(_LINE_BREAKS)
    except UnicodeEncodeError:  # a lone surrogate in the id: escape it (\udXXX is valid JSON)
        return json.dumps(record)
    except (ValueError, TypeError, RecursionError):
        return json.dumps({**record, "id": None})


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (any spelling, symlink or hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


def run_batch(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    progress: bool | None = None,
    allow_host_paths: bool = False,
    **defaults: Any,
) -> int:
    """Run a JSONL batch; return the number of result lines written this time.

    Lines naming host-path fields get an error record unless ``allow_host_paths``; OUT
    being IN raises ``InvalidArgument`` before anything is read or written.
    """
    src = Path(in_path)
    out = None if out_path is None else Path(out_path)
    if out is not None and _same_file(src, out):
        raise InvalidArgument(f"the output {str(out)!r} is the input file {str(src)!r}: give another -o")
    entries = _read_input(src)
    try:
        skip = _done_lines(out) if out is not None else set()
        stream: TextIO = sys.stdout if out is None else open(out, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise InvalidArgument(f"cannot write the output {str(out)!r}: {e.strerror or e}") from None
    lines: list[int] = []
    ids: list[Any] = []
    items: list[Any] = []
    errors: dict[int, str] = {}  # position in `lines` -> error
    for n, line in entries:
        if n in skip:
            continue
        ident, request, error = _parse(n, line, allow_host_paths)
        if error is not None:
            errors[len(lines)] = error
            request = {"code": ""}  # placeholder; never run (replaced below)
        lines.append(n)
        ids.append(ident)
        items.append(None if error is not None else request)
    runnable = [i for i in range(len(items)) if i not in errors]
    written = 0
    try:
        ready: dict[int, dict[str, Any]] = {}
        next_pos = 0

        def flush() -> None:
            nonlocal next_pos, written
            wrote = False
            while next_pos in ready:
                stream.write(_dumps(ready.pop(next_pos)) + "\n")
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
    run_batch(
        ns.input,
        ns.output,
        workers=ns.workers,
        progress=False if ns.no_progress else None,
        allow_host_paths=ns.allow_host_paths,
    )
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
    p.add_argument("--workers", type=positive, default=None, metavar="N", help="worker processes (default: CPU count)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--allow-host-paths",
        action="store_true",
        help="let lines set mounts, mount_fs, stdio and pythonpath (host directories); refused by default",
    )
    p.set_defaults(handler=_command, func=_command)
    return p
