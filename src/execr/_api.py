"""API: ``execute()``, the one-call way to run code in a fresh sandbox."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._limits import UNSET, Limits, Unset
from ._mounts import Mount
from ._request import make_request
from ._results import Result
from ._runtime import Runtime, default_runtime

__all__ = ["execute"]

Limit = Any  # float | int | None | Unset, checked by Limits


def execute(
    code: str,
    stdin: str | bytes = "",
    args: Sequence[str] | None = None,
    use_fuel: bool = False,
    fuel: int | Unset | None = UNSET,
    mount_fs: str | os.PathLike[str] | None = None,
    stdio: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str | bytes] | None = None,
    mounts: Iterable[Mount | str | tuple[Any, ...]] = (),
    pythonpath: str | os.PathLike[str] | Unset | None = UNSET,
    limits: Limits | Mapping[str, Any] | None = None,
    timeout: Limit = UNSET,
    memory_limit: Limit = UNSET,
    max_stdout: Limit = UNSET,
    max_stderr: Limit = UNSET,
    max_file_bytes: Limit = UNSET,
    max_files: Limit = UNSET,
    max_returned_file_bytes: Limit = UNSET,
    snapshot: bool = True,
    runtime: Runtime | str | None = None,
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

    ``runtime`` picks the CPython: ``"default"`` (3.12, the standard library) or
    ``"scientific"`` (3.15 with numpy, pandas, scipy, scikit-learn...; needs
    ``pip install 'execr[scientific]'``), run on the process-wide ``Runtime``; or a
    ``Runtime`` instance to run the default CPython on.

    Guest failures (tracebacks, exits, traps, limits) are returned in the ``Result``;
    invalid arguments raise ``InvalidArgument``.
    """
    overrides = {
        "timeout": timeout,
        "memory_limit": memory_limit,
        "max_stdout": max_stdout,
        "max_stderr": max_stderr,
        "max_file_bytes": max_file_bytes,
        "max_files": max_files,
        "max_returned_file_bytes": max_returned_file_bytes,
    }
    request = make_request(
        code,
        stdin,
        args,
        use_fuel=use_fuel,
        fuel=fuel,
        mount_fs=mount_fs,
        stdio=stdio,
        env=env,
        files=files,
        mounts=mounts,
        pythonpath=pythonpath,
        limits=limits,
        snapshot=snapshot,
        runtime="default" if runtime is None or isinstance(runtime, Runtime) else runtime,
        **{k: v for k, v in overrides.items() if v is not UNSET},
    )
    return (runtime if isinstance(runtime, Runtime) else default_runtime()).run(request)
