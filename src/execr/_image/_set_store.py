"""Set store: one flavor's preload sets in the cache directory: named, scanned, loaded (verified) and evicted.

Sets live in the cache directory (``<runtime>-python-<version>-set-<key>``, the key covering
everything the base snapshot's does plus the module list), each file written atomically with
a checksum that is verified before use; an image is written sparsely (all-zero pages are
holes). The least recently used sets are removed past ``EXECR_PRELOAD_BUDGET`` bytes (default
2 GiB), those this runtime cannot use (made for another binary, engine, bootstrap or layout) first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from .._exceptions import RuntimeUnavailable
from .._mounts import SLOTS
from .._roots import remove_tree
from .._sandbox import BootImage, Compiled, EntryPoint, MemoryImage, overlay
from . import _cache, _datafiles, _snapshot
from ._binary import Binary
from ._flavors import Flavor
from ._imports import GROUPS, provides, warm_source
from ._snapshot import Snapshot

__all__ = ["IMAGE_VERSION", "SetInfo", "SetStore", "budget", "read_info", "remove", "write_set"]

IMAGE_VERSION: Final = "1"
_PAGE = 65536
_CHUNK = 1 << 20


def budget() -> int:
    """Bytes of disk the stored sets may take (``EXECR_PRELOAD_BUDGET``: bytes, or with K/M/G)."""
    raw = os.environ.get("EXECR_PRELOAD_BUDGET", "2G").strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1:], 1)
    try:
        return max(0, int(float(raw.rstrip("KMG")) * scale))
    except ValueError:
        return 2 << 30


@dataclasses.dataclass(frozen=True)
class SetInfo:
    """A stored set: its modules, what it provides, where it lives and its image's size."""

    key: str
    dir: Path
    modules: tuple[str, ...]
    provides: frozenset[str]
    length: int  # linear memory bytes (the instances' initial memory)
    disk: int  # bytes on disk

    def score(self, wanted: Iterable[str]) -> float:
        return sum(GROUPS[g].cost if g in GROUPS else 0.5 for g in wanted if g in self.provides)


class SetStore:
    """One Runtime's stored preload sets of one flavor: their names, the scan of the cache directory,
    loading one as a runnable snapshot, and the LRU budget.

    ``plain()`` returns the compiled plain module (the sets' instances are its instances);
    thread-safe.
    """

    def __init__(
        self, flavor: Flavor, binary: Binary, cache_dir: Path, engine: str, plain: Callable[[], Compiled]
    ) -> None:
        self.flavor, self.binary, self.cache_dir, self.engine = flavor, binary, cache_dir, engine
        self._plain = plain
        self._lock = threading.RLock()
        self._loaded: dict[str, Snapshot] = {}
        self._stored: dict[str, SetInfo] = {}
        self._scanned = 0.0

    # -- naming and storage --

    @property
    def stem(self) -> str:
        return f"{self.flavor.name}-python-{self.flavor.python_version}-set-"

    def key(self, modules: tuple[str, ...]) -> str:
        """Everything a stored set depends on: the base snapshot's key parts, the layout, its modules and warm-up."""
        snap_key = _snapshot.cache_key(self.binary, self.flavor, modules, self.engine)
        return _cache.digest(
            snap_key, f"image-{IMAGE_VERSION}", _datafiles.LAYOUT, str(SLOTS), *modules, warm_source(modules)
        )

    def _dir(self, modules: tuple[str, ...]) -> Path:
        return self.cache_dir / f"{self.stem}{self.key(modules)}"

    def stored(self, rescan: bool = False) -> list[SetInfo]:
        """The sets in the cache directory (re-read at most every 10 s unless ``rescan``)."""
        with self._lock:
            if rescan or time.monotonic() - self._scanned > 10:
                self._scanned = time.monotonic()
                found = {}
                try:
                    names = [
                        n for n in os.listdir(self.cache_dir) if n.startswith(self.stem) and not n.endswith(".lock")
                    ]
                except OSError:
                    names = []
                for name in names:
                    info = read_info(self.cache_dir / name)
                    # a set made for another binary, engine, bootstrap or layout is never used (evicted first)
                    if info is not None and info.key == self.key(info.modules) and name.endswith(info.key):
                        found[info.key] = info
                self._stored = found
            return list(self._stored.values())

    # -- loading --

    def load(self, info: SetInfo) -> Snapshot:
        """The set as a runnable snapshot (its image verified once per process)."""
        with self._lock:
            snap = self._loaded.get(info.key)
            if snap is not None:
                return snap
            meta = _cache.read_verified(info.dir / "set.json")
            if meta is None or not _image_ok(info.dir / "image.bin"):
                raise RuntimeUnavailable(f"the preload set in {str(info.dir)!r} is missing or corrupt")
            data = json.loads(meta)
            entry = EntryPoint(
                int(data["mailbox_table"]), (0, 0, 0), int(data["mailbox"]), (), str(data["turn"]).encode()
            )
            image = MemoryImage(info.dir / "image.bin", int(data["length"]), int(data["sp"]))
            try:
                compiled = overlay(self._plain(), image)
            except (OSError, ValueError) as e:
                raise RuntimeUnavailable(f"cannot map the preload set's image: {e}") from e
            compiled.recycle = bool(data["recycle"])
            snap = Snapshot(compiled, entry, tuple(int(a) for a in data["slots"]), tuple(int(a) for a in data["rng"]))
            self._loaded[info.key] = snap
            with contextlib.suppress(OSError):
                os.utime(info.dir / "used")  # the LRU stamp
            return snap

    # -- the budget --

    def evict(self, keep: str = "") -> list[str]:
        """Past ``budget()`` bytes, remove stored sets: first those this runtime cannot use (made for another
        binary, engine or bootstrap), then the least recently used (never ``keep``); the keys removed."""
        limit = budget()
        live = sorted(self.stored(rescan=True), key=lambda s: _used(s.dir))
        stale = sorted(self._stale(), key=lambda s: _used(s.dir))
        total = sum(s.disk for s in live) + sum(s.disk for s in stale)
        removed = []
        for info in [*stale, *live]:
            if total <= limit:
                break
            if info.key == keep:
                continue
            remove(info.dir)
            removed.append(info.key)
            total -= info.disk
        if removed:
            with self._lock:
                for key in removed:
                    self._stored.pop(key, None)
        return removed

    def _stale(self) -> list[SetInfo]:
        """Stored sets this runtime can never use (built for another binary, engine, bootstrap or layout)."""
        try:
            names = [n for n in os.listdir(self.cache_dir) if n.startswith(self.stem) and not n.endswith(".lock")]
        except OSError:
            return []
        live = {s.dir.name for s in self.stored()}
        infos = [read_info(self.cache_dir / n) for n in names if n not in live]
        return [i for i in infos if i is not None]


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        h.update(chunk)
        offset += len(chunk)
    return h.hexdigest()


def _image_ok(path: Path) -> bool:
    """Whether the image file matches its checksum sidecar."""
    try:
        want = path.with_name(path.name + ".sha256").read_text().strip()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except (OSError, UnicodeDecodeError):
        return False
    try:
        ok = _sha256_fd(fd) == want
    except OSError:
        ok = False
    finally:
        os.close(fd)
    if not ok:
        _cache.log.warning("execr: the preload set image %s is corrupt or truncated; it will be rebuilt", path)
    return ok


def _write_image(path: Path, memory: bytes) -> int:
    """Write ``memory`` sparsely (all-zero 64 KiB pages become holes), atomically, with a checksum; disk bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o444)
    try:
        view = memoryview(memory)
        zero = bytes(_PAGE)
        for offset in range(0, len(view), _PAGE):
            page = view[offset : offset + _PAGE]
            if page != zero:
                os.pwrite(fd, page, offset)
        os.ftruncate(fd, len(view))
        os.fsync(fd)
        disk = os.fstat(fd).st_blocks * 512
    finally:
        os.close(fd)
    try:
        _cache.atomic_write(path.with_name(path.name + ".sha256"), hashlib.sha256(memory).hexdigest().encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return disk


def write_set(
    folder: Path,
    key: str,
    modules: tuple[str, ...],
    boot: BootImage,
    entry: EntryPoint,
    slots: tuple[int, ...],
    rng: tuple[int, ...],
    recycle: bool,
) -> SetInfo:
    """Store a booted set in ``folder``: its image, then its description (what makes it visible); its info."""
    if len(boot.memory) % _PAGE:
        raise RuntimeUnavailable("the captured memory is not whole wasm pages")
    disk = _write_image(folder / "image.bin", boot.memory)
    meta = {
        "key": key,
        "modules": list(modules),
        "length": len(boot.memory),
        "sp": boot.stack_pointer,
        "mailbox": entry.mailbox,
        "mailbox_table": entry.table_index,
        "turn": entry.turn.decode(),
        "slots": list(slots),
        "rng": list(rng),
        "recycle": recycle,
        "disk": disk,
        "built": time.time(),
    }
    if not _cache.write_verified(folder / "set.json", json.dumps(meta).encode()):
        raise RuntimeUnavailable(f"cannot write the preload set into {str(folder)!r}")
    (folder / "used").touch()
    info = read_info(folder)
    if info is None:
        raise RuntimeUnavailable(f"the preload set in {str(folder)!r} did not read back")
    return info


def read_info(folder: Path) -> SetInfo | None:
    """A stored set's description (its image is checked when it is loaded), or None."""
    meta = _cache.read_verified(folder / "set.json")
    if meta is None:
        return None
    try:
        data = json.loads(meta)
        modules = tuple(str(m) for m in data["modules"])
        return SetInfo(str(data["key"]), folder, modules, provides(modules), int(data["length"]), int(data["disk"]))
    except (ValueError, TypeError, KeyError):
        return None


def _used(folder: Path) -> float:
    try:
        return os.stat(folder / "used").st_mtime
    except OSError:
        return 0.0


def remove(folder: Path) -> None:
    """Remove a stored set: renamed away first (a reader sees it whole or not at all), then deleted."""
    gone = folder.with_name(f".gone-{folder.name}-{os.getpid()}")
    try:
        os.replace(folder, gone)
    except OSError:
        return
    remove_tree(str(gone))
    with contextlib.suppress(OSError):
        os.unlink(folder.with_name(folder.name + ".lock"))
