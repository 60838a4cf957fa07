"""Pure-Python kernels, native CPython against CPython-in-wasm, timed inside the guest.

Each kernel runs in one interpreter (native: ``python3 -c``; wasm: a minimal wasmtime-py WASI
command runner, ``python -c`` with the stdlib preopened read-only), after one untimed warm-up, and
``time.perf_counter`` measures ``--repeat`` runs of it; the table shows the median.

    python bench/kernels.py                                  # native vs execr's runtimes, through execr
    python bench/kernels.py --target execr=default --target execr=default,fuel=1 --target execr=python3.12
    python bench/kernels.py --target label=own,wasm=/work/cpython-out/python.wasm,stdlib=/work/cpython-out
    python bench/kernels.py --target label=nofuel,wasm=X.wasm,stdlib=DIR,fuel=0 --target label=fuel,...

A target is comma-separated key=value pairs. Through execr's own host (``execr.Runtime().execute``,
the snapshot path, no timeout):
    execr=RUNTIME     the runtime (default, python3.12, scientific)
    fuel=0|1          1: run with a fuel limit (2**62), i.e. on the fuel-metering engine (default 0)
Or a minimal wasmtime-py runner of its own:
    label=NAME        column title
    wasm=PATH         the binary (``pinned`` as a whole target means ``execr.binary()``, stdlib embedded)
    stdlib=DIR        host directory preopened read-only at --guest-lib (holds python313.zip)
    fuel=0|1          wasmtime Config.consume_fuel (default 1, as execr runs)
    epoch=0|1         wasmtime Config.epoch_interruption (default 1, as execr runs)
    env=K:V[;K:V]     guest environment (e.g. env=PYTHONMALLOC:mimalloc)
    stack=BYTES       wasmtime Config.max_wasm_stack (default: wasmtime's)

Needs only the standard library and wasmtime (use /work/main/.venv/bin/python).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

# --------------------------------------------------------------------------------------------
# The kernels. Each defines run() (timed) and may define setup() (not timed), in its own namespace.
# --------------------------------------------------------------------------------------------
KERNELS: dict[str, str] = {}

KERNELS["fib25"] = """
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
def run():
    return fib(25)
"""

KERNELS["sum_range"] = """
def run():
    return sum(range(10**6))
"""

KERNELS["sort_strings"] = """
import random, string
def run():
    rnd = random.Random(42)
    letters = string.ascii_letters
    data = [''.join(rnd.choices(letters, k=12)) for _ in range(100_000)]
    return sorted(data)[0]
"""

KERNELS["json_20k"] = """
import json
def setup():
    global DATA
    DATA = [{"id": i, "name": "user%d" % i, "score": i * 1.5, "tags": ["a", "b", str(i % 7)],
             "active": i % 2 == 0, "parent": None} for i in range(20_000)]
def run():
    return len(json.loads(json.dumps(DATA)))
"""

KERNELS["nbody"] = """
PI = 3.14159265358979323
SOLAR_MASS = 4 * PI * PI
DAYS_PER_YEAR = 365.24
def make_bodies():
    return [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], SOLAR_MASS),
        ([4.84143144246472090e+00, -1.16032004402742839e+00, -1.03622044471123109e-01],
         [1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
          -6.90460016972063023e-05 * DAYS_PER_YEAR], 9.54791938424326609e-04 * SOLAR_MASS),
        ([8.34336671824457987e+00, 4.12479856412430479e+00, -4.03523417114321381e-01],
         [-2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
          2.30417297573763929e-05 * DAYS_PER_YEAR], 2.85885980666130812e-04 * SOLAR_MASS),
        ([1.28943695621391310e+01, -1.51111514016986312e+01, -2.23307578892655734e-01],
         [2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
          -2.96589568540237556e-05 * DAYS_PER_YEAR], 4.36624404335156298e-05 * SOLAR_MASS),
        ([1.53796971148509165e+01, -2.59193146099879641e+01, 1.79258772950371181e-01],
         [2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
          -9.51592254519715870e-05 * DAYS_PER_YEAR], 5.15138902046611451e-05 * SOLAR_MASS),
    ]
def advance(bodies, pairs, dt, n):
    for _ in range(n):
        for ((r1, v1, m1), (r2, v2, m2)) in pairs:
            dx = r1[0] - r2[0]
            dy = r1[1] - r2[1]
            dz = r1[2] - r2[2]
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** -1.5)
            b1m = m1 * mag
            b2m = m2 * mag
            v1[0] -= dx * b2m
            v1[1] -= dy * b2m
            v1[2] -= dz * b2m
            v2[0] += dx * b1m
            v2[1] += dy * b1m
            v2[2] += dz * b1m
        for (r, (vx, vy, vz), m) in bodies:
            r[0] += dt * vx
            r[1] += dt * vy
            r[2] += dt * vz
def energy(bodies, pairs):
    e = 0.0
    for ((r1, v1, m1), (r2, v2, m2)) in pairs:
        dx = r1[0] - r2[0]; dy = r1[1] - r2[1]; dz = r1[2] - r2[2]
        e -= (m1 * m2) / ((dx * dx + dy * dy + dz * dz) ** 0.5)
    for (r, (vx, vy, vz), m) in bodies:
        e += m * (vx * vx + vy * vy + vz * vz) / 2.
    return e
def run():
    bodies = make_bodies()
    pairs = [(bodies[i], bodies[j]) for i in range(len(bodies)) for j in range(i + 1, len(bodies))]
    advance(bodies, pairs, 0.01, 5_000)
    return energy(bodies, pairs)
"""

# A richards-style scheduler: task objects with priorities, packets passed between queues,
# method calls and attribute access dominate (written for this file, not pyperformance's code).
KERNELS["scheduler"] = """
class Packet:
    __slots__ = ("link", "ident", "kind", "datum", "data")
    def __init__(self, link, ident, kind):
        self.link = link; self.ident = ident; self.kind = kind; self.datum = 0; self.data = [0] * 4
    def append_to(self, lst):
        self.link = None
        if lst is None:
            return self
        p = lst
        while p.link is not None:
            p = p.link
        p.link = self
        return lst
class Task:
    def __init__(self, sched, ident, prio, queue):
        self.sched = sched; self.ident = ident; self.prio = prio; self.queue = queue
        self.held = False; self.waiting = queue is None; self.count = 0
    def runnable(self):
        return not self.held and (self.queue is not None or not self.waiting)
    def take(self):
        p = self.queue
        self.queue = p.link
        self.waiting = self.queue is None
        return p
    def step(self, pkt):
        self.count += 1
        if pkt is None:
            self.waiting = True
            return self
        pkt.datum = (pkt.datum * 31 + self.count) & 0xFFFF
        for i in range(4):
            pkt.data[i] = (pkt.data[i] + pkt.datum + i) % 26
        if self.count % 7 == 0:
            self.held = True
            return self.sched.release((self.ident + 3) % self.sched.n)
        return self.sched.send(pkt, (self.ident + pkt.datum) % self.sched.n)
class Sched:
    def __init__(self, n):
        self.n = n
        self.tasks = [Task(self, i, (i * 7) % 11, None) for i in range(n)]
        self.steps = 0
        for i in range(2 * n):  # a fixed pool of packets circulates between the tasks
            self.send(Packet(None, i % n, i % 3), i % n)
    def send(self, pkt, dest):
        t = self.tasks[dest]
        t.queue = pkt.append_to(t.queue)
        t.waiting = False
        return t
    def release(self, ident):
        t = self.tasks[ident]
        t.held = False
        return t
    def run(self, limit):
        order = sorted(self.tasks, key=lambda t: -t.prio)
        while self.steps < limit:
            progressed = False
            for t in order:
                if t.runnable():
                    pkt = t.take() if t.queue is not None else None
                    t.step(pkt)
                    self.steps += 1
                    progressed = True
            if not progressed:  # everyone idle or held: an "interrupt" wakes them all
                for t in self.tasks:
                    t.held = False
                    t.waiting = False
        return sum(t.count for t in self.tasks)
def run():
    return Sched(12).run(150_000)
"""

KERNELS["regex"] = """
import re, random
def setup():
    global TEXT
    rnd = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "x1y2", "foo@bar.com", "2024-05-17", "http://ex.am/ple",
             "CamelCase", "snake_case", "192.168.0.1", "The", "quick", "brown", "fox"]
    TEXT = "\\n".join(" ".join(rnd.choice(words) for _ in range(12)) for _ in range(4_000))
PATS = [r"[\\w.]+@[\\w.]+", r"\\d{4}-\\d{2}-\\d{2}", r"https?://[^\\s]+", r"\\b[A-Z][a-z]+[A-Z]\\w*",
        r"(\\d+)\\.(\\d+)\\.(\\d+)\\.(\\d+)", r"\\b(?:alpha|gamma)\\b", r"^The.*fox$"]
def run():
    n = 0
    for p in PATS:
        n += len(re.findall(p, TEXT, re.M))
    n += len(re.sub(r"(\\w+)_(\\w+)", r"\\2-\\1", TEXT))
    n += sum(1 for line in TEXT.splitlines() if re.match(r"\\w+ \\w+", line))
    return n
"""

KERNELS["float"] = """
from math import sin, cos, sqrt
class Point:
    __slots__ = ("x", "y", "z")
    def __init__(self, i):
        self.x = x = sin(i)
        self.y = cos(i) * 3
        self.z = (x * x) / 2
    def normalize(self):
        norm = sqrt(self.x * self.x + self.y * self.y + self.z * self.z)
        self.x /= norm; self.y /= norm; self.z /= norm
    def maximize(self, other):
        self.x = self.x if self.x > other.x else other.x
        self.y = self.y if self.y > other.y else other.y
        self.z = self.z if self.z > other.z else other.z
        return self
def run():
    points = [Point(i) for i in range(60_000)]
    for p in points:
        p.normalize()
    nxt = points[0]
    for p in points[1:]:
        nxt = nxt.maximize(p)
    return nxt.x
"""

KERNELS["unpack_seq"] = """
def run():
    t = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    l = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    s = 0
    for _ in range(400_000):
        a, b, c, d, e, f, g, h, i, j = t
        a, b, c, d, e, f, g, h, i, j = l
        a, b, c, d, e, f, g, h, i, j = t
        a, b, c, d, e, f, g, h, i, j = l
        s += a + j
    return s
"""

KERNELS["spectral_norm"] = """
def eval_A(i, j):
    return 1.0 / ((i + j) * (i + j + 1) // 2 + i + 1)
def mul_Av(v, out):
    n = len(v)
    for i in range(n):
        out[i] = sum(eval_A(i, j) * v[j] for j in range(n))
def mul_Atv(v, out):
    n = len(v)
    for i in range(n):
        out[i] = sum(eval_A(j, i) * v[j] for j in range(n))
def run(n=90):
    u = [1.0] * n; v = [0.0] * n; tmp = [0.0] * n
    for _ in range(4):
        mul_Av(u, tmp); mul_Atv(tmp, v)
        mul_Av(v, tmp); mul_Atv(tmp, u)
    vbv = sum(a * b for a, b in zip(u, v)); vv = sum(b * b for b in v)
    return (vbv / vv) ** 0.5
"""

KERNELS["nqueens"] = """
from itertools import permutations
def n_queens(n):
    cols = range(n)
    return [vec for vec in permutations(cols)
            if n == len(set(vec[i] + i for i in cols)) == len(set(vec[i] - i for i in cols))]
def run():
    return len(n_queens(8))
"""

KERNELS["dict_str"] = """
def run():
    counts = {}
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
             "incididunt ut labore et dolore magna aliqua").split()
    for i in range(120_000):
        w = words[i % len(words)] + str(i % 97)
        counts[w] = counts.get(w, 0) + 1
    return len(" ".join(sorted(k.upper() for k in counts)))
"""

HEADLINE = ["fib25", "sum_range", "sort_strings", "json_20k"]

HARNESS = """
import json, sys, time, gc
def _main(kernels, repeat):
    out = {}
    for name, src in kernels.items():
        ns = {"__name__": "kernel_" + name}
        exec(compile(src, "<kernel %s>" % name, "exec"), ns)
        if "setup" in ns:
            ns["setup"]()
        run = ns["run"]
        run()  # warm-up (also: imports, specialization)
        times = []
        for _ in range(repeat):
            gc.collect()
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1000.0)
        out[name] = times
    sys.stdout.write("@@KERNELS@@" + json.dumps(out) + "\\n")
    sys.stdout.flush()
_main(json.loads(sys.argv[1]), int(sys.argv[2]))
"""


# --------------------------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------------------------
def parse_output(text: str) -> dict[str, list[float]]:
    for line in text.splitlines():
        if line.startswith("@@KERNELS@@"):
            return json.loads(line[len("@@KERNELS@@") :])
    raise RuntimeError("no result from the guest:\n" + text[-3000:])


def run_native(python: str, kernels: dict[str, str], repeat: int) -> dict[str, list[float]]:
    proc = subprocess.run(
        [python, "-c", HARNESS, json.dumps(kernels), str(repeat)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"native run failed:\n{proc.stderr[-3000:]}")
    return parse_output(proc.stdout)


class ExecrTarget:
    """Kernels run through execr's host, as users run code: ``Runtime.execute`` on the snapshot path."""

    def __init__(self, spec: str) -> None:
        self.opts = dict(item.partition("=")[::2] for item in spec.split(","))
        self.runtime_name = self.opts["execr"]
        self.fuel = self.opts.get("fuel", "0") == "1"
        self.label = self.opts.get("label") or f"execr {self.runtime_name}" + (" +fuel" if self.fuel else "")
        self.compile_s = 0.0

    def run_kernels(self, kernels: dict[str, str], repeat: int) -> dict[str, list[float]]:
        import execr

        with execr.Runtime(progress=lambda m: None) as rt:
            t0 = time.perf_counter()
            rt.warmup([self.runtime_name])
            self.compile_s = time.perf_counter() - t0
            # One untimed pass first: the first target measured in a process ran ~25% slower
            # (CPU and page-cache warm-up), whichever target it was.
            rt.execute(
                HARNESS, args=[json.dumps(kernels), "1"], runtime=self.runtime_name, timeout=None, memory_limit=None
            )
            r = rt.execute(
                HARNESS,
                args=[json.dumps(kernels), str(repeat)],
                runtime=self.runtime_name,
                timeout=None,
                fuel=2**62 if self.fuel else None,
                memory_limit=None,
                max_stdout=None,
            )
        if not r.ok:
            raise RuntimeError(f"{self.label}: {r.outcome.value} {r.error}\n{r.stderr[-3000:]}")
        return parse_output(r.stdout)


class WasmTarget:
    def __init__(self, spec: str, guest_lib: str) -> None:
        self.opts: dict[str, str] = {"fuel": "1", "epoch": "1"}
        if spec == "pinned":
            spec = "label=pinned,wasm=pinned"
        for item in spec.split(","):
            key, _, value = item.partition("=")
            self.opts[key.strip()] = value.strip()
        if self.opts.get("wasm") == "pinned":
            import execr  # only needed for the pinned binary

            pinned = execr.binary()  # a path in some execr versions, the bytes in others
            if isinstance(pinned, (bytes, bytearray)):
                self.wasm_bytes: bytes | None = bytes(pinned)
                self.opts["wasm"] = "execr.binary()"
            else:
                self.opts["wasm"] = str(pinned)
        if "wasm" not in self.opts:
            raise SystemExit(f"target {spec!r}: wasm=PATH is required")
        if not hasattr(self, "wasm_bytes"):
            self.wasm_bytes = None
        self.label = self.opts.get("label") or os.path.basename(self.opts["wasm"])
        self.guest_lib = guest_lib
        self.compile_s = 0.0

    def env(self) -> list[tuple[str, str]]:
        pairs = []
        for item in filter(None, self.opts.get("env", "").split(";")):
            k, _, v = item.partition(":")
            pairs.append((k, v))
        return pairs

    def run(self, argv: list[str]) -> tuple[int, str, str]:
        import wasmtime as wt

        cfg = wt.Config()
        cfg.consume_fuel = self.opts["fuel"] == "1"
        cfg.epoch_interruption = self.opts["epoch"] == "1"
        if "stack" in self.opts:
            cfg.max_wasm_stack = int(self.opts["stack"])
        engine = wt.Engine(cfg)
        if self.wasm_bytes is not None:
            wasm = self.wasm_bytes
        else:
            with open(self.opts["wasm"], "rb") as f:
                wasm = f.read()
        t0 = time.perf_counter()
        module = wt.Module(engine, wasm)
        self.compile_s = time.perf_counter() - t0
        linker = wt.Linker(engine)
        linker.define_wasi()
        # execr's host channel: -1 = no host function registered in this run.
        linker.define_func("host", "call", wt.FuncType([wt.ValType.i32()] * 4, [wt.ValType.i32()]), lambda *a: -1)
        store = wt.Store(engine)
        if self.opts["fuel"] == "1":
            store.set_fuel(2**62)
        if self.opts["epoch"] == "1":
            store.set_epoch_deadline(2**62)
        with tempfile.TemporaryDirectory() as tmp:
            wasi = wt.WasiConfig()
            wasi.argv = ["python", *argv]
            wasi.env = self.env()
            out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            wasi.stdout_file = out_path
            wasi.stderr_file = err_path
            if self.opts.get("stdlib"):
                wasi.preopen_dir(self.opts["stdlib"], self.guest_lib, False)
            for extra in filter(None, self.opts.get("dirs", "").split(";")):
                host, _, guest = extra.partition(":")
                wasi.preopen_dir(host, guest, False)
            store.set_wasi(wasi)
            instance = linker.instantiate(store, module)
            code = 0
            try:
                instance.exports(store)["_start"](store)
            except wt.ExitTrap as e:
                code = e.code
            except wt.Trap as e:
                code = -1
                with open(err_path, "a") as f:
                    f.write(f"\n[wasm trap] {e.message}\n")
            with open(out_path) as f:
                out = f.read()
            with open(err_path) as f:
                err = f.read()
        return code, out, err

    def run_kernels(self, kernels: dict[str, str], repeat: int) -> dict[str, list[float]]:
        code, out, err = self.run(["-c", HARNESS, json.dumps(kernels), str(repeat)])
        if code != 0:
            raise RuntimeError(f"{self.label}: exit {code}\n{err[-3000:]}")
        return parse_output(out)


# --------------------------------------------------------------------------------------------
def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", action="append", default=[], help="a target (see above); default: execr's runtimes")
    ap.add_argument("--native", default="python3", help="native interpreter (default: python3 on PATH)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kernels", default="", help="comma-separated subset")
    ap.add_argument("--guest-lib", default="/usr/local/lib", help="guest path of the stdlib preopen")
    ap.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    args = ap.parse_args()

    kernels = {k: v for k, v in KERNELS.items() if not args.kernels or k in args.kernels.split(",")}
    specs = args.target or ["execr=default", "execr=default,fuel=1", "execr=python3.12"]
    targets: list[ExecrTarget | WasmTarget] = [
        ExecrTarget(t) if t.startswith("execr=") else WasmTarget(t, args.guest_lib) for t in specs
    ]
    if len({t.label for t in targets}) != len(targets):
        raise SystemExit("target labels must be distinct")

    native_py = subprocess.run(
        [args.native, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    load0 = os.getloadavg()[0]
    print(
        f"# native: {args.native} {native_py}; repeat={args.repeat}, median; in-guest time.perf_counter;"
        f" a native run right before each target, ratios against it; load {load0:.2f}",
        file=sys.stderr,
    )
    # Other work on the machine moves both sides: each target is paired with a native run made just
    # before it, and its ratios use that run.
    med: dict[str, dict[str, float]] = {}
    nat_for: dict[str, dict[str, float]] = {}
    raw: dict[str, dict[str, list[float]]] = {}
    for t in targets:
        nat_raw = run_native(args.native, kernels, args.repeat)
        raw["native/" + t.label] = nat_raw
        nat_for[t.label] = {k: statistics.median(v) for k, v in nat_raw.items()}
        print(f"# running {t.label} ({t.opts})", file=sys.stderr)
        raw[t.label] = t.run_kernels(kernels, args.repeat)
        med[t.label] = {k: statistics.median(v) for k, v in raw[t.label].items()}
        print(f"#   compile {t.compile_s:.1f} s", file=sys.stderr)
    nat = {k: statistics.median([nat_for[t.label][k] for t in targets]) for k in kernels}

    def ratio(label: str, k: str) -> float:
        return med[label][k] / nat_for[label][k]

    head = f"{'kernel':<14} {'native ms':>10}"
    for t in targets:
        head += f" | {t.label[:16]:>16} ms {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for k in kernels:
        line = f"{k:<14} {nat[k]:>10.1f}"
        for t in targets:
            line += f" | {med[t.label][k]:>19.1f} {ratio(t.label, k):>5.2f}x"
        print(line)
    line = f"{'geomean':<14} {'':>10}"
    for t in targets:
        line += f" | {'':>19} {geomean([ratio(t.label, k) for k in kernels]):>5.2f}x"
    print(line)
    line = f"{'max ratio':<14} {'':>10}"
    for t in targets:
        line += f" | {'':>19} {max(ratio(t.label, k) for k in kernels):>5.2f}x"
    print(line)

    heads = [k for k in HEADLINE if k in kernels]
    print()
    print(f"{'target':<30} {'geomean':>8} {'max':>6} " + " ".join(f"{h:>13}" for h in heads) + f" {'compile s':>9}")
    for t in targets:
        g = geomean([ratio(t.label, k) for k in kernels])
        m = max(ratio(t.label, k) for k in kernels)
        cells = " ".join(f"{med[t.label][h]:>7.1f} {ratio(t.label, h):>4.1f}x" for h in heads)
        print(f"{t.label[:30]:<30} {g:>7.2f}x {m:>5.2f}x {cells} {t.compile_s:>9.1f}")
    print(f"# load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)
    if args.json:
        print(json.dumps({"median_ms": med, "native_ms": nat_for, "raw_ms": raw}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
