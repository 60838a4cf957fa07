"""Shared helpers of the bench runners: progress lines, percentiles and latency summaries."""

from __future__ import annotations

import math
import statistics
import sys
from typing import Any


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the report)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def pct(sorted_xs: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_xs:
        return float("nan")
    k = max(0, min(len(sorted_xs) - 1, math.ceil(p / 100 * len(sorted_xs)) - 1))
    return sorted_xs[k]


def summarize(samples: list[float], wall: float | None = None) -> dict[str, Any]:
    """n, p50/p99/mean/min/max in ms of ``samples`` (seconds); with ``wall``, also runs per second."""
    xs = sorted(samples)
    out = {
        "n": len(xs),
        "p50_ms": pct(xs, 50) * 1e3,
        "p99_ms": pct(xs, 99) * 1e3,
        "mean_ms": statistics.fmean(xs) * 1e3,
        "min_ms": xs[0] * 1e3,
        "max_ms": xs[-1] * 1e3,
    }
    if wall is not None:
        out["runs_per_s"] = len(xs) / wall
    return out


def rss_kib(pid: int) -> int | None:
    """Resident set size of process ``pid`` in KiB (Linux /proc; None if unreadable)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def footer(res: dict[str, Any], width: int, rule: int) -> list[str]:
    """The report's end: the targets (one PASS / FAIL / skipped line each, names ``width`` wide),
    the total time, between rules ``rule`` wide."""
    out = ["-" * rule, "targets"]
    for name, good in res["targets"].items():
        mark = "skipped" if good is None else ("PASS" if good else "FAIL")
        out.append(f"  {name:<{width}}{mark:>10}")
    return [*out, f"total benchmark time: {res['elapsed_s']:.0f} s", "=" * rule]
