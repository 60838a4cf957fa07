"""execr benchmark: one host function round trip (``tools=``), measured from inside the guest.

Usage::

    python bench/tools.py                  # default runtime, 5,000 calls
    python bench/tools.py --scientific     # the scientific runtime too
    python bench/tools.py --calls 20000 --json

The guest times ``echo(i)`` (a small JSON argument and answer) with ``time.perf_counter_ns``;
that covers its JSON encoding, ``host.call``, the host's parse, validation, the hand-off to a
tool thread and back, the answer's ``host_alloc`` and copy, and the guest's decoding. ``host``
is the host's share (``ToolCall.duration``: parse to answer, the thread hand-off included).
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
print(ts[len(ts) // 2] / 1000, ts[int(len(ts) * 0.9)] / 1000, ts[int(len(ts) * 0.99)] / 1000)
"""


def echo(x: int) -> int:
    """Return x."""
    return x


def measure(runtime: str, calls: int) -> dict[str, float]:
    code = GUEST.format(calls=calls)
    r = execr.execute(code, runtime=runtime, tools={"echo": echo}, max_tool_calls=None, timeout=600)
    r.raise_for_outcome()
    p50, p90, p99 = (float(x) for x in r.stdout.split())
    host = sorted(c.duration for c in r.tool_calls[200:])
    return {"p50_us": p50, "p90_us": p90, "p99_us": p99, "host_p50_us": statistics.median(host) * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--scientific", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = {name: measure(name, args.calls) for name in ("default", *(("scientific",) if args.scientific else ()))}
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load": load, "runtimes": rows}, indent=2))
        return
    print(f"host function round trip, {args.calls} calls (load average {load:.2f} on {os.cpu_count()} cores)")
    print(f"{'runtime':<12}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}{'host p50':>10}")
    for name, row in rows.items():
        print(
            f"{name:<12}{row['p50_us']:>10.1f}{row['p90_us']:>10.1f}{row['p99_us']:>10.1f}{row['host_p50_us']:>10.1f}"
        )


if __name__ == "__main__":
    main()
