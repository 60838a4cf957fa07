"""Constants of the sandbox: versions, engine configuration, tick, budgets."""

from __future__ import annotations

import importlib.metadata
import os

WASMTIME_VERSION = importlib.metadata.version("wasmtime")
ENGINE_CONFIG = "fuel+epoch;v1"
TICK = 0.005  # epoch tick (seconds): the granularity of wall-clock stops
UNLIMITED_FUEL = 1 << 62
KEEP_RESIDENT = 4 << 20  # private bytes a recycled instance keeps between runs (past that, all are dropped)
MAX_IDLE = max(2, min(8, os.cpu_count() or 2))  # recycled instances kept per module
