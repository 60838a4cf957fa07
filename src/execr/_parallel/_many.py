"""Many: run a batch of requests across worker processes (or Ray actors), with an opt-in result cache.

``execute_many`` returns a list of ``Result`` (input order by default), ``iter_results``
yields ``(index, Result)`` as runs finish, ``execute_many_async`` awaits the same.
Each item is a code string, a mapping of ``execute()`` keyword arguments, or a
``Request``; an invalid item becomes a ``CRASHED`` result ("invalid request: ...") for
that item only.
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from .._exceptions import InvalidArgument, shown
from .._request import Request, make_request
from .._results import Outcome, Result
from ._ray import run_on_ray
from ._result_cache import ResultCache

__all__ = ["ResultCache", "execute_many", "execute_many_async", "iter_results"]  # ResultCache: re-exported


def _invalid(error: str) -> Result:
    return Result.failure(Outcome.CRASHED, f"invalid request: {error}")


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
        raise InvalidArgument(f"backend must be 'local' or 'ray'; got {shown(backend)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidArgument(f"workers must be a whole number >= 1, or None; got {shown(workers)}")
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
            close = run_on_ray(todo, workers, done) if backend == "ray" else _local(todo, workers, pool, done)
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
