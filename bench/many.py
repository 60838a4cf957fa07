"""Benchmark execute_many: runs/s with 1 and 2 local workers and with backend="ray",
then a 10,000-item batch with 1% hostile items (outcomes counted, normal stdout verified).

    python bench/many.py [N_THROUGHPUT] [N_BATCH]
"""

from __future__ import annotations

import collections
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

from execr._parallel._batch import run_batch
from execr._parallel._many import execute_many, iter_results
from execr._parallel._pool import WorkerPool

MiB = 1024 * 1024
HOSTILE = [
    ({"code": "while True: pass", "timeout": 1}, "timed_out"),
    ({"code": "a = []\nwhile True: a.append(bytearray(10**6))", "memory_limit": 64 * MiB}, "memory_limit"),
    ({"code": "for i in range(10000): print('x' * 100)", "max_stdout": 1000}, "completed"),
]


def throughput(n: int, workers: int, backend: str = "local") -> float:
    """Print and return runs/s: for "local" on a warm pool; for "ray" both with actor start-up
    and from the 10% mark on (actors warm, as the local pool is), the figure returned."""
    items = [f"print({i})" for i in range(n)]
    if backend == "local":
        with WorkerPool(workers) as pool:
            pool.wait_ready()
            t = time.perf_counter()
            results = execute_many(items, pool=pool, progress=False)
            dt = time.perf_counter() - t
        ok = all(r.stdout == f"{i}\n" for i, r in enumerate(results))
        print(f"local workers={workers}: {n} runs in {dt:.2f} s = {n / dt:,.0f} runs/s, correct={ok} (warm pool)")
        return n / dt
    mark = n // 10
    t = time.perf_counter()
    t_mark, ok = t, True
    for k, (i, r) in enumerate(iter_results(items, workers, backend=backend, progress=False), 1):
        ok &= r.stdout == f"{i}\n"
        if k == mark:
            t_mark = time.perf_counter()
    end = time.perf_counter()
    warm = (n - mark) / (end - t_mark)
    print(
        f"{backend:5} workers={workers}: {n} runs in {end - t:.2f} s = {n / (end - t):,.0f} runs/s with actor"
        f" start-up; {warm:,.0f} runs/s from the 10% mark on (actors warm); correct={ok}",
        flush=True,
    )
    return warm


def batch(n: int) -> None:
    expect = {}
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        with open(src, "w") as f:
            for i in range(n):
                if i % 100 == 50:
                    req, outcome = HOSTILE[(i // 100) % 3]
                    expect[i + 1] = (outcome, None)
                    f.write(json.dumps({"id": i, **req}) + "\n")
                else:
                    expect[i + 1] = ("completed", f"{i * 3}\n")
                    f.write(json.dumps({"id": i, "code": f"print({i} * 3)"}) + "\n")
        t = time.perf_counter()
        run_batch(src, out, workers=2, progress=False)
        dt = time.perf_counter() - t
        counts: collections.Counter[str] = collections.Counter()
        wrong = 0
        lines = 0
        for raw in out.read_text().splitlines():
            r = json.loads(raw)
            lines += 1
            counts[r["outcome"]] += 1
            outcome, stdout = expect[r["line"]]
            if r["outcome"] != outcome or (stdout is not None and r["stdout"] != stdout):
                wrong += 1
    print(
        f"batch of {n} (1% hostile) with 2 workers: {dt:.1f} s, {lines} result lines,",
        f"outcomes {dict(counts)}, wrong {wrong}",
    )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    n_batch = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    throughput(n, 1)
    local = throughput(n, 2)
    if importlib.util.find_spec("ray") is not None:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            warm = throughput(n, 2, "ray")
            print(f"ray/local (warm, 2 workers each): {warm / local:.0%}")
        finally:
            ray.shutdown()
    else:
        print("ray: not installed, skipped")
    batch(n_batch)
