"""Runtime info: what ``Runtime.info()`` and ``execr info`` report about each runtime (versions, files, cache)."""

from __future__ import annotations

import importlib.metadata
import json
from typing import TYPE_CHECKING, Any

from ._exceptions import RuntimeUnavailable
from ._image import _cache, _smoke
from ._image._binary import PYTHON_VERSION
from ._image._flavors import NAMES, flavor
from ._image._guest import BOOTSTRAP_VERSION
from ._mounts import SLOTS

if TYPE_CHECKING:
    from ._image import _snapshot
    from ._runtime import Runtime

__all__ = ["check_packages", "describe", "describe_runtime"]


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
        "fuel_free_module": spec.fuel_free,
    }
    try:
        binary = rt.files(runtime)
    except RuntimeUnavailable as e:
        return out | {"available": False, "error": str(e)}
    out |= {"available": True, "binary_path": str(binary.path), "binary_sha256": binary.sha256}
    if binary.stdlib is not None:
        out |= {
            "stdlib_zip": str(next(binary.stdlib.glob("*.zip"), binary.stdlib)),
            "stdlib_sha256": binary.stdlib_sha256,
        }
    if spec.reactor:
        out |= {"packages": spec.packages(binary), "preload": list(rt.preload_of(runtime))}
        out |= {"licenses": str(binary.path.parent / "LICENSES")}
        out |= _scientific(rt, runtime, binary.sha256)
    # the modules runs with default limits use (no fuel limit): the fuel-free ones where the runtime has them
    where = rt.artifacts(runtime, metered=False)
    out["plain_module"] = {"path": str(where.plain), "cached": where.plain.exists()}
    out["snapshot"] = {
        "path": str(where.snapshot),
        "cached": where.snapshot.exists() and where.meta.exists(),
        "enabled": rt.snapshot_enabled,
        "error": rt.snapshot_errors[spec.name],
        "recycled_instances": _recycles(rt.recycles(runtime, metered=False), where),
    }
    return out


def _recycles(loaded: bool | None, where: _snapshot.Artifacts) -> bool | None:
    """Whether snapshot runs reuse instances here (None: no snapshot built yet to tell)."""
    from . import _sandbox  # imported on first use: they load wasmtime

    verdict: object = loaded
    if verdict is None:
        meta = _cache.read_verified(where.meta)
        verdict = json.loads(meta).get("recycle") if meta is not None else None
    return None if verdict is None else bool(verdict) and _sandbox.recycling()


def _scientific(rt: Runtime, runtime: str, sha256: str) -> dict[str, Any]:
    """The packages the last ``check_packages`` found working, and the stored preload sets."""
    checked = _smoke.last(_smoke.results_path(rt.cache_dir, sha256))
    sets = [
        {"modules": list(s.modules), "memory_mib": s.length >> 20, "disk_mib": s.disk >> 20, "path": str(s.dir)}
        for s in rt._sets_of(runtime).stored(rescan=True)
    ]
    return {"checked_packages": checked, "preload_sets": sets}


def check_packages(rt: Runtime, runtime: str = "scientific") -> dict[str, str]:
    """Run one small real task per advertised package (``_image._smoke``) on ``runtime``; store and
    return the verdicts (package -> "ok" or why not). ``info()`` lists the last ones."""
    sha256 = rt.files(runtime).sha256
    where = _smoke.results_path(rt.cache_dir, sha256)
    return _smoke.check(lambda code: rt.execute(code, runtime=runtime), where)
