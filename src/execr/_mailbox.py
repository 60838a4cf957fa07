"""Mailbox: the layout of the buffer through which host and guest exchange a request and its status.

The guest bootstrap (``_guest``) allocates it as a ``bytearray``; the host finds its address
in the snapshot image by ``MARK`` (``_snapshot``), writes each request into it and reads the
exit status back (``_sandbox``). Offsets are bytes from the start of the buffer::

    0   u32  MAGIC once the entry finished (0 while it runs)
    4   i32  the exit status
    8   u32  the value's size (a request with ``value``), or NO_VALUE
    16  u32  the request's size, or IN_FILE: read /__execr__/request.bin instead
    20  ...  the request (marshal), at most REQUEST_BOX bytes; after the run, the value
             (``repr`` of the code's last expression, UTF-8, cut to VALUE_MAX bytes)

At boot the first 16 bytes hold ``MARK``.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = [
    "IN_FILE",
    "MAGIC",
    "MAGIC_AT",
    "MARK",
    "NO_VALUE",
    "PAYLOAD_AT",
    "REQUEST_BOX",
    "SIZE_AT",
    "STATUS_AT",
    "VALUE_AT",
    "VALUE_MAX",
    "request",
    "status",
    "value",
]

MARK: Final = b"EXECR-MAILBOX-01"
MAGIC: Final = 0x52434558  # b"XECR" little-endian
MAGIC_AT: Final = 0
STATUS_AT: Final = 4
VALUE_AT: Final = 8
NO_VALUE: Final = 0xFFFFFFFF
SIZE_AT: Final = 16
PAYLOAD_AT: Final = 20
IN_FILE: Final = 0xFFFFFFFF
REQUEST_BOX: Final = 256 * 1024  # bytes of guest memory for a request; larger ones go through a file
VALUE_MAX: Final = REQUEST_BOX - PAYLOAD_AT


def request(payload: bytes | None) -> tuple[int, bytes]:
    """(offset, bytes) to write for ``payload``; ``None``: the request is in request.bin."""
    if payload is None:
        return SIZE_AT, struct.pack("<I", IN_FILE)
    return SIZE_AT, struct.pack("<I", len(payload)) + payload


def value(head: bytes) -> int | None:
    """The value's size from the mailbox's first 16 bytes (None: no value)."""
    (size,) = struct.unpack_from("<I", head, VALUE_AT)
    return None if size == NO_VALUE or size > VALUE_MAX else size


def status(head: bytes) -> int | None:
    """The exit status from the mailbox's first 8 bytes, or None if the entry did not finish."""
    magic, code = struct.unpack_from("<Ii", head, MAGIC_AT)
    return code if magic == MAGIC else None
