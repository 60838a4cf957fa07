"""The guest file layer (``_guestfs``): caps that cannot be dodged, descriptors, containment, no channel.

Each test is an attack a guest can make through the public API, run on both CPythons and
both start-up paths (the ``run`` fixture), with the host side checked from outside.
"""

from __future__ import annotations

import os
import stat
import threading

import pytest

import execr
from execr import Outcome

MiB = 1 << 20


def _host_entries(path: os.PathLike[str] | str) -> tuple[int, int]:
    """(entries, bytes) below ``path`` as the host sees them (fd-relative, any depth)."""
    from execr._guestfs import walk

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entries = size = 0
        for _rel, st, _parent in walk(fd, max_depth=10_000):
            entries += 1
            size += 0 if stat.S_ISDIR(st.st_mode) else st.st_size
        return entries, size
    finally:
        os.close(fd)


def test_long_path_chain_cannot_hide_files(run, tmp_path):
    """A directory chain longer than the host's PATH_MAX is counted like any other: max_files stops it.

    (The old watcher could not open such paths and let 1000 files through under max_files=45.)
    """
    code = (
        "import os\n"
        "name = 'd' * 200\n"
        "depth = 0\n"
        "try:\n"
        "    while depth < 40:\n"
        "        os.mkdir(name); os.chdir(name); depth += 1\n"
        "    for i in range(1000):\n"
        "        open(f'f{i}', 'w').write('x' * 100)\n"
        "except OSError as e:\n"
        "    print('refused', depth, e.errno)\n"
    )
    r = run(code, mount_fs=tmp_path, max_files=45, timeout=30)
    assert r.outcome is Outcome.FILE_LIMIT, (r.outcome, r.stdout, r.stderr)
    assert "max_files" in (r.error or "")
    assert _host_entries(tmp_path)[0] <= 45


def test_directories_deeper_than_the_cap_are_refused(run):
    """The guest cannot nest directories without bound: past the depth cap mkdir fails (ENAMETOOLONG)."""
    code = (
        "import os, errno\n"
        "depth = 0\n"
        "try:\n"
        "    while True:\n"
        "        os.mkdir('a'); os.chdir('a'); depth += 1\n"
        "except OSError as e:\n"
        "    print(depth, e.errno == errno.ENAMETOOLONG)\n"
    )
    r = run(code, max_files=None, timeout=30)
    assert r.outcome is Outcome.COMPLETED, (r.stdout, r.stderr)
    depth, named = r.stdout.split()
    assert int(depth) == 200 and named == "True"


def test_unlinked_open_file_still_counts(run):
    """Bytes written to a file unlinked while open count against max_file_bytes (they stay on the host)."""
    code = (
        "import os, sys\n"
        "f = open('ghost', 'wb')\n"
        "os.unlink('ghost')\n"
        "for i in range(30):\n"
        "    f.write(b'x' * (1 << 20)); f.flush()\n"
        "    print(i, flush=True)\n"
    )
    r = run(code, max_file_bytes=10 * MiB, timeout=30)
    assert r.outcome is Outcome.FILE_LIMIT, (r.outcome, r.stdout, r.stderr)
    assert "max_file_bytes" in (r.error or "")
    written = len(r.stdout.split())
    assert written <= 10, r.stdout  # the 11th MiB was refused before it reached the host


def test_one_big_write_is_refused_whole(run, tmp_path):
    """A 62 MiB burst under an 8 MiB cap never reaches the host, and the result carries at most the cap."""
    r = run("open('big', 'wb').write(b'x' * (62 << 20))", mount_fs=tmp_path, max_file_bytes=8 * MiB, timeout=30)
    assert r.outcome is Outcome.FILE_LIMIT, (r.outcome, r.stderr)
    assert _host_entries(tmp_path)[1] <= 8 * MiB
    assert sum(len(f.content) for f in r.files) <= 8 * MiB


@pytest.mark.parametrize(
    "attack",
    [
        "with open('sparse', 'wb') as f: f.seek(10 << 30); f.write(b'x')",
        "with open('sparse', 'wb') as f: f.truncate(1 << 30)",
        "import os\nfd = os.open('p', os.O_WRONLY | os.O_CREAT); os.pwrite(fd, b'x', 1 << 33)",
    ],
    ids=["seek-past-end", "truncate-up", "pwrite-far"],
)
def test_sparse_and_extended_files_count_in_full(run, tmp_path, attack):
    """Apparent size counts: seeking far, truncating up or pwrite at a far offset hit max_file_bytes."""
    r = run(attack, mount_fs=tmp_path, max_file_bytes=MiB, timeout=30)
    assert r.outcome is Outcome.FILE_LIMIT, (r.outcome, r.stderr)
    assert _host_entries(tmp_path)[1] <= MiB


def test_rewriting_and_deleting_frees_budget(run):
    """Overwriting in place does not count twice, and deleted files give their bytes back."""
    code = (
        "import os\n"
        "for i in range(20):\n"
        "    open('f', 'wb').write(b'x' * (1 << 20))\n"
        "for i in range(20):\n"
        "    open(f'g{i}', 'wb').write(b'y' * (1 << 20)); os.unlink(f'g{i}')\n"
        "with open('f', 'r+b') as f:\n"
        "    f.write(b'z' * (1 << 20))\n"
        "print('ok')\n"
    )
    r = run(code, max_file_bytes=2 * MiB, max_files=3, timeout=30)
    assert r.outcome is Outcome.COMPLETED, (r.outcome, r.error, r.stderr)


def test_default_root_obeys_the_caps(run):
    """The fresh scratch root is a writable tree like any other: max_files and max_file_bytes hold there."""
    r = run("for i in range(100): open(f'f{i}', 'w')", max_files=10, timeout=30)
    assert r.outcome is Outcome.FILE_LIMIT
    r = run("open('a', 'wb').write(b'x' * 3_000_000)", max_file_bytes=MiB, timeout=30)
    assert r.outcome is Outcome.FILE_LIMIT


def test_descriptor_cap_gives_emfile_and_spares_the_host(run):
    """Opening files without end gets EMFILE at max_open_files; the run's own output survives."""
    code = (
        "import errno\n"
        "held = []\n"
        "try:\n"
        "    while True:\n"
        "        held.append(open('/__execr__/main.py', 'rb'))\n"
        "except OSError as e:\n"
        "    print(len(held), e.errno == errno.EMFILE)\n"
    )
    r = run(code, max_open_files=50, timeout=30)
    assert r.outcome is Outcome.COMPLETED, (r.stdout, r.stderr)
    count, emfile = r.stdout.split()
    assert 40 <= int(count) <= 50 and emfile == "True"


def test_descriptor_flood_does_not_disturb_concurrent_runs(runtime):
    """A guest holding its maximum of descriptors leaves other threads' runs and their outputs intact."""
    flood = "held = []\ntry:\n    while True: held.append(open('f', 'w'))\nexcept OSError: print('full', len(held))\n"
    results: list[execr.Result] = []

    def many() -> None:
        for i in range(20):
            results.append(runtime.execute(f"print({i})"))

    thread = threading.Thread(target=many)
    thread.start()
    floods = [runtime.execute(flood, max_open_files=None, timeout=20) for _ in range(3)]
    thread.join()
    # with no per-run cap, the process-wide budget still leaves the host 256 descriptors
    assert all(r.stdout.startswith("full ") for r in floods), floods[0].stderr
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(20)]


def test_fifo_in_a_mount_never_blocks(run, tmp_path):
    """Opening a FIFO (or any special file) in a mounted directory is refused at once, never blocks."""
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "pipe")
    code = (
        "import time\n"
        "t = time.monotonic()\n"
        "for mode in ('rb', 'wb'):\n"
        "    try:\n"
        "        open('/data/pipe', mode)\n"
        "    except OSError as e:\n"
        "        print(mode, type(e).__name__)\n"
        "print(time.monotonic() - t < 1)\n"
    )
    r = run(code, mounts=[execr.Mount.of(data, "/data", writable=True)], timeout=2)
    assert r.outcome is Outcome.COMPLETED, (r.outcome, r.error, r.stderr)
    assert r.stdout.splitlines() == ["rb PermissionError", "wb PermissionError", "True"]


def test_links_planted_in_a_mount_stay_inside(run, tmp_path):
    """A symlink pointing out of a mount (absolute or by ..) cannot be followed; one inside can."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("SECRET")
    data = tmp_path / "data"
    data.mkdir()
    (data / "inner.txt").write_text("inner")
    os.symlink(outside / "secret", data / "abs")
    os.symlink("../outside/secret", data / "rel")
    os.symlink("inner.txt", data / "ok")
    code = (
        "for name in ('abs', 'rel', 'ok'):\n"
        "    try:\n"
        "        print(name, open('/data/' + name).read())\n"
        "    except OSError as e:\n"
        "        print(name, 'refused')\n"
    )
    r = run(code, mounts=[execr.Mount.of(data, "/data")], timeout=10)
    assert r.stdout.splitlines() == ["abs refused", "rel refused", "ok inner"], r.stderr


def test_host_writes_never_follow_planted_links(tmp_path, runtime):
    """files= into a mount_fs holding a symlinked directory refuses instead of writing outside."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(execr.InvalidArgument, match="link"):
        runtime.execute("print(1)", mount_fs=root, files={"link/x": "pwned"})
    assert not (outside / "x").exists()


def test_stdio_outputs_never_follow_planted_links(tmp_path, runtime):
    """stdio= refuses a planted stdout.txt symlink before the run instead of writing through it."""
    target = tmp_path / "target"
    target.write_text("keep")
    stdio = tmp_path / "stdio"
    stdio.mkdir()
    os.symlink(target, stdio / "stdout.txt")
    with pytest.raises(execr.InvalidArgument, match=r"stdout\.txt"):
        runtime.execute("print('overwrite')", stdio=stdio)
    assert target.read_text() == "keep"


CHANNEL_WRITE = """
import os
os.utime('/', (1234567, 1234567))
for i in range(300):
    open(f'n{i}', 'w').close()
for i in range(300):
    os.unlink(f'n{i}')
open('keep-order-b', 'w').close(); open('keep-order-a', 'w').close()
"""
CHANNEL_READ = """
import os
st = os.stat('/')
open('probe', 'w').close()
p = os.stat('probe')
print(int(st.st_mtime) == 1234567, st.st_ino, st.st_dev, p.st_ino, p.st_dev, os.listdir('/'))
"""


def test_no_channel_between_runs(run):
    """A run cannot pass anything to a later one through file metadata: times, inode numbers, sizes, order."""
    first = run(CHANNEL_READ)
    run(CHANNEL_WRITE)
    second = run(CHANNEL_READ)
    assert first.stdout.startswith("False ")
    assert first.stdout == second.stdout, (first.stdout, second.stdout)


def test_no_channel_between_runtimes(runtime):
    """The same holds across Runtime objects in one process (two tenants)."""
    with execr.Runtime() as other:
        first = runtime.execute(CHANNEL_READ)
        other.execute(CHANNEL_WRITE)
        second = runtime.execute(CHANNEL_READ)
    assert first.stdout == second.stdout


def test_listing_is_sorted_and_virtual(run, tmp_path):
    """Directory listings come back sorted by name whatever order the host keeps; stdio and /__execr__ are virtual."""
    code = (
        "import os\nfor n in ('b', 'a', 'c'): open(n, 'w').close()\nprint(os.listdir('/'), os.listdir('/__execr__'))\n"
    )
    r = run(code)
    assert r.stdout.startswith("['a', 'b', 'c'] ['main.py'"), r.stdout  # (+ request.bin: scientific plain path)


def test_seek_offsets_are_signed_64_bit(run):
    """fd_seek's i64 offset reaches the host signed: negative offsets relative to the end or the
    current position work, a negative absolute one is EINVAL, a large one is an ordinary offset."""
    code = (
        "import os\n"
        "fd = os.open('f', os.O_RDWR | os.O_CREAT)\n"
        "os.write(fd, b'0123456789')\n"
        "print(os.lseek(fd, -3, os.SEEK_END), os.read(fd, 10))\n"
        "print(os.lseek(fd, -4, os.SEEK_CUR), os.read(fd, 1))\n"
        "for off in (-1, -2**63):\n"
        "    try:\n"
        "        os.lseek(fd, off, os.SEEK_SET)\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
        "print(os.lseek(fd, 2**40, os.SEEK_SET))\n"
    )
    r = run(code)
    assert r.outcome is Outcome.COMPLETED, (r.outcome, r.stderr)
    assert r.stdout == "7 b'789'\n6 b'6'\nrefused 28\nrefused 28\n1099511627776\n"
