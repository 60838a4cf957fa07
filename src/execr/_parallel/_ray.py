"""The Ray backend of ``execute_many``: actors holding warm runtimes, fed in chunks."""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .._exceptions import InvalidArgument
from .._image import _cache
from .._request import Request
from .._results import Outcome, Result

__all__ = ["run_on_ray"]


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
                out.append(Result.failure(Outcome.CRASHED, f"execr error in actor: {e}"))
        return out


_actor_class: Any = None


def run_on_ray(requests: list[tuple[int, Request]], workers: int | None, out: Any) -> Any:
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
    folders = {
        folder for name in runtimes for metered in (False, True) for folder in local.artifacts(name, metered).dirs
    }
    files = {
        f"{folder.name}/{p.name}": p.read_bytes() for folder in folders for p in sorted(folder.iterdir()) if p.is_file()
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
                    results = [Result.failure(Outcome.CRASHED, error)]
                for (index, _), result in zip(part, results, strict=True):
                    out.put((index, result))
                launch(actor_index)
        except Exception as e:  # never leave the caller waiting: fail what is left
            left = [x for _, part in running.values() for x in part] + [x for part in todo for x in part]
            running.clear()
            todo.clear()
            for index, _req in left:
                out.put((index, Result.failure(Outcome.CRASHED, f"ray backend error: {e}")))
        for index, _req in (x for part in todo for x in part):
            out.put((index, Result.failure(Outcome.CANCELLED, "cancelled")))

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
