"""Preload sets: snapshots that already have the heavy modules a run's code imports.

A snapshot pre-imports a fixed list (numpy and pandas for the scientific runtime); anything
else a run imports is paid on every run (scipy 1.5 s, scikit-learn 1.9 s, statsmodels 2.5 s).
A *preload set* is another snapshot of the same runtime with more modules imported, and runs
pick one from the modules their code imports.

- **Reading the imports.** ``imports_of`` walks the code's AST (it is parsed, never run) for
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
- **Disk.** Sets live in the cache directory (``<runtime>-python-<version>-set-<key>``, the
  key covering everything the base snapshot's does plus the module list), each file written
  atomically with a checksum that is verified before use. The least recently used sets are
  removed past ``EXECR_PRELOAD_BUDGET`` bytes (default 2 GiB).

The mechanism only needs a flavor whose snapshot instances hold all their state in linear
memory and the stack pointer (``_snapshot.recyclable``), which execr's own builds also are: the
default runtime can use it by listing its own ``GROUPS``.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from .._exceptions import InvalidArgument, RuntimeUnavailable
from .._guestfs import Caps, GuestFiles, Tree
from .._limits import Limits
from .._mounts import SLOTS
from .._output import Capture
from .._process import Phase, at_exit
from .._roots import remove_tree
from .._sandbox import BootImage, Compiled, EntryPoint, Host, Launch, MemoryImage, overlay
from .._workspace import Workspace
from . import _cache, _datafiles, _snapshot
from ._binary import Binary
from ._flavors import Flavor
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
]

IMAGE_VERSION: Final = "1"
_PAGE = 65536
_CHUNK = 1 << 20
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclasses.dataclass(frozen=True)
class Group:
    """What a top-level import name brings into a preload set."""

    modules: tuple[str, ...]
    cost: float  # seconds its imports take on a fresh run (measured): the weight when picking a set
    warm: str = ""  # trusted source run once at boot after the imports (a tiny real task)


GROUPS: Final[dict[str, Group]] = {
    "scipy": Group(
        (
            "scipy",
            "scipy.linalg",
            "scipy.optimize",
            "scipy.stats",
            "scipy.integrate",
            "scipy.interpolate",
            "scipy.sparse",
            "scipy.special",
            "scipy.signal",
        ),
        1.6,
        "from scipy.optimize import minimize\nfrom scipy import stats\n"
        "minimize(lambda x: (x[0] - 1.0) ** 2, [0.0])\nstats.norm.cdf(0.5)\n",
    ),
    "sklearn": Group(
        (
            "sklearn",
            "sklearn.base",
            "sklearn.linear_model",
            "sklearn.model_selection",
            "sklearn.preprocessing",
            "sklearn.metrics",
            "sklearn.pipeline",
            "sklearn.ensemble",
            "sklearn.tree",
            "sklearn.cluster",
            "sklearn.decomposition",
            "sklearn.neighbors",
        ),
        1.9,
        "import numpy as np\nfrom sklearn.linear_model import LinearRegression\n"
        "from sklearn.model_selection import train_test_split\n"
        "X = np.arange(20.0).reshape(10, 2)\nLinearRegression().fit(X, X @ [1.0, 2.0]).predict(X)\n"
        "train_test_split(X, test_size=0.2, random_state=0)\n",
    ),
    "statsmodels": Group(
        ("statsmodels", "statsmodels.api", "statsmodels.formula.api"),
        2.5,
        "import numpy as np\nimport statsmodels.api as sm\n"
        "X = sm.add_constant(np.arange(10.0))\nsm.OLS(np.arange(10.0) * 2 + 1, X).fit().summary()\n",
    ),
    "patsy": Group(("patsy",), 0.3),
    "sympy": Group(("sympy",), 1.0, "import sympy\nx = sympy.Symbol('x')\nsympy.solve(x**2 - 4, x)\n"),
    "matplotlib": Group(
        ("matplotlib", "matplotlib.pyplot"),
        2.0,
        # Draws nothing: a text draw would keep font files open in the image (FT2Font caches them).
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [0, 1])\nplt.close('all')\n",
    ),
    "seaborn": Group(("matplotlib", "matplotlib.pyplot", "seaborn"), 3.0),
    "networkx": Group(("networkx",), 0.6, "import networkx as nx\nnx.shortest_path(nx.path_graph(4), 0, 3)\n"),
    "PIL": Group(("PIL", "PIL.Image"), 0.2),
    "lxml": Group(("lxml", "lxml.etree"), 0.2),
    "openpyxl": Group(("openpyxl",), 0.5),
    "bs4": Group(("bs4",), 0.3),
    "yaml": Group(("yaml",), 0.1),
    "jinja2": Group(("jinja2",), 0.2),
    "mpmath": Group(("mpmath",), 0.2),
}
#: Imports that bring in others' modules (seaborn brings matplotlib, scipy.stats, statsmodels' patsy...).
IMPLIES: Final[dict[str, tuple[str, ...]]] = {"seaborn": ("matplotlib",), "statsmodels": ("scipy", "patsy")}


def threshold() -> int:
    """How many runs with the same imports make a set worth building (``EXECR_PRELOAD_AFTER``; 0: never)."""
    try:
        return max(0, int(os.environ.get("EXECR_PRELOAD_AFTER", "3")))
    except ValueError:
        return 3


def budget() -> int:
    """Bytes of disk the stored sets may take (``EXECR_PRELOAD_BUDGET``: bytes, or with K/M/G)."""
    raw = os.environ.get("EXECR_PRELOAD_BUDGET", "2G").strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1:], 1)
    try:
        return max(0, int(float(raw.rstrip("KMG")) * scale))
    except ValueError:
        return 2 << 30


@functools.lru_cache(maxsize=256)
def imports_of(code: str) -> frozenset[str]:
    """Top-level names of the modules ``code`` imports (read from its AST, never run; empty if it does not parse)."""
    if "import" not in code:
        return frozenset()
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func, arg = node.func, node.args[0].value
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module") and isinstance(arg, str):
                names.add(arg.partition(".")[0])
    return frozenset(n for n in names if n)


def expand(items: Iterable[str], base: Iterable[str] = ()) -> tuple[str, ...]:
    """The modules a set for ``items`` imports: ``base`` first, then each item's group (or the item itself).

    Items are module names (``InvalidArgument`` otherwise); known top-level names expand to their
    group's modules (``sklearn`` -> ``sklearn.linear_model``, ...).
    """
    out: list[str] = list(base)
    for item in items:
        if not isinstance(item, str) or not _MODULE.fullmatch(item):
            raise InvalidArgument(f"preload must list module names; got {item!r}")
        group = GROUPS.get(item)
        out += [*group.modules] if group is not None else [item]
    return tuple(dict.fromkeys(out))


def _provides(modules: Iterable[str]) -> frozenset[str]:
    names = {m.partition(".")[0] for m in modules}
    for name in list(names):
        names.update(IMPLIES.get(name, ()))
    return frozenset(names)


def _warm_source(modules: tuple[str, ...]) -> str:
    """One boot turn: import ``modules`` and run the warm-ups of their groups (each may fail alone)."""
    seen = {m.partition(".")[0] for m in modules}
    warms = [GROUPS[g].warm for g in GROUPS if g in seen and GROUPS[g].warm]
    body = "".join(
        f"    try:\n{_indent(w, 8)}    except Exception:\n        pass\n" for w in warms
    )  # a warm-up that fails costs speed, never the set
    return (
        "def __execr_warm__():\n"
        f"    for name in {list(modules)!r}:\n        __import__(name)\n"
        f"{body}"
        "    import gc\n    gc.collect()\n"
        "__execr_warm__()\ndel __execr_warm__\n"
    )


def _indent(source: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in source.splitlines())


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


class Sets:
    """One Runtime's preload sets of one flavor: stored, loaded, counted and built.

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
        self.flavor, self.binary, self.cache_dir, self.engine = flavor, binary, cache_dir, engine
        self._plain = plain
        self._progress = progress
        self._lock = threading.RLock()
        self._loaded: dict[str, Snapshot] = {}
        self._stored: dict[str, SetInfo] = {}
        self._scanned = 0.0
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

    # -- naming and storage --

    @property
    def stem(self) -> str:
        return f"{self.flavor.name}-python-{self.flavor.python_version}-set-"

    def key(self, modules: tuple[str, ...]) -> str:
        """Everything a stored set depends on: the base snapshot's key parts, the layout and its modules."""
        snap_key = _snapshot.cache_key(self.binary, self.flavor, modules, self.engine)
        return _cache.digest(snap_key, f"image-{IMAGE_VERSION}", _datafiles.LAYOUT, str(SLOTS), *modules)

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
                    info = _read_info(self.cache_dir / name)
                    # a set made for another binary, engine, bootstrap or layout is never used (evicted first)
                    if info is not None and info.key == self.key(info.modules) and name.endswith(info.key):
                        found[info.key] = info
                self._stored = found
            return list(self._stored.values())

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
        wanted -= _provides((*self.base, *floor_modules))
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
            info = _read_info(folder)
            if info is not None and info.modules == modules:
                return info
            started = time.monotonic()
            self._progress(f"building the preload set {', '.join(modules)} (seconds; no compile)...")
            plain = self._plain()
            boot = _boot(plain.host, plain, self.flavor, self.binary, modules, self._cancel)
            entry, rng = _snapshot._reactor_entry_point(boot)
            slots = tuple(_snapshot._find_slot(boot.memory, i) for i in range(SLOTS))
            info = _write(folder, self.key(modules), modules, boot, entry, slots, rng, _recyclable(self.binary))
            self._progress(
                f"preload set ready in {time.monotonic() - started:.1f} s: {info.length >> 20} MiB of memory, "
                f"{info.disk >> 20} MiB on disk"
            )
        with self._lock:
            self._stored[info.key] = info
        self.evict(keep=info.key)
        return info

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
            _remove(info.dir)
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
        infos = [_read_info(self.cache_dir / n) for n in names if n not in live]
        return [i for i in infos if i is not None]

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
    ws = Workspace(root=None, mounts=(), packages=None, files={})
    own = scratch is None
    scratch = scratch or _datafiles.Scratch(binary)
    stdout, stderr = Capture(None), Capture(1 << 20)
    try:
        trees = ws.trees({}) + [Tree(p.guest, p.host, p.writable) for p in flavor.preopens(binary)] + scratch.trees()
        with GuestFiles(trees, stdin=b"", stdout=stdout, stderr=stderr, caps=Caps()) as files:
            launch = Launch(
                files=files,
                stdout=stdout,
                stderr=stderr,
                limits=Limits(timeout=None, memory_limit=None, fuel=None),
                argv=("python",),
                start=("_initialize",),
                env=_datafiles.env_defaults(binary),
                cancel=cancel,
            )
            turns = (
                (turn,) if turn is not None else (_warm_source(modules).encode(), flavor.bootstrap(modules).encode())
            )
            image = host.boot(plain, launch, turns=turns)
            if turn is None and files.open_count:
                raise RuntimeUnavailable(
                    f"importing {', '.join(modules)} leaves {files.open_count} file(s) open: it cannot be preloaded"
                )
            if own and "matplotlib" in _provides(modules):
                _datafiles.store_font_cache(binary, Path(scratch.path))
            return image
    finally:
        ws.close()
        if own:
            scratch.close()


_recyclable_by_sha: dict[str, bool] = {}


def _recyclable(binary: Binary) -> bool:
    """``_snapshot.recyclable`` of the binary, scanned once per process."""
    if binary.sha256 not in _recyclable_by_sha:
        _recyclable_by_sha[binary.sha256] = _snapshot.recyclable(binary.data)
    return _recyclable_by_sha[binary.sha256]


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


def _write(
    folder: Path,
    key: str,
    modules: tuple[str, ...],
    boot: BootImage,
    entry: EntryPoint,
    slots: tuple[int, ...],
    rng: tuple[int, ...],
    recycle: bool,
) -> SetInfo:
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
    info = _read_info(folder)
    if info is None:
        raise RuntimeUnavailable(f"the preload set in {str(folder)!r} did not read back")
    return info


def _read_info(folder: Path) -> SetInfo | None:
    """A stored set's description (its image is checked when it is loaded), or None."""
    meta = _cache.read_verified(folder / "set.json")
    if meta is None:
        return None
    try:
        data = json.loads(meta)
        modules = tuple(str(m) for m in data["modules"])
        return SetInfo(str(data["key"]), folder, modules, _provides(modules), int(data["length"]), int(data["disk"]))
    except (ValueError, TypeError, KeyError):
        return None


def _used(folder: Path) -> float:
    try:
        return os.stat(folder / "used").st_mtime
    except OSError:
        return 0.0


def _remove(folder: Path) -> None:
    """Remove a stored set: renamed away first (a reader sees it whole or not at all), then deleted."""
    gone = folder.with_name(f".gone-{folder.name}-{os.getpid()}")
    try:
        os.replace(folder, gone)
    except OSError:
        return
    remove_tree(str(gone))
    with contextlib.suppress(OSError):
        os.unlink(folder.with_name(folder.name + ".lock"))
