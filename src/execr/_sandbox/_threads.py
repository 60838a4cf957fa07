"""Background threads of the sandbox: the epoch ticker and the store reaper."""

from __future__ import annotations

import threading
import time

import wasmtime as wt

from .._process import Drainer, Phase
from ._consts import TICK
from ._signals import _TrapHandlers


class _Ticker(threading.Thread):
    """Advances the engine's epoch every ``TICK`` while at least one run is active.

    Each tick also puts wasmtime's trap handlers back if something replaced them meanwhile
    (``_TrapHandlers``), so the window in which a guest trap could reach another handler is
    at most one tick.
    """

    def __init__(self, engine: wt.Engine, traps: _TrapHandlers) -> None:
        super().__init__(name="execr-epoch", daemon=True)
        self._engine = engine
        self._traps = traps
        self._active = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        with self._cond:
            self._active += 1
            self._cond.notify()

    def leave(self) -> None:
        with self._cond:
            self._active -= 1

    def run(self) -> None:
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            time.sleep(TICK)
            self._engine.increment_epoch()
            self._traps.ensure()


#: Frees finished stores on a background thread, so a run's result returns sooner (freeing an
#: instance's memory takes ~0.3 ms; nothing reads a store after its run). Drained at exit,
#: before wasmtime's own threads wind down.
_reaper: Drainer[wt.Store] = Drainer(lambda store: store.close(), "execr-reaper", Phase.STORES)
