"""Preload sets: snapshots that already have the heavy modules a run's code imports.

A snapshot pre-imports a fixed list (numpy and pandas for the scientific runtime); anything
else a run imports is paid on every run (scipy 1.5 s, scikit-learn 1.9 s, statsmodels 2.5 s).
A *preload set* is another snapshot of the same runtime with more modules imported, and runs
pick one from the modules their code imports.

- **Reading the imports** (``_imports``). ``imports_of`` walks the code's AST (it is parsed, never run) for
  absolute imports and literal ``__import__``/``importlib.import_module`` calls, and keeps the
  top-level names. The names execr knows (``GROUPS``: scipy, sklearn, statsmodels, sympy,
  matplotlib, seaborn, networkx, ...) expand to the submodules people use (``sklearn`` imports
  ``sklearn.linear_model``, ``sklearn.model_selection``, ...) and a short warm-up that fills
  the caches a first call would (a tiny fit: narwhals' plugin scan alone costs 100 ms a run).
- **Picking.** A run takes the loaded or stored set that covers the most of what its code
  imports (weighted by import cost; ties: the smaller image), else the runtime's own snapshot.
  Guessing wrong is harmless: a module the set lacks is imported at run time, and one it has
  but the code does not use only sits in ``sys.modules`` (as numpy and pandas already do).
- **Building.** On demand, in the background, once the same imports have been seen
  ``EXECR_PRELOAD_AFTER`` times (default 3; 0: never) in this process; or ahead, with
  ``Runtime(preload=...)``, ``Runtime.warmup(preload=...)``, ``execr warmup --preload
  sklearn,scipy`` or a request's ``preload``. Every set contains the runtime's default preload
  (numpy, pandas) too.
- **No compile.** A set is a *memory image*: the plain module (compiled once, ~2 min) booted
  with the set's imports, its linear memory written to a file (sparse) with the stack pointer
  and entry addresses beside it. Runs instantiate the plain module and map the image over its
  memory copy-on-write (``_sandbox._overlay``): a set costs a boot (seconds), not a compile
  (minutes), and its disk is the non-zero part of the memory (~90 MB for numpy + pandas +
  sklearn + scipy), not a 350 MB compiled module.
- **Switches.** ``EXECR_PRELOAD_SETS=0`` turns picking by imports off (a configured or
  requested preload still applies); ``EXECR_PRELOAD_AFTER=0`` only stops building on demand.
- **Disk** (``_set_store``). Sets live in the cache directory (``<runtime>-python-<version>-set-<key>``, the
  key covering everything the base snapshot's does plus the module list), each file written
  atomically with a checksum that is verified before use. The least recently used sets are
  removed past ``EXECR_PRELOAD_BUDGET`` bytes (default 2 GiB).

The mechanism only needs a flavor whose snapshot instances hold all their state in linear
memory and the stack pointer (``_snapshot.recyclable``), which execr's own builds also are: the
default runtime can use it by listing its own ``GROUPS``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from .._exceptions import RuntimeUnavailable
from .._mounts import SLOTS
from .._process import Phase, at_exit
from .._sandbox import BootImage, Compiled, Host
from . import _cache, _datafiles, _snapshot
from ._binary import Binary
from ._flavors import Flavor
from ._imports import GROUPS, Group, expand, imports_of, provides, warm_source
from ._set_store import IMAGE_VERSION, SetInfo, SetStore, budget, read_info, write_set
from ._snapshot import Snapshot

__all__ = [
    "GROUPS",
    "IMAGE_VERSION",
    "Group",
    "SetInfo",
    "Sets",
    "budget",
    "expand",
    "imports_of",
    "threshold",
    "warm_source",
]


def threshold() -> int:
    """How many runs with the same imports make a set worth building (``EXECR_PRELOAD_AFTER``; 0: never)."""
    try:
        return max(0, int(os.environ.get("EXECR_PRELOAD_AFTER", "3")))
    except ValueError:
        return 3


class Sets(SetStore):
    """One Runtime's preload sets of one flavor: stored and loaded (``SetStore``), picked, counted and built.

    ``plain()`` returns the compiled plain module (the sets' instances are its instances);
    thread-safe.
    """

    def __init__(
        self,
        flavor: Flavor,
        binary: Binary,
        cache_dir: Path,
        engine: str,
        plain: Callable[[], Compiled],
        progress: Callable[[str], None],
    ) -> None:
        super().__init__(flavor, binary, cache_dir, engine, plain)
        self._progress = progress
        self._seen: Counter[frozenset[str]] = Counter()
        self._queued: set[tuple[str, ...]] = set()
        self._failed: dict[tuple[str, ...], str] = {}
        self._jobs: queue.SimpleQueue[tuple[str, ...] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._cancel = threading.Event()
        self._closed = False
        self._fonts: bool | None = None  # None: not checked yet
        self._said: set[str] = set()
        self.base = tuple(flavor.default_preload)
        _live.add(self)

    # -- what Runtime calls --

    def choose(
        self,
        code: str,
        base: Snapshot,
        preload: Iterable[str],
        memory_limit: int | None,
        request: Iterable[str] | None = None,
    ) -> Snapshot:
        """The snapshot for one run: the request's own set (``request``: built now if needed), else the
        best set for ``code``'s imports over the floor (``base``, or the set for a non-default ``preload``)."""
        if request:
            try:
                return self.ensure(request)
            except RuntimeUnavailable as e:  # e.g. a module that does not import: the run shows it
                self._once(f"preload {', '.join(request)}: {e}")
        floor, floor_modules = base, tuple(preload)
        if floor_modules != self.base:
            try:
                floor = self.ensure(floor_modules)
            except RuntimeUnavailable as e:
                self._once(f"preload {', '.join(floor_modules)}: {e}; using the {self.flavor.name} snapshot")
                floor_modules = self.base
        if os.environ.get("EXECR_PRELOAD_SETS", "1") == "0":  # no import-aware picking
            return floor
        if self._fonts is None:
            self._fonts = False
            if _datafiles.data_dir(self.binary) is not None and not _datafiles.font_cache(self.binary):
                self.submit(())  # matplotlib's font list first: runs that plot then never build it
        return self.pick(code, floor, memory_limit, floor_modules)

    def warm(self, preload: Iterable[str]) -> None:
        """Build now what runs will want: matplotlib's font list and the set for a non-default ``preload``."""
        self.font_cache()
        self._fonts = True
        if tuple(preload) != self.base:
            self.ensure(preload)

    def _once(self, message: str) -> None:
        with self._lock:
            if message in self._said:
                return
            self._said.add(message)
        self._progress(message)

    # -- picking --

    def pick(self, code: str, floor: Snapshot, memory_limit: int | None, floor_modules: Iterable[str] = ()) -> Snapshot:
        """The snapshot a run of ``code`` should take: ``floor`` (which imported ``floor_modules`` beyond
        the base) or a set covering more of its imports."""
        wanted = imports_of(code) & (GROUPS.keys() | {p for s in self.stored() for p in s.provides})
        wanted -= provides((*self.base, *floor_modules))
        if not wanted:
            return floor
        best: SetInfo | None = None
        for info in self.stored():
            if memory_limit is not None and info.length > memory_limit:
                continue
            score = info.score(wanted)
            if score > 0 and (best is None or (score, -info.length) > (best.score(wanted), -best.length)):
                best = info
        if best is None or not wanted <= best.provides:
            self._note(frozenset(wanted))
        if best is None:
            return floor
        try:
            return self.load(best)
        except RuntimeUnavailable as e:
            self._progress(f"preload set {', '.join(best.modules)} unusable ({e}); using the snapshot")
            with self._lock:
                self._stored.pop(best.key, None)
            return floor

    def _note(self, wanted: frozenset[str]) -> None:
        """Count a run whose imports no set covers; queue a set for them once seen ``threshold()`` times."""
        after = threshold()
        if after == 0 or not wanted <= GROUPS.keys():
            return
        with self._lock:
            self._seen[wanted] += 1
            if self._seen[wanted] >= after:
                self.submit(expand(sorted(wanted, key=list(GROUPS).index), self.base))

    # -- loading --

    def ensure(self, items: Iterable[str]) -> Snapshot:
        """The set for ``items`` (expanded, plus the base preload): loaded, or built now (seconds)."""
        modules = expand(items, self.base)
        info = self.build(modules)
        return self.load(info)

    # -- building --

    def submit(self, modules: tuple[str, ...]) -> None:
        """Build the set for ``modules`` in the background (once; no-op when stored, queued or failed)."""
        with self._lock:
            if self._closed or modules in self._queued or modules in self._failed:
                return
            if modules and any(s.modules == modules for s in self.stored()):
                return
            self._queued.add(modules)
            self._jobs.put(modules)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="execr-preload-sets", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            modules = self._jobs.get()
            if modules is None or self._cancel.is_set():
                return
            try:
                if modules:
                    self.build(modules)
                else:
                    self.font_cache()
            except Exception as e:  # reported once; runs go on without this set
                with self._lock:
                    self._failed[modules] = str(e)
                if not self._cancel.is_set():
                    self._progress(f"preload set {', '.join(modules)} not built: {e}")
            finally:
                with self._lock:
                    self._queued.discard(modules)

    def build(self, modules: tuple[str, ...]) -> SetInfo:
        """Store the set for ``modules`` (boot, capture, write; under the cache lock); its info."""
        folder = self._dir(modules)
        with _cache.locked(folder.with_name(folder.name + ".lock")):
            info = read_info(folder)
            if info is not None and info.modules == modules:
                return info
            started = time.monotonic()
            self._progress(f"building the preload set {', '.join(modules)} (seconds; no compile)...")
            plain = self._plain()
            boot = _boot(plain.host, plain, self.flavor, self.binary, modules, self._cancel)
            entry, rng = _snapshot._reactor_entry_point(boot)
            slots = tuple(_snapshot._find_slot(boot.memory, i) for i in range(SLOTS))
            info = write_set(folder, self.key(modules), modules, boot, entry, slots, rng, _recyclable(self.binary))
            self._progress(
                f"preload set ready in {time.monotonic() - started:.1f} s: {info.length >> 20} MiB of memory, "
                f"{info.disk >> 20} MiB on disk"
            )
        with self._lock:
            self._stored[info.key] = info
        self.evict(keep=info.key)
        return info

    def font_cache(self) -> None:
        """Build matplotlib's font list once (a trusted boot) unless stored; runs then never rebuild it."""
        if _datafiles.data_dir(self.binary) is None or _datafiles.font_cache(self.binary):
            return
        plain = self._plain()

        def boot(scratch: _datafiles.Scratch, source: bytes) -> object:
            return _boot(plain.host, plain, self.flavor, self.binary, (), self._cancel, scratch=scratch, turn=source)

        _datafiles.build_font_cache(boot, self.binary)

    def close(self) -> None:
        """Stop building (an in-progress boot is cancelled) and release the loaded sets."""
        with self._lock:
            self._closed = True
            self._cancel.set()
            loaded, self._loaded = self._loaded, {}
            worker = self._worker
        self._jobs.put(None)
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=30)
        for snap in loaded.values():
            snap.compiled.release()


_live: set[Sets] = set()


def _close_all() -> None:
    for sets in list(_live):
        sets.close()


at_exit(Phase.RUNS, _close_all)


def _boot(
    host: Host,
    plain: Compiled,
    flavor: Flavor,
    binary: Binary,
    modules: tuple[str, ...],
    cancel: threading.Event,
    *,
    scratch: _datafiles.Scratch | None = None,
    turn: bytes | None = None,
) -> BootImage:
    """Boot ``plain`` with the snapshot layout: ``modules`` imported and warmed, then the bootstrap
    (or just ``turn``); refuse an image with a guest file left open."""
    own = scratch is None
    with _snapshot.boot_launch(flavor, binary, scratch, cancel) as (launch, files, scratch):
        turns = (turn,) if turn is not None else (warm_source(modules).encode(), flavor.bootstrap(modules).encode())
        image = host.boot(plain, launch, turns=turns)
        if turn is None and files.open_count:
            raise RuntimeUnavailable(
                f"importing {', '.join(modules)} leaves {files.open_count} file(s) open: it cannot be preloaded"
            )
        if own and "matplotlib" in provides(modules):
            _datafiles.store_font_cache(binary, Path(scratch.path))
        return image


_recyclable_by_sha: dict[str, bool] = {}


def _recyclable(binary: Binary) -> bool:
    """``_snapshot.recyclable`` of the binary, scanned once per process."""
    if binary.sha256 not in _recyclable_by_sha:
        _recyclable_by_sha[binary.sha256] = _snapshot.recyclable(binary.data)
    return _recyclable_by_sha[binary.sha256]
