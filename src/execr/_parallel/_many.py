"""Many: run a batch of requests across worker processes (or Ray actors), with an opt-in result cache.

``execute_many`` returns a list of ``Result`` (input order by default), ``iter_results``
yields ``(index, Result)`` as runs finish, ``execute_many_async`` awaits the same.
Each item is a code string, a mapping of ``execute()`` keyword arguments, or a
``Request``; an invalid item becomes a ``CRASHED`` result ("invalid request: ...") for
that item only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from .._exceptions import InvalidArgument
from .._image import _cache
from .._request import Request, make_request
from .._results import Outcome, Result

__all__ = ["ResultCache", "execute_many", "execute_many_async", "iter_results"]

# Outcomes worth caching: deterministic given the request (not timing- or host-dependent).
_CACHEABLE = frozenset(
    {Outcome.COMPLETED, Outcome.FAILED, Outcome.OUT_OF_FUEL, Outcome.MEMORY_LIMIT, Outcome.FILE_LIMIT}
)


def _invalid(error: str) -> Result:
    return Result(outcome=Outcome.CRASHED, exit_code=None, error=f"invalid request: {error}")


def to_request(item: object, defaults: Mapping[str, Any]) -> Request | Result:
    """Validate one item into a Request; an invalid one becomes a CRASHED Result."""
    try:
        if isinstance(item, Request):
            return item
        if isinstance(item, str):
            return make_request(item, **defaults)
        if isinstance(item, Mapping):
            kwargs = {**defaults, **item}
            if "code" not in kwargs:
                return _invalid("missing 'code'")
            bad = [k for k in kwargs if not isinstance(k, str)]
            if bad:
                return _invalid(f"unexpected key(s) {bad!r}")
            return make_request(**kwargs)
        return _invalid(f"each request must be a code string or a mapping; got {type(item).__name__}")
    except InvalidArgument as e:
        return _invalid(str(e))
    except Exception as e:  # junk of any shape (an unexpected keyword, a mapping that raises...) is one bad item
        return _invalid(f"{type(e).__name__}: {e}")


# -- result cache --


class ResultCache:
    """Results on disk keyed by the canonical request and the binary's hash.

    The key covers everything a request carries (code, stdin, args, env, files, limits,
    runtime, start-up path, binary hashes), not what the guest can read from the host: so
    a run that names host paths (``mounts``, ``mount_fs``, ``stdio``, ``pythonpath`` or
    ``$EXECR_PYTHONPATH``) is never cached, neither read nor written. Only outcomes that
    the request decides are stored (not timeouts, crashes or cancels).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def of(cls, cache: object) -> ResultCache | None:
        """``cache`` as given to execute_many: None/False, True (user cache dir), a path, or a ResultCache."""
        if cache is None or cache is False:
            return None
        if isinstance(cache, ResultCache):
            return cache
        if cache is True:
            import platformdirs

            return cls(Path(platformdirs.user_cache_dir("execr")) / "results")
        if isinstance(cache, (str, os.PathLike)):
            return cls(cache)
        raise InvalidArgument(f"cache must be None, a bool or a directory path; got {type(cache).__name__}")

    @staticmethod
    def key(request: Request) -> str | None:
        """The cache key, or None when the run must not be cached (it reads or writes host paths)."""
        if request.mounts or request.mount_fs is not None or request.stdio is not None or request.pythonpath:
            return None
        from .._image._binary import SCIENTIFIC_STDLIB_SHA256, SCIENTIFIC_WASM_SHA256, SHA256

        canonical = {
            "code": request.code,
            "stdin": request.stdin.hex(),
            "args": list(request.args),
            "env": sorted(request.env),
            "files": sorted((p, c.hex()) for p, c in request.files),
            "limits": request.limits.to_dict(),
            "snapshot": request.snapshot,
            "binary": SHA256 if request.runtime == "default" else SCIENTIFIC_WASM_SHA256 + SCIENTIFIC_STDLIB_SHA256,
            "runtime": request.runtime,
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.json"

    def get(self, key: str) -> Result | None:
        try:
            return Result.from_dict(json.loads(self._path(key).read_text("utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, result: Result) -> None:
        if result.outcome not in _CACHEABLE:
            return
        with contextlib.suppress(OSError):  # a cache that cannot be written only costs a rerun
            _cache.atomic_write(self._path(key), json.dumps(result.to_dict()).encode("utf-8"))


# -- progress --


class Progress:
    """A one-line ``\\r[####    ] 123/1000`` progress bar (redrawn at most 10 times a second)."""

    def __init__(self, total: int | None, enabled: bool | None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.total = total
        self.done = 0
        self._last = 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.enabled:
            now = time.monotonic()
            if now - self._last >= 0.1 or self.done == self.total:
                self._last = now
                self._draw()

    def _draw(self) -> None:
        if self.total:
            width = 30
            fill = width * self.done // self.total
            line = f"\r[{'#' * fill}{' ' * (width - fill)}] {self.done}/{self.total}"
        else:
            line = f"\r{self.done} done"
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()


# -- backends --


def _check_defaults(defaults: Mapping[str, Any]) -> None:
    """Bad defaults would fail every item: raise InvalidArgument up front instead."""
    if "code" in defaults:
        raise InvalidArgument("'code' cannot be a default; pass it per request")
    try:
        make_request("", **defaults)
    except TypeError as e:
        raise InvalidArgument(str(e)) from None


def _local(requests: list[tuple[int, Request]], workers: int | None, pool: Any, out: Any) -> Any:
    """Run on a WorkerPool; return a closer. Results go to ``out.put((index, result))``."""
    from ._pool import WorkerPool

    own = pool is None
    if own:
        pool = WorkerPool(min(workers or os.cpu_count() or 1, max(1, len(requests))))
    for index, request in requests:
        future = pool.submit(request)
        future.add_done_callback(lambda f, i=index: out.put((i, f.result())))

    def close(aborted: bool) -> None:
        if own:
            pool.close(cancel_pending=aborted, wait=not aborted)

    return close


def iter_results(
    requests: Iterable[object],
    workers: int | None = None,
    *,
    progress: bool | None = None,
    ordered: bool = False,
    backend: str = "local",
    cache: object = None,
    pool: Any = None,
    **defaults: Any,
) -> Iterator[tuple[int, Result]]:
    """Run every request; yield ``(index, Result)`` as each finishes (input order if ``ordered``).

    ``workers``: processes (or Ray actors), default the CPU count. ``backend``: "local"
    (a ``WorkerPool``; pass ``pool`` to reuse one) or "ray". ``cache``: a directory or
    True for a result cache. ``defaults``: ``execute()`` keyword arguments applied to
    every item (an item's own keys win).
    """
    if not isinstance(backend, str) or backend not in ("local", "ray"):
        raise InvalidArgument(f"backend must be 'local' or 'ray'; got {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidArgument(f"workers must be a whole number >= 1, or None; got {workers!r}")
    if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Iterable):
        raise InvalidArgument(f"requests must be an iterable of requests; got {type(requests).__name__}")
    _check_defaults(defaults)
    store = ResultCache.of(cache)
    items = list(requests)
    bar = Progress(len(items), progress)
    done: queue.SimpleQueue[tuple[int, Result]] = queue.SimpleQueue()
    todo: list[tuple[int, Request]] = []
    keys: dict[int, str] = {}
    for index, item in enumerate(items):
        req = to_request(item, defaults)
        if isinstance(req, Result):
            done.put((index, req))
            continue
        key = store.key(req) if store is not None else None
        if key is not None:
            hit = store.get(key)  # type: ignore[union-attr]
            if hit is not None:
                done.put((index, hit))
                continue
            keys[index] = key
        todo.append((index, req))
    close = None
    aborted = True
    try:
        if todo:
            close = _ray(todo, workers, done) if backend == "ray" else _local(todo, workers, pool, done)
        buffer: dict[int, Result] = {}
        next_index = 0
        for _ in range(len(items)):
            index, result = done.get()
            if index in keys:
                store.put(keys[index], result)  # type: ignore[union-attr]
            bar.update()
            if not ordered:
                yield index, result
                continue
            buffer[index] = result
            while next_index in buffer:
                yield next_index, buffer.pop(next_index)
                next_index += 1
        aborted = False
    finally:
        bar.close()
        if close is not None:
            close(aborted)


def execute_many(
    requests: Iterable[object],
    workers: int | None = None,
    *,
    progress: bool | None = None,
    ordered: bool = True,
    backend: str = "local",
    cache: object = None,
    pool: Any = None,
    **defaults: Any,
) -> list[Result]:
    """Run every request in parallel; a list of Results (input order, or completion order
    with ``ordered=False``). See ``iter_results`` for the arguments."""
    pairs = iter_results(
        requests, workers, progress=progress, ordered=ordered, backend=backend, cache=cache, pool=pool, **defaults
    )
    return [result for _, result in pairs]


async def execute_many_async(
    requests: Iterable[object],
    workers: int | None = None,
    *,
    progress: bool | None = None,
    ordered: bool = True,
    backend: str = "local",
    cache: object = None,
    pool: Any = None,
    **defaults: Any,
) -> list[Result]:
    """``execute_many`` run in the event loop's default executor."""
    call = functools.partial(
        execute_many,
        list(requests),
        workers,
        progress=progress,
        ordered=ordered,
        backend=backend,
        cache=cache,
        pool=pool,
        **defaults,
    )
    return await asyncio.get_running_loop().run_in_executor(None, call)


# -- Ray --


class _RayRuntime:
    """A Ray actor holding a warm Runtime whose modules come from the object store."""

    def __init__(self, artifacts: dict[str, bytes], runtimes: list[str], snapshot: bool) -> None:
        from .._runtime import Runtime

        root = Path(tempfile.gettempdir()) / f"execr-ray-{os.getuid() if hasattr(os, 'getuid') else 0}"
        for dirname in sorted({name.split("/", 1)[0] for name in artifacts}):
            with _cache.locked(root / f"{dirname}.lock"):
                for name, data in artifacts.items():
                    path = root / name
                    if name.startswith(dirname + "/") and (not path.exists() or path.stat().st_size != len(data)):
                        _cache.atomic_write(path, data)
        os.environ["EXECR_CACHE_DIR"] = str(root)
        os.environ["EXECR_QUIET"] = "1"
        self.runtime = Runtime(cache_dir=root, snapshot=snapshot)
        self.runtime.warmup(runtimes)

    def run(self, requests: list[Request]) -> list[Result]:
        out = []
        for request in requests:
            try:
                out.append(self.runtime.run(request))
            except Exception as e:
                out.append(Result(outcome=Outcome.CRASHED, exit_code=None, error=f"execr error in actor: {e}"))
        return out


_actor_class: Any = None


def _ray(requests: list[tuple[int, Request]], workers: int | None, out: Any) -> Any:
    """Run on a pool of Ray actors; results go to ``out``; return a closer."""
    try:
        import ray
    except ImportError:
        raise InvalidArgument("backend='ray' needs Ray: pip install 'execr[ray]'") from None
    global _actor_class
    from .._runtime import Runtime

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    if _actor_class is None:
        _actor_class = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(_RayRuntime)
    runtimes = sorted({request.runtime for _, request in requests} | {"default"})
    local = Runtime()
    local.warmup(runtimes)  # builds (once) or loads the modules on the driver
    # The cache files go into the object store once per batch; every actor copies them
    # into its node's cache directory (once per node) instead of rebuilding.
    files = {
        f"{folder.name}/{p.name}": p.read_bytes()
        for name in runtimes
        for folder in local._artifacts(name).dirs
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    ref = ray.put(files)
    del files
    files_ref = [ref]
    cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
    n = max(1, min(workers or cpus, len(requests)))
    # snapshot=True: requests with snapshot=False still take the plain path.
    actors = [_actor_class.remote(ref, runtimes, True) for _ in range(n)]
    chunk = max(1, min(32, len(requests) // (n * 4)))
    chunks = [requests[i : i + chunk] for i in range(0, len(requests), chunk)]
    stop = threading.Event()

    def drive() -> None:
        from ray.exceptions import RayActorError, RayTaskError

        todo = list(reversed(chunks))
        running: dict[Any, tuple[int, list[tuple[int, Request]]]] = {}

        def launch(actor_index: int) -> None:
            if todo and not stop.is_set():
                part = todo.pop()
                running[actors[actor_index].run.remote([r for _, r in part])] = (actor_index, part)

        try:
            for i in range(n):
                for _ in range(2):  # two chunks in flight per actor hide the round trip
                    launch(i)
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor_index, part = running.pop(ready[0])
                try:
                    results = ray.get(ready[0])
                except (RayActorError, RayTaskError) as e:
                    if len(part) > 1:  # retry one by one so only the culprit is lost
                        todo.extend([p] for p in reversed(part))
                        launch(actor_index)
                        continue
                    error = f"ray actor died: {type(e).__name__}"
                    results = [Result(outcome=Outcome.CRASHED, exit_code=None, error=error)]
                for (index, _), result in zip(part, results, strict=True):
                    out.put((index, result))
                launch(actor_index)
        except Exception as e:  # never leave the caller waiting: fail what is left
            left = [x for _, part in running.values() for x in part] + [x for part in todo for x in part]
            running.clear()
            todo.clear()
            for index, _req in left:
                out.put((index, Result(outcome=Outcome.CRASHED, exit_code=None, error=f"ray backend error: {e}")))
        for index, _req in (x for part in todo for x in part):
            out.put((index, Result(outcome=Outcome.CANCELLED, exit_code=None, error="cancelled")))

    thread = threading.Thread(target=drive, name="execr-ray-driver", daemon=True)
    thread.start()

    def close(aborted: bool) -> None:
        stop.set()
        if not aborted:
            thread.join()
        del files_ref[:]  # the artifacts stay pinned until the actors are gone
        for actor in actors:
            ray.kill(actor)

    return close
