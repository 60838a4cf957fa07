"""Guest behaviour: a run looks like ``python main.py ARGS`` on both start-up paths, and bad input is refused."""

from __future__ import annotations

import json
import math
import os
import pathlib

import pytest

import execr
from execr import InvalidArgument, Mount, Outcome

pytestmark = pytest.mark.guest

ENTRY = "/__execr__/main.py"


def frames(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("  File ")]


# -- running code, stdio, argv, exit codes ---------------------------------------------------


def test_hello_world(run):
    """print() output comes back in stdout and the run completes with exit code 0."""
    r = run("print('hello world')")
    assert r.stdout == "hello world\n"
    assert r.stderr == ""
    assert r.outcome is Outcome.COMPLETED and r.exit_code == 0 and r.ok
    assert r.error is None


def test_stdin_str(run):
    """A str stdin is readable as text by the guest."""
    r = run("import sys; print(sys.stdin.read().upper())", stdin="héllo\nworld")
    assert r.stdout == "HÉLLO\nWORLD\n"


def test_stdin_bytes(run):
    """A bytes stdin reaches the guest byte for byte."""
    data = bytes(range(256))
    r = run("import sys; sys.stdout.write(sys.stdin.buffer.read().hex())", stdin=data)
    assert r.stdout == data.hex()


def test_args_in_argv(run):
    """args appear in sys.argv after the script path."""
    r = run("import json, sys; print(json.dumps(sys.argv))", args=["a b", "--x", "é"])
    assert json.loads(r.stdout) == [ENTRY, "a b", "--x", "é"]


def test_sys_exit_code(run):
    """sys.exit(3) ends the run with exit code 3 and outcome failed."""
    r = run("import sys; print('before'); sys.exit(3)")
    assert r.exit_code == 3
    assert r.outcome is Outcome.FAILED
    assert r.stdout == "before\n"
    assert r.stderr == ""


def test_uncaught_exception_traceback_has_only_user_frames(run):
    """An uncaught exception exits 1 with a traceback whose frames are only the user's."""
    r = run("def f():\n    1/0\nf()\n")
    assert r.exit_code == 1 and r.outcome is Outcome.FAILED
    assert r.stderr.startswith("Traceback (most recent call last):\n"), r.stderr
    assert r.stderr.endswith("ZeroDivisionError: division by zero\n")
    fr = frames(r.stderr)
    assert fr, r.stderr
    assert fr[0].startswith(f'  File "{ENTRY}"'), r.stderr
    assert all(f.startswith(f'  File "{ENTRY}"') for f in fr), r.stderr
    assert "__execr_entry__" not in r.stderr


def test_system_exit_message(run):
    """SystemExit('msg') exits 1 and prints msg on stderr, like python."""
    r = run("raise SystemExit('bad things')")
    assert r.exit_code == 1 and r.outcome is Outcome.FAILED
    assert r.stderr == "bad things\n"


def test_syntax_error_reported_like_python(run):
    """A SyntaxError is reported exactly as python reports it for a script (no traceback header)."""
    r = run("x = (\n")
    assert r.exit_code == 1 and r.outcome is Outcome.FAILED
    assert r.stderr == f"  File \"{ENTRY}\", line 1\n    x = (\n        ^\nSyntaxError: '(' was never closed\n"


def test_keyboard_interrupt_exit_130(run):
    """A KeyboardInterrupt raised by user code exits with 130 (python's SIGINT status) on both paths."""
    r = run("raise KeyboardInterrupt")
    assert r.stderr.endswith("KeyboardInterrupt\n"), r.stderr
    assert (r.outcome, r.exit_code) == (Outcome.FAILED, 130), (r.outcome, r.exit_code, r.error)


def test_main_name_and_file(run):
    """The script runs as __main__ with __file__ set to the script path."""
    r = run("print(__name__); print(__file__); import sys; print(sys.modules['__main__'].__file__)")
    assert r.stdout == f"__main__\n{ENTRY}\n{ENTRY}\n"


def test_inspect_getsource(run):
    """inspect.getsource works on functions defined in the user's script."""
    code = "import inspect\n\ndef greet(name):\n    return 'hi ' + name\n\nprint(inspect.getsource(greet), end='')\n"
    r = run(code)
    assert r.stdout == "def greet(name):\n    return 'hi ' + name\n", r.stderr


def test_output_without_newline_or_flush(run):
    """Output written without a newline and without flush still arrives."""
    r = run("import sys; sys.stdout.write('no newline'); sys.stderr.write('err too')")
    assert r.stdout == "no newline"
    assert r.stderr == "err too"


def test_atexit_handlers_run(run):
    """atexit handlers run at the end of the run."""
    r = run("import atexit\natexit.register(print, 'bye')\nprint('hi')")
    assert r.stdout == "hi\nbye\n"


def test_invalid_utf8_output(run):
    """Invalid UTF-8 output is kept exactly in stdout_bytes and replaced in stdout."""
    r = run("import sys; sys.stdout.buffer.write(b'ok\\xff\\n')")
    assert r.stdout_bytes == b"ok\xff\n"
    assert r.stdout == "ok\ufffd\n"


# -- environment, randomness, state -----------------------------------------------------------


def test_env_is_only_what_was_passed(run, runtime_name):
    """os.environ holds exactly the env passed, and no host variable (PATH, HOME); the scientific
    runtime adds only its two documented matplotlib defaults, which a request's env overrides."""
    extra = {"MPLBACKEND": "Agg", "MPLCONFIGDIR": "/__execr__/tmp/matplotlib"} if runtime_name == "scientific" else {}
    env = {"GREETING": "hello", "EMPTY": ""}
    r = run("import json, os; print(json.dumps(dict(os.environ)))", env=env, pythonpath=None)
    assert json.loads(r.stdout) == env | extra
    r = run("import json, os; print(json.dumps(dict(os.environ)))", pythonpath=None)
    seen = json.loads(r.stdout)
    assert "PATH" not in seen and "HOME" not in seen
    assert seen == extra
    if extra:
        r = run("import os; print(os.environ['MPLBACKEND'])", env={"MPLBACKEND": "svg"}, pythonpath=None)
        assert r.stdout == "svg\n"


def test_random_is_freshly_seeded(run):
    """random.random() differs between two runs (each run gets a fresh seed)."""
    code = "import random; print(random.random(), random.getrandbits(64))"
    first, second = run(code).stdout, run(code).stdout
    assert first and second and first != second


def test_globals_and_files_do_not_leak(run):
    """Globals, module attributes and files from one run are absent in the next."""
    r1 = run(
        "import builtins, sys\n"
        "builtins.LEAKED = 1\nsys.leaked = 1\nSECRET = 2\n"
        "open('leak.txt', 'w').write('x')\n"
        "sys.path.append('/leak')\n"
    )
    assert r1.ok, r1.stderr
    r2 = run(
        "import builtins, os, sys\n"
        "print(hasattr(builtins, 'LEAKED'), hasattr(sys, 'leaked'), 'SECRET' in globals(),"
        " os.path.exists('leak.txt'), '/leak' in sys.path, os.listdir('.'))\n"
    )
    assert r2.stdout == "False False False False False []\n", r2.stderr


def test_monkeypatched_module_is_clean_next_run(run):
    """A module monkeypatched in one run is pristine in the next."""
    r1 = run(
        "import json, os\njson.dumps = lambda *a, **k: 'patched'\nos.getcwd = lambda: '/evil'\nprint(json.dumps(1))"
    )
    assert r1.stdout == "patched\n"
    r2 = run("import json, os\nprint(json.dumps([1]), os.getcwd())")
    assert r2.stdout == "[1] /\n", r2.stderr


# -- files in and out -----------------------------------------------------------------------


def test_input_files_visible_in_cwd(run):
    """files= contents are visible in the guest's working directory."""
    r = run(
        "import os\nprint(os.getcwd(), open('in.txt').read(), open('sub/data.bin','rb').read().hex(),"
        " open('/abs.txt').read())",
        files={"in.txt": "hello", "sub/data.bin": b"\x00\xff", "/abs.txt": "abs"},
    )
    assert r.stdout == "/ hello 00ff abs\n", r.stderr
    assert r.files == ()  # inputs the run did not change are not outputs


def test_output_files_listed_with_content(run):
    """Files the guest writes are returned in result.files with their content."""
    r = run("open('out.txt','w').write('result!')\nimport os; os.mkdir('d'); open('d/b.bin','wb').write(b'\\x01\\x02')")
    assert r.ok, r.stderr
    by_path = {f.path: f for f in r.files}
    assert set(by_path) == {"/out.txt", "/d/b.bin"}
    assert by_path["/out.txt"].content == b"result!" and by_path["/out.txt"].size == 7
    assert not by_path["/out.txt"].truncated
    assert r.file("out.txt") == by_path["/out.txt"]
    assert r.file("/d/b.bin").content == b"\x01\x02"


def test_output_file_content_capped(run):
    """Returned file content is capped by max_returned_file_bytes and flagged truncated."""
    r = run("open('big.txt','w').write('0123456789' * 10)", max_returned_file_bytes=10)
    f = r.file("big.txt")
    assert f is not None
    assert f.size == 100 and f.content == b"0123456789" and f.truncated


# -- packages and mounts ----------------------------------------------------------------------


def _snapshot_tree(path: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(path.rglob("*"))}


WRITE_PKG = """
import mymod
print(mymod.VALUE)
try:
    open('/__pypackages__/evil.py', 'w').write('x')
except OSError as e:
    print('write refused', type(e).__name__)
try:
    open('/__pypackages__/mymod.py', 'a').write('x')
except OSError as e:
    print('append refused', type(e).__name__)
"""


def _check_packages(r, pkg: pathlib.Path, before: dict[str, bytes]) -> None:
    lines = r.stdout.splitlines()
    assert lines[0] == "42", r.stderr
    assert lines[1].startswith("write refused") and lines[2].startswith("append refused"), r.stdout
    assert _snapshot_tree(pkg) == before


def test_pythonpath_argument_importable_and_read_only(run, tmp_path):
    """pythonpath= is importable in the guest and read-only (writes fail; host dir unchanged)."""
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / "mymod.py").write_text("VALUE = 42\n")
    before = _snapshot_tree(pkg)
    _check_packages(run(WRITE_PKG, pythonpath=pkg), pkg, before)


def test_execr_pythonpath_env_importable_and_read_only(run, tmp_path, monkeypatch):
    """$EXECR_PYTHONPATH is importable in the guest and read-only (writes fail; host dir unchanged)."""
    pkg = tmp_path / "pkgs"
    pkg.mkdir()
    (pkg / "mymod.py").write_text("VALUE = 42\n")
    before = _snapshot_tree(pkg)
    monkeypatch.setenv("EXECR_PYTHONPATH", str(pkg))
    _check_packages(run(WRITE_PKG), pkg, before)


WRITE_MOUNT = """
import sys
print(open(sys.argv[1] + '/given.txt').read())
try:
    open(sys.argv[1] + '/new.txt', 'w').write('new')
    print('wrote')
except OSError as e:
    print('refused', type(e).__name__)
"""


def test_mount_read_only_by_default(run, tmp_path):
    """An extra mount is readable but read-only by default: writes fail and the host dir is unchanged."""
    (tmp_path / "given.txt").write_text("given")
    r = run(WRITE_MOUNT, args=["/data"], mounts=[Mount.of(tmp_path, "/data")])
    assert r.stdout.splitlines()[0] == "given", r.stderr
    assert r.stdout.splitlines()[1].startswith("refused"), r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given.txt"]


def test_mount_writable_with_rw(run, tmp_path):
    """A mount given as 'HOST:GUEST:rw' is writable and the write lands on the host."""
    (tmp_path / "given.txt").write_text("given")
    r = run(WRITE_MOUNT, args=["/out"], mounts=[f"{tmp_path}:/out:rw"])
    assert r.stdout.splitlines() == ["given", "wrote"], r.stderr
    assert (tmp_path / "new.txt").read_text() == "new"
    assert r.file("/out/new.txt").content == b"new"


def test_mount_guest_paths_change_between_runs(run, tmp_path):
    """Mounts appear at the guest path each run asks for, also when consecutive runs differ."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "f.txt").write_text("from a")
    (b / "f.txt").write_text("from b")
    code = "import os, sys\nprint(open(sys.argv[1] + '/f.txt').read(), [os.path.exists(p) for p in sys.argv[2:]])"
    r1 = run(code, args=["/first", "/second/deep"], mounts=[Mount.of(a, "/first")])
    assert r1.stdout == "from a [False]\n", r1.stderr
    r2 = run(code, args=["/second/deep", "/first"], mounts=[Mount.of(b, "/second/deep")])
    assert r2.stdout == "from b [False]\n", r2.stderr
    r3 = run(
        "import sys\nprint(open('/m1/f.txt').read(), open('/m2/f.txt').read())",
        mounts=[Mount.of(b, "/m1"), Mount.of(a, "/m2")],
    )
    assert r3.stdout == "from b from a\n", r3.stderr


# -- bad input ------------------------------------------------------------------------------


def _raises(runtime, match: str, code: object = "pass", **kw) -> InvalidArgument:
    with pytest.raises(InvalidArgument, match=match) as info:
        runtime.execute(code, **kw)
    return info.value


@pytest.mark.parametrize("code", [b"print(1)", None, 1])
def test_code_must_be_str(runtime, code):
    """Passing code that is not a str raises InvalidArgument naming code."""
    _raises(runtime, "code", code)


@pytest.mark.parametrize("timeout", [-1, 0, math.nan, math.inf, True, "1"])
def test_bad_timeout(runtime, timeout):
    """A negative, zero, NaN, infinite, bool or non-number timeout raises InvalidArgument naming timeout."""
    _raises(runtime, "timeout", timeout=timeout)


def test_memory_limit_above_4gib(runtime):
    """memory_limit above 4 GiB raises InvalidArgument naming memory_limit."""
    _raises(runtime, "memory_limit", memory_limit=4 * 1024**3 + 1)


def test_unknown_kwarg(runtime):
    """An unknown keyword argument is refused with InvalidArgument naming it, on every spelling."""
    with pytest.raises(InvalidArgument, match="bogus"):
        execr.execute("pass", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument, match="bogus"):
        runtime.execute("pass", bogus=1)  # type: ignore[call-arg]
    with pytest.raises(InvalidArgument, match="bogus"):
        runtime.execute("pass", limits={"bogus": 1})


def test_runtime_object_in_runtime_is_deprecated(runtime):
    """runtime= names the CPython; a Runtime object there still runs, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match=r"rt\.execute"):
        r = execr.execute("print(1)", runtime=runtime)  # type: ignore[typeddict-item]
    assert r.stdout == "1\n"


def test_execute_async_runs_off_the_event_loop():
    """execute_async returns the same Result as execute, and the loop keeps running meanwhile."""
    import asyncio

    async def main() -> tuple[execr.Result, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        result = await execr.execute_async("import time; time.sleep(0.3); print('done')")
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result.stdout == "done\n"
    assert ticks >= 5
    with pytest.raises(InvalidArgument):
        asyncio.run(execr.execute_async("pass", timeout=-1))


def test_args_as_str(runtime):
    """args given as a single str raises InvalidArgument naming args."""
    _raises(runtime, "args", args="abc")


def test_env_non_str_values(runtime):
    """env with a non-str value raises InvalidArgument naming env."""
    _raises(runtime, "env", env={"A": 1})
    _raises(runtime, "env", env={1: "a"})


@pytest.mark.parametrize("key", ["../escape.txt", "a/../../b", "/__execr__/main.py", "/__execr__/x", "__execr__/y"])
def test_bad_files_keys(runtime, key):
    """files keys with '..' or inside /__execr__ raise InvalidArgument naming files."""
    _raises(runtime, "files", files={key: "x"})


def test_mount_host_missing_or_file(runtime, tmp_path):
    """A mount whose host path is missing or a file raises InvalidArgument."""
    _raises(runtime, "mount host", mounts=[(tmp_path / "missing", "/data")])
    (tmp_path / "file").write_text("x")
    _raises(runtime, "mount host", mounts=[(tmp_path / "file", "/data")])


@pytest.mark.parametrize("guest", ["data", "/data/../etc", "/__execr__", "/__execr__/sub", "/__pypackages__", "/"])
def test_mount_bad_guest_path(runtime, tmp_path, guest):
    """A mount guest path that is relative, has '..', or is reserved raises InvalidArgument."""
    _raises(runtime, "mount|root", mounts=[(tmp_path, guest)])


def test_too_many_mounts(runtime, tmp_path):
    """More than 6 extra mounts raise InvalidArgument."""
    mounts = [Mount.of(tmp_path, f"/m{i}") for i in range(7)]
    _raises(runtime, "mounts", mounts=mounts)


def test_mount_fs_not_a_directory(runtime, tmp_path):
    """mount_fs that is a file or missing raises InvalidArgument naming mount_fs."""
    (tmp_path / "f").write_text("x")
    _raises(runtime, "mount_fs", mount_fs=tmp_path / "f")
    _raises(runtime, "mount_fs", mount_fs=os.path.join(tmp_path, "missing"))


def test_large_script_runs(run):
    """A script larger than the in-memory request buffer (300 KB) runs the same on both paths."""
    code = "DATA = " + repr("x" * 300_000) + "\nprint(len(DATA))\n"
    r = run(code)
    assert r.ok, r.stderr
    assert r.stdout == "300000\n"
