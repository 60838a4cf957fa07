"""Package data files: what the scientific guest reads from real directories, and its scratch directory.

matplotlib cannot read its data (``mpl-data``: ``matplotlibrc``, fonts, styles) from inside the
stdlib zip: it builds paths from ``Path(__file__)`` and opens them as files. The zip ships that
data as an inner archive (``matplotlib/mpl-data.zip``). execr extracts it, once, from the bytes
of the SHA-256-verified zip into a directory of its cache (``scientific-data-<zip>-v<N>``):
members are refused unless they are plain relative paths of regular files, every file is
written read-only (0444, directories 0555) and recorded with its size and SHA-256 in a manifest.
Each process checks the directory against the manifest before first use (no extra, missing,
changed or linked entry; ~20 ms) and extracts it again otherwise. The guest sees it read-only at
the very path matplotlib computes, ``/usr/local/lib/python315.zip/matplotlib/mpl-data`` (a
preopen nested in the zip's path: the longest preopen prefix wins), and nothing above it.

Every run also gets a **scratch directory** of its own at ``/__execr__/tmp``: writable, fresh
and empty (execr's pool of run roots), never part of ``Result.files``, removed after the run,
and counted in the run's file caps like the root. ``MPLCONFIGDIR`` points below it (matplotlib
needs a writable config and cache directory) and ``MPLBACKEND`` is ``Agg``, unless the request
sets them. matplotlib's font cache (``fontlist-v*.json``) is built once, by a trusted boot of
the guest (``build_font_cache``), stored in the data directory with a checksum, and copied into
each run's ``MPLCONFIGDIR``: runs never rebuild it (a run that cannot get it builds its own).

``plt.show()`` on Agg is matplotlib's own no-op: it draws nothing and warns that the canvas is
non-interactive; save figures with ``savefig`` (files under ``/`` come back in ``Result.files``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import posixpath
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Final

from .._exceptions import RuntimeUnavailable
from .._guestfs import Tree
from .._mounts import CONTROL, Preopen
from .._roots import remove_tree, roots
from .._workspace import write_beneath
from . import _cache
from ._binary import SCIENTIFIC_WASM_SHA256, STDLIB_GUEST, STDLIB_NAME, Binary

__all__ = [
    "DATA_VERSION",
    "LAYOUT",
    "MPL_GUEST",
    "SCRATCH_GUEST",
    "Scratch",
    "build_font_cache",
    "data_dir",
    "env_defaults",
    "font_cache",
    "merge_env",
    "preopens",
]

DATA_VERSION: Final = "1"
MPL_MEMBER: Final = "matplotlib/mpl-data.zip"  # the inner archive in the stdlib zip
MPL_GUEST: Final = f"{STDLIB_GUEST}/{STDLIB_NAME}/matplotlib/mpl-data"  # Path(matplotlib.__file__).with_name(...)
SCRATCH_GUEST: Final = f"{CONTROL}/tmp"  # inside execr's reserved directory: no mount can go there
MPLCONFIG_GUEST: Final = f"{SCRATCH_GUEST}/matplotlib"
FONT_CACHE_PREFIX: Final = "fontlist-v"
MANIFEST: Final = "manifest.json"
MAX_FONT_CACHE: Final = 1 << 20  # bytes: a font list is ~30 KB
#: The guest paths this module adds to a snapshot's frozen preopen table (part of its cache key).
LAYOUT: Final = f"{MPL_GUEST};{SCRATCH_GUEST};env={MPLCONFIG_GUEST};v{DATA_VERSION}"


@dataclasses.dataclass(frozen=True)
class _DataDir:
    path: Path
    mpl: Path


def data_dir(binary: Binary) -> Path | None:
    """Where ``binary``'s extracted package data lives (None: a runtime without a stdlib zip)."""
    if binary.stdlib is None or binary.stdlib_sha256 is None or binary.sha256 != SCIENTIFIC_WASM_SHA256:
        return None  # only the scientific runtime has package data (the default one's zip is the stdlib alone)
    return binary.stdlib.parent / f"scientific-data-{binary.stdlib_sha256[:16]}-v{DATA_VERSION}"


def preopens(binary: Binary) -> list[Preopen]:
    """The read-only data directories of ``binary`` (extracted and verified on first use in a process)."""
    folder = data_dir(binary)
    if folder is None or binary.stdlib is None or binary.stdlib_sha256 is None:
        return []
    placed = _placed(folder, binary.stdlib / STDLIB_NAME, binary.stdlib_sha256)
    return [Preopen(str(placed.mpl), MPL_GUEST, False)]


def env_defaults(binary: Binary) -> tuple[tuple[str, str], ...]:
    """Environment a run of ``binary`` gets unless the request sets the same names."""
    if data_dir(binary) is None:
        return ()
    return (("MPLBACKEND", "Agg"), ("MPLCONFIGDIR", MPLCONFIG_GUEST))


# -- extraction ------------------------------------------------------------------------------------


def _member_path(name: str) -> tuple[str, ...]:
    """A member's relative path, or ``RuntimeUnavailable`` for one that could leave its directory."""
    parts = tuple(name.split("/"))
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\0" in name
        or any(p in ("", ".", "..") for p in parts)
        or posixpath.normpath(name) != name
    ):
        raise RuntimeUnavailable(f"the scientific runtime's matplotlib data holds an unsafe member {name!r}")
    return parts


def _inner_archive(zip_path: Path, want: str) -> bytes:
    """The inner mpl-data archive, read from zip bytes whose SHA-256 is checked here (no second read)."""
    data = zip_path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise RuntimeUnavailable(f"the stdlib zip at {str(zip_path)!r} changed (SHA-256 {got}, expected {want})")
    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        try:
            return outer.read(MPL_MEMBER)  # zipfile checks the member's CRC-32
        except KeyError as e:
            raise RuntimeUnavailable(f"the stdlib zip has no {MPL_MEMBER}") from e


def _extract(folder: Path, zip_path: Path, want: str) -> None:
    """Extract into a new directory next to ``folder`` and swap it in (the old one is removed)."""
    inner = _inner_archive(zip_path, want)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        manifest: dict[str, list[int | str]] = {}
        dirs: set[Path] = {tmp / "mpl-data"}
        (tmp / "mpl-data").mkdir()
        with zipfile.ZipFile(io.BytesIO(inner)) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                kind = stat.S_IFMT(info.external_attr >> 16)
                if kind and kind != stat.S_IFREG:
                    raise RuntimeUnavailable(f"matplotlib data member {info.filename!r} is not a regular file")
                parts = _member_path(info.filename)
                body = z.read(info)
                target = tmp.joinpath("mpl-data", *parts)
                for depth in range(1, len(parts)):
                    parent = tmp.joinpath("mpl-data", *parts[:depth])
                    if parent not in dirs:
                        parent.mkdir()
                        dirs.add(parent)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
                with os.fdopen(fd, "wb") as f:
                    f.write(body)
                manifest["/".join(parts)] = [len(body), hashlib.sha256(body).hexdigest()]
        _cache.atomic_write(tmp / MANIFEST, json.dumps(manifest, sort_keys=True).encode())
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            os.chmod(d, 0o555)
        if folder.exists():
            _remove(folder)
        os.replace(tmp, folder)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    """Remove a data directory execr made read-only (links are never followed)."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    for root, dirnames, _files in os.walk(path, followlinks=False):
        for name in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o755, follow_symlinks=False)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)
    remove_tree(str(path))


def _intact(folder: Path) -> bool:
    """Whether ``folder`` holds exactly its manifest's files (regular, unlinked, same size and SHA-256)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
        mpl = folder / "mpl-data"
        if mpl.is_symlink() or not mpl.is_dir():
            return False
        seen: set[str] = set()
        for root, dirnames, files in os.walk(mpl, followlinks=False):
            for name in dirnames:
                if os.path.islink(os.path.join(root, name)):
                    return False
            for name in files:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, mpl).replace(os.sep, "/")
                st = os.lstat(path)
                size, digest = manifest.get(rel, (None, None))
                if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_mode & 0o222:
                    return False
                with open(path, "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != digest:
                        return False
                seen.add(rel)
        return seen == set(manifest)
    except (OSError, ValueError, TypeError, AttributeError):
        return False


@cache
def _placed(folder: Path, zip_path: Path, want: str) -> _DataDir:
    """The verified data directory (extracted or repaired under the cache lock; once per process)."""
    lock = folder.with_name(folder.name + ".lock")
    try:
        with _cache.locked(lock):
            if not _intact(folder):
                _extract(folder, zip_path, want)
                if not _intact(folder):
                    raise RuntimeUnavailable(f"the extracted matplotlib data in {str(folder)!r} does not verify")
    except OSError as e:
        raise RuntimeUnavailable(f"cannot place the scientific runtime's package data in {str(folder)!r}: {e}") from e
    return _DataDir(folder, folder / "mpl-data")


# -- matplotlib's font cache -----------------------------------------------------------------------


def _check_font_cache(data: bytes) -> bool:
    """A font list as matplotlib writes it, naming only fonts of the data directory (matplotlib keeps
    those relative to it)."""
    if len(data) > MAX_FONT_CACHE:
        return False
    try:
        fm = json.loads(data)
        entries = [*fm["ttflist"], *fm["afmlist"]]
        names = [str(e["fname"]) for e in entries]
        return isinstance(fm["_version"], str) and all(
            n.startswith(("fonts/", MPL_GUEST + "/fonts/")) and ".." not in n.split("/") for n in names
        )
    except (ValueError, TypeError, KeyError):
        return False


def font_cache(binary: Binary) -> dict[str, bytes]:
    """The stored font list(s) (name -> bytes; empty until ``build_font_cache`` ran)."""
    folder = data_dir(binary)
    if folder is None:
        return {}
    return _font_cache(folder)


def _font_cache(folder: Path) -> dict[str, bytes]:
    out = {}
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(FONT_CACHE_PREFIX) and n.endswith(".json"))
    except OSError:
        return {}
    for name in names:
        data = _cache.read_verified(folder / name)
        if data is not None and _check_font_cache(data):
            out[name] = data
    return out


def store_font_cache(binary: Binary, scratch: Path) -> list[str]:
    """Keep the font lists a trusted boot wrote under ``scratch/matplotlib``; the names stored."""
    folder = data_dir(binary)
    if folder is None:
        return []
    stored = []
    source = scratch / "matplotlib"
    for name in sorted(os.listdir(source)) if source.is_dir() else []:
        if name.startswith(FONT_CACHE_PREFIX) and name.endswith(".json") and "/" not in name:
            path = source / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if _check_font_cache(data) and _cache.write_verified(folder / name, data):
                stored.append(name)
    return stored


#: The trusted turn that makes matplotlib build its font list into the scratch directory.
FONT_BOOT: Final = (
    "import os\n"
    f"os.environ['MPLCONFIGDIR'] = {MPLCONFIG_GUEST!r}\n"
    "os.environ['MPLBACKEND'] = 'Agg'\n"
    "import matplotlib.font_manager\n"
)


def build_font_cache(boot: Callable[[Scratch, bytes], object], binary: Binary) -> list[str]:
    """Build matplotlib's font list in a trusted guest boot and store it; the names stored.

    ``boot(scratch, source)`` runs ``source`` in one turn of a fresh instance of ``binary``
    whose scratch directory is ``scratch`` (empty), and returns when the turn ended.
    """
    with Scratch(binary, seed=False) as scratch:
        scratch.trees()
        boot(scratch, FONT_BOOT.encode())
        return store_font_cache(binary, Path(scratch.path))


# -- the per-run scratch directory -----------------------------------------------------------------


class Scratch:
    """One run's scratch directory at ``SCRATCH_GUEST``, made by ``trees()`` and given back by ``close()``.

    ``seed``: copy the stored font list into ``MPLCONFIGDIR`` (what runs get). ``usage`` is
    (entries, bytes) of the seed: content there before the run, like a mount's.
    """

    def __init__(self, binary: Binary, *, seed: bool = True) -> None:
        self.path = ""
        self.usage = (0, 0)
        self._folder = data_dir(binary)
        self._seed = seed

    def trees(self) -> list[Tree]:
        """The scratch directory as a writable tree, made now (none for a runtime without one)."""
        if self._folder is None:
            return []
        if not self.path:
            self.path = roots.take()
            files = _font_cache(self._folder) if self._seed else {}
            for name, data in files.items():
                write_beneath(self.path, f"matplotlib/{name}", data)
            if files:
                self.usage = (1 + len(files), sum(len(d) for d in files.values()))
        return [Tree(SCRATCH_GUEST, self.path, True, fresh=True)]

    def close(self) -> None:
        """Give the directory back (removed in the background unless it was left empty; idempotent)."""
        path, self.path = self.path, ""
        if path:
            roots.give(path)

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_env(defaults: Iterable[tuple[str, str]], env: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``env`` after the ``defaults`` it does not set itself (one entry per name)."""
    out = dict(defaults)
    out.update(env)
    return list(out.items())


def iter_data_files(binary: Binary) -> Iterator[str]:
    """The guest paths of the extracted data files (for ``info`` and tests)."""
    folder = data_dir(binary)
    if folder is None:
        return
    try:
        manifest = json.loads((folder / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return
    for rel in sorted(manifest):
        yield f"{MPL_GUEST}/{rel}"
