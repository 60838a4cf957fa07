"""Isolation: adversarial guests cannot reach the host's files, environment, network or processes."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from execr import InvalidArgument, Mount, Outcome

pytestmark = pytest.mark.guest

SECRET = "TOPSECRET-7f3a"

TRY_READ = """
import json, sys
out = {}
for path in sys.argv[1:]:
    try:
        with open(path, 'rb') as f:
            out[path] = 'READ:' + f.read().decode('utf-8', 'replace')
    except BaseException as e:
        out[path] = 'ERR:' + type(e).__name__
print(json.dumps(out))
"""


def read_attempts(run, paths: list[str], **kw) -> dict[str, str]:
    r = run(TRY_READ, args=paths, **kw)
    assert r.ok, (r.outcome, r.stderr)
    return json.loads(r.stdout)


def assert_all_refused(results: dict[str, str]) -> None:
    for path, what in results.items():
        assert what.startswith("ERR:"), f"guest read {path!r}: {what[:80]!r}"
        assert SECRET not in what


@pytest.fixture
def secret_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def test_host_absolute_paths_unreadable(run, secret_file):
    """The guest cannot read host files by absolute path (/etc/passwd, the host home, this test file)."""
    home = os.path.expanduser("~/.bashrc")
    paths = ["/etc/passwd", "/etc/hostname", home, __file__, str(secret_file), "/proc/self/environ"]
    assert_all_refused(read_attempts(run, paths))


def test_guest_root_lists_only_its_own(run):
    """The guest's root shows only the run's files and execr's fixed directories, nothing of the host."""
    r = run("import os\nprint(sorted(os.listdir('/')))", files={"mine.txt": "x"})
    listing = set(eval(r.stdout))
    assert "mine.txt" in listing
    assert not listing & {"etc", "home", "usr", "tmp", "proc", "root", "bin"}


def test_dotdot_escape_from_root(run, tmp_path, secret_file):
    """'..' cannot climb out of the guest root (with the default root and with mount_fs)."""
    rel = ["../secret.txt", "../../secret.txt", "/../secret.txt", "/../../../etc/passwd", "sub/../../secret.txt"]
    assert_all_refused(read_attempts(run, rel, files={"sub/x": "x"}))
    root = tmp_path / "root"
    root.mkdir()
    assert_all_refused(read_attempts(run, rel, mount_fs=root))


def test_dotdot_escape_from_mount(run, tmp_path, secret_file):
    """'..' cannot climb out of an extra mount to its host siblings."""
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "ok.txt").write_text("ok")
    paths = ["/data/../secret.txt", "/data/../../secret.txt", "/data/sub/../../secret.txt"]
    paths += ["/data/../inner/../secret.txt"]
    res = read_attempts(run, ["/data/ok.txt", *paths], mounts=[Mount.of(inner, "/data")])
    assert res.pop("/data/ok.txt") == "READ:ok"
    assert_all_refused(res)


def test_symlink_in_mount_cannot_lead_out(run, tmp_path, secret_file):
    """A symlink inside a mount (absolute or relative) pointing outside cannot be read through."""
    inner = tmp_path / "inner"
    inner.mkdir()
    os.symlink(secret_file, inner / "abs_link")
    os.symlink("../secret.txt", inner / "rel_link")
    os.symlink(tmp_path, inner / "dir_link")
    paths = ["/data/abs_link", "/data/rel_link", "/data/dir_link/secret.txt"]
    assert_all_refused(read_attempts(run, paths, mounts=[Mount.of(inner, "/data")]))
    assert_all_refused(read_attempts(run, paths, mounts=[Mount.of(inner, "/data", writable=True)]))


def test_symlink_in_mount_fs_cannot_lead_out(run, tmp_path, secret_file):
    """A symlink inside mount_fs pointing outside cannot be read through, and outputs never follow it."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(secret_file, root / "abs_link")
    os.symlink("../secret.txt", root / "rel_link")
    r = run(TRY_READ + "\nopen('new.txt', 'w').write('n')\n", args=["/abs_link", "rel_link"], mount_fs=root)
    assert_all_refused(json.loads(r.stdout.splitlines()[0]))
    assert all(SECRET.encode() not in f.content for f in r.files)
    assert secret_file.read_text() == SECRET


def test_guest_cannot_create_links(run, tmp_path):
    """os.symlink and os.link raise inside the guest (root and writable mounts)."""
    code = """
import os
open('target.txt', 'w').write('t')
open('/rw/target.txt', 'w').write('t')
for fn, a, b in [(os.symlink, '/etc/passwd', 'l1'), (os.symlink, 'target.txt', 'l2'), (os.link, 'target.txt', 'l3'),
                 (os.symlink, '/', '/rw/l4'), (os.link, '/rw/target.txt', '/rw/l5')]:
    try:
        fn(a, b)
        print('made', b)
    except OSError as e:
        print('refused', type(e).__name__)
"""
    r = run(code, mounts=[Mount.of(tmp_path, "/rw", writable=True)])
    assert r.ok, r.stderr
    assert r.stdout.splitlines() == ["refused PermissionError"] * 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target.txt"]


def test_hard_linked_file_in_writable_mount_refused(runtime, tmp_path):
    """A writable mount holding a hard-linked file is refused with InvalidArgument (read-only is fine)."""
    outside = tmp_path / "outside.txt"
    outside.write_text("orig")
    inner = tmp_path / "inner"
    inner.mkdir()
    os.link(outside, inner / "hard.txt")
    with pytest.raises(InvalidArgument, match="hard-linked"):
        runtime.execute("pass", mounts=[Mount.of(inner, "/data", writable=True)])
    with pytest.raises(InvalidArgument, match="hard-linked"):
        runtime.execute("pass", mount_fs=inner)
    r = runtime.execute("print(open('/data/hard.txt').read())", mounts=[Mount.of(inner, "/data")])
    assert r.stdout == "orig\n"
    assert outside.read_text() == "orig"


def test_control_dir_and_stdin_not_writable(run):
    """The guest cannot overwrite its script in /__execr__, add files there, or write to stdin."""
    code = """
import os
for path, mode in [('/__execr__/main.py', 'w'), ('/__execr__/main.py', 'a'), ('/__execr__/new.py', 'w')]:
    try:
        open(path, mode).write('pwned')
        print('wrote', path)
    except OSError as e:
        print('refused', type(e).__name__)
try:
    os.write(0, b'pwned')
    print('wrote stdin')
except OSError as e:
    print('refused', type(e).__name__)
try:
    os.remove('/__execr__/main.py')
    print('removed')
except OSError as e:
    print('refused', type(e).__name__)
print(open('/__execr__/main.py').read() == open(__file__).read())
"""
    r = run(code, stdin="input data")
    lines = r.stdout.splitlines()
    assert len(lines) == 6, r.stderr
    assert all(line.startswith("refused") for line in lines[:5]), lines
    assert lines[5] == "True"


def test_host_env_never_visible(run, monkeypatch, runtime_name):
    """A variable set in the host's environment is never visible to the guest (the scientific
    runtime's only additions are its two matplotlib defaults)."""
    monkeypatch.setenv("EXECR_SECRET", "x")
    monkeypatch.setenv("MPLCONFIGDIR", "/host/secret/path")
    extra = ["MPLBACKEND", "MPLCONFIGDIR"] if runtime_name == "scientific" else []
    r = run("import os\nprint(os.environ.get('EXECR_SECRET'), 'PATH' in os.environ, len(os.environ))", pythonpath=None)
    assert r.stdout == f"None False {len(extra)}\n"
    r = run("import os\nprint(sorted(os.environ), os.environ.get('MPLCONFIGDIR'))", env={"MINE": "1"}, pythonpath=None)
    assert r.stdout == f"{sorted(['MINE', *extra])} {'/__execr__/tmp/matplotlib' if extra else None}\n"


def test_no_network(run):
    """The guest cannot open a network connection: a listening host socket sees no connection."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.3)
        port = server.getsockname()[1]
        code = f"""
try:
    import socket
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", {port}))
    print("CONNECTED")
except BaseException as e:
    print("refused", type(e).__name__)
"""
        r = run(code)
        assert r.stdout.startswith("refused"), (r.stdout, r.stderr)
        with pytest.raises(TimeoutError):
            conn, _ = server.accept()
            conn.close()


def test_no_subprocess(run, tmp_path):
    """os.system and subprocess cannot start host processes."""
    marker = tmp_path / "ran"
    code = f"""
import os
for name, fn in [('system', lambda: os.system('touch {marker}')),
                 ('subprocess', lambda: __import__('subprocess').run(['touch', '{marker}'])),
                 ('popen', lambda: os.popen('touch {marker}').read()),
                 ('fork', lambda: os.fork()),
                 ('execv', lambda: os.execv('/bin/sh', ['sh', '-c', 'touch {marker}']))]:
    try:
        fn()
        print('RAN', name)
    except BaseException as e:
        print('refused', name, type(e).__name__)
"""
    r = run(code)
    assert r.ok, r.stderr
    assert "RAN" not in r.stdout
    assert len(r.stdout.splitlines()) == 5
    assert not marker.exists()


def test_parallel_runs_are_isolated(runtime, snapshot, runtime_name):
    """Two runs in parallel threads writing the same filename see only their own file and own stdout."""
    code = """
import sys, time
me = sys.argv[1]
open('same.txt', 'w').write(me)
for _ in range(20):
    time.sleep(0.005)
    assert open('same.txt').read() == me
print('I am', me, open('same.txt').read())
"""

    def one(name: str):
        return runtime.execute(code, args=[name], snapshot=snapshot, runtime=runtime_name)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(one, ["alpha", "beta", "gamma", "delta"]))
    for name, r in zip(["alpha", "beta", "gamma", "delta"], results, strict=True):
        assert r.outcome is Outcome.COMPLETED, r.stderr
        assert r.stdout == f"I am {name} {name}\n"
        assert [(f.path, f.content) for f in r.files] == [("/same.txt", name.encode())]


def test_symlink_in_writable_mount_cannot_be_written_through(run, tmp_path):
    """Writing through a host-made symlink in a writable mount cannot create or change files outside it."""
    inner = tmp_path / "inner"
    inner.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("orig")
    os.symlink(outside, inner / "dir_link")
    os.symlink(victim, inner / "file_link")
    code = """
for path in ['/rw/dir_link/new.txt', '/rw/dir_link/victim.txt', '/rw/file_link']:
    try:
        open(path, 'w').write('pwned')
        print('wrote', path)
    except OSError as e:
        print('refused', type(e).__name__)
"""
    r = run(code, mounts=[Mount.of(inner, "/rw", writable=True)])
    assert r.ok, r.stderr
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["refused"] * 3, r.stdout
    assert victim.read_text() == "orig"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]


def test_guest_trap_never_kills_host_after_handlers_replaced():
    """A guest abort (a wasm trap, raised as SIGILL) stays a CRASHED result even after the host
    process enabled faulthandler (as Ray and pytest do), which replaces wasmtime's handlers."""
    script = (
        "import faulthandler, execr\n"
        "print(execr.execute('import os; os.abort()').outcome.value)\n"
        "faulthandler.disable(); faulthandler.enable()\n"
        "print(execr.execute('import os; os.abort()').outcome.value)\n"
        "print(execr.execute('print(1)').stdout, end='')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["crashed", "crashed", "1"]


def test_handlers_replaced_during_a_run_do_not_kill_the_host():
    """Another thread replacing the crash handlers while a guest runs (then traps) leaves the host alive:
    the epoch ticker puts wasmtime's handlers back within one tick (the documented window)."""
    script = (
        "import faulthandler, threading, time, execr\n"
        "execr.execute('print(1)')\n"
        "def flip():\n"
        "    time.sleep(0.2); faulthandler.disable(); faulthandler.enable()\n"
        "outcomes = []\n"
        "for _ in range(3):\n"
        "    t = threading.Thread(target=flip); t.start()\n"
        "    code = 'import os, time\\nt = time.monotonic()\\nwhile time.monotonic() - t < 0.5: pass\\nos.abort()'\n"
        "    outcomes.append(execr.execute(code).outcome.value)\n"
        "    t.join()\n"
        "print(outcomes)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "['crashed', 'crashed', 'crashed']"


def _interrupt(script: str) -> tuple[int, str, str, float]:
    """Run ``script``; once it prints ``ready``, send SIGINT. (exit code, stdout, stderr, seconds to exit)."""
    import signal
    import time

    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "ready" in line, (line, proc.stderr.read() if proc.stderr else "")
        time.sleep(0.3)  # let the guest start spinning
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        return proc.returncode, out, err, time.monotonic() - sent


def test_ctrl_c_stops_the_cli_at_once():
    """Ctrl-C during a busy guest stops `execr run` within 100 ms (plus process exit), with exit code 130."""
    script = (
        "import sys, execr.cli\n"
        "execr.execute('print(1)')\n"
        "print('ready', flush=True)\n"
        "sys.exit(execr.cli.main(['run', '-c', 'while True: pass', '--timeout', '12']))\n"
    )
    code, _out, err, took = _interrupt(script)
    assert code == 130, err
    assert took < 2.0, took


@pytest.mark.parametrize("code", ["while True: pass", "import time\ntime.sleep(30)"], ids=["busy", "sleeping"])
def test_ctrl_c_raises_keyboard_interrupt_from_the_api(code):
    """The Python API raises KeyboardInterrupt promptly after cleaning up, for busy and blocked guests alike."""
    script = (
        "import execr, time\n"
        "rt = execr.Runtime(); rt.execute('print(1)')\n"
        "print('ready', flush=True)\n"
        "t = time.monotonic()\n"
        "try:\n"
        f"    rt.execute({code!r}, timeout=20)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', round(time.monotonic() - t, 3), flush=True)\n"
        "print(rt.execute('print(2)').stdout, end='', flush=True)\n"
    )
    status, out, err, took = _interrupt(script)
    assert status == 0, err
    assert out.startswith("interrupted") and out.endswith("2\n"), out
    assert took < 2.0, took
