"""``execr info`` and ``execr warmup``: describe the runtimes, and build their compiled modules and snapshots ahead.

``info`` prints ``Runtime().info()`` (or one runtime's ``runtime_info``) with execr's
version and default limits, as aligned ``key: value`` lines or ``--json``. ``warmup``
builds into the cache with progress on stderr (unless ``EXECR_QUIET=1``) and says where
the results are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .. import __version__
from .._limits import DEFAULT_LIMITS
from .._runtime import quiet
from ._common import add_runtime_option, open_runtime

__all__ = ["add_info", "add_warmup"]


def add_info(sub: Any) -> None:
    """Add ``execr info`` to ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser(
        "info",
        help="show the runtimes, versions, hashes and cache paths",
        description="Show Runtime().info(): each runtime's Python version, what it can import and its cache state.",
    )
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument(
        "--check",
        action="store_true",
        help="first run one small real task per scientific package (shown as checked_packages)",
    )
    add_runtime_option(p)
    p.set_defaults(func=_info)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, bool):
            rows.append((prefix + key, "yes" if value else "no"))
        else:
            rows.append((prefix + key, "-" if value is None else str(value)))
    return rows


def _packages_inline(data: dict[str, Any]) -> dict[str, Any]:
    """``packages`` tables as one 'name version, ...' line (for the text listing)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "packages" and isinstance(value, dict):
            out[key] = ", ".join(f"{name} {version}" for name, version in value.items()) or "-"
        elif isinstance(value, dict):
            out[key] = _packages_inline(value)
        else:
            out[key] = value
    return out


def _info(args: argparse.Namespace) -> int:
    runtime = open_runtime(args)
    if args.check:
        from .._runtime_info import check_packages

        check_packages(runtime, "scientific")
    if args.runtime is None:
        info = {"execr_version": __version__, **runtime.info(), "default_limits": DEFAULT_LIMITS.to_dict()}
    else:
        info = {
            "execr_version": __version__,
            "runtime": args.runtime,
            "wasmtime_version": runtime.info()["wasmtime_version"],
            "cache_dir": str(runtime.cache_dir),
            **runtime.runtime_info(args.runtime),
            "default_limits": DEFAULT_LIMITS.to_dict(),
        }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        rows = _flatten(_packages_inline(info))
        width = max(len(key) for key, _ in rows)
        for key, value in rows:
            print(f"{key + ':':<{width + 1}} {value}")
    return 0


def add_warmup(sub: Any) -> None:
    """Add ``execr warmup`` to ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser(
        "warmup",
        help="build the compiled module and snapshot now (first build takes a while)",
        description=(
            "Compile the CPython module and build the start-up snapshot into the cache, showing progress. "
            "The scientific runtime takes several minutes on 2 cores and ~700 MB of cache."
        ),
    )
    add_runtime_option(p, many=True)
    p.set_defaults(func=_warmup)


def _warmup(args: argparse.Namespace) -> int:
    started = time.perf_counter()

    def progress(message: str) -> None:
        if not quiet():
            print(f"execr: [{time.perf_counter() - started:5.1f}s] {message}", file=sys.stderr, flush=True)

    names = list(dict.fromkeys(args.runtimes or ["default"]))
    progress(f"loading the CPython binary, compiled module and snapshot ({', '.join(names)})")
    with open_runtime(args, progress=progress) as runtime:
        runtime.warmup(names)
        infos = {name: runtime.runtime_info(name) for name in names}
        cache = runtime.cache_dir
    took = time.perf_counter() - started
    print(f"cache dir:       {cache}")
    for name, info in infos.items():
        if len(infos) > 1 or name != "default":
            print(f"{name} (Python {info['python_version']}):")
        print(f"compiled module: {info['plain_module']['path']}")
        error = info["snapshot"]["error"]
        if not info["snapshot"]["enabled"]:
            print("snapshot:        disabled (EXECR_SNAPSHOT=0)")
        elif error:
            print(f"snapshot:        unavailable ({error}); runs take the plain path")
        else:
            print(f"snapshot:        {info['snapshot']['path']}")
    print(f"ready in {took:.1f}s")
    return 0
