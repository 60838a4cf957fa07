"""Guest file system: execr's own WASI preview-1 file layer, between the guest's descriptors and the host.

Every ``fd_*`` and ``path_*`` call of the guest lands here, not in wasmtime's WASI: wasmtime's
context has no preopens and no stdio, so nothing reaches the host but through this module.
That is what lets the host enforce, at the call that would break them:

- **file caps, exactly**: every byte and every entry the guest can make the host hold is
  counted when it is made: files, directories, bytes (apparent sizes, so sparse files count
  in full), and files unlinked while still open (counted until their last descriptor closes).
  A call that would pass ``max_files`` or ``max_file_bytes`` is refused and stops the run:
  no overshoot at all.
- **descriptors**: at most ``max_open_files`` guest descriptors beyond stdio and the
  preopens; past that the guest gets ``EMFILE``, never the host process.
- **containment**: paths are resolved component by component from the preopen's directory
  descriptor (``openat`` with ``O_NOFOLLOW``); ``..`` cannot climb above a preopen, symbolic
  links are followed only when their target stays inside it, absolute links are refused.
  Host path length limits do not apply: no host path is ever built.
- **no blocking, no devices**: only regular files and directories can be opened; FIFOs,
  sockets and device nodes are refused before any ``open`` (``EACCES``), so no call blocks.
- **no channel between runs**: inode and device numbers are virtual (numbered per run), and
  directory listings come back sorted by name, whatever the host file system does.

stdin, stdout and stderr are served from memory (``stdin`` bytes; ``Capture`` sinks). The
control directory and unused mount slots are virtual read-only directories with no host
directory behind them.
"""

from __future__ import annotations

from typing import Any

from ._abi import EINVAL_, FUNCTIONS, I32, I64, NEW_DIR_SIZE, LimitHit, Memory, Unreadable, WasiError, wasi_errno
from ._budget import HOST_FDS, Caps
from ._fd import FdCalls
from ._path import PathCalls
from ._tree import Tree
from ._walk import walk

__all__ = [
    "FUNCTIONS",
    "HOST_FDS",
    "I32",
    "I64",
    "NEW_DIR_SIZE",
    "Caps",
    "GuestFiles",
    "LimitHit",
    "Memory",
    "Tree",
    "Unreadable",
    "call",
    "walk",
]


class GuestFiles(FdCalls, PathCalls):
    """One run's descriptor table and file accounting; its methods are the WASI calls.

    Each method takes the calling instance's ``Memory`` and the call's raw arguments and
    returns a WASI errno; host failures never escape (``LimitHit`` is the one exception a
    method raises: the caller stops the run). Not thread-safe: one run, one thread.
    """


def call(files: GuestFiles, method: str, mem: Memory, args: tuple[Any, ...]) -> int:
    """Run one WASI call on ``files``; host errors become WASI errnos (``LimitHit`` propagates)."""
    try:
        result: int = getattr(files, method)(mem, *args)
        return result
    except WasiError as e:
        return e.code
    except OSError as e:
        return wasi_errno(e)
    except (ValueError, OverflowError, UnicodeError):
        return EINVAL_
