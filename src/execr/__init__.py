"""execr: run untrusted Python in CPython compiled to WebAssembly, on wasmtime.

Python API: ``execute`` / ``execute_async`` (one run in a fresh sandbox), ``RunOptions``
(their typed keyword options), ``execute_many`` / ``execute_many_async`` / ``iter_results``
(many runs on a pool of worker processes, or on Ray), ``WorkerPool``, ``run_batch``,
``Session`` / ``AsyncSession`` (a live interpreter across calls, with ``Checkpoint``s, fork
and restore), ``Runtime``, ``Result``, ``ToolCall``, ``Outcome``, ``OutputFile``, ``Limits``,
``Mount``, ``UNSET``, ``binary``, the exception tree rooted at ``ExecrError``
(``InvalidArgument``, ``RuntimeUnavailable``, ``RuntimeClosed``, ``SessionExpired``,
``CheckpointRefused``, ``PoolFull``, ``OutcomeError`` and its ``Guest*`` subclasses),
``execr.testing`` (a fake runtime for tests), and the seed's ``execr.executor.core``
(``execute``, ``RuntimeConfig``, ``Result``, ``binary``).

Commands: ``execr run``, ``execr repl``, ``execr info``, ``execr warmup``, ``execr batch``,
``execr serve``, ``execr mcp``
(see ``execr --help``). HTTP (``execr serve``, extra ``server``): ``POST /v1/execute``,
``POST /v1/execute/batch``, ``GET /v1/runtime``, ``/healthz``, ``/readyz``, ``/metrics``, ``/docs``.

Environment variables: ``EXECR_PYTHONPATH`` (a directory mounted read-only at
``/__pypackages__``), ``EXECR_BINARY`` (another copy of the pinned binary),
``EXECR_SCIENTIFIC_PRELOAD`` (modules the scientific snapshot imports), ``EXECR_CACHE_DIR``
(compiled-module cache), ``EXECR_SNAPSHOT=0`` (always take the plain start-up path),
``EXECR_RECYCLE=0`` (a new instance per run), ``EXECR_QUIET=1`` (no build progress on
stderr), ``EXECR_DEBUG=1`` (the CLI shows internal tracebacks instead of one-line errors).

``import execr`` is cheap: wasmtime is loaded on the first run.
"""

from ._api import execute, execute_async
from ._async_session import AsyncSession
from ._checkpoint import Checkpoint
from ._exceptions import (
    CheckpointRefused,
    ExecrError,
    GuestCancelled,
    GuestCrashed,
    GuestFailed,
    GuestFileLimit,
    GuestMemoryLimit,
    GuestOutOfFuel,
    GuestTimedOut,
    InvalidArgument,
    OutcomeError,
    PoolFull,
    RuntimeClosed,
    RuntimeUnavailable,
    SessionExpired,
)
from ._image._binary import binary
from ._limits import UNSET, Limits
from ._mounts import Mount
from ._parallel._batch import run_batch
from ._parallel._many import execute_many, execute_many_async, iter_results
from ._parallel._pool import WorkerPool
from ._results import Outcome, OutputFile, Result, ToolCall
from ._run_options import RunOptions
from ._runtime import Runtime
from ._session import Session

__version__ = "0.1.0"

__all__ = [
    "UNSET",
    "AsyncSession",
    "Checkpoint",
    "CheckpointRefused",
    "ExecrError",
    "GuestCancelled",
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
    "PoolFull",
    "Result",
    "RunOptions",
    "Runtime",
    "RuntimeClosed",
    "RuntimeUnavailable",
    "Session",
    "SessionExpired",
    "ToolCall",
    "WorkerPool",
    "__version__",
    "binary",
    "execute",
    "execute_async",
    "execute_many",
    "execute_many_async",
    "iter_results",
    "run_batch",
]
