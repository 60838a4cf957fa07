"""Run CPython's own test suite (a chosen subset) under the wasm binary, one wasm instance per test file.

    /work/main/.venv/bin/python tools/cpython-wasi/run_cpython_tests.py \\
        --wasm /work/cpython-out/python.wasm --stdlib /work/cpython-out \\
        --lib /work/cpython-build/cpython-src-all/Lib [--jobs 2] [test_json test_re ...]

The guest gets the stdlib zip at /usr/local/lib (read-only), CPython's Lib/ (for the `test` package)
at /cpylib (read-only) and a scratch directory at /tmp (writable, its cwd). Each test file runs
through regrtest (``python -m test --tempdir /tmp/regr NAME``) in its own process and wasm
instance, so a trap in one cannot hide the others. Prints one line per test and a summary.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

DEFAULT_TESTS = """
test_json test_re test_math test_cmath test_decimal test_fractions test_statistics test_random
test_collections test_datetime test_zlib test_bz2 test_sqlite3 test_hashlib test_pickle test_struct
test_array test_unicodedata test_pyexpat test_xml_etree test_codecs test_itertools test_functools
test_operator test_heapq test_bisect test_copy test_dict test_list test_tuple test_set test_long
test_int test_float test_complex test_bytes test_str test_string test_format test_fstring test_sort
test_enum test_dataclasses test_typing test_textwrap test_difflib test_csv test_base64 test_binascii
test_calendar test_time test_contextlib test_abc test_generators test_exceptions test_grammar
test_class test_descr test_scope test_with test_traceback test_inspect test_zipfile test_tarfile
test_gzip test_zipimport test_io test_builtin test_sys test_os test_tempfile test_shutil test_glob
test_pathlib test_ast test_compile test_dis test_weakref test_gc test_memoryview test_ipaddress
test_uuid test_secrets test_hmac test_colorsys test_graphlib test_pprint test_reprlib test_shlex
test_argparse test_logging test_locale test_unicode_identifiers test_userdict test_userlist
test_userstring test_deque test_ordered_dict test_defaultdict test_keywordonlyarg
test_positional_only_arg test_patma test_genexps test_listcomps test_setcomps test_dictcomps
test_richcmp test_isinstance test_augassign test_unpack test_unpack_ex test_opcodes test_peepholer
""".split()  # noqa: SIM905

HERE = os.path.dirname(os.path.abspath(__file__))


def _regrtest(name: str, verbose: bool) -> str:
    """The guest program: regrtest on one test file, from /cpylib, with /tmp as its scratch."""
    return (
        "import os, sys, runpy; os.chdir('/tmp'); sys.path.append('/cpylib'); "
        f"sys.argv[1:] = ['--tempdir', '/tmp/regr', {'-v' if verbose else '-q'!r}, {name!r}]; "
        "runpy.run_module('test', run_name='__main__', alter_sys=True)"
    )


def run_one_execr(name: str, ns: argparse.Namespace, verbose: bool = False) -> tuple[str, str, float, str]:
    """One test file through execr's own host (``Runtime.execute``, snapshot path, default runtime)."""
    import execr

    with tempfile.TemporaryDirectory(prefix="cpytest-") as tmp:
        code = _regrtest(name, verbose)
        t0 = time.perf_counter()
        r = _RUNTIME.execute(
            code,
            mounts=[execr.Mount(ns.lib, "/cpylib"), execr.Mount(tmp, "/tmp", writable=True)],
            env={"TMPDIR": "/tmp", "HOME": "/tmp"},
            timeout=ns.timeout,
            memory_limit=None,
            max_stdout=None,
            max_stderr=None,
            max_file_bytes=None,
            max_files=None,
            max_open_files=None,
            fuel=None if ns.no_fuel else 2**62,
        )
        out = r.stdout + r.stderr
        if r.outcome.value == "timed_out":
            return name, "TIMEOUT", time.perf_counter() - t0, out[-2000:]
        if r.outcome.value in ("crashed", "memory_limit", "file_limit"):
            out += f"\n[wasm trap] {r.outcome.value}: {r.error}\n"
    return _classify(name, out, time.perf_counter() - t0, ns, verbose, run_one_execr)


_RUNTIME: Any = None


def _classify(
    name: str, out: str, dt: float, ns: argparse.Namespace, verbose: bool, again: Any
) -> tuple[str, str, float, str]:
    skipped = re.search(r"skipped -- (.*)$", out, re.M)
    if "[wasm trap]" in out:
        status = "TRAP"
    elif re.search(r"Total test files: .*skipped=1", out):  # the whole file was skipped
        if skipped:
            return name, "SKIP", dt, skipped.group(1)[:200]
        if not verbose:  # -q does not say why: ask again
            return again(name, ns, verbose=True)
        return name, "SKIP", dt, ""
    elif re.search(r"^Result: SUCCESS", out, re.M) or "Tests result: SUCCESS" in out:
        status = "PASS"
    elif "Tests result: NO TESTS RAN" in out:
        status = "SKIP"
    elif "Result: FAILURE" in out or "Tests result: FAILURE" in out:
        status = "FAIL"
    else:
        status = "ERROR"
    m = re.search(r"Total tests: (.*)", out)
    detail = m.group(1) if m else ""
    if status == "FAIL" and not verbose:
        _, _, _, vdetail = again(name, ns, verbose=True)
        return name, status, dt, vdetail
    if status != "PASS":
        fails = re.findall(r"^(?:FAIL|ERROR): (\S+ \(\S+\))", out, re.M)
        detail += ("; " if detail else "") + ", ".join(fails[:10]) + (" ..." if len(fails) > 10 else "")
        if not fails:
            detail += " " + " | ".join(out.strip().splitlines()[-3:])[:300]
    return name, status, dt, detail


def run_one(name: str, ns: argparse.Namespace, verbose: bool = False) -> tuple[str, str, float, str]:
    with tempfile.TemporaryDirectory(prefix="cpytest-") as tmp:
        code = _regrtest(name, verbose)
        cmd = [
            sys.executable,
            os.path.join(HERE, "run_wasm.py"),
            "--cache",
            ns.cache,
            "--wasm",
            ns.wasm,
            "--stdlib",
            ns.stdlib,
            "--dir",
            f"{ns.lib}:/cpylib",
            "--dir",
            f"{tmp}:/tmp:rw",
            "--env",
            "TMPDIR=/tmp",
            "--env",
            "HOME=/tmp",
            "--max-wasm-stack",
            str(ns.max_wasm_stack),
        ]
        if ns.no_fuel:
            cmd += ["--no-fuel", "--no-epoch"]
        cmd += ["--", "-c", code]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ns.timeout, check=False)
            out = proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return name, "TIMEOUT", time.perf_counter() - t0, out[-2000:]
        dt = time.perf_counter() - t0
    return _classify(name, out, dt, ns, verbose, run_one)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--execr", action="store_true", help="run through execr's host (default runtime, snapshot path)")
    ap.add_argument("--wasm", help="the binary (run_wasm.py mode)")
    ap.add_argument("--stdlib", help="the stdlib directory (run_wasm.py mode)")
    ap.add_argument("--lib", required=True, help="CPython's Lib/ (same version) for the test package")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "run_wasm-cache"))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--max-wasm-stack", type=int, default=2 * 1024 * 1024)
    ap.add_argument("--no-fuel", action="store_true", help="fuel and epoch interruption off (faster)")
    ap.add_argument("tests", nargs="*")
    ns = ap.parse_args()
    tests = ns.tests or DEFAULT_TESTS
    one = run_one
    if ns.execr:
        global _RUNTIME
        import execr

        _RUNTIME = execr.Runtime()
        _RUNTIME.warmup()
        one = run_one_execr
    elif not (ns.wasm and ns.stdlib):
        ap.error("--wasm and --stdlib are required without --execr")
    else:
        # Compile once (and cache) before fanning out.
        subprocess.run(
            [sys.executable, os.path.join(HERE, "run_wasm.py"), "--cache", ns.cache, "--wasm", ns.wasm]
            + ["--stdlib", ns.stdlib, "--max-wasm-stack", str(ns.max_wasm_stack)]
            + (["--no-fuel", "--no-epoch"] if ns.no_fuel else [])
            + ["--", "-c", "pass"],
            check=True,
        )
    counts: dict[str, int] = {}
    results = []
    with cf.ThreadPoolExecutor(max_workers=ns.jobs) as pool:
        for name, status, dt, detail in pool.map(lambda t: one(t, ns), tests):
            counts[status] = counts.get(status, 0) + 1
            results.append((name, status))
            print(f"{status:<7} {name:<28} {dt:7.1f} s  {detail}", flush=True)
    print()
    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    print("passed:", " ".join(n for n, s in results if s == "PASS"))
    print("not passed:", " ".join(f"{n}({s})" for n, s in results if s != "PASS"))
    return 0 if counts.get("PASS", 0) == len(tests) else 1


if __name__ == "__main__":
    sys.exit(main())
