"""Stdio: line-delimited JSON-RPC on stdin and stdout, read and written on the event loop (no thread per line).

The SDK's ``stdio_server`` takes the streams it reads and writes; by default it wraps the
standard files with ``anyio.wrap_file``, which costs a thread hop for every line read and two
for every reply (write, flush): a third of the time of a ``print(1)`` call. Here stdin is an
asyncio pipe reader and each reply is written whole to the pipe at once. Where stdin is not a
pipe or a terminal (a regular file), it falls back to the SDK's own streams.

While serving, fd 1 and ``sys.stdout`` point at stderr, so a stray print (or a native library
writing to fd 1) cannot corrupt the protocol stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio

__all__ = ["MAX_LINE", "protocol_streams"]

MAX_LINE = 256 * 1024 * 1024  # one JSON-RPC message; requests with files can be large


class _Lines:
    """Lines of a pipe, as text, read by the event loop."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _Replies:
    """Writes each reply whole to a pipe (blocking while the client has not read the previous ones)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def write(self, text: str) -> None:
        view = memoryview(text.encode("utf-8"))
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:  # the pipe is shared with a non-blocking reader: wait for room
                await anyio.sleep(0.001)

    async def flush(self) -> None:
        pass


def _pipe_like(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


@contextlib.asynccontextmanager
async def protocol_streams() -> AsyncIterator[tuple[Any, Any]]:
    """(stdin lines, stdout writer) for ``stdio_server(stdin=..., stdout=...)``, with fd 1 sent to stderr."""
    sys.stdout.flush()
    out = os.dup(1)
    os.dup2(2, 1)
    saved_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        if _pipe_like(0) and sys.platform != "win32":
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader(limit=MAX_LINE)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(os.dup(0), "rb", buffering=0)
            )
            try:
                yield _Lines(reader), _Replies(out)
            finally:
                transport.close()
        else:
            stdin = anyio.wrap_file(io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace"))
            stdout = io.TextIOWrapper(os.fdopen(os.dup(out), "wb", buffering=0), encoding="utf-8", newline="\n")
            try:
                yield stdin, anyio.wrap_file(stdout)
            finally:
                with contextlib.suppress(OSError, ValueError):
                    stdout.close()
    finally:
        sys.stdout = saved_stdout
        os.dup2(out, 1)
        os.close(out)
