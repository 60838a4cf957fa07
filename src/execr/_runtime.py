"""Runtime: the owner of the compiled modules and snapshots, and the way one request becomes a Result.

One ``Runtime`` holds, per flavor (``request.runtime``: "default" or "scientific"), the
verified files and the plain and snapshot modules (built lazily, or ahead by ``warmup``),
and runs requests; ``execute()`` uses a process-wide default. Every run gets its own
Store, instance, and temporary directories. Thread-safe: each flavor's build happens once
under its own lock (and a file lock across processes).
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from . import _mailbox
from ._exceptions import RuntimeClosed, RuntimeUnavailable
from ._guestfs import Caps, GuestFiles, Tree
from ._image._binary import Binary, load
from ._image._cache import cache_dir
from ._image._flavors import NAMES, Flavor, flavor, preload_list
from ._limits import UNSET, Unset
from ._mailbox import REQUEST_BOX
from ._mounts import PACKAGES, SCRIPT
from ._output import Capture
from ._request import Request, make_request
from ._results import Outcome, Result
from ._run_options import RunOptions
from ._workspace import Workspace, check_outputs, write_outputs

if TYPE_CHECKING:  # the engine (wasmtime) is imported on first use: ``import execr`` stays cheap
    from . import _sandbox
    from ._image import _snapshot

__all__ = ["Runtime", "default_runtime", "quiet", "snapshot_default"]

STDIO_FILES = ("stdin.txt", "stdout.txt", "stderr.txt")  # what ``stdio=DIR`` receives (the seed's names)


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
    """One flavor's modules, built lazily under its own lock."""

    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    files: Binary | None = None
    plain: _sandbox.Compiled | None = None
    snap: _snapshot.Snapshot | None = None
    snapshot_error: str | None = None


class Runtime:
    """A CPython-in-WebAssembly runtime: build once, then run many isolated requests.

    ``snapshot=False`` always uses the plain start-up path. A snapshot that cannot be
    built falls back to the plain path with a message (``snapshot_error`` says why, for
    the default CPython; ``snapshot_errors`` for each). ``binary`` overrides the default
    CPython's file; ``preload`` lists the modules the scientific snapshot imports (default:
    ``$EXECR_SCIENTIFIC_PRELOAD``, comma-separated, else numpy and pandas).
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

    def _preload_of(self, spec: Flavor) -> tuple[str, ...]:
        return self._preload if spec.reactor else ()

    def _artifacts(self, runtime: str = "default") -> _snapshot.Artifacts:
        from ._image import _snapshot  # imported on first use: it loads wasmtime

        spec = flavor(runtime)
        return _snapshot.artifacts(self.files(runtime), self.cache_dir, spec, self._preload_of(spec))

    def _plain_module(self, runtime: str = "default") -> _sandbox.Compiled:
        from . import _sandbox  # imported on first use: they load wasmtime
        from ._image import _snapshot

        built = self._built[flavor(runtime).name]
        with built.lock:
            self._check_open()
            if built.plain is None:
                where = self._artifacts(runtime)
                built.plain = _snapshot.load_plain(
                    _sandbox.host(), self.files(runtime), where, self._progress, flavor(runtime)
                )
            return built.plain

    def _snapshot_module(self, runtime: str = "default") -> _snapshot.Snapshot | None:
        from . import _sandbox  # imported on first use: they load wasmtime
        from ._image import _snapshot

        spec = flavor(runtime)
        built = self._built[spec.name]
        with built.lock:
            if built.snap is None and built.snapshot_error is None and self._use_snapshot:
                self._check_open()
                binary, where = self.files(runtime), self._artifacts(runtime)  # a bad binary raises here
                try:
                    built.snap = _snapshot.load(
                        _sandbox.host(),
                        binary,
                        where,
                        lambda: self._plain_module(runtime),
                        self._progress,
                        spec,
                        self._preload_of(spec),
                    )
                except RuntimeUnavailable as e:
                    built.snapshot_error = str(e)
                    self._progress(f"{spec.name} snapshot unavailable, using the plain path: {e}")
            return built.snap

    def warmup(self, runtimes: Iterable[str] = ("default",)) -> None:
        """Build (or load) the compiled modules and the snapshots of ``runtimes`` now, not on first use."""
        names = [runtimes] if isinstance(runtimes, str) else list(runtimes)
        for name in names:
            flavor(name)
        for name in names:
            self._plain_module(name)
            self._snapshot_module(name)

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
        **options: Unpack[RunOptions],
    ) -> Result:
        """Run ``code`` in a fresh sandbox; the arguments are those of ``execr.execute``."""
        request = make_request(
            code, stdin, args, use_fuel=use_fuel, fuel=fuel, mount_fs=mount_fs, stdio=stdio, **options
        )
        return self.run(request)

    def run(self, request: Request, cancel: threading.Event | None = None) -> Result:
        """Run one validated request. Guest failures come back in the Result."""
        from . import _sandbox  # imported on first use: they load wasmtime

        self._check_open()
        started = time.perf_counter()
        spec = flavor(request.runtime)
        binary = self.files(spec.name)
        snap = self._snapshot_module(spec.name) if request.snapshot else None
        compiled = snap.compiled if snap is not None else self._plain_module(spec.name)
        lim = request.limits
        if request.stdio is not None:
            check_outputs(request.stdio, STDIO_FILES)  # before the run: a refusal afterwards would lose its result
        ws = Workspace(
            root=request.mount_fs, mounts=request.mounts, packages=request.pythonpath, files=dict(request.files)
        )
        try:
            env = list(request.env)
            path = [PACKAGES] if request.pythonpath is not None else []
            if path:
                env.append(("PYTHONPATH", PACKAGES))
            code = request.code.encode("utf-8", "surrogatepass")
            control = {"main.py": code}
            patches: list[tuple[int, bytes]] = []
            if snap is not None:
                flags = {"reseed": False} if snap.rng else {}
                payload = request_payload(request, code, env, path, **flags)
                big = len(payload) > REQUEST_BOX
                if big:
                    control["request.bin"] = payload
                patches = [request_patch(snap, None if big else payload)]
                patches += [(address, os.urandom(624 * 4)) for address in snap.rng]  # fresh random states
                patches += [(snap.slots[i], m.guest.lstrip("/").encode() + b"\0") for i, m in enumerate(request.mounts)]
            elif spec.reactor:
                control["request.bin"] = request_payload(request, code, env, path)
            stdout, stderr = Capture(lim.max_stdout), Capture(lim.max_stderr)
            trees = ws.trees(control) + [Tree(p.guest, p.host, p.writable) for p in spec.preopens(binary)]
            caps = Caps(lim.max_files, lim.max_file_bytes, lim.max_open_files)
            with GuestFiles(
                trees, stdin=request.stdin, stdout=stdout, stderr=stderr, caps=caps, base=ws.base_usage
            ) as files:
                launch = _sandbox.Launch(files=files, stdout=stdout, stderr=stderr, limits=lim, cancel=cancel)
                if snap is not None:
                    launch.entry = dataclasses.replace(snap.entry, patches=tuple(patches))
                else:
                    launch.argv = spec.plain_argv(SCRIPT, request.args)
                    launch.env = env
                    launch.start = spec.start
                raw = _sandbox.host().run(compiled, launch)
            out, out_dropped = stdout.value()
            err, err_dropped = stderr.value()
            outcome, error = raw.outcome, raw.error
            exit_code = raw.exit_code
            files_out, problem = ws.changed(lim.max_returned_file_bytes)
            if problem is not None and outcome in (Outcome.COMPLETED, Outcome.FAILED):
                outcome, error = Outcome.FILE_LIMIT, problem
            if request.stdio is not None:
                write_outputs(request.stdio, dict(zip(STDIO_FILES, (request.stdin, out, err), strict=True)))
            return Result.build(
                stdout=out,
                stderr=err,
                stdout_dropped=out_dropped,
                stderr_dropped=err_dropped,
                fuel_consumed=raw.fuel_consumed,
                memory=raw.memory,
                data_len=raw.data_len,
                outcome=outcome,
                exit_code=exit_code,
                duration=time.perf_counter() - started,
                files=files_out,
                error=error,
                mode="snapshot" if snap is not None else "plain",
            )
        finally:
            ws.close()

    # -- lifecycle --

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeClosed("this Runtime is closed")

    def close(self) -> None:
        """Release the compiled modules (idempotent); later use raises ``RuntimeClosed``."""
        with self._lock:
            self._closed = True
            for name in NAMES:
                with self._built[name].lock:
                    built = self._built[name]
                    for compiled in (built.plain, built.snap.compiled if built.snap is not None else None):
                        if compiled is not None:
                            compiled.release()
                    self._built[name] = _Built()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_payload(request: Request, code: bytes, env: list[tuple[str, str]], path: list[str], **flags: bool) -> bytes:
    """The marshal-encoded request the snapshot's entry function reads."""
    fields = {"script": SCRIPT, "code": code, "args": list(request.args), "env": dict(env), "path": path, "cwd": "/"}
    return marshal.dumps(fields | flags, 4)


def request_patch(snap: _snapshot.Snapshot, payload: bytes | None) -> tuple[int, bytes]:
    """The guest-memory write that hands ``payload`` to the entry (``None``: read request.bin)."""
    offset, data = _mailbox.request(payload)
    return snap.entry.mailbox + offset, data


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime ``execute()`` uses (``EXECR_SNAPSHOT=0`` disables the snapshot)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Runtime(snapshot=snapshot_default())
        return _default
