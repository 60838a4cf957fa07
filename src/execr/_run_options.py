"""RunOptions: the keyword options every way of running code takes, typed once.

``execute``, ``execute_async``, ``Runtime.execute`` and (as defaults) ``execute_many``
accept these after the seed's seven positional parameters (``code, stdin, args,
use_fuel, fuel, mount_fs, stdio``). Limits come in one of two spellings: ``limits=`` (a
``Limits`` or a mapping) for the whole budget, or one keyword per limit to override it;
``None`` turns a limit off, leaving a keyword out keeps the default.

Host functions (``tools``, ``tool_permission``, ``max_tool_calls``) are not among them: they
are callables of this process, which cannot cross to pool workers, Ray or HTTP, so only
``execute``, ``execute_async`` and ``Runtime.execute`` take them (``make_request`` refuses them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from ._limits import Limits, Unset
from ._mounts import Mount

__all__ = ["RunOptions"]


class RunOptions(TypedDict, total=False):
    """Keyword options of one run (all optional)."""

    env: Mapping[str, str] | None  # the guest's whole environment
    files: Mapping[str, str | bytes] | None  # written into the working directory first
    mounts: Iterable[Mount | str | tuple[Any, ...]]  # host directories (read-only unless writable)
    pythonpath: str | os.PathLike[str] | Unset | None  # mounted at /__pypackages__ (default $EXECR_PYTHONPATH)
    limits: Limits | Mapping[str, Any] | None  # the whole budget
    timeout: float | Unset | None  # seconds of wall clock
    memory_limit: int | Unset | None  # bytes of linear memory
    max_stdout: int | Unset | None
    max_stderr: int | Unset | None
    max_file_bytes: int | Unset | None
    max_files: int | Unset | None
    max_returned_file_bytes: int | Unset | None
    max_open_files: int | Unset | None
    snapshot: bool  # False: CPython's own start-up (slow), for comparison
    runtime: str  # which CPython: "default" or "scientific"
    preload: str | Iterable[str] | None  # scientific: run on a snapshot with these imported (built now if new)
    inputs: Mapping[str, Any] | None  # guest globals set before the code runs (JSON-like values)
