"""execr benchmark: sessions on the default runtime (calls, fork, restore, checkpoint, rollback, idle sessions).

Usage::

    python bench/sessions.py            # full run (~1-2 min on 2 cores)
    python bench/sessions.py --quick    # ~20-40 s: fewer iterations
    python bench/sessions.py --json     # the same figures as JSON on stdout (progress goes to stderr)

Only the public API is timed (``Session.run``, ``fork``, ``checkpoint``, ``Session.restore``,
``Checkpoint.to_bytes``/``from_bytes``), so the figures follow whatever the implementation does.
The 64 MiB heap is ``big = b"x" * (64 << 20)`` (every page written). The idle sessions are held
in a fresh ``spawn`` process; RSS, descriptors and memory maps come from /proc/self. See
bench/README.md for each row and the targets (issue 13).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("EXECR_QUIET", "1")

from _stats import footer, log, summarize

import execr
from execr import Session

BIG = 'big = b"x" * (64 << 20)'
TEN = "buf = bytearray(10 << 20); n = 0"
TOUCH_TEN = "n = (n + 1) % 256; buf[::4096] = bytes([n]) * len(range(0, len(buf), 4096))"
RAISE = "y = 1\nraise ValueError('no')"

# --- helpers ------------------------------------------------------------------------------


def timed(
    n: int, step: Callable[[], Any], before: Callable[[], Any] | None = None, after: Any = None
) -> dict[str, Any]:
    """``n`` timings of ``step()``; ``before()`` runs untimed ahead of each, ``after(value)`` untimed behind it."""
    samples = []
    gc.collect()
    for _ in range(n):
        if before is not None:
            before()
        t0 = time.perf_counter()
        value = step()
        samples.append(time.perf_counter() - t0)
        if after is not None:
            after(value)
    return summarize(samples)


def ok(result: execr.Result, what: str, value: str | None = None) -> execr.Result:
    if not result.ok or (value is not None and result.value != value):
        raise SystemExit(f"bench: {what}: {result.outcome} {result.value!r} {result.error} {result.stderr[-300:]!r}")
    return result


def proc_self() -> dict[str, int]:
    """RSS and virtual size (bytes) and thread count from /proc/self/status; open descriptors and maps."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmSize"):
                out[key] = int(rest.split()[0]) * 1024
            elif key == "Threads":
                out[key] = int(rest)
    out["fds"] = len(os.listdir("/proc/self/fd"))
    with open("/proc/self/maps") as f:
        out["maps"] = sum(1 for _ in f)
    return out


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "wasmtime": version("wasmtime"),
        "execr": execr.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


# --- measurements -------------------------------------------------------------------------


def calls(rt: execr.Runtime, q: bool) -> dict[str, Any]:
    """A session call ``x + 1`` (and a statement) vs a fresh run of the same, in one process."""
    res: dict[str, Any] = {}
    with Session(on=rt) as s:
        ok(s.run("x = 1"), "setup")
        for _ in range(20):
            ok(s.run("x + 1"), "warm-up", "2")
        res["session"] = timed(300 if q else 2000, lambda: s.run("x + 1"))
        ok(s.run("x + 1"), "session call", "2")
        # a statement takes the general path in the guest (parse, split off a last expression, compile)
        res["session_statement"] = timed(300 if q else 2000, lambda: s.run("y = x + 1"))
        ok(s.run("y"), "statement call", "2")
    for _ in range(5):
        ok(rt.execute("x = 1\nx + 1"), "fresh warm-up")
    res["fresh"] = timed(100 if q else 500, lambda: rt.execute("x = 1\nx + 1"))
    res["ratio_p50"] = res["fresh"]["p50_ms"] / res["session"]["p50_ms"]
    with Session(on=rt) as s:
        ok(s.run(f"x = 1\n{BIG}"), "64 MiB heap")
        res["session_big"] = timed(20 if q else 100, lambda: s.run("x + 1"))
    return res


def fork_restore(rt: execr.Runtime, q: bool) -> dict[str, Any]:
    """fork() and Session.restore(), small heap and 64 MiB heap."""
    res: dict[str, Any] = {}
    close = Session.close
    for heap, setup, n in (("small", "x = 1", 50 if q else 200), ("big", f"x = 1\n{BIG}", 20 if q else 100)):
        with Session(on=rt) as s:
            ok(s.run(setup), f"{heap} heap")
            child = s.fork()
            ok(child.run("x + 1"), f"fork of the {heap} heap", "2")
            child.close()
            cp = s.checkpoint()
            res[f"fork_{heap}"] = timed(n, s.fork, after=close)
            res[f"restore_{heap}"] = timed(n, lambda cp=cp: Session.restore(cp, on=rt), after=close)
            back = Session.restore(cp, on=rt)
            ok(back.run("x + 1"), f"restore of the {heap} heap", "2")
            back.close()
            res[f"fork_after_call_{heap}"] = timed(5 if q else 20, s.fork, before=lambda s=s: s.run("x"), after=close)
            data = cp.to_bytes()
            res[f"restore_bytes_{heap}"] = timed(3 if q else 10, lambda d=data: Session.restore(d, on=rt), after=close)
            res[f"checkpoint_bytes_{heap}_mb"] = len(data) / 2**20
    return res


def checkpoints(rt: execr.Runtime, q: bool) -> dict[str, Any]:
    """checkpoint() right after a call that rewrote ~10 MiB, then to_bytes() and from_bytes() of it."""
    res: dict[str, Any] = {}
    n = 10 if q else 50
    with Session(on=rt) as s:
        ok(s.run(TEN), "10 MiB buffer")
        res["checkpoint_10mb"] = timed(n, s.checkpoint, before=lambda: ok(s.run(TOUCH_TEN), "touch"))
        cp = s.checkpoint()
        res["checkpoint_mb"] = cp.size / 2**20
        res["to_bytes"] = timed(5 if q else 20, cp.to_bytes)
        data = cp.to_bytes()
        res["bytes_mb"] = len(data) / 2**20
        res["from_bytes"] = timed(5 if q else 20, lambda: execr.Checkpoint.from_bytes(data))
    with Session(on=rt) as s:
        ok(s.run("x = 1"), "small")
        res["checkpoint_small"] = timed(n, s.checkpoint, before=lambda: ok(s.run("x += 1"), "small"))
        res["checkpoint_small_mb"] = s.checkpoint().size / 2**20
    return res


def rollback(rt: execr.Runtime, q: bool) -> dict[str, Any]:
    """A raising call kept vs rolled back (``atomic=True``): the difference is the rollback; and a stopped call."""
    res: dict[str, Any] = {}
    for heap, setup, n in (("small", "x = 1", 50 if q else 200), ("big", f"x = 1\n{BIG}", 10 if q else 30)):
        with Session(on=rt) as s:
            ok(s.run(setup), heap)
            kept = timed(n, lambda s=s: s.run(RAISE))
            undone = timed(n, lambda s=s: s.run(RAISE, atomic=True))
            if s.run("x").value != "1":
                raise SystemExit("bench: the rolled-back calls changed the session")
            res[heap] = {"kept": kept, "atomic": undone, "rollback_ms": undone["p50_ms"] - kept["p50_ms"]}
            stopped = timed(n, lambda s=s: s.run("b = bytearray(600 << 20)"))
            res[heap]["stopped_memory"] = stopped
            if s.run("'b' in dir()").value != "False":
                raise SystemExit("bench: a stopped call was not rolled back")
    return res


def _idle_child(n: int, out: Any) -> None:
    """In a fresh process: hold ``n`` sessions (each has run ``x = 1``), measuring /proc/self before and after."""
    os.environ["EXECR_QUIET"] = "1"
    rt = execr.Runtime()
    rt.warmup()
    with Session(on=rt) as s:  # warm the session path (module, snapshot image, reaper thread)
        ok(s.run("x = 1"), "idle warm-up")
    gc.collect()
    before = proc_self()
    held: list[Session] = []
    samples = []
    error = None
    try:
        for i in range(n):
            t0 = time.perf_counter()
            s = Session(on=rt)
            samples.append(time.perf_counter() - t0)
            held.append(s)
            ok(s.run(f"x = {i}"), "idle session")
    except Exception as e:  # a resource ran out: report how far it got
        error = f"{type(e).__name__}: {e}"
    gc.collect()
    during = proc_self()
    alive = sum(1 for i, s in enumerate(held) if not s.closed and s.run("x").value == str(i))
    t0 = time.perf_counter()
    for s in held:
        s.close()
    close_s = time.perf_counter() - t0
    held.clear()
    gc.collect()
    time.sleep(2.0)  # instances are freed on a background thread
    after = proc_self()
    trimmed = None
    with contextlib.suppress(OSError, AttributeError):  # what glibc keeps but could give back
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        trimmed = proc_self()["VmRSS"] / 2**20
    k = max(1, len(samples))
    out.put(
        {
            "n": n,
            "held": len(samples),
            "alive": alive,
            "error": error,
            "create": summarize(samples) if samples else None,
            "before": before,
            "during": during,
            "after": after,
            "rss_kb_each": (during["VmRSS"] - before["VmRSS"]) / k / 1024,
            "vm_mb_each": (during["VmSize"] - before["VmSize"]) / k / 2**20,
            "fds_each": (during["fds"] - before["fds"]) / k,
            "maps_each": (during["maps"] - before["maps"]) / k,
            "threads_added": during["Threads"] - before["Threads"],
            "close_all_s": close_s,
            "rss_after_trim_mb": trimmed,
            "rss_after_close_mb": after["VmRSS"] / 2**20,
            "fds_after_close": after["fds"],
        }
    )


def idle(n: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_idle_child, args=(n, q))
    p.start()
    res: dict[str, Any] = q.get(timeout=900)
    p.join()
    return res


# --- report -------------------------------------------------------------------------------

TARGETS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "session call x + 1 p50 <= 0.5 ms": lambda r: r["calls"]["session"]["p50_ms"] <= 0.5,
    "fork p50 <= 1 ms, 64 MiB heap": lambda r: r["fork"]["fork_big"]["p50_ms"] <= 1.0,
    "restore p50 <= 1 ms, 64 MiB heap": lambda r: r["fork"]["restore_big"]["p50_ms"] <= 1.0,
    "checkpoint p50 <= 5 ms, ~10 MiB changed": lambda r: r["checkpoint"]["checkpoint_10mb"]["p50_ms"] <= 5.0,
    "1,000 idle sessions held in one process": lambda r: r["idle"]["alive"] >= 1000,
}


def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    w = 84
    load = "/".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    end = "/".join(f"{x:.2f}" for x in m["loadavg_at_end"])
    busy = max(m["loadavg_at_start"][0], m["loadavg_at_end"][0]) > 0.5 * (m["nproc"] or 1) + 1
    lines = [
        "=" * w,
        f"execr {m['execr']} sessions benchmark, default runtime   ({'quick' if res['quick'] else 'full'} run)",
        f"machine: nproc={m['nproc']}  python={m['python']}  wasmtime={m['wasmtime']}",
        f"         loadavg at start {load}, at end {end}" + ("   (busy machine: figures are noisy)" if busy else ""),
        "=" * w,
        f"{'measurement':<54}{'p50 ms':>10}{'p99 ms':>10}{'n':>6}   note",
        "-" * w,
    ]

    def row(label: str, s: dict[str, Any], note: str = "") -> None:
        lines.append(f"{label:<54}{s['p50_ms']:>10.3f}{s['p99_ms']:>10.3f}{s['n']:>6}   {note}")

    c = res["calls"]
    lines.append("calls")
    row("  session call `x + 1`", c["session"])
    row("  session call `y = x + 1` (a statement)", c["session_statement"])
    row('  fresh execute("x = 1\\nx + 1"), same Runtime', c["fresh"], f"{c['ratio_p50']:.1f}x the session's p50")
    row("  session call `x + 1`, 64 MiB heap", c["session_big"])
    f = res["fork"]
    lines.append("fork and restore (small heap: x = 1; big: plus a 64 MiB bytes object)")
    for heap, name in (("small", "small heap"), ("big", "64 MiB heap")):
        row(f"  fork(), {name}, state unchanged since the last", f[f"fork_{heap}"])
        row(f"  fork(), {name}, right after a call", f[f"fork_after_call_{heap}"])
        row(f"  Session.restore(Checkpoint), {name}", f[f"restore_{heap}"])
        row(
            f"  Session.restore(bytes), {name}",
            f[f"restore_bytes_{heap}"],
            f"{f[f'checkpoint_bytes_{heap}_mb']:.1f} MiB of bytes",
        )
    k = res["checkpoint"]
    lines.append("checkpoint")
    row("  checkpoint() after a call that rewrote 10 MiB", k["checkpoint_10mb"], f"{k['checkpoint_mb']:.1f} MiB pages")
    row("  checkpoint() after a small call", k["checkpoint_small"], f"{k['checkpoint_small_mb']:.1f} MiB pages")
    row("  Checkpoint.to_bytes() of the 10 MiB one", k["to_bytes"], f"{k['bytes_mb']:.1f} MiB")
    row("  Checkpoint.from_bytes() of it", k["from_bytes"], "SHA-256 checked")
    lines.append("failed calls (a raise kept vs rolled back with atomic=True; a memory-limit stop)")
    for heap, name in (("small", "small heap"), ("big", "64 MiB heap")):
        r = res["rollback"][heap]
        row(f"  raise, kept, {name}", r["kept"])
        row(f"  raise, atomic=True (rolled back), {name}", r["atomic"], f"rollback ~{r['rollback_ms']:.2f} ms")
        row(f"  stopped by the memory limit (rolled back), {name}", r["stopped_memory"])
    i = res["idle"]
    lines.append(f"idle sessions held in one process (fresh spawn process, each ran `x = i`; N={i['n']})")
    if i["error"]:
        lines.append(f"  stopped after {i['held']} sessions: {i['error']}")
    if i["create"]:
        row("  Session() creation", i["create"])
    b, d = i["before"], i["during"]
    lines.append(f"  alive and correct: {i['alive']} of {i['n']}")
    lines.append(
        f"  RSS {b['VmRSS'] / 2**20:.0f} -> {d['VmRSS'] / 2**20:.0f} MiB: {i['rss_kb_each']:.0f} KiB per idle session"
    )
    lines.append(f"  descriptors {b['fds']} -> {d['fds']}: {i['fds_each']:.2f} per idle session")
    lines.append(
        f"  memory maps {b['maps']} -> {d['maps']}: {i['maps_each']:.1f} per session; "
        f"virtual {i['vm_mb_each']:.0f} MiB per session; threads +{i['threads_added']}"
    )
    lines.append(
        f"  close all: {i['close_all_s'] * 1e3:.0f} ms; 2 s later RSS {i['rss_after_close_mb']:.0f} MiB"
        + ("" if i["rss_after_trim_mb"] is None else f" ({i['rss_after_trim_mb']:.0f} after malloc_trim)")
        + f", descriptors {i['fds_after_close']}"
    )
    lines += footer(res, 60, w)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    ap.add_argument("--idle", type=int, default=1000, metavar="N", help="idle sessions to hold (default 1000)")
    a = ap.parse_args(argv)
    t_all = time.perf_counter()
    res: dict[str, Any] = {"quick": a.quick, "machine": machine()}
    log("warming up the default runtime")
    rt = execr.Runtime()
    rt.warmup()
    if rt.snapshot_error:
        raise SystemExit(f"bench: the snapshot is unavailable: {rt.snapshot_error}")
    for key, fn, what in (
        ("calls", calls, "session calls vs fresh runs"),
        ("fork", fork_restore, "fork and restore"),
        ("checkpoint", checkpoints, "checkpoint, to_bytes, from_bytes"),
        ("rollback", rollback, "failed calls and rollback"),
    ):
        log(what)
        res[key] = fn(rt, a.quick)
    log(f"{a.idle} idle sessions in a fresh process")
    res["idle"] = idle(a.idle)
    rt.close()
    res["elapsed_s"] = time.perf_counter() - t_all
    res["machine"]["loadavg_at_end"] = os.getloadavg()
    targets: dict[str, bool | None] = {}
    for name, test in TARGETS.items():
        try:
            targets[name] = bool(test(res))
        except (TypeError, KeyError):
            targets[name] = None
    res["targets"] = targets
    print(json.dumps(res, indent=2) if a.json else render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
