"""Runtime info: what ``Runtime.info()`` and ``execr info`` report about each runtime (versions, files, cache)."""

from __future__ import annotations

import importlib.metadata
import json
from typing import TYPE_CHECKING, Any

from ._exceptions import RuntimeUnavailable
from ._image import _cache
from ._image._binary import PYTHON_VERSION
from ._image._flavors import NAMES, flavor
from ._image._guest import BOOTSTRAP_VERSION
from ._mounts import SLOTS

if TYPE_CHECKING:
    from ._image import _snapshot
    from ._runtime import Runtime, _Built

__all__ = ["describe", "describe_runtime"]


def describe(rt: Runtime) -> dict[str, Any]:
    """Versions, hashes, cache paths and state (what ``execr info`` prints).

    The top-level keys describe the default CPython; ``runtimes`` describes each.
    """
    runtimes = {name: describe_runtime(rt, name) for name in NAMES}
    default = runtimes["default"]
    return {
        "python_version": PYTHON_VERSION,
        "binary_path": default["binary_path"],
        "binary_sha256": default["binary_sha256"],
        "wasmtime_version": importlib.metadata.version("wasmtime"),
        "bootstrap_version": BOOTSTRAP_VERSION,
        "cache_dir": str(rt.cache_dir),
        "plain_module": default["plain_module"],
        "snapshot": default["snapshot"],
        "mount_slots": SLOTS,
        "runtimes": runtimes,
    }


def describe_runtime(rt: Runtime, runtime: str) -> dict[str, Any]:
    """One runtime's Python version, what it can import, its files and its cache state."""
    spec = flavor(runtime)
    out: dict[str, Any] = {
        "python_version": spec.python_version,
        "description": spec.description,
        "can_import": "the standard library" + (" and the packages listed" if spec.reactor else ""),
    }
    try:
        binary = rt.files(runtime)
    except RuntimeUnavailable as e:
        return out | {"available": False, "error": str(e)}
    where = rt._artifacts(runtime)
    out |= {"available": True, "binary_path": str(binary.path), "binary_sha256": binary.sha256}
    if binary.stdlib is not None:
        out |= {"stdlib_zip": str(binary.stdlib / "python315.zip"), "stdlib_sha256": binary.stdlib_sha256}
        out |= {"packages": spec.packages(binary), "preload": list(rt._preload_of(spec))}
        out |= {"licenses": str(binary.path.parent / "LICENSES")}
    built = rt._built[spec.name]
    out["plain_module"] = {"path": str(where.plain), "cached": where.plain.exists()}
    out["snapshot"] = {
        "path": str(where.snapshot),
        "cached": where.snapshot.exists() and where.meta.exists(),
        "enabled": rt._use_snapshot,
        "error": built.snapshot_error,
        "recycled_instances": _recycles(built, where),
    }
    return out


def _recycles(built: _Built, where: _snapshot.Artifacts) -> bool | None:
    """Whether snapshot runs reuse instances here (None: no snapshot built yet to tell)."""
    from . import _sandbox  # imported on first use: they load wasmtime

    if built.snap is not None:
        verdict: object = built.snap.compiled.recycle
    else:
        meta = _cache.read_verified(where.meta)
        verdict = json.loads(meta).get("recycle") if meta is not None else None
    return None if verdict is None else bool(verdict) and _sandbox.recycling()
