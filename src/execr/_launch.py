"""Launch: one request on a chosen module, from its workspace and control files to its Result.

``Runtime.run`` is ``launch(prepare(...))``. ``prepare`` picks the module (the session's
snapshot, the runtime's, a preload set, or the plain module); ``launch`` assembles the rest:
the workspace (fresh, or a session's), the environment, the control files under
``/__execr__``, the snapshot entry's memory patches (the request, fresh random states, the
mount slots), the guest's files, the ``_sandbox.Launch``, and the ``Result`` built from what
the engine observed.
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import threading
import time
from typing import TYPE_CHECKING

from . import _mailbox
from ._exceptions import InvalidArgument
from ._guestfs import Caps, GuestFiles, Tree
from ._image import _datafiles
from ._image._binary import Binary
from ._image._flavors import FLAVORS, Flavor, flavor
from ._mailbox import REQUEST_BOX
from ._mounts import PACKAGES, SCRIPT
from ._output import Capture
from ._request import Request
from ._results import Outcome, Result
from ._tools import ToolBox, ToolRun
from ._workspace import Workspace, check_outputs, write_outputs

if TYPE_CHECKING:  # the engine (wasmtime) is imported on first use: ``import execr`` stays cheap
    from . import _sandbox
    from ._image import _snapshot
    from ._runtime import Runtime

__all__ = ["STDIO_FILES", "Run", "SessionSlot", "launch", "prepare", "request_patch", "request_payload"]

STDIO_FILES = ("stdin.txt", "stdout.txt", "stderr.txt")  # what ``stdio=DIR`` receives (the seed's names)


@dataclasses.dataclass
class SessionSlot:
    """What a run in a session uses instead of fresh ones: its instance, its snapshot and its workspace."""

    live: _sandbox.Live
    snap: _snapshot.Snapshot
    workspace: Workspace
    fresh: bool = True  # the session's first call: a new ``__main__`` and fresh random state
    #: The ``execution_count`` this call's result carries (the session clears it if the call is rolled back).
    count: int | None = None


@dataclasses.dataclass
class Run:
    """One run as ``Runtime.run`` chose it: the request, its runtime and module, and where it runs."""

    request: Request
    spec: Flavor
    binary: Binary
    compiled: _sandbox.Compiled  # ``snap``'s, or the plain module when ``snap`` is None
    snap: _snapshot.Snapshot | None
    cancel: threading.Event | None
    value: bool  # also return the repr of the code's last expression (snapshot path only)
    session: SessionSlot | None  # a session's instance and workspace instead of fresh ones
    tools: ToolBox | None
    calls: ToolRun | None  # ``tools.begin()``
    started: float  # time.perf_counter() when the run began


def prepare(
    rt: Runtime,
    request: Request,
    cancel: threading.Event | None = None,
    *,
    value: bool = False,
    session: SessionSlot | None = None,
    tools: ToolBox | None = None,
) -> Run:
    """Choose ``request``'s module on ``rt``: the session's snapshot, the runtime's (or the preload set
    that best fits the code's imports), else the plain module; ``InvalidArgument`` for tools on a
    runtime without host functions."""
    started = time.perf_counter()
    spec = flavor(request.runtime)
    if tools is not None and not spec.host_calls:
        able = ", ".join(repr(f.name) for f in FLAVORS.values() if f.host_calls)
        raise InvalidArgument(f"tools= needs a runtime with host functions ({able}); {spec.name!r} has none")
    calls = tools.begin() if tools is not None else None
    binary = rt.files(spec.name)
    lim = request.limits
    metered = spec.metered(lim.fuel)
    snap = rt._snapshot_module(spec.name, metered) if request.snapshot and session is None else None
    if session is not None:
        snap = session.snap
    elif snap is not None and spec.reactor:  # the preload set that best fits the code's imports
        sets = rt._sets_of(spec.name)
        snap = sets.choose(request.code, snap, rt.preload_of(spec.name), lim.memory_limit, request.preload)
    compiled = snap.compiled if snap is not None else rt._plain_module(spec.name, metered)
    return Run(request, spec, binary, compiled, snap, cancel, value, session, tools, calls, started)


def launch(run: Run) -> Result:
    """Run ``run`` in its workspace (fresh and removed after, or its session's) and build its Result."""
    request, session = run.request, run.session
    if request.stdio is not None:
        check_outputs(request.stdio, STDIO_FILES)  # before the run: a refusal afterwards would lose its result
    if session is not None:
        ws = session.workspace
    else:
        ws = Workspace(
            root=request.mount_fs, mounts=request.mounts, packages=request.pythonpath, files=dict(request.files)
        )
    scratch = _datafiles.Scratch(run.binary)  # the scientific runtime's per-run scratch directory
    try:
        return _in_workspace(run, ws, scratch)
    finally:
        if session is None:
            ws.close()
        scratch.close()


def _in_workspace(run: Run, ws: Workspace, scratch: _datafiles.Scratch) -> Result:
    """The run proper: environment, control files and patches, the guest's files, the engine."""
    from . import _sandbox  # imported on first use: it loads wasmtime

    request, spec, binary, lim = run.request, run.spec, run.binary, run.request.limits
    env = _datafiles.merge_env(_datafiles.env_defaults(binary), request.env)
    path = [PACKAGES] if request.pythonpath is not None else []
    if path:
        env.append(("PYTHONPATH", PACKAGES))
    control, patches = _control(run, env, path)
    stdout, stderr = Capture(lim.max_stdout), Capture(lim.max_stderr)
    trees = ws.trees(control) + [Tree(p.guest, p.host, p.writable) for p in spec.preopens(binary)]
    trees += scratch.trees()
    base = (ws.base_usage[0] + scratch.usage[0], ws.base_usage[1] + scratch.usage[1])
    used = (ws.usage[0] + scratch.usage[0], ws.usage[1] + scratch.usage[1])
    caps = Caps(lim.max_files, lim.max_file_bytes, lim.max_open_files)
    with GuestFiles(trees, stdin=request.stdin, stdout=stdout, stderr=stderr, caps=caps, base=base, used=used) as files:
        launch = _sandbox.Launch(files=files, stdout=stdout, stderr=stderr, limits=lim, cancel=run.cancel)
        launch.tools = run.calls
        if run.snap is not None:
            launch.entry = run.snap.entry.patched(tuple(patches))
        else:
            launch.argv = spec.plain_argv(SCRIPT, request.args)
            launch.env = env
            launch.start = spec.start
        raw = run.compiled.host.run(run.compiled, launch, None if run.session is None else run.session.live)
    return _result(run, raw, ws, stdout, stderr, files.touched)


def _control(run: Run, env: list[tuple[str, str]], path: list[str]) -> tuple[dict[str, bytes], list[tuple[int, bytes]]]:
    """The files under ``/__execr__`` and (snapshot path) the entry's memory patches."""
    request, snap, session = run.request, run.snap, run.session
    code = request.code.encode("utf-8", "surrogatepass")
    control = {"main.py": code}
    if run.tools is not None:
        control |= run.tools.control
    patches: list[tuple[int, bytes]] = []
    if snap is not None:
        flags = {"reseed": False} if snap.rng or (session is not None and not session.fresh) else {}
        if run.value:
            flags["value"] = True
        if session is not None:  # keep __main__ between calls; atexit handlers run at close
            flags |= {"fresh": session.fresh, "final": False}
        payload = request_payload(request, code, env, path, **flags)
        big = len(payload) > REQUEST_BOX
        if big:
            control["request.bin"] = payload
        patches = [request_patch(snap, None if big else payload)]
        if session is None or session.fresh:  # fresh random states (a session keeps its own after)
            patches += [(address, os.urandom(624 * 4)) for address in snap.rng]
        patches += [(snap.slots[i], m.guest.lstrip("/").encode() + b"\0") for i, m in enumerate(request.mounts)]
    elif run.spec.reactor:
        control["request.bin"] = request_payload(request, code, env, path)
    elif request.inputs:
        control["inputs.bin"] = request.inputs
    return control, patches


def _result(run: Run, raw: _sandbox.RawRun, ws: Workspace, stdout: Capture, stderr: Capture, touched: bool) -> Result:
    """The run's Result: outputs, the files it changed (over the cap: a file limit), ``stdio=`` written;
    ``touched``: whether the guest made a call that could change a writable tree."""
    request, lim = run.request, run.request.limits
    out, out_dropped = stdout.value()
    err, err_dropped = stderr.value()
    outcome, error = raw.outcome, raw.error
    exit_code = raw.exit_code
    files_out, problem = ws.changed(lim.max_returned_file_bytes, touched)
    if problem is not None and outcome in (Outcome.COMPLETED, Outcome.FAILED):
        outcome, error = Outcome.FILE_LIMIT, problem
    if request.stdio is not None:
        write_outputs(request.stdio, dict(zip(STDIO_FILES, (request.stdin, out, err), strict=True)))
    return Result.build(
        stdout=out,
        stderr=err,
        stdout_dropped=out_dropped,
        stderr_dropped=err_dropped,
        fuel_consumed=raw.fuel_consumed,
        memory=raw.memory,
        data_len=raw.data_len,
        outcome=outcome,
        exit_code=exit_code,
        duration=time.perf_counter() - run.started,
        files=files_out,
        error=error,
        mode="snapshot" if run.snap is not None else "plain",
        tool_calls=run.calls.calls if run.calls is not None else (),
        value=raw.value.decode("utf-8", "replace") if raw.value is not None and outcome is Outcome.COMPLETED else None,
        execution_count=run.session.count if run.session is not None else None,
    )


def request_payload(request: Request, code: bytes, env: list[tuple[str, str]], path: list[str], **flags: bool) -> bytes:
    """The marshal-encoded request the snapshot's entry function reads."""
    fields = {"script": SCRIPT, "code": code, "args": list(request.args), "env": dict(env), "path": path, "cwd": "/"}
    if request.inputs:
        fields["inputs"] = request.inputs
    return marshal.dumps(fields | flags, 4)


def request_patch(snap: _snapshot.Snapshot, payload: bytes | None) -> tuple[int, bytes]:
    """The guest-memory write that hands ``payload`` to the entry (``None``: read request.bin)."""
    offset, data = _mailbox.request(payload)
    return snap.entry.mailbox + offset, data
