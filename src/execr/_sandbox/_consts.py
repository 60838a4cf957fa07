"""Constants of the sandbox: versions, engine configuration, tick, budgets."""

from __future__ import annotations

import importlib.metadata
import os

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
#: wasmtime's native stack for wasm frames (its default is 512 KiB). execr's CPython 3.13 is built
#: with a C recursion budget sized for 2 MiB, so deep C recursion (``json.loads`` of deep nesting,
#: recursion through ``map`` or ``__getattr__``) raises ``RecursionError`` instead of trapping.
MAX_WASM_STACK = 2 << 20


def engine_config(fuel: bool, stack: int = MAX_WASM_STACK) -> str:
    """What a compiled module depends on in the Engine's configuration (part of every cache key)."""
    return f"{'fuel+' if fuel else ''}epoch;stack={stack};v2"


ENGINE_CONFIG = engine_config(True)
TICK = 0.005  # epoch tick (seconds): the granularity of wall-clock stops
UNLIMITED_FUEL = 1 << 62
KEEP_RESIDENT = 4 << 20  # private bytes a recycled instance keeps between runs (past that, all are dropped)
MAX_IDLE = max(2, min(8, os.cpu_count() or 2))  # recycled instances kept per module
