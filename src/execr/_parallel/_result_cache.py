"""Result cache: results on disk keyed by the canonical request (only runs that read no host paths)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from .._exceptions import InvalidArgument
from .._image import _cache
from .._request import Request
from .._results import Outcome, Result

__all__ = ["ResultCache"]

# Outcomes worth caching: deterministic given the request (not timing- or host-dependent).
_CACHEABLE = frozenset(
    {Outcome.COMPLETED, Outcome.FAILED, Outcome.OUT_OF_FUEL, Outcome.MEMORY_LIMIT, Outcome.FILE_LIMIT}
)


class ResultCache:
    """Results on disk keyed by the canonical request and the binary's hash.

    The key covers everything a request carries (code, stdin, args, env, files, limits,
    runtime, start-up path, binary hashes), not what the guest can read from the host: so
    a run that names host paths (``mounts``, ``mount_fs``, ``stdio``, ``pythonpath`` or
    ``$EXECR_PYTHONPATH``) is never cached, neither read nor written. Only outcomes that
    the request decides are stored (not timeouts, crashes or cancels).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def of(cls, cache: object) -> ResultCache | None:
        """``cache`` as given to execute_many: None/False, True (user cache dir), a path, or a ResultCache."""
        if cache is None or cache is False:
            return None
        if isinstance(cache, ResultCache):
            return cache
        if cache is True:
            import platformdirs

            return cls(Path(platformdirs.user_cache_dir("execr")) / "results")
        if isinstance(cache, (str, os.PathLike)):
            return cls(cache)
        raise InvalidArgument(f"cache must be None, a bool or a directory path; got {type(cache).__name__}")

    @staticmethod
    def key(request: Request) -> str | None:
        """The cache key, or None when the run must not be cached (it reads or writes host paths)."""
        if request.mounts or request.mount_fs is not None or request.stdio is not None or request.pythonpath:
            return None
        from .._image._binary import SCIENTIFIC_STDLIB_SHA256, SCIENTIFIC_WASM_SHA256, SHA256

        canonical = {
            "code": request.code,
            "stdin": request.stdin.hex(),
            "args": list(request.args),
            "env": sorted(request.env),
            "files": sorted((p, c.hex()) for p, c in request.files),
            "limits": request.limits.to_dict(),
            "snapshot": request.snapshot,
            "binary": SHA256 if request.runtime == "default" else SCIENTIFIC_WASM_SHA256 + SCIENTIFIC_STDLIB_SHA256,
            "runtime": request.runtime,
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Result | None:
        try:
            return Result.from_dict(json.loads(self._path(key).read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, result: Result) -> None:
        if result.outcome not in _CACHEABLE:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs a rerun
            _cache.atomic_write(self._path(key), json.dumps(result.to_dict()).encode("utf-8"))
