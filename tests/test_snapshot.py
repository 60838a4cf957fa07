"""The snapshot: built once, cached safely, same behaviour as the plain path, sessions-ready."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import execr
from execr import _runtime, _sandbox
from execr._exceptions import RuntimeUnavailable
from execr._guestfs import Caps, GuestFiles
from execr._image import _snapshot
from execr._limits import Limits
from execr._mounts import SCRIPT
from execr._output import Capture
from execr._request import make_request
from execr._workspace import Workspace

pytestmark = pytest.mark.guest

WARMUP = "import execr, sys; rt = execr.Runtime(); print(rt.execute('print(6*7)').stdout, end='')"


def _warm(cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "EXECR_CACHE_DIR": str(cache)}
    env.pop("EXECR_QUIET", None)
    return subprocess.Popen(
        [sys.executable, "-c", WARMUP], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_cold_build_is_shared_by_concurrent_processes_and_corruption_is_rebuilt(tmp_path: Path) -> None:
    """Two processes on a cold cache build the snapshot once; a corrupted cache entry is rebuilt, not fatal."""
    procs = [_warm(tmp_path), _warm(tmp_path)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [out for out, _ in outs] == ["42\n", "42\n"]
    builds = sum(err.count("building the default snapshot") for _, err in outs)
    assert builds == 1, outs
    (snap,) = tmp_path.glob("default-python-3.13.15-*/snapshot.cwasm")
    snap.write_bytes(snap.read_bytes()[: len(snap.read_bytes()) // 2])
    again = _warm(tmp_path)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert out == "42\n"
    assert "building the default snapshot" in err


def test_falls_back_to_plain_when_snapshot_cannot_be_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runtime: execr.Runtime
) -> None:
    """If the snapshot cannot be built, runs still work on the plain path and say why."""

    def broken(*_args: object) -> None:
        raise RuntimeUnavailable("snapshot: simulated failure")

    messages: list[str] = []
    monkeypatch.setattr(_snapshot, "_boot", broken)
    rt = execr.Runtime(cache_dir=tmp_path, progress=messages.append)
    monkeypatch.setattr(rt, "_plain_module", runtime._plain_module)  # reuse the compiled module
    result = rt.execute("print('still here')")
    assert (result.stdout, result.mode) == ("still here\n", "plain")
    assert rt.snapshot_error == "snapshot: simulated failure"
    assert any("using the plain path" in m for m in messages)


def test_fuel_counts_only_user_code_on_the_snapshot_path(runtime: execr.Runtime) -> None:
    """Snapshot runs do not pay CPython's ~200 million start-up instructions; plain runs do."""
    snap = runtime.execute("pass", fuel=10**12)
    plain = runtime.execute("pass", snapshot=False, fuel=10**12)
    assert snap.fuel_consumed is not None and plain.fuel_consumed is not None
    assert snap.fuel_consumed < 20_000_000 < 100_000_000 < plain.fuel_consumed


def test_one_instance_takes_several_requests_in_turn(runtime: execr.Runtime) -> None:
    """The entry protocol serves requests one after another on one instance (what sessions build on)."""
    snap = runtime._snapshot_module()
    assert snap is not None
    ws = Workspace(root=None, mounts=(), packages=None, files={})
    stdout = Capture(None)
    try:
        steps = [("x = 41\nprint('first')", {"final": False}), ("print(x + 1)\nraise SystemExit(3)", {"fresh": False})]
        entries = []
        for code, flags in steps:
            request = make_request(code)
            payload = _runtime.request_payload(request, code.encode(), [], [], **flags)
            entries.append(dataclasses.replace(snap.entry, patches=(_runtime.request_patch(snap, payload),)))
        stderr = Capture(None)
        with GuestFiles(ws.trees({"main.py": b""}), stdin=b"", stdout=stdout, stderr=stderr, caps=Caps()) as files:
            launch = _sandbox.Launch(
                files=files, stdout=stdout, stderr=stderr, limits=Limits(), entry=entries[0], more=entries[1:]
            )
            raw = snap.compiled.host.run(snap.compiled, launch)
    finally:
        ws.close()
    assert stdout.value()[0] == b"first\n42\n"
    assert raw.statuses == (0, 3)


@pytest.mark.parametrize("name", ["default", "scientific"])
def test_large_request_goes_through_a_file(runtime: execr.Runtime, name: str, request: pytest.FixtureRequest) -> None:
    """Code bigger than the in-memory request box still runs, on both paths, with tracebacks."""
    if name == "scientific":
        request.getfixturevalue("scientific")
    filler = "# " + "x" * 100 + "\n"
    code = filler * 4000 + "print('big ok')\nraise ValueError('at the end')\n"
    for snapshot in (True, False):
        result = runtime.execute(code, snapshot=snapshot, runtime=name)
        assert result.stdout == "big ok\n"
        assert result.exit_code == 1
        assert f'File "{SCRIPT}", line 4002' in result.stderr
        assert "raise ValueError('at the end')" in result.stderr


@pytest.mark.parametrize("name", ["default", "scientific"])
def test_the_same_program_prints_the_same_on_both_paths(
    runtime: execr.Runtime, name: str, request: pytest.FixtureRequest
) -> None:
    """A program exercising argv, env, stdin, __main__, inspect and exit codes is identical on both paths."""
    if name == "scientific":
        request.getfixturevalue("scientific")
    code = textwrap.dedent(
        """
        import inspect, os, sys
        def f():
            return 1
        print(sys.argv, sorted(os.environ.items()), sys.stdin.read(), __name__, __file__)
        print(inspect.getsource(f).strip().splitlines()[0], sys.path[0], os.getcwd())
        sys.exit(4)
        """
    )
    kw = {"stdin": "in", "args": ["a", "b"], "env": {"K": "V"}, "runtime": name}
    snap = runtime.execute(code, **kw)
    plain = runtime.execute(code, snapshot=False, **kw)
    assert (snap.stdout, snap.exit_code, snap.outcome) == (plain.stdout, plain.exit_code, plain.outcome)
    assert "def f():" in snap.stdout and "['/__execr__/main.py', 'a', 'b']" in snap.stdout


def test_objects_alive_at_the_snapshot_are_immortal_and_behave_normally(runtime: execr.Runtime) -> None:
    """The snapshot's objects are made immortal (runs stop writing reference counts into pages they
    would otherwise copy); everything a program can do with them still works, in runs and sessions:
    dropping modules, unfreezing and collecting, mutating boot-time containers and strings."""
    probe = textwrap.dedent(
        """
        import gc, json, sys
        print(sys.getrefcount(json) == 2**30 - 1, sys.getrefcount(object()) < 10)
        del sys.modules["json"]
        import json as again
        print(again is not json, again.dumps({"a": [1, 2]}))
        gc.unfreeze()
        print(gc.collect() >= 0, len(gc.get_objects()) > 1000)
        sys.path.append("/nowhere"); sys.path.remove("/nowhere")
        s = sys.version; s += "!"; print(s.endswith("!"), sys.version.endswith("!"))
        import os; os.sep2 = "x"; del os.sep2
        """
    )
    want = 'True True\nTrue {"a": [1, 2]}\nTrue True\nTrue False\n'
    for _ in range(2):  # a recycled instance as well as a new one
        r = runtime.execute(probe)
        assert (r.outcome, r.stdout) == (execr.Outcome.COMPLETED, want), r.stderr
    with execr.Session(on=runtime) as s:
        r = s.run(probe)
        assert (r.outcome, r.stdout) == (execr.Outcome.COMPLETED, want), r.stderr
        assert s.run("x = [json.dumps(list(range(i))) for i in range(300)]\ngc.collect()\nlen(x)").value == "300"
        assert s.run("import json\njson.loads(x[-1])[-1], sys.getrefcount(json) < 100").value == "(298, True)"
