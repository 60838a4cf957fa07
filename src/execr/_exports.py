"""Exports: the names execr's instrumentation adds to a CPython module, shared by the rewriter and the sandbox."""

from __future__ import annotations

from typing import Final

__all__ = ["GROW_FAILURES_EXPORT", "SP_EXPORT", "TABLE_EXPORT"]

SP_EXPORT: Final = "__execr_sp"  # the shadow stack pointer (a mutable i32 global)
TABLE_EXPORT: Final = "__execr_table"  # the function table (entry calls go through it)
GROW_FAILURES_EXPORT: Final = "__execr_grow_failures"  # mutable i32: memory.grow calls that returned -1
