"""Load test for ``execr serve``: N concurrent clients, a bounded number of requests.

    python bench/load.py                      # start a local server, 2,000 requests, 16 clients
    python bench/load.py --requests 10000     # the acceptance run
    python bench/load.py --url http://host:8000 --api-key KEY

The clients are keep-alive HTTP/1.1 connections driven by one asyncio loop: a load
generator on the same 2 cores must cost little next to the server (16 httpx clients in
threads cost ~0.7 ms of CPU per request and add their GIL waits to the latencies).
Prints req/s, latency percentiles, error counts and the server's RSS at the 1,000th and
the last request (only when the server was started here: read from /proc/PID/status).
A local server runs in a subprocess (``python -m execr serve`` when the CLI has it,
otherwise a ``python -c`` that calls ``execr.server.serve``) so the clients do not share
its GIL or inflate its RSS. Targets: >= 300 req/s with 16 clients, p99 <= 50 ms, zero
errors over 10,000 requests, RSS within +-10% between the 1,000th and the last request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from typing import Any

import httpx
from _stats import rss_kib


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli_has_serve() -> bool:
    try:
        out = subprocess.run([sys.executable, "-m", "execr", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "serve" in out.stdout


def _childrenrss_kib(pid: int) -> int:
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            total += rss_kib(int(name)) or 0
    return total


def start_server(workers: int | None, port: int, log: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, EXECR_QUIET="1")
    wflag = [] if workers is None else ["--workers", str(workers)]
    if _cli_has_serve():
        cmd = [sys.executable, "-m", "execr", "serve", "--port", str(port), *wflag]
    else:
        code = (
            "from execr.server import ServerConfig, serve\n"
            "if __name__ == '__main__':\n"
            f"    serve(ServerConfig(port={port}, workers={workers!r}))\n"
        )
        cmd = [sys.executable, "-c", code]
    # the server logs one JSON line per request (at info level, as in production) to ``log``
    out = open(log or os.devnull, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    finally:
        out.close()


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as c:
        while True:
            if proc is not None and proc.poll() is not None:
                raise SystemExit(f"server exited with status {proc.returncode}")
            try:
                if c.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become ready")
            time.sleep(0.2)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


async def _client(host: str, port: int, request: bytes, take: Any, record: Any, timeout: float = 60.0) -> None:
    """One keep-alive HTTP/1.1 connection sending ``request`` while ``take()`` allows."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while take():
            t0 = time.perf_counter()
            kind = None
            try:
                writer.write(request)
                status_line = await asyncio.wait_for(reader.readline(), timeout)
                status = int(status_line.split()[1])
                length = None
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length is None:
                    raise ValueError("response without Content-Length")
                body = await reader.readexactly(length)
                if status != 200:
                    kind = f"http_{status}"
                elif json.loads(body).get("outcome") != "completed":
                    kind = f"outcome_{json.loads(body).get('outcome')}"
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, TimeoutError) as e:
                kind = type(e).__name__
                record(time.perf_counter() - t0, kind)
                return
            record(time.perf_counter() - t0, kind)
    finally:
        writer.close()


def run(url: str, total: int, clients: int, api_key: str | None, code: str, pid: int | None) -> dict[str, Any]:
    """Drive ``total`` requests from ``clients`` concurrent connections (one asyncio loop, so the
    load generator's own CPU and GIL stay small next to the server's on a shared machine)."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps({"code": code}).encode()
    head = [
        "POST /v1/execute HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if api_key:
        head.append(f"Authorization: Bearer {api_key}")
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    issued = done = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}
    rss: dict[str, int | None] = {}
    worker_rss: dict[str, int] = {}

    def note_rss(label: str) -> None:
        if pid is not None:
            rss[label] = rss_kib(pid)
            worker_rss[label] = _childrenrss_kib(pid)

    def take() -> bool:
        nonlocal issued
        if issued >= total:
            return False
        issued += 1
        return True

    def record(elapsed: float, kind: str | None) -> None:
        nonlocal done
        latencies.append(elapsed)
        done += 1
        if kind:
            errors[kind] = errors.get(kind, 0) + 1
        if done == min(1000, total):
            note_rss("at_1000")
        if done == total:
            note_rss("at_last")

    async def main() -> None:
        await asyncio.gather(*(_client(host, port, request, take, record) for _ in range(clients)))

    t0 = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "clients": clients,
        "seconds": round(wall, 3),
        "req_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(percentile(lat, 0.50) * 1000, 2),
        "p90_ms": round(percentile(lat, 0.90) * 1000, 2),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
        "max_ms": round(lat[-1] * 1000, 2) if lat else None,
        "errors": sum(errors.values()) + (total - len(lat)),
        "error_kinds": errors,
        "server_rss_kib": rss,
        "workers_rss_kib": worker_rss,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="target an existing server instead of starting one")
    ap.add_argument("--api-key", default=os.environ.get("EXECR_API_KEY"))
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=None, help="workers of a locally started server")
    ap.add_argument("--code", default="print('hello')")
    ap.add_argument("--server-log", default=None, help="file for a local server's output (default: discarded)")
    ap.add_argument("--warmup", type=int, default=200, help="requests sent (and not counted) before measuring")
    opts = ap.parse_args()

    proc = None
    url = opts.url
    if url is None:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(opts.workers, port, opts.server_log)
    try:
        t0 = time.monotonic()
        wait_ready(url, proc)
        print(f"server ready at {url} after {time.monotonic() - t0:.1f} s", flush=True)
        if opts.warmup:
            run(url, opts.warmup, opts.clients, opts.api_key, opts.code, None)
        stats = run(url, opts.requests, opts.clients, opts.api_key, opts.code, None if proc is None else proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(stats, indent=2))
    rss = stats["server_rss_kib"]
    if rss.get("at_1000") and rss.get("at_last"):
        drift = (rss["at_last"] - rss["at_1000"]) / rss["at_1000"] * 100
        print(f"server RSS: {rss['at_1000']} KiB at request 1,000 -> {rss['at_last']} KiB at the last ({drift:+.1f}%)")
    ok = stats["errors"] == 0 and stats["req_per_s"] >= 300 and stats["p99_ms"] <= 50
    print(
        f"{stats['req_per_s']} req/s, p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms, "
        f"{stats['errors']} errors -> {'targets met' if ok else 'targets NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
