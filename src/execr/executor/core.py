"""The seed's API, unchanged: ``execute``, ``_execute``, ``RuntimeConfig``, ``Result``, ``binary``.

``execute(code, stdin="", args=None, use_fuel=False, fuel=400_000_000, mount_fs=None,
stdio=None)`` runs as before and returns a ``Result`` with the seed's fields (``stdout``,
``stderr``, ``fuel_consumed``, ``memory``, ``data_len``) plus execr's. ``_execute`` with a
default ``RuntimeConfig`` leaves no residue: temporary directories are removed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from .._api import execute
from .._image._binary import binary
from .._results import Result

__all__ = ["Result", "RuntimeConfig", "_execute", "binary", "execute"]


@dataclasses.dataclass
class RuntimeConfig:
    """The seed's run configuration. ``None`` directories mean fresh temporary ones."""

    use_fuel: bool = False
    fuel: int = 400_000_000
    mount_fs: str | os.PathLike[str] | None = None
    stdio: str | os.PathLike[str] | None = None


def _execute(
    code: str, stdin: str | bytes = "", args: Sequence[str] | None = None, cfg: RuntimeConfig | None = None
) -> Result:
    """Run ``code`` with a ``RuntimeConfig`` (the seed's internal entry point)."""
    cfg = cfg or RuntimeConfig()
    return execute(
        code,
        stdin,
        args,
        use_fuel=cfg.use_fuel,
        fuel=cfg.fuel if cfg.use_fuel else None,
        mount_fs=cfg.mount_fs,
        stdio=cfg.stdio,
    )
