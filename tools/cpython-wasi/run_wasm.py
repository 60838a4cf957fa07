"""Run a WASI CPython command under wasmtime-py: ``run_wasm.py [options] -- PYTHON-ARGS...``.

A minimal host like execr's: WASI preview 1, the stdlib directory preopened read-only at
/usr/local/lib (where the binary's getpath finds python313.zip), ``host.call`` defined (it answers
-1, "no host functions in this run", unless --echo-host makes it echo the request back), fuel and
epoch interruption on unless turned off. Prints the guest's stdout/stderr and exits with its code.

    python tools/cpython-wasi/run_wasm.py --wasm /work/cpython-out/python.wasm \\
        --stdlib /work/cpython-out -- -c "import sys; print(sys.version)"
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import sys
import time

import wasmtime as wt

try:
    from importlib.metadata import version as _dist_version

    WT_VERSION = _dist_version("wasmtime")
except Exception:  # pragma: no cover - metadata missing in odd installs
    WT_VERSION = "unknown"


def load_module(engine: wt.Engine, wasm: bytes, ns: argparse.Namespace) -> wt.Module:
    """Compile, or load a module serialized by an earlier run with the same binary and Config."""
    if not ns.cache:
        return wt.Module(engine, wasm)
    key = hashlib.sha256(wasm).hexdigest()[:24]
    key += f"-f{int(not ns.no_fuel)}e{int(not ns.no_epoch)}s{ns.max_wasm_stack or 0}-wt{WT_VERSION}"
    path = os.path.join(ns.cache, key + ".cwasm")
    if os.path.exists(path):
        return wt.Module.deserialize_file(engine, path)
    module = wt.Module(engine, wasm)
    os.makedirs(ns.cache, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(module.serialize())
    os.replace(tmp, path)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--stdlib", help="host dir preopened read-only at --guest-lib")
    ap.add_argument("--guest-lib", default="/usr/local/lib")
    ap.add_argument("--dir", action="append", default=[], help="HOST:GUEST[:rw] extra preopen")
    ap.add_argument("--env", action="append", default=[], help="K=V guest environment")
    ap.add_argument("--no-fuel", action="store_true")
    ap.add_argument("--no-epoch", action="store_true")
    ap.add_argument("--max-wasm-stack", type=int, help="wasmtime Config.max_wasm_stack in bytes")
    ap.add_argument("--echo-host", action="store_true", help="host.call echoes the request back")
    ap.add_argument("--host-fault", action="store_true", help="host.call answers -2")
    ap.add_argument("--timing", action="store_true", help="print compile/run times to stderr")
    ap.add_argument("--cache", help="directory for serialized compiled modules (skips recompiling)")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    ns = ap.parse_args()
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args

    cfg = wt.Config()
    cfg.consume_fuel = not ns.no_fuel
    cfg.epoch_interruption = not ns.no_epoch
    if ns.max_wasm_stack:
        cfg.max_wasm_stack = ns.max_wasm_stack
    engine = wt.Engine(cfg)
    with open(ns.wasm, "rb") as f:
        wasm = f.read()
    t0 = time.perf_counter()
    module = load_module(engine, wasm, ns)
    t_compile = time.perf_counter() - t0

    linker = wt.Linker(engine)
    linker.define_wasi()
    i32 = wt.ValType.i32()

    def host_call(caller: wt.Caller, ptr: int, length: int, out_ptr_ptr: int, out_len_ptr: int) -> int:
        if ns.host_fault:
            return -2
        if not ns.echo_host:
            return -1
        mem = caller["memory"]
        assert isinstance(mem, wt.Memory)
        data = bytes(mem.read(caller, ptr, ptr + length))
        alloc = caller["host_alloc"]
        assert isinstance(alloc, wt.Func)
        out = alloc(caller, len(data))
        mem.write(caller, data, out)
        mem.write(caller, ctypes.c_int32(out).value.to_bytes(4, "little", signed=True), out_ptr_ptr)
        mem.write(caller, len(data).to_bytes(4, "little"), out_len_ptr)
        return 0

    linker.define_func("host", "call", wt.FuncType([i32] * 4, [i32]), host_call, access_caller=True)
    store = wt.Store(engine)
    if not ns.no_fuel:
        store.set_fuel(2**62)
    if not ns.no_epoch:
        store.set_epoch_deadline(2**62)
    wasi = wt.WasiConfig()
    wasi.argv = ["python", *args]
    wasi.env = [tuple(e.split("=", 1)) for e in ns.env]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.inherit_stdin()
    if ns.stdlib:
        wasi.preopen_dir(ns.stdlib, ns.guest_lib, False)
    for d in ns.dir:
        host, guest, *mode = d.split(":")
        wasi.preopen_dir(host, guest, mode == ["rw"])
    store.set_wasi(wasi)
    instance = linker.instantiate(store, module)
    start = instance.exports(store)["_start"]
    assert isinstance(start, wt.Func)
    code = 0
    t0 = time.perf_counter()
    try:
        start(store)
    except wt.ExitTrap as e:
        code = e.code
    except wt.Trap as e:
        sys.stdout.flush()
        print(f"[wasm trap] {e.message.splitlines()[0]}", file=sys.stderr)
        code = 134
    t_run = time.perf_counter() - t0
    if ns.timing:
        print(f"[run_wasm] compile {t_compile:.2f} s, run {t_run:.2f} s, {len(wasm)} bytes", file=sys.stderr)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
