"""execr mcp benchmark: ``run_python("print(1)")`` over stdio, JSON-RPC included, next to in-process ``execute``.

Usage::

    python bench/mcp.py            # 1,000 measured calls over stdio (+ 200 through the official SDK client)
    python bench/mcp.py --quick    # 300 calls (+ 100)
    python bench/mcp.py --json     # the same figures as JSON on stdout (progress goes to stderr)

It starts ``python -m execr.mcp`` (stdio, runs in the server process) and talks to it with
a minimal line-delimited JSON-RPC client: each sample is the wall time from writing one
``tools/call`` request to reading its response, so it covers the pipes, the server's JSON
parsing and validation, the run itself and the response's serialization. A second series
drives the same kind of server through the official SDK client (``mcp.ClientSession``), whose
own pydantic parsing and output-schema validation add to each call. Errors are responses that
are JSON-RPC errors, have ``isError``, or do not print ``1``. Server memory is its VmRSS after
the handshake, after the warm-up calls, and after the measured calls. The last row is
``execr.execute("print(1)")`` in this process, for the ratio. Targets: p50 <= 5 ms, 0 errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

os.environ.setdefault("EXECR_QUIET", "1")

from _stats import log, rss_kib, summarize  # (before this folder leaves the import path, below)

import execr

# This file is named like the SDK's package: keep its folder off the import path (and off the servers').
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

CODE = "print(1)"
TITLE = 'run_python("print(1)")'
PROTOCOL = "2025-06-18"


# --- a minimal stdio JSON-RPC client ------------------------------------------------------


class Stdio:
    """``python -m execr.mcp`` with line-delimited JSON-RPC over its stdin and stdout."""

    def __init__(self) -> None:
        cmd = [sys.executable, "-m", "execr.mcp"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, cwd=ROOT)
        self.ids = 0

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}) + "\n"
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line.encode())
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                raise SystemExit(f"bench: the server exited ({self.proc.wait()})")
            message: dict[str, Any] = json.loads(raw)
            if message.get("id") == self.ids:
                return message

    def notify(self, method: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", "method": method}) + "\n").encode())

    def handshake(self) -> dict[str, Any]:
        info = {"name": "bench", "version": "0"}
        reply = self.request("initialize", {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": info})
        self.notify("notifications/initialized")
        return reply

    def call(self) -> bool:
        """One run_python("print(1)"); True when it answered as expected."""
        reply = self.request("tools/call", {"name": "run_python", "arguments": {"code": CODE}})
        result = reply.get("result")
        return bool(
            result and not result.get("isError") and (result.get("structuredContent") or {}).get("stdout") == "1\n"
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def over_stdio(n: int, warm: int) -> dict[str, Any]:
    server = Stdio()
    try:
        t0 = time.perf_counter()
        reply = server.handshake()
        handshake_ms = (time.perf_counter() - t0) * 1e3
        assert "result" in reply, reply
        rss_start = rss_kib(server.proc.pid)
        t0 = time.perf_counter()
        first_ok = server.call()
        first_ms = (time.perf_counter() - t0) * 1e3
        errors = 0 if first_ok else 1
        for _ in range(warm):
            errors += not server.call()
        rss_before = rss_kib(server.proc.pid)
        samples = []
        measured_errors = 0
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            ok = server.call()
            samples.append(time.perf_counter() - t)
            measured_errors += not ok
        wall = time.perf_counter() - start
        rss_after = rss_kib(server.proc.pid)
    finally:
        server.close()
    return {
        **summarize(samples),
        "calls_per_s": n / wall,
        "errors": measured_errors,
        "warmup_errors": errors,
        "handshake_ms": handshake_ms,
        "first_call_ms": first_ms,
        "rss_kib": {"after_handshake": rss_start, "after_warmup": rss_before, "after_calls": rss_after},
    }


def over_sdk(n: int, warm: int) -> dict[str, Any]:
    """The same calls through mcp.ClientSession (stdio_client)."""
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    samples: list[float] = []
    errors = 0

    async def go() -> None:
        nonlocal errors
        params = StdioServerParameters(command=sys.executable, args=["-m", "execr.mcp"], env=dict(os.environ), cwd=ROOT)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for i in range(warm + n):
                t = time.perf_counter()
                result = await session.call_tool("run_python", {"code": CODE})
                dt = time.perf_counter() - t
                if i >= warm:
                    samples.append(dt)
                    out = result.structuredContent or {}
                    errors += bool(result.isError or out.get("stdout") != "1\n")

    anyio.run(go)
    return {**summarize(samples), "errors": errors}


def in_process(n: int, warm: int) -> dict[str, Any]:
    for _ in range(warm):
        execr.execute(CODE)
    samples = []
    errors = 0
    for _ in range(n):
        t = time.perf_counter()
        r = execr.execute(CODE)
        samples.append(time.perf_counter() - t)
        errors += r.stdout != "1\n"
    return {**summarize(samples), "errors": errors}


# --- report -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    try:
        load: Any = os.getloadavg()
    except OSError:
        load = None
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "wasmtime": version("wasmtime"),
        "mcp": version("mcp"),
        "execr": execr.__version__,
        "loadavg_at_start": load,
    }


TARGETS = {
    "stdio run_python p50 <= 5 ms": lambda r: r["stdio"]["p50_ms"] <= 5.0,
    "0 errors over the measured calls": lambda r: r["stdio"]["errors"] == 0 and r["stdio"]["warmup_errors"] == 0,
}


def render(res: dict[str, Any]) -> str:
    m, s, k, e = res["machine"], res["stdio"], res["sdk"], res["execute"]
    load = m["loadavg_at_start"]
    w = 78
    lines = [
        "=" * w,
        f"execr {m['execr']} MCP benchmark   ({'quick' if res['quick'] else 'full'} run)",
        f"machine: nproc={m['nproc']}  python={m['python']}  wasmtime={m['wasmtime']}  mcp={m['mcp']}",
        f"         loadavg at start {'n/a' if not load else '/'.join(f'{x:.2f}' for x in load)}",
        "=" * w,
        f"{TITLE:<38}{'n':>7}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'errors':>8}",
        "-" * w,
    ]

    def row(label: str, d: dict[str, Any]) -> None:
        lines.append(
            f"{label:<38}{d['n']:>7,}{d['p50_ms']:>9.2f}{d['p99_ms']:>9.2f}{d['mean_ms']:>9.2f}{d['errors']:>8}"
        )

    row("stdio, raw JSON-RPC client", s)
    row("stdio, official mcp.ClientSession", k)
    row('in process: execr.execute("print(1)")', e)
    lines += [
        "-" * w,
        f"stdio p50 / in-process p50: {s['p50_ms'] / e['p50_ms']:.2f}x   "
        f"(+{s['p50_ms'] - e['p50_ms']:.2f} ms per call for MCP over stdio)",
        f"stdio throughput, one client: {s['calls_per_s']:,.0f} calls/s;  handshake {s['handshake_ms']:.1f} ms, "
        f"first call {s['first_call_ms']:.1f} ms",
    ]
    rss = s["rss_kib"]
    mib = {key: (v / 1024 if v is not None else float("nan")) for key, v in rss.items()}
    lines.append(
        f"server RSS: {mib['after_handshake']:.1f} MiB after the handshake, {mib['after_warmup']:.1f} MiB after "
        f"warm-up, {mib['after_calls']:.1f} MiB after {s['n']:,} calls "
        f"({mib['after_calls'] - mib['after_warmup']:+.1f} MiB)"
    )
    lines += ["-" * w, "targets:"]
    for name, ok in res["targets"].items():
        lines.append(f"  [{'ok' if ok else 'MISSED' if ok is not None else 'n/a'}] {name}")
    lines.append("=" * w)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="300 calls instead of 1,000")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    a = ap.parse_args(argv)
    n, n_sdk, warm = (300, 100, 30) if a.quick else (1000, 200, 50)
    res: dict[str, Any] = {"quick": a.quick, "machine": machine()}
    log(f"stdio: {n} run_python calls after {warm} warm-up calls (raw JSON-RPC client)")
    res["stdio"] = over_stdio(n, warm)
    log(f"stdio: {n_sdk} calls through mcp.ClientSession")
    res["sdk"] = over_sdk(n_sdk, warm)
    log(f"in process: {n} execr.execute calls")
    res["execute"] = in_process(n, warm)
    res["targets"] = {name: bool(test(res)) for name, test in TARGETS.items()}
    print(json.dumps(res, indent=2) if a.json else render(res))
    return 0 if all(res["targets"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
