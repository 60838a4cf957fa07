"""Hints: one line that tells an agent why a run stopped and what to try next."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .._limits import Limits
from .._results import Outcome, Result

__all__ = ["exception_line", "hint", "missing_module", "runtimes_with"]

_EXCEPTION = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
_MISSING_MODULE = re.compile(r"No module named '(?P<module>[^'.]+)")


def _seconds(value: float | None) -> str:
    return "no" if value is None else f"{value:g} s"


def _bytes(value: int | None) -> str:
    if value is None:
        return "no"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value} bytes"


def exception_line(stderr: str) -> str | None:
    """The ``Name: message`` line that ends a traceback in ``stderr``, if it ends with one."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].strip()
    match = _EXCEPTION.match(last)
    if match is None:
        return None
    looks_raised = "Traceback (most recent call last)" in stderr or match["name"].endswith(("Error", "Exception"))
    return last if looks_raised else None


#: import names whose distribution is named otherwise (what runtime package lists show)
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "skimage": "scikit-image",
}


def missing_module(stderr: str) -> str | None:
    """The top-level module a ``ModuleNotFoundError`` at the end of ``stderr`` names."""
    line = exception_line(stderr)
    match = _MISSING_MODULE.search(line) if line and line.startswith("ModuleNotFoundError") else None
    return match["module"] if match else None


def runtimes_with(module: str, packages: Mapping[str, Iterable[str]]) -> list[str]:
    """The runtimes (name -> package names) that ship ``module``."""
    want = _DISTRIBUTIONS.get(module, module).lower().replace("_", "-")
    return [name for name, pkgs in packages.items() if want in {p.lower().replace("_", "-") for p in pkgs}]


def _failed(result: Result, runtime: str, limits: Limits, elsewhere: Sequence[str]) -> str:
    line = exception_line(result.stderr)
    if line is None:
        return f"it exited with code {result.exit_code} without a traceback; see stdout and stderr"
    name = line.split(":", 1)[0]
    if name in ("ModuleNotFoundError", "ImportError"):
        module = _MISSING_MODULE.search(line)
        what = f"{module['module']!r} is" if module else "that module is"
        if elsewhere:
            where = " or ".join(repr(name) for name in elsewhere)
            return f"{line}: {what} not in the {runtime!r} runtime; pass runtime={where}, which has it"
        return (
            f"{line}: {what} not importable in the {runtime!r} runtime; call list_runtimes to see what each "
            "runtime can import, or write it without that module"
        )
    if name in ("SyntaxError", "IndentationError", "TabError"):
        return f"{line}: the code does not parse; fix it and run again"
    if name == "MemoryError":
        return f"{line}: it ran out of memory (the limit is {_bytes(limits.memory_limit)}); use less memory"
    return f"it raised {line} (the traceback is in stderr); fix the code and run again"


def hint(result: Result, runtime: str, limits: Limits, cap: Limits, elsewhere: Sequence[str] = ()) -> str | None:
    """One line on why the run stopped and what to try next; None when it completed.

    ``elsewhere``: other runtimes that have the module a ``ModuleNotFoundError`` names.
    """
    outcome = result.outcome
    if outcome is Outcome.COMPLETED:
        return None
    if outcome is Outcome.FAILED:
        return _failed(result, runtime, limits, elsewhere)
    if outcome is Outcome.TIMED_OUT:
        if cap.timeout is not None and limits.timeout is not None and limits.timeout >= cap.timeout:
            return f"the {_seconds(limits.timeout)} timeout (this server's most) stopped it; make it faster or do less"
        more = f" (this server allows up to {_seconds(cap.timeout)})" if cap.timeout is not None else ""
        return f"the {_seconds(limits.timeout)} timeout stopped it; pass a larger timeout{more} or make it faster"
    if outcome is Outcome.OUT_OF_FUEL:
        return f"it used up its fuel (an instruction budget of {limits.fuel}); make it do less work"
    if outcome is Outcome.MEMORY_LIMIT:
        return f"it hit the {_bytes(limits.memory_limit)} memory limit; use less memory (smaller data, work in chunks)"
    if outcome is Outcome.FILE_LIMIT:
        return (
            f"it wrote more than allowed ({result.error}); the limits are {limits.max_files} files and "
            f"{_bytes(limits.max_file_bytes)} in all: write fewer or smaller files"
        )
    if outcome is Outcome.CANCELLED:
        return "the run was cancelled before it finished (the call was cancelled or the server is stopping); retry"
    return (
        f"the sandbox stopped it ({result.error}); deep recursion in C code or a crash in a native module can do this: "
        "simplify the code and retry"
    )
