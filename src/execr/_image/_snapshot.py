"""Snapshot: building the pre-initialized CPython module that makes a fresh run cost milliseconds.

Build (once per binary hash, wasmtime version, engine config and bootstrap version):
instrument the binary to export its stack pointer and function table, boot it with the
bootstrap until it aborts, capture linear memory and the stack pointer, rebuild the module
with that memory as its data, and compile it. The result (and the plain module) is cached
on disk, written atomically under a file lock.

A reactor flavor (the scientific runtime) boots differently: ``_initialize``, then the
bootstrap (with its pre-imports) in one ``turn``; memory is captured after the turn returns
and the mailbox is located from the address the bootstrap prints. Each run enters with a
``turn`` of ``__execr_entry__()``. Its key also covers the stdlib zip and the preload list.

A snapshot's instances may be recycled between runs (see ``_sandbox``) when the binary's
only mutable global is the stack pointer and no function can change a table: then linear
memory, that global and WASI hold all of an instance's state. Checked once per build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import _mailbox
from .._exceptions import RuntimeUnavailable
from .._guestfs import Caps, GuestFiles, Tree
from .._limits import Limits
from .._mounts import SLOTS, slot_placeholder
from .._output import Capture
from .._sandbox import ENGINE_CONFIG, WASMTIME_VERSION, BootImage, Compiled, EntryPoint, Host, Launch
from .._workspace import Workspace
from . import _cache, _datafiles, _guest, _wasm
from ._binary import Binary
from ._flavors import DEFAULT, Flavor

__all__ = ["Artifacts", "Snapshot", "artifacts", "cache_key", "load", "load_plain"]

TP_CALL_OFFSET = 64  # PyTypeObject.tp_call in a 32-bit CPython 3.12
BYTEARRAY_START_OFFSET = 20  # PyByteArrayObject.ob_start in a 32-bit CPython 3.12
FIRST_SLOT_FD = 6

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """The compiled snapshot module and how to enter it."""

    compiled: Compiled
    entry: EntryPoint
    slots: tuple[int, ...]  # guest-memory address of each mount slot's path string
    #: Addresses of Mersenne Twister keys (624 words) the host fills with OS entropy per run;
    #: empty when the guest must reseed itself.
    rng: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Artifacts:
    """Cache file locations for one key."""

    dir: Path
    plain_dir: Path | None = None  # where the plain module lives, when it does not depend on the bootstrap

    @property
    def plain(self) -> Path:
        return (self.plain_dir or self.dir) / "plain.cwasm"

    @property
    def plain_lock(self) -> Path:
        return self.lock if self.plain_dir is None else self.plain_dir.with_name(self.plain_dir.name + ".lock")

    @property
    def dirs(self) -> tuple[Path, ...]:
        return (self.dir,) if self.plain_dir is None else (self.plain_dir, self.dir)

    @property
    def snapshot(self) -> Path:
        return self.dir / "snapshot.cwasm"

    @property
    def meta(self) -> Path:
        return self.dir / "snapshot.json"

    @property
    def lock(self) -> Path:
        return self.dir.with_name(self.dir.name + ".lock")


def cache_key(
    binary: Binary, flavor: Flavor = DEFAULT, preload: tuple[str, ...] = (), engine: str = ENGINE_CONFIG
) -> str:
    """Everything a cached snapshot depends on (``engine``: the Engine's configuration)."""
    parts = [
        binary.sha256,
        binary.stdlib_sha256 or "",
        WASMTIME_VERSION,
        engine,
        f"instrument-{_wasm.INSTRUMENT_VERSION}",
    ]
    parts += [_guest.BOOTSTRAP_VERSION, flavor.bootstrap(preload), str(SLOTS)]
    if flavor.reactor:
        parts += [flavor.name, "preload=" + ",".join(preload), _datafiles.LAYOUT]
    return _cache.digest(*parts)


def artifacts(
    binary: Binary,
    cache_dir: Path,
    flavor: Flavor = DEFAULT,
    preload: tuple[str, ...] = (),
    engine: str = ENGINE_CONFIG,
) -> Artifacts:
    """Where the modules of ``binary`` (compiled for an Engine configured as ``engine``) live under ``cache_dir``."""
    stem = f"{flavor.name}-python-{flavor.python_version}"
    plain_key = _cache.digest(
        flavor.name, binary.sha256, WASMTIME_VERSION, engine, f"instrument-{_wasm.INSTRUMENT_VERSION}"
    )
    return Artifacts(
        cache_dir / f"{stem}-{cache_key(binary, flavor, preload, engine)}",
        plain_dir=cache_dir / f"{stem}-plain-{plain_key}",
    )


def load_plain(host: Host, binary: Binary, where: Artifacts, progress: Progress, flavor: Flavor = DEFAULT) -> Compiled:
    """The plain module (the binary with its stack pointer and table exported), compiled."""
    with _cache.locked(where.plain_lock):
        compiled = host.load(_cache.read_verified(where.plain))
        if compiled is None:
            what = f"the {flavor.name} CPython {flavor.python_version} runtime"
            progress(f"compiling {what} (one time, {'1-2 min' if flavor.reactor else '~10-30 s'})...")
            compiled = host.compile(_wasm.instrument(binary.data))
            _cache.write_verified(where.plain, compiled.serialize())
        return compiled


def _find_slot(image: bytes, index: int) -> int:
    """Address of the slot's path string in wasi-libc's preopen table (kept without the leading '/')."""
    needle = slot_placeholder(index).lstrip("/").encode() + b"\0"
    fd = FIRST_SLOT_FD + index
    at = image.find(needle)
    while at != -1:
        if image.find(struct.pack("<II", at, fd)) != -1:
            return at
        at = image.find(needle, at + 1)
    raise RuntimeUnavailable(f"snapshot: mount slot {index} not found in the preopen table")


def recyclable(module: bytes) -> bool:
    """Whether instances of ``module``'s snapshot can be reset by restoring memory and the stack pointer."""
    try:
        info = _wasm.module_info(module)
        writes = _wasm.table_writes(module)
    except ValueError:  # code this scanner cannot read: assume the worst
        return False
    mutable = sum(1 for _valtype, is_mutable, _init in info.globals if is_mutable)
    return info.imported_globals == 0 and mutable == 1 and writes is False


def _entry_point(boot: BootImage) -> tuple[EntryPoint, tuple[int, ...]]:
    line = next((ln for ln in boot.stdout.decode(errors="replace").splitlines() if ln.startswith("EXECR-BOOT ")), None)
    if line is None:
        raise RuntimeUnavailable(f"snapshot bootstrap printed no addresses; stderr: {boot.stderr[-2000:]!r}")
    entry_id, args_id, type_id, mailbox_id = (int(x) for x in line.split()[1:])
    image = boot.memory
    (table_index,) = struct.unpack_from("<I", image, type_id + TP_CALL_OFFSET)
    (mailbox,) = struct.unpack_from("<I", image, mailbox_id + BYTEARRAY_START_OFFSET)
    if image[mailbox : mailbox + len(_guest.MAILBOX_MARK)] != _guest.MAILBOX_MARK:
        raise RuntimeUnavailable("snapshot: the entry mailbox is not where the interpreter layout says")
    slots = tuple(_find_slot(image, i) for i in range(SLOTS))
    return EntryPoint(table_index, (entry_id, args_id, 0), mailbox), slots


def _immortalize(boot: BootImage, mailbox: int) -> tuple[BootImage, int]:
    """The image with every object the bootstrap listed made immortal (see ``_guest.IMMORTAL``), and
    how many; the image as it is when the bootstrap listed none (another CPython) or the list does
    not check out (then nothing is changed: immortal objects are only a speed-up)."""
    image = boot.memory
    at, count, none = struct.unpack_from("<III", image, mailbox + _mailbox.PAYLOAD_AT)
    if count == 0 or at + 4 * count > len(image) or none + 4 > len(image):
        return boot, 0
    if struct.unpack_from("<I", image, none)[0] != _guest.IMMORTAL:  # None is immortal: the layout is right
        return boot, 0
    ids = struct.unpack_from(f"<{count}I", image, at)
    if any(i % 4 or i + 8 > len(image) for i in ids):
        return boot, 0
    patched = bytearray(image)
    count_bytes = struct.pack("<I", _guest.IMMORTAL)
    for i in ids:
        patched[i : i + 4] = count_bytes
    patched[mailbox + _mailbox.PAYLOAD_AT : mailbox + _mailbox.PAYLOAD_AT + 12] = bytes(12)
    return dataclasses.replace(boot, memory=bytes(patched)), count


def _find_key(image: bytes, key: bytes, counter: int) -> int | None:
    """The one copy of ``key`` whose generator position (624, just before or after it) marks live state."""
    found = []
    at = image.find(key)
    while at != -1:
        if struct.unpack_from("<i", image, at + counter)[0] == 624:
            found.append(at)
        at = image.find(key, at + 1)
    return found[0] if len(found) == 1 else None


def _rng_states(image: bytes, numpy_loaded: bool) -> tuple[int, ...]:
    """Where ``random``'s state (``int index; uint32 state[624]``) and numpy.random's legacy MT19937
    (``uint32 key[624]; int pos``) live, from the keys the bootstrap set; () if not both found."""
    keys = [_find_key(image, _guest.rng_key(numpy=False), -4)]
    if numpy_loaded:
        keys.append(_find_key(image, _guest.rng_key(numpy=True), 624 * 4))
    return () if None in keys else tuple(k for k in keys if k is not None)


def _reactor_entry_point(boot: BootImage) -> tuple[EntryPoint, tuple[int, ...]]:
    """The mailbox is the MARK whose address the bytearray the bootstrap printed points to."""
    line = next((ln for ln in boot.stdout.decode(errors="replace").splitlines() if ln.startswith("EXECR-BOOT ")), None)
    if line is None:
        raise RuntimeUnavailable(f"snapshot bootstrap printed no address; stderr: {boot.stderr[-2000:]!r}")
    mailbox_id, numpy_loaded = (int(x) for x in line.split()[1:3])
    image = boot.memory
    header = image[mailbox_id : mailbox_id + 64]
    found = []
    at = image.find(_guest.MAILBOX_MARK)
    while at != -1:
        pointer = struct.pack("<I", at)
        if any(header[i : i + 4] == pointer for i in range(0, len(header) - 3, 4)):
            found.append(at)
        at = image.find(_guest.MAILBOX_MARK, at + 1)
    if len(found) != 1:
        raise RuntimeUnavailable(f"snapshot: the entry mailbox is not where the bytearray points ({len(found)} found)")
    entry = EntryPoint(0, (0, 0, 0), found[0], turn=_guest.TURN_ENTRY)
    return entry, _rng_states(image, bool(numpy_loaded))


@contextlib.contextmanager
def boot_launch(
    flavor: Flavor,
    binary: Binary,
    scratch: _datafiles.Scratch | None = None,
    cancel: threading.Event | None = None,
) -> Iterator[tuple[Launch, GuestFiles, _datafiles.Scratch]]:
    """A boot's ``Launch``: execr's fixed layout, the flavor's preopens and a scratch directory (made
    here unless given), no limits; a command runs the bootstrap, a reactor calls ``_initialize``."""
    ws = Workspace(root=None, mounts=(), packages=None, files={})
    own = scratch is None
    scratch = scratch or _datafiles.Scratch(binary)  # the scientific runtime's per-run directory (MPLCONFIGDIR)
    stdout, stderr = Capture(None), Capture(1 << 20)
    try:
        trees = ws.trees({}) + [Tree(p.guest, p.host, p.writable) for p in flavor.preopens(binary)] + scratch.trees()
        with GuestFiles(trees, stdin=b"", stdout=stdout, stderr=stderr, caps=Caps()) as files:
            launch = Launch(
                files=files,
                stdout=stdout,
                stderr=stderr,
                limits=Limits(timeout=None, memory_limit=None, fuel=None),
                argv=("python", "-c", _guest.BOOTSTRAP),
                cancel=cancel,
            )
            if flavor.reactor:
                launch.argv, launch.start = ("python",), ("_initialize",)
                launch.env = _datafiles.env_defaults(binary)
            yield launch, files, scratch
    finally:
        ws.close()
        if own:
            scratch.close()


def _boot(host: Host, plain: Compiled, flavor: Flavor, binary: Binary, preload: tuple[str, ...]) -> BootImage:
    with boot_launch(flavor, binary) as (launch, _files, _scratch):
        if flavor.reactor:
            return host.boot(plain, launch, turns=(flavor.bootstrap(preload).encode(),))
        return host.boot(plain, launch)


def _from_cache(host: Host, binary: Binary, where: Artifacts) -> Snapshot | None:
    """The cached snapshot, or None when absent or unusable (then it is rebuilt; a bad entry is logged)."""
    meta = _cache.read_verified(where.meta)
    compiled = host.load(_cache.read_verified(where.snapshot)) if meta is not None else None
    if meta is None or compiled is None:
        return None
    try:
        info = json.loads(meta)
        args = tuple(int(a) for a in info["args"])
        turn = str(info.get("turn", "")).encode()
        entry = EntryPoint(int(info["table_index"]), (args[0], args[1], args[2]), int(info["mailbox"]), (), turn)
        slots = tuple(int(a) for a in info["slots"])
        rng = tuple(int(a) for a in info.get("rng", ()))
        if len(slots) != SLOTS:
            raise ValueError(f"{len(slots)} mount slots, expected {SLOTS}")
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        _cache.log.warning("execr: the snapshot metadata %s is unusable (%s); rebuilding the snapshot", where.meta, e)
        return None
    if "recycle" not in info:  # a cache entry from before the check existed
        info["recycle"] = recyclable(binary.data)
        _cache.write_verified(where.meta, json.dumps(info).encode())
    compiled.recycle = bool(info["recycle"])
    return Snapshot(compiled, entry, slots, rng)


def load(
    host: Host,
    binary: Binary,
    where: Artifacts,
    plain: Callable[[], Compiled],
    progress: Progress,
    flavor: Flavor = DEFAULT,
    preload: tuple[str, ...] = (),
) -> Snapshot:
    """The snapshot for ``binary``: from the cache, else built now (under the cache lock)."""
    with _cache.locked(where.lock):
        cached = _from_cache(host, binary, where)
        if cached is not None:
            return cached
        started = time.monotonic()
        if flavor.reactor:
            progress(f"building the {flavor.name} snapshot (one time, several minutes on 2 cores)...")
            progress(f"  booting CPython {flavor.python_version}, importing {', '.join(preload) or 'nothing extra'}...")
            boot = _boot(host, plain(), flavor, binary, preload)
            entry, rng = _reactor_entry_point(boot)
            slots = tuple(_find_slot(boot.memory, i) for i in range(SLOTS))
            if not rng:
                progress("  (random state not found in the image: runs reseed in the guest)")
        else:
            progress(f"building the {flavor.name} snapshot (one time, 10-60 s on 2 cores)...")
            progress(f"  booting CPython {flavor.python_version} with the bootstrap...")
            boot = _boot(host, plain(), flavor, binary, preload)
            entry, slots = _entry_point(boot)
            boot, immortal = _immortalize(boot, entry.mailbox)
            progress(f"  {immortal} objects made immortal")
            rng = _rng_states(boot.memory, numpy_loaded=False)
            if not rng:
                progress("  (random state not found in the image: runs reseed in the guest)")
        progress(f"  captured {len(boot.memory) >> 20} MiB of memory; rebuilding the module...")
        wasm = _wasm.rebuild(_wasm.instrument(binary.data), boot.memory, boot.stack_pointer)
        host.validate(wasm)
        progress("  compiling the snapshot module" + (" (the longest step: minutes)..." if flavor.reactor else "..."))
        compiled = host.compile(wasm)
        _cache.write_verified(where.snapshot, compiled.serialize())
        compiled.recycle = recyclable(binary.data)
        info = dataclasses.asdict(entry) | {"slots": list(slots), "turn": entry.turn.decode(), "rng": list(rng)}
        info |= {"recycle": compiled.recycle}
        info.pop("patches", None)
        _cache.write_verified(where.meta, json.dumps(info).encode())
        progress(f"snapshot ready in {time.monotonic() - started:.0f} s")
        return Snapshot(compiled, entry, slots, rng)
