"""Runtime: the owner of the compiled modules and snapshots, through which every run goes.

One ``Runtime`` holds, per flavor (``request.runtime``: "default" or "scientific"), the
verified files and the plain and snapshot modules (built lazily, or ahead by ``warmup``),
and runs requests (``_launch`` assembles each run); ``execute()`` uses a process-wide
default. Every run gets its own Store, instance, and temporary directories. Thread-safe:
each flavor's build happens once under its own lock (and a file lock across processes).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from ._exceptions import RuntimeClosed, RuntimeUnavailable
from ._image._binary import Binary, load
from ._image._cache import cache_dir
from ._image._flavors import NAMES, flavor, preload_list
from ._launch import SessionSlot, launch, prepare, request_patch, request_payload
from ._limits import UNSET, Unset
from ._request import Request, make_request
from ._results import Result
from ._run_options import RunOptions
from ._tools import DEFAULT_MAX_CALLS, Permission, ToolBox

if TYPE_CHECKING:  # the engine (wasmtime) is imported on first use: ``import execr`` stays cheap
    from . import _sandbox
    from ._image import _preload, _snapshot

__all__ = [
    "Runtime",
    "SessionSlot",
    "default_runtime",
    "quiet",
    "request_patch",
    "request_payload",
    "snapshot_default",
]


def snapshot_default() -> bool:
    """Whether runs take the snapshot path unless a call says otherwise (``EXECR_SNAPSHOT=0``: never)."""
    return os.environ.get("EXECR_SNAPSHOT", "1") != "0"


def quiet() -> bool:
    """``EXECR_QUIET=1``: no build progress on stderr."""
    return os.environ.get("EXECR_QUIET") == "1"


def _stderr_progress(message: str) -> None:
    if not quiet():
        print(f"execr: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _Built:
    """One flavor's modules, built lazily under its own lock, per engine (fuel-metered or not)."""

    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    files: Binary | None = None
    plain: dict[bool, _sandbox.Compiled] = dataclasses.field(default_factory=dict)
    snap: dict[bool, _snapshot.Snapshot] = dataclasses.field(default_factory=dict)
    snapshot_error: str | None = None


class Runtime:
    """A CPython-in-WebAssembly runtime: build once, then run many isolated requests.

    ``snapshot=False`` always uses the plain start-up path. A snapshot that cannot be
    built falls back to the plain path with a message (``snapshot_error`` says why, for
    the default CPython; ``snapshot_errors`` for each). ``binary`` overrides the default
    CPython's file; ``preload`` lists the modules every scientific run has imported (default:
    ``$EXECR_SCIENTIFIC_PRELOAD``, comma-separated, else numpy and pandas): beyond numpy and
    pandas it is a preload set (``_image._preload``, built in seconds). Scientific runs also
    take the stored set that best covers their code's imports (read from its AST).
    """

    def __init__(
        self,
        *,
        binary: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        snapshot: bool = True,
        progress: Callable[[str], None] | None = None,
        preload: str | Iterable[str] | None = None,
    ) -> None:
        self._binary_arg = binary
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._use_snapshot = snapshot
        self._progress = progress or _stderr_progress
        self._preload = preload_list(preload)
        self._lock = threading.RLock()
        self._built = {name: _Built() for name in NAMES}
        self._sets: dict[str, _preload.Sets] = {}  # preload sets per reactor runtime, made on first use
        self._closed = False

    # -- building --

    @property
    def binary(self) -> Binary:
        """The verified default CPython binary."""
        return load(self._binary_arg)

    def files(self, runtime: str = "default") -> Binary:
        """The verified files of ``runtime`` (``RuntimeUnavailable`` if missing or not the pinned build)."""
        spec = flavor(runtime)
        built = self._built[spec.name]
        if built.files is None:  # verified once per Runtime (and hashed once per process)
            built.files = spec.load(self._binary_arg, self.cache_dir)
        return built.files

    @property
    def cache_dir(self) -> Path:
        """Where compiled modules are cached."""
        return self._cache_dir or cache_dir()

    @property
    def preload(self) -> tuple[str, ...]:
        """The modules the scientific snapshot imports at boot."""
        return self._preload

    @property
    def snapshot_error(self) -> str | None:
        """Why the default CPython's snapshot is unavailable (``None``: it is fine or not built yet)."""
        return self._built["default"].snapshot_error

    @snapshot_error.setter
    def snapshot_error(self, value: str | None) -> None:
        self._built["default"].snapshot_error = value

    @property
    def snapshot_errors(self) -> dict[str, str | None]:
        """``snapshot_error`` for each runtime."""
        return {name: built.snapshot_error for name, built in self._built.items()}

    @property
    def snapshot_enabled(self) -> bool:
        """Whether runs may take the snapshot path (``snapshot=`` at construction)."""
        return self._use_snapshot

    def preload_of(self, runtime: str) -> tuple[str, ...]:
        """The modules ``runtime``'s snapshot imports beyond the standard set."""
        return self._preload if flavor(runtime).reactor else ()

    def artifacts(self, runtime: str = "default", metered: bool = False) -> _snapshot.Artifacts:
        """Where ``runtime``'s compiled modules are cached: those runs without a fuel limit use, or
        (``metered``) those for runs with one (the same for a runtime without a fuel-free module)."""
        from . import _sandbox  # imported on first use: they load wasmtime
        from ._image import _snapshot

        spec = flavor(runtime)
        engine = _sandbox.host(metered or not spec.fuel_free, spec.wasm_stack).config
        return _snapshot.artifacts(self.files(runtime), self.cache_dir, spec, spec.default_preload, engine)

    def recycles(self, runtime: str, metered: bool = False) -> bool | None:
        """Whether the loaded snapshot's instances are recycled (None: not loaded in this Runtime)."""
        spec = flavor(runtime)
        snap = self._built[spec.name].snap.get(metered or not spec.fuel_free)
        return None if snap is None else snap.compiled.recycle

    def _plain_module(self, runtime: str = "default", metered: bool = False) -> _sandbox.Compiled:
        from . import _sandbox  # imported on first use: they load wasmtime
        from ._image import _snapshot

        spec = flavor(runtime)
        metered = metered or not spec.fuel_free
        built = self._built[spec.name]
        with built.lock:
            self._check_open()
            if metered not in built.plain:
                where = self.artifacts(runtime, metered)
                built.plain[metered] = _snapshot.load_plain(
                    _sandbox.host(metered, spec.wasm_stack), self.files(runtime), where, self._progress, spec
                )
            return built.plain[metered]

    def _snapshot_module(self, runtime: str = "default", metered: bool = False) -> _snapshot.Snapshot | None:
        from . import _sandbox  # imported on first use: they load wasmtime
        from ._image import _snapshot

        spec = flavor(runtime)
        metered = metered or not spec.fuel_free
        built = self._built[spec.name]
        with built.lock:
            if metered not in built.snap and built.snapshot_error is None and self._use_snapshot:
                self._check_open()
                binary, where = self.files(runtime), self.artifacts(runtime, metered)  # a bad binary raises here
                try:
                    built.snap[metered] = _snapshot.load(
                        _sandbox.host(metered, spec.wasm_stack),
                        binary,
                        where,
                        lambda: self._plain_module(runtime, metered),
                        self._progress,
                        spec,
                        spec.default_preload,  # more modules: preload sets (``_sets_of``)
                    )
                except RuntimeUnavailable as e:
                    built.snapshot_error = str(e)
                    self._progress(f"{spec.name} snapshot unavailable, using the plain path: {e}")
            return built.snap.get(metered)

    def warmup(self, runtimes: Iterable[str] = ("default",)) -> None:
        """Build (or load) the compiled modules and the snapshots of ``runtimes`` now, not on first use
        (for a runtime with a fuel-free module, both: runs with and without a fuel limit)."""
        names = [runtimes] if isinstance(runtimes, str) else list(runtimes)
        for name in names:
            flavor(name)
        for name in names:
            for metered in (False, True) if flavor(name).fuel_free else (True,):
                self._plain_module(name, metered)
                self._snapshot_module(name, metered)
            if flavor(name).reactor and self._use_snapshot:
                self._sets_of(name).warm(self.preload_of(name))

    def _sets_of(self, runtime: str) -> _preload.Sets:
        """``runtime``'s preload sets (a reactor flavor's), made on first use."""
        from . import _sandbox  # imported on first use: they load wasmtime
        from ._image import _preload

        spec = flavor(runtime)
        with self._lock:
            self._check_open()
            if spec.name not in self._sets:
                engine = _sandbox.host(True, spec.wasm_stack).config
                plain = lambda: self._plain_module(runtime, True)  # noqa: E731
                self._sets[spec.name] = _preload.Sets(
                    spec, self.files(runtime), self.cache_dir, engine, plain, self._progress
                )
            return self._sets[spec.name]

    def info(self) -> dict[str, Any]:
        """Versions, hashes, cache paths and state (what ``execr info`` prints; see ``_runtime_info``)."""
        from ._runtime_info import describe

        return describe(self)

    def runtime_info(self, runtime: str) -> dict[str, Any]:
        """One runtime's Python version, what it can import, its files and its cache state."""
        from ._runtime_info import describe_runtime

        return describe_runtime(self, runtime)

    # -- running --

    def execute(
        self,
        code: str,
        stdin: str | bytes = "",
        args: Sequence[str] | None = None,
        use_fuel: bool = False,
        fuel: int | Unset | None = UNSET,
        mount_fs: str | os.PathLike[str] | None = None,
        stdio: str | os.PathLike[str] | None = None,
        *,
        tools: Mapping[str, Callable[..., Any]] | None = None,
        tool_permission: Permission | None = None,
        max_tool_calls: int | None = DEFAULT_MAX_CALLS,
        **options: Unpack[RunOptions],
    ) -> Result:
        """Run ``code`` in a fresh sandbox; the arguments are those of ``execr.execute``."""
        request = make_request(
            code, stdin, args, use_fuel=use_fuel, fuel=fuel, mount_fs=mount_fs, stdio=stdio, **options
        )
        return self.run(request, tools=ToolBox.of(tools, tool_permission, max_tool_calls))

    def run(
        self,
        request: Request,
        cancel: threading.Event | None = None,
        *,
        value: bool = False,
        session: SessionSlot | None = None,
        tools: ToolBox | None = None,
    ) -> Result:
        """Run one validated request. Guest failures come back in the Result.

        ``value``: also return the repr of the code's last expression (snapshot path only).
        ``session``: run in a session's live instance and workspace (``_session``), not a fresh one.
        ``tools``: the host functions the guest may call (``execr_tools``); its calls are the
        Result's ``tool_calls``.
        """
        self._check_open()
        return launch(prepare(self, request, cancel, value=value, session=session, tools=tools))

    # -- lifecycle --

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosed("this Runtime is closed")

    def close(self) -> None:
        """Release the compiled modules (idempotent); later use raises ``RuntimeClosed``."""
        with self._lock:
            self._closed = True
            sets, self._sets = self._sets, {}
            for each in sets.values():
                each.close()
            for name in NAMES:
                with self._built[name].lock:
                    built = self._built[name]
                    for compiled in [*built.plain.values(), *(snap.compiled for snap in built.snap.values())]:
                        compiled.release()
                    self._built[name] = _Built()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime ``execute()`` uses (``EXECR_SNAPSHOT=0`` disables the snapshot)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Runtime(snapshot=snapshot_default())
        return _default
