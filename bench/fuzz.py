"""Longer fuzz runs than CI's: ``execute()`` arguments, batch lines, and ``execr serve`` over HTTP.

    python bench/fuzz.py                         # defaults: ~5-10 min on 2 cores
    python bench/fuzz.py --execute 5000 --batch 500 --http 3000

The properties are the test suite's (``tests/test_fuzz_*.py``): each ``execute()`` call
returns a Result or raises InvalidArgument; every batch line gets one result line; no
HTTP response is a 5xx. The HTTP part starts a real ``python -m execr serve`` on a
loopback port (2 workers, an API key, small caps), drives it with schemathesis cases
from its own ``/openapi.json`` plus raw junk bodies, and reads the server's RSS (server
process and its workers, from /proc) before and after. Prints cases tried per part, the
5xx count (must be 0) and the RSS figures; exits 1 if any property failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import execr  # noqa: E402
from execr import WorkerPool  # noqa: E402
from execr._parallel._batch import run_batch  # noqa: E402
from execr._request import make_request  # noqa: E402

KEY = "bench-fuzz-key-0123456789"


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def fuzz_execute(n: int, dirs: list[str]) -> dict[str, Any]:
    """``n`` validation-only cases and ``n // 4`` real runs."""
    import test_fuzz_execute as fx

    counts = {"validated": 0, "ran": 0, "invalid": 0}

    @_settings(n)
    @given(code=fx._maybe(fx.st.one_of(fx.SNIPPETS, fx.TEXT)), kwargs=fx.execute_kwargs(dirs))
    def validate(code: Any, kwargs: dict[str, Any]) -> None:
        counts["validated"] += 1
        if fx.check_call(make_request, code, kwargs) is None:
            counts["invalid"] += 1

    runtime = execr.Runtime()

    @_settings(max(1, n // 4))
    @given(code=fx._maybe(fx.st.one_of(fx.SNIPPETS, fx.SNIPPETS, fx.TEXT)), kwargs=fx.execute_kwargs(dirs))
    def run(code: Any, kwargs: dict[str, Any]) -> None:
        call = execr.execute
        if kwargs.get("runtime", "default") in (None, "default"):
            kwargs.pop("runtime", None)
            call = runtime.execute
        if fx.check_call(call, code, kwargs) is not None:
            counts["ran"] += 1

    validate()
    run()
    runtime.close()
    return counts


def fuzz_batch(n: int, folder: Path) -> dict[str, Any]:
    """``n`` generated batch files through run_batch on one warm worker."""
    import test_fuzz_batch as fb

    counts = {"files": 0, "lines": 0}
    with WorkerPool(1) as pool:

        @_settings(n)
        @given(lines=fb.LINES)
        def prop(lines: list[bytes]) -> None:
            i = counts["files"]
            counts["files"] += 1
            counts["lines"] += len(lines)
            src, out = folder / f"in{i}.jsonl", folder / f"out{i}.jsonl"
            src.write_bytes(b"\n".join(lines) + b"\n")
            assert run_batch(src, out, progress=False, pool=pool, timeout=2) == len(lines)
            fb.check_output(lines, out.read_text("utf-8"))

        prop()
    return counts


def _tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, KiB."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, pp in parents.items() if pp == p and c not in tree]
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


def fuzz_http(n: int) -> dict[str, Any]:
    """``n`` schemathesis cases and ``n`` raw bodies against a real ``execr serve`` subprocess."""
    import schemathesis

    import test_fuzz_server as fs

    port = fs.free_port()
    env = {**os.environ, "EXECR_API_KEYS": KEY, "EXECR_QUIET": "1"}
    cmd = [sys.executable, "-m", "execr", "serve", "--port", str(port), "--workers", "2"]
    cmd += ["--max-timeout", "2", "--max-memory", "64M", "--max-batch", "4", "--log-level", "error"]
    server = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    statuses: dict[int, int] = {}
    five = []
    try:
        deadline = time.monotonic() + 300
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as c:
            while True:
                assert server.poll() is None, "server exited"
                assert time.monotonic() < deadline, "server not ready"
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            for _ in range(50):  # a warm baseline: the first requests allocate the app's caches
                c.post("/v1/execute", json={"code": "print(1)"})
            rss_before = _tree_rss_kib(server.pid)
            spec = c.get("/openapi.json").json()
            schema = schemathesis.openapi.from_dict(spec)
            strategies = [
                op.ok().as_strategy(generation_mode=mode)
                for op in schema.get_all_operations()
                for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
            ]

            def record(status: int, what: Any) -> None:
                statuses[status] = statuses.get(status, 0) + 1
                if status >= 500:
                    five.append(what)

            @_settings(n)
            @given(data=st.data())
            def cases(data: st.DataObject) -> None:
                case = data.draw(st.one_of(strategies))
                r = case.call(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
                record(r.status_code, (case.method, case.path, case.body, r.text[:300]))

            @_settings(n)
            @given(raw=fs.RAW, batch=st.booleans())
            def raw_bodies(raw: bytes, batch: bool) -> None:
                body = b'{"requests": [' + raw + b"]}" if batch else raw
                route = "/v1/execute/batch" if batch else "/v1/execute"
                r = c.post(route, content=body, headers={"content-type": "application/json"})
                record(r.status_code, (route, body[:300], r.text[:300]))

            cases()
            raw_bodies()
            rss_after = _tree_rss_kib(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "cases": sum(statuses.values()),
        "5xx": len(five),
        "five_examples": five[:5],
        "statuses": dict(sorted(statuses.items())),
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--execute", type=int, default=4000, metavar="N", help="execute() cases (N/4 of them run)")
    parser.add_argument("--batch", type=int, default=400, metavar="N", help="generated batch files")
    parser.add_argument("--http", type=int, default=2000, metavar="N", help="schemathesis cases (as many raw bodies)")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="execr-fuzz-") as tmp:
        dirs = []
        for name in ("ro", "rw", "pkgs"):
            (Path(tmp) / name).mkdir()
            dirs.append(str(Path(tmp) / name))
        (Path(tmp) / "batch").mkdir()
        parts = (
            ("execute", lambda: fuzz_execute(args.execute, dirs)),
            ("batch", lambda: fuzz_batch(args.batch, Path(tmp) / "batch")),
            ("http", lambda: fuzz_http(args.http)),
        )
        for name, part in parts:
            if getattr(args, name) <= 0:
                continue
            started = time.perf_counter()
            try:
                figures = part()
            except Exception as e:  # a falsified property: report it and go on with the other parts
                failed = True
                figures = {"failed": f"{type(e).__name__}: {e}"[:2000]}
            figures["seconds"] = round(time.perf_counter() - started, 1)
            failed = failed or bool(figures.get("5xx"))
            print(f"{name:8} {json.dumps(figures)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
