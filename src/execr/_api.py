"""API: ``execute()``, the one-call way to run code in a fresh sandbox."""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

from ._limits import UNSET, Unset
from ._request import make_request
from ._results import Result
from ._run_options import RunOptions
from ._runtime import Runtime, default_runtime
from ._tools import DEFAULT_MAX_CALLS, Permission, ToolBox

__all__ = ["execute", "execute_async"]


def execute(
    code: str,
    stdin: str | bytes = "",
    args: Sequence[str] | None = None,
    use_fuel: bool = False,
    fuel: int | Unset | None = UNSET,
    mount_fs: str | os.PathLike[str] | None = None,
    stdio: str | os.PathLike[str] | None = None,
    *,
    tools: Mapping[str, Callable[..., Any]] | None = None,
    tool_permission: Permission | None = None,
    max_tool_calls: int | None = DEFAULT_MAX_CALLS,
    **options: Unpack[RunOptions],
) -> Result:
    """Run ``code`` as ``python main.py ARGS`` in a fresh WebAssembly sandbox.

    The first seven parameters are the seed's: ``stdin`` (str or bytes), ``args``,
    ``use_fuel``/``fuel`` (a fuel limit; with ``use_fuel`` and no ``fuel``, 400 million),
    ``mount_fs`` (a host directory shown as the guest's writable root and working
    directory; a fresh temporary one by default) and ``stdio`` (a host directory that
    receives ``stdin.txt``, ``stdout.txt`` and ``stderr.txt``).

    ``env`` is the guest's whole environment (the host's never leaks in); ``files`` maps
    guest paths to contents written into the working directory first; ``mounts`` adds
    host directories (read-only unless writable); ``pythonpath`` (default
    ``$EXECR_PYTHONPATH``) is mounted read-only at ``/__pypackages__`` and put on
    ``PYTHONPATH``. Limits come from ``limits`` and the keyword overrides; ``None`` turns
    one off. ``snapshot=False`` takes the plain (slow) start-up path.

    ``runtime`` picks the CPython: ``"default"`` (execr's own 3.13 build, the standard
    library), ``"python3.12"`` (the older 3.12.0 binary, kept for a while) or
    ``"scientific"`` (3.15 with numpy, pandas, scipy, scikit-learn...; needs
    ``pip install 'execr[scientific]'``), run on the process-wide ``Runtime``. To run on a
    ``Runtime`` of your own, call its ``execute`` (passing one as ``runtime=`` still works,
    with a ``DeprecationWarning``). The keyword options are ``RunOptions``.

    ``tools`` maps names to host functions the guest calls as plain functions (``from
    execr_tools import search``; default and scientific runtimes): arguments are checked against
    a JSON Schema made from each function's type hints (or pydantic model), results must be
    JSON-like, and every call is recorded in ``Result.tool_calls``. ``tool_permission(name,
    arguments)`` must return True for a call to run; ``max_tool_calls`` caps the calls of one run
    (None: no cap). Tools run in this process, so pools, batches, Ray and HTTP do not take them.

    Guest failures (tracebacks, exits, traps, limits) are returned in the ``Result``;
    invalid arguments raise ``InvalidArgument``.
    """
    runtime: object = options.get("runtime")
    if isinstance(runtime, Runtime):  # the old spelling: a Runtime object in runtime=
        warnings.warn(
            "execute(runtime=<Runtime>) is deprecated: call rt.execute(...); runtime= names the CPython",
            DeprecationWarning,
            stacklevel=2,
        )
        del options["runtime"]
        return runtime.execute(
            code,
            stdin,
            args,
            use_fuel,
            fuel,
            mount_fs,
            stdio,
            tools=tools,
            tool_permission=tool_permission,
            max_tool_calls=max_tool_calls,
            **options,
        )
    request = make_request(code, stdin, args, use_fuel=use_fuel, fuel=fuel, mount_fs=mount_fs, stdio=stdio, **options)
    return default_runtime().run(request, tools=ToolBox.of(tools, tool_permission, max_tool_calls))


async def execute_async(
    code: str,
    stdin: str | bytes = "",
    args: Sequence[str] | None = None,
    use_fuel: bool = False,
    fuel: int | Unset | None = UNSET,
    mount_fs: str | os.PathLike[str] | None = None,
    stdio: str | os.PathLike[str] | None = None,
    *,
    tools: Mapping[str, Callable[..., Any]] | None = None,
    tool_permission: Permission | None = None,
    max_tool_calls: int | None = DEFAULT_MAX_CALLS,
    **options: Unpack[RunOptions],
) -> Result:
    """``execute`` for asyncio: the run happens on a worker thread, the event loop stays free.

    The arguments and the result are ``execute``'s. The request is validated before the
    thread starts, so bad input raises here at once. Async tools (``async def``) run on this
    event loop; sync ones on execr's tool threads, as in ``execute``.
    """
    request = make_request(code, stdin, args, use_fuel=use_fuel, fuel=fuel, mount_fs=mount_fs, stdio=stdio, **options)
    box = ToolBox.of(tools, tool_permission, max_tool_calls, asyncio.get_running_loop())
    return await asyncio.to_thread(default_runtime().run, request, tools=box)
