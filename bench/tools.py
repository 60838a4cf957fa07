"""execr benchmark: one host function round trip (``tools=``), measured from inside the guest.

Usage::

    python bench/tools.py                  # default runtime, 5,000 calls
    python bench/tools.py --scientific     # the scientific runtime too
    python bench/tools.py --calls 20000 --json

The guest times ``echo(i)`` (a small JSON argument and answer) with ``time.perf_counter_ns``;
that covers its JSON encoding, ``host.call``, the host's parse, validation, the hand-off to a
tool thread and back, the answer's ``host_alloc`` and copy, and the guest's decoding. ``host``
is the host's share (``ToolCall.duration``: parse to answer, the thread hand-off included).
``timer`` is the p50 of the same timing around nothing: the clock reads' own share of each
figure (each is a ``clock_time_get`` host call), included in them, not subtracted.
Target (issue 13): round trip p50 <= 100 us on the default runtime. Figures need an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("EXECR_QUIET", "1")

import execr

GUEST = """
import time
from execr_tools import echo
for i in range(200):
    echo(i)
ts = []
for i in range({calls}):
    t = time.perf_counter_ns()
    echo(i)
    ts.append(time.perf_counter_ns() - t)
ts.sort()
empty = []
for i in range(1000):
    t = time.perf_counter_ns()
    empty.append(time.perf_counter_ns() - t)
empty.sort()
print(ts[len(ts) // 2] / 1000, ts[int(len(ts) * 0.9)] / 1000, ts[int(len(ts) * 0.99)] / 1000, empty[500] / 1000)
"""
TARGET_P50_US = 100.0


def echo(x: int) -> int:
    """Return x."""
    return x


def measure(runtime: str, calls: int) -> dict[str, float]:
    code = GUEST.format(calls=calls)
    r = execr.execute(code, runtime=runtime, tools={"echo": echo}, max_tool_calls=None, timeout=600)
    r.raise_for_outcome()
    p50, p90, p99, timer = (float(x) for x in r.stdout.split())
    host = sorted(c.duration for c in r.tool_calls[200:])
    return {
        "p50_us": p50,
        "p90_us": p90,
        "p99_us": p99,
        "host_p50_us": statistics.median(host) * 1e6,
        "timer_p50_us": timer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--scientific", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = {name: measure(name, args.calls) for name in ("default", *(("scientific",) if args.scientific else ()))}
    load = os.getloadavg()[0]
    verdict = "PASS" if rows["default"]["p50_us"] <= TARGET_P50_US else "FAIL"
    if args.json:
        print(
            json.dumps(
                {"load": load, "runtimes": rows, "target": {"p50_us": TARGET_P50_US, "verdict": verdict}}, indent=2
            )
        )
        return
    print(f"host function round trip, {args.calls} calls (load average {load:.2f} on {os.cpu_count()} cores)")
    print(f"{'runtime':<12}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}{'host p50':>10}{'timer':>10}")
    for name, row in rows.items():
        figures = (row[k] for k in ("p50_us", "p90_us", "p99_us", "host_p50_us", "timer_p50_us"))
        print(f"{name:<12}" + "".join(f"{x:>10.1f}" for x in figures))
    print(f"target: default p50 <= {TARGET_P50_US:.0f} us: {verdict}")


if __name__ == "__main__":
    main()
