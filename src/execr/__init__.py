"""execr: run untrusted Python in CPython compiled to WebAssembly, on wasmtime.

Python API: ``execute``, ``Runtime``, ``Result``, ``Outcome``, ``OutputFile``, ``Limits``,
``Mount``, ``UNSET``, the exception tree rooted at ``ExecrError``, and the seed's
``execr.executor.core`` (``execute``, ``RuntimeConfig``, ``Result``, ``binary``).

Commands: ``execr run``, ``execr info``, ``execr warmup`` (see ``execr --help``).

Environment variables: ``EXECR_PYTHONPATH`` (a directory mounted read-only at
``/__pypackages__``), ``EXECR_BINARY`` (another copy of the pinned binary),
``EXECR_CACHE_DIR`` (compiled-module cache), ``EXECR_SNAPSHOT=0`` (always take the
plain start-up path), ``EXECR_QUIET=1`` (no build progress on stderr), ``EXECR_DEBUG=1``
(the CLI shows internal tracebacks instead of one-line errors).
"""

from ._api import execute
from ._binary import binary
from ._exceptions import (
    ExecrError,
    GuestCrashed,
    GuestFailed,
    GuestFileLimit,
    GuestMemoryLimit,
    GuestOutOfFuel,
    GuestTimedOut,
    InvalidArgument,
    OutcomeError,
    RuntimeClosed,
    RuntimeUnavailable,
)
from ._limits import UNSET, Limits
from ._mounts import Mount
from ._results import Outcome, OutputFile, Result
from ._runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "UNSET",
    "ExecrError",
    "GuestCrashed",
    "GuestFailed",
    "GuestFileLimit",
    "GuestMemoryLimit",
    "GuestOutOfFuel",
    "GuestTimedOut",
    "InvalidArgument",
    "Limits",
    "Mount",
    "Outcome",
    "OutcomeError",
    "OutputFile",
    "Result",
    "Runtime",
    "RuntimeClosed",
    "RuntimeUnavailable",
    "__version__",
    "binary",
    "execute",
]
