"""Runtime: the owner of the compiled modules and snapshots, and the way one request becomes a Result.

One ``Runtime`` holds, per flavor (``request.runtime``: "default" or "scientific"), the
verified files and the plain and snapshot modules (built lazily, or ahead by ``warmup``),
and runs requests; ``execute()`` uses a process-wide default. Every run gets its own
Store, instance, and temporary directories. Thread-safe: each flavor's build happens once
under its own lock (and a file lock across processes).
"""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import re
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import _cache, _engine, _snapshot
from ._binary import PYTHON_VERSION, Binary, load
from ._cache import cache_dir
from ._exceptions import RuntimeClosed, RuntimeUnavailable
from ._flavors import NAMES, Flavor, flavor, preload_list
from ._guest import BOOTSTRAP_VERSION, REQUEST_BOX
from ._limits import Limits
from ._mounts import PACKAGES, SCRIPT, SLOTS, Workspace
from ._output import FileCapture
from ._request import Request, make_request
from ._results import Outcome, Result

__all__ = ["Runtime", "default_runtime"]

_MEMORY_ERROR = re.compile(rb"(^|\n)(MemoryError|Fatal Python error: .*(memory|Memory))")


def _stderr_progress(message: str) -> None:
    if os.environ.get("EXECR_QUIET") != "1":
        print(f"execr: {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class _Built:
    """One flavor's modules, built lazily under its own lock."""

    lock: threading.RLock = dataclasses.field(default_factory=threading.RLock)
    files: Binary | None = None
    plain: _engine.Compiled | None = None
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
        spec = flavor(runtime)
        return _snapshot.artifacts(self.files(runtime), self.cache_dir, spec, self._preload_of(spec))

    def _plain_module(self, runtime: str = "default") -> _engine.Compiled:
        built = self._built[flavor(runtime).name]
        with built.lock:
            self._check_open()
            if built.plain is None:
                where = self._artifacts(runtime)
                built.plain = _snapshot.load_plain(
                    _engine.host(), self.files(runtime), where, self._progress, flavor(runtime)
                )
            return built.plain

    def _snapshot_module(self, runtime: str = "default") -> _snapshot.Snapshot | None:
        spec = flavor(runtime)
        built = self._built[spec.name]
        with built.lock:
            if built.snap is None and built.snapshot_error is None and self._use_snapshot:
                self._check_open()
                binary, where = self.files(runtime), self._artifacts(runtime)  # a bad binary raises here
                try:
                    built.snap = _snapshot.load(
                        _engine.host(),
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
        """Versions, hashes, cache paths and state (what ``execr info`` prints).

        The top-level keys describe the default CPython; ``runtimes`` describes each.
        """
        runtimes = {name: self.runtime_info(name) for name in NAMES}
        default = runtimes["default"]
        return {
            "python_version": PYTHON_VERSION,
            "binary_path": default["binary_path"],
            "binary_sha256": default["binary_sha256"],
            "wasmtime_version": _engine.WASMTIME_VERSION,
            "bootstrap_version": BOOTSTRAP_VERSION,
            "cache_dir": str(self.cache_dir),
            "plain_module": default["plain_module"],
            "snapshot": default["snapshot"],
            "mount_slots": SLOTS,
            "runtimes": runtimes,
        }

    def runtime_info(self, runtime: str) -> dict[str, Any]:
        """One runtime's Python version, what it can import, its files and its cache state."""
        spec = flavor(runtime)
        out: dict[str, Any] = {
            "python_version": spec.python_version,
            "description": spec.description,
            "can_import": "the standard library" + (" and the packages listed" if spec.reactor else ""),
        }
        try:
            binary = self.files(runtime)
        except RuntimeUnavailable as e:
            return out | {"available": False, "error": str(e)}
        where = self._artifacts(runtime)
        out |= {"available": True, "binary_path": str(binary.path), "binary_sha256": binary.sha256}
        if binary.stdlib is not None:
            out |= {"stdlib_zip": str(binary.stdlib / "python315.zip"), "stdlib_sha256": binary.stdlib_sha256}
            out |= {"packages": spec.packages(binary), "preload": list(self._preload_of(spec))}
            out |= {"licenses": str(binary.path.parent / "LICENSES")}
        built = self._built[spec.name]
        out["plain_module"] = {"path": str(where.plain), "cached": where.plain.exists()}
        out["snapshot"] = {
            "path": str(where.snapshot),
            "cached": where.snapshot.exists() and where.meta.exists(),
            "enabled": self._use_snapshot,
            "error": built.snapshot_error,
            "recycled_instances": self._recycles(built, where),
        }
        return out

    @staticmethod
    def _recycles(built: _Built, where: _snapshot.Artifacts) -> bool | None:
        """Whether snapshot runs reuse instances here (None: no snapshot built yet to tell)."""
        if built.snap is not None:
            verdict: object = built.snap.compiled.recycle
        else:
            meta = _cache.read_verified(where.meta)
            verdict = json.loads(meta).get("recycle") if meta is not None else None
        return None if verdict is None else bool(verdict) and _engine.recycling()

    # -- running --

    def execute(self, code: str, stdin: str | bytes = "", args: Any = None, **kwargs: Any) -> Result:
        """Run ``code`` in a fresh sandbox; the arguments are those of ``execr.execute``."""
        return self.run(make_request(code, stdin, args, **kwargs))

    def run(self, request: Request, cancel: threading.Event | None = None) -> Result:
        """Run one validated request. Guest failures come back in the Result."""
        self._check_open()
        started = time.perf_counter()
        spec = flavor(request.runtime)
        binary = self.files(spec.name)
        snap = self._snapshot_module(spec.name) if request.snapshot else None
        compiled = snap.compiled if snap is not None else self._plain_module(spec.name)
        lim = request.limits
        ws = Workspace(
            root=request.mount_fs, mounts=request.mounts, packages=request.pythonpath, files=dict(request.files)
        )
        try:
            stdin = self._stdin(ws, request)
            env = list(request.env)
            path = [PACKAGES] if request.pythonpath is not None else []
            if path:
                env.append(("PYTHONPATH", PACKAGES))
            launch = _engine.Launch(
                preopens=ws.preopens() + spec.preopens(binary),
                stdin=stdin,
                stdout=FileCapture(lim.max_stdout, ws.stdout_path),
                stderr=FileCapture(lim.max_stderr, ws.stderr_path),
                limits=lim,
                watch=self._watch(ws, lim),
                cancel=cancel,
            )
            code = request.code.encode("utf-8", "surrogatepass")
            if snap is not None:
                flags = {"reseed": False} if snap.rng else {}
                payload = request_payload(request, code, env, path, **flags)
                big = len(payload) > REQUEST_BOX
                ws.write_script(code, payload if big else None)
                patches = [request_patch(snap, None if big else payload)]
                patches += [(address, os.urandom(624 * 4)) for address in snap.rng]  # fresh random states
                patches += [(snap.slots[i], m.guest.lstrip("/").encode() + b"\0") for i, m in enumerate(request.mounts)]
                launch.entry = dataclasses.replace(snap.entry, patches=tuple(patches))
            else:
                ws.write_script(code, request_payload(request, code, env, path) if spec.reactor else None)
                launch.argv = spec.plain_argv(SCRIPT, request.args)
                launch.env = env
                launch.start = spec.start
            raw = _engine.host().run(compiled, launch)
            stdout, out_dropped = launch.stdout.value()
            stderr, err_dropped = launch.stderr.value()
            outcome, error = raw.outcome, raw.error
            exit_code = raw.exit_code
            if outcome in (Outcome.COMPLETED, Outcome.FAILED) and launch.watch is not None:
                over = launch.watch()  # a last look: a short run may end between two checks
                if over is not None:
                    outcome, error = Outcome.FILE_LIMIT, over
            failed = outcome in (Outcome.FAILED, Outcome.CRASHED)
            if failed and lim.memory_limit is not None and _MEMORY_ERROR.search(stderr[-4096:]):
                outcome, error = Outcome.MEMORY_LIMIT, f"memory_limit of {lim.memory_limit} bytes reached"
            files = ws.changed(lim.max_returned_file_bytes, None if lim.max_files is None else lim.max_files + 100)
            if request.stdio is not None:
                (request.stdio / "stdout.txt").write_bytes(stdout)
                (request.stdio / "stderr.txt").write_bytes(stderr)
            return Result.build(
                stdout=stdout,
                stderr=stderr,
                stdout_dropped=out_dropped,
                stderr_dropped=err_dropped,
                fuel_consumed=raw.fuel_consumed,
                memory=raw.memory,
                data_len=raw.data_len,
                outcome=outcome,
                exit_code=exit_code,
                duration=time.perf_counter() - started,
                files=files,
                error=error,
                mode="snapshot" if snap is not None else "plain",
            )
        finally:
            ws.close()

    @staticmethod
    def _stdin(ws: Workspace, request: Request) -> str | None:
        if request.stdio is not None:
            target = request.stdio / "stdin.txt"
            target.write_bytes(request.stdin)
            return str(target)
        if not request.stdin:
            return None  # WASI's empty stdin: reads see end of file
        name = os.path.join(ws.scratch, "stdin")
        with open(name, "wb") as f:
            f.write(request.stdin)
        return name

    @staticmethod
    def _watch(ws: Workspace, lim: Limits) -> Callable[[], str | None] | None:
        if lim.max_files is None and lim.max_file_bytes is None:
            return None
        base_files, base_bytes = ws.base_usage
        scan_limit = None if lim.max_files is None else base_files + lim.max_files + 1

        def watch() -> str | None:
            files, size = ws.usage(scan_limit)
            if lim.max_files is not None and files - base_files > lim.max_files:
                return f"max_files limit of {lim.max_files} files and directories reached"
            if lim.max_file_bytes is not None and size - base_bytes > lim.max_file_bytes:
                return f"max_file_bytes limit of {lim.max_file_bytes} bytes reached"
            return None

        return watch

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
    box = struct.pack("<I", 0xFFFFFFFF) if payload is None else struct.pack("<I", len(payload)) + payload
    return snap.entry.mailbox + 16, box


_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime ``execute()`` uses (``EXECR_SNAPSHOT=0`` disables the snapshot)."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Runtime(snapshot=os.environ.get("EXECR_SNAPSHOT", "1") != "0")
        return _default
