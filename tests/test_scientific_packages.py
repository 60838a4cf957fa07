"""The scientific runtime's packages: one real task each, plotting, package data, the scratch directory.

Also what must not happen: the guest writing to the read-only data directories, seeing a host
path, or finding what an earlier run left in its scratch directory (``MPLCONFIGDIR``); and
deep C recursion crashing the run instead of raising ``RecursionError``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import execr
from execr._image import _binary, _datafiles, _smoke

MPL = _datafiles.MPL_GUEST


def _run(rt: execr.Runtime, code: str, **kw: object) -> execr.Result:
    return rt.execute(code, runtime="scientific", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("package", sorted(_smoke.TASKS))
def test_each_advertised_package_does_a_real_task(scientific: execr.Runtime, package: str) -> None:
    """numpy, pandas, scipy, scikit-learn, statsmodels, sympy, networkx, matplotlib, seaborn, pillow, ...:
    one small real task each, with its exact output."""
    code, want = _smoke.TASKS[package]
    r = _run(scientific, code)
    assert (r.outcome, r.stdout) == ("completed", want), r.stderr[-3000:]


def test_check_stores_what_passed_for_info(scientific: execr.Runtime, tmp_path: Path) -> None:
    """check() runs every task and keeps the verdicts; info() lists them (checked_packages)."""
    calls: list[str] = []

    def fake(code: str) -> execr.Result:
        calls.append(code)
        return _run(scientific, "print('nope')")

    where = tmp_path / "checked.json"
    out = _smoke.check(fake, where)
    assert len(calls) == len(_smoke.TASKS) and all(v.startswith("failed (completed)") for v in out.values())
    assert _smoke.last(where)["packages"] == out  # type: ignore[index]
    info = scientific.runtime_info("scientific")
    assert "checked_packages" in info and "preload_sets" in info


def test_matplotlib_plots_come_back_as_files(scientific: execr.Runtime) -> None:
    """Agg by default, PNG and SVG written under / come back in Result.files; plt.show() only warns."""
    r = _run(
        scientific,
        "import matplotlib, matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4])\nplt.savefig('/p.png')\n"
        "plt.savefig('/p.svg')\nplt.show()\nprint(matplotlib.get_backend())",
    )
    assert (r.outcome, r.stdout.lower()) == ("completed", "agg\n"), r.stderr
    assert "non-interactive, and thus cannot be shown" in r.stderr
    files = {f.path: f.content for f in r.files}
    assert set(files) == {"/p.png", "/p.svg"}  # nothing from MPLCONFIGDIR
    assert files["/p.png"].startswith(b"\x89PNG\r\n\x1a\n") and b"<svg" in files["/p.svg"]


def test_the_matplotlib_set_draws_with_its_fonts_in_memory(
    scientific: execr.Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The matplotlib set drew once at build time with its fonts read into memory: a run's plot opens
    no font file, the fonts keep their paths (PDF embeds them), ``io.open`` is the real one again,
    and the PNG is byte for byte what a run without the set draws."""
    scientific._sets_of("scientific").ensure(["matplotlib"])
    code = (
        "import io, sys\nimport matplotlib.pyplot as plt\nfrom matplotlib import font_manager as fm\n"
        "print('matplotlib.backends.backend_agg' in sys.modules, io.open is open)\n"
        "opened, real = [], io.open\n"
        "io.open = lambda f, *a, **k: opened.append(str(f)) or real(f, *a, **k)\n"
        "fig, ax = plt.subplots()\nax.plot([1, 2, 3], [1, 4, 9], label='y')\nax.set_title(r'$\\alpha^2$ t')\n"
        "ax.legend()\nfig.savefig('/p.png')\nio.open = real\nfig.savefig('/p.pdf')\n"
        "print([f for f in opened if 'fonts' in f], fm.get_font(fm.findfont(fm.FontProperties())).fname)"
    )
    on_set = _run(scientific, code)
    want = f"[] {MPL}/fonts/ttf/DejaVuSans.ttf\n"
    assert (on_set.outcome, on_set.stdout) == ("completed", f"True True\n{want}"), on_set.stderr[-3000:]
    monkeypatch.setenv("EXECR_PRELOAD_SETS", "0")  # the runtime's own snapshot: matplotlib imported by the run
    plain = _run(scientific, code)
    assert plain.stdout.endswith(f"{MPL}/fonts/ttf/DejaVuSans.ttf\n") and plain.stdout.startswith("False True\n")
    assert "DejaVuSans.ttf" in plain.stdout  # without the set, FT2Font reads the font file
    files, plain_files = ({f.path: f.content for f in r.files} for r in (on_set, plain))
    assert files["/p.png"].startswith(b"\x89PNG\r\n\x1a\n") and files["/p.pdf"].startswith(b"%PDF")
    assert files["/p.png"] == plain_files["/p.png"]


def test_matplotlib_uses_the_stored_font_cache(scientific: execr.Runtime) -> None:
    """Runs find matplotlib's font list already in MPLCONFIGDIR and do not rebuild it."""
    binary = scientific.files("scientific")
    stored = _datafiles.font_cache(binary)
    assert stored, "warmup builds the font list"
    (name, data), *_ = stored.items()
    code = (
        "import os, hashlib\nd = os.environ['MPLCONFIGDIR']\nbefore = sorted(os.listdir(d))\n"
        "import matplotlib.font_manager as fm\nfm.findfont('DejaVu Sans')\n"
        f"print(d, before, hashlib.sha256(open(d + '/{name}', 'rb').read()).hexdigest())"
    )
    r = _run(scientific, code)
    assert r.stdout == f"{_datafiles.MPLCONFIG_GUEST} ['{name}'] {hashlib.sha256(data).hexdigest()}\n", r.stderr


def test_the_data_directory_is_read_only_and_shows_no_host_path(scientific: execr.Runtime) -> None:
    """mpl-data cannot be written, removed, renamed or climbed out of; the guest sees guest paths only."""
    code = f"""
import os, errno
mpl = {MPL!r}
results = []
for attempt in (
    lambda: open(mpl + "/matplotlibrc", "a").write("x"),
    lambda: open(mpl + "/new.txt", "w"),
    lambda: os.remove(mpl + "/matplotlibrc"),
    lambda: os.rename(mpl + "/matplotlibrc", mpl + "/rc"),
    lambda: os.mkdir(mpl + "/d"),
    lambda: open(mpl + "/../../../../../etc/passwd").read(),
    lambda: open(mpl + "/fonts/../../../../../../../etc/hostname").read(),
):
    try:
        attempt()
        results.append("allowed")
    except OSError as e:
        results.append("refused")
print(results)
print(sorted(os.listdir(mpl))[:3], os.path.isfile(mpl + "/matplotlibrc"))
import matplotlib
print(matplotlib.get_data_path())
"""
    r = _run(scientific, code)
    lines = r.stdout.splitlines()
    assert lines[0] == str(["refused"] * 7), r.stderr
    assert lines[1] == "['fonts', 'images', 'kpsewhich.lua'] True"
    assert lines[2] == MPL
    assert str(Path.home()) not in r.stdout and "/tmp/" not in r.stdout and ".cache" not in r.stdout
    folder = _datafiles.data_dir(scientific.files("scientific"))
    assert folder is not None and not (folder / "mpl-data" / "new.txt").exists()
    r = _run(scientific, f"import os\ntry:\n    os.chmod({MPL!r} + '/matplotlibrc', 0o777)\nexcept OSError:\n    pass")
    assert r.outcome == "completed" and os.stat(folder / "mpl-data" / "matplotlibrc").st_mode & 0o777 == 0o444


def test_scratch_directory_is_private_to_each_run(scientific: execr.Runtime) -> None:
    """What one run leaves in MPLCONFIGDIR (or anywhere in its scratch) is gone for the next; it is no output."""
    scratch = _datafiles.SCRATCH_GUEST
    write = (
        "import os\nd = os.environ['MPLCONFIGDIR']\n"
        "open(d + '/secret.txt', 'w').write('run one')\n"
        f"open({scratch!r} + '/top.txt', 'w').write('x')\n"
        "open(d + '/matplotlibrc', 'w').write('lines.linewidth: 9')\n"
        "print(sorted(os.listdir(d)))"
    )
    first = _run(scientific, write)
    assert first.outcome == "completed" and "secret.txt" in first.stdout, first.stderr
    assert first.files == ()
    for _ in range(2):  # a recycled instance and whatever comes next
        r = _run(
            scientific,
            "import os\nd = os.environ['MPLCONFIGDIR']\n"
            f"print(sorted(os.listdir(d)), sorted(os.listdir({scratch!r})))\n"
            "import matplotlib\nprint(matplotlib.rcParams['lines.linewidth'])",
        )
        name = next(iter(_datafiles.font_cache(scientific.files("scientific"))))
        assert r.stdout == f"['{name}'] ['matplotlib']\n1.5\n", r.stderr


def test_scratch_counts_toward_the_file_caps(scientific: execr.Runtime) -> None:
    """Bytes and files written in the scratch directory are capped like the root's."""
    r = _run(
        scientific,
        f"open({_datafiles.SCRATCH_GUEST!r} + '/big', 'wb').write(b'x' * 100_000)",
        max_file_bytes=50_000,
    )
    assert r.outcome == "file_limit", (r.outcome, r.stderr)
    r = _run(
        scientific,
        f"import os\nfor i in range(50):\n    open({_datafiles.SCRATCH_GUEST!r} + f'/f{{i}}', 'w')",
        max_files=10,
    )
    assert r.outcome == "file_limit", (r.outcome, r.stderr)


def test_env_overrides_the_plotting_defaults(scientific: execr.Runtime) -> None:
    """A request's own MPLBACKEND / MPLCONFIGDIR win over execr's defaults (which env= does not remove)."""
    r = _run(
        scientific,
        "import os\nprint(os.environ.get('MPLBACKEND'), os.environ.get('MPLCONFIGDIR'))",
        env={"MPLBACKEND": "svg"},
    )
    assert r.stdout == f"svg {_datafiles.MPLCONFIG_GUEST}\n", r.stderr  # added to the request's env unless set


def test_seaborn_plot_on_the_plain_path(scientific: execr.Runtime) -> None:
    """Without a snapshot (CPython's own start-up) matplotlib finds its data and config directory too."""
    r = _run(
        scientific,
        "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('/a.png')\nprint('ok')",
        snapshot=False,
    )
    assert (r.outcome, r.stdout, [f.path for f in r.files]) == ("completed", "ok\n", ["/a.png"]), r.stderr


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "plain"])
def test_deep_c_recursion_raises_recursion_error(scientific: execr.Runtime, snapshot: bool) -> None:
    """json.loads of 200,000 nested lists raises RecursionError (wasmtime's stack is big enough for CPython's check)."""
    code = (
        "import json\ntry:\n    json.loads('[' * 200000 + ']' * 200000)\nexcept RecursionError as e:\n"
        "    print('RecursionError', 'Stack overflow' in str(e))\n"
        "class A:\n    def __getattr__(self, n):\n        return getattr(self, n)\n"
        "try:\n    A().x\nexcept RecursionError:\n    print('RecursionError')\n"
    )
    r = _run(scientific, code, snapshot=snapshot)
    assert (r.outcome, r.stdout) == ("completed", "RecursionError True\nRecursionError\n"), (r.error, r.stderr)


# -- the data directory on the host (no guest) ------------------------------------------------------


def test_data_is_extracted_read_only_and_repaired(tmp_path: Path) -> None:
    """Extracted once from the verified zip (0444 files, 0555 folders, a manifest); a changed, extra or
    linked entry is found on the next check and the directory extracted again."""
    files = _binary.load_scientific(tmp_path)
    [pre] = _datafiles.preopens(files)
    mpl = Path(pre.host)
    assert pre.guest == _datafiles.MPL_GUEST and not pre.writable
    rc = mpl / "matplotlibrc"
    assert rc.is_file() and not os.stat(rc).st_mode & 0o222 and not os.stat(mpl).st_mode & 0o222
    manifest = json.loads((mpl.parent / "manifest.json").read_bytes())
    assert manifest["matplotlibrc"][1] == hashlib.sha256(rc.read_bytes()).hexdigest()
    assert len(manifest) == 204
    for damage in ("change", "extra", "link"):
        os.chmod(mpl, 0o755)
        if damage == "change":
            os.chmod(rc, 0o644)
            rc.write_text("backend: tampered")
            os.chmod(rc, 0o444)
        elif damage == "extra":
            (mpl / "extra.txt").write_text("x")
        else:
            os.symlink("/etc/passwd", mpl / "fonts" / "passwd")
        os.chmod(mpl, 0o555)
        _datafiles._placed.cache_clear()
        [again] = _datafiles.preopens(files)
        assert again == pre
        assert _datafiles._intact(mpl.parent)
        assert "tampered" not in rc.read_text() and not (mpl / "extra.txt").exists()
        assert not (mpl / "fonts" / "passwd").is_symlink()


def test_unsafe_archive_members_are_refused() -> None:
    """Absolute paths, '..', backslashes and NUL never leave the data directory."""
    for bad in ("/etc/x", "../x", "a/../../x", "a\\b", "a/./b", "a//b", "x\0y", ""):
        with pytest.raises(execr.RuntimeUnavailable):
            _datafiles._member_path(bad)
    assert _datafiles._member_path("fonts/ttf/a.ttf") == ("fonts", "ttf", "a.ttf")


def test_font_cache_must_name_data_directory_fonts() -> None:
    """A font list naming a font outside mpl-data (or climbing out of it) is never stored."""
    good = {"_version": "3.11.0", "ttflist": [{"fname": "fonts/ttf/DejaVuSans.ttf"}], "afmlist": []}
    assert _datafiles._check_font_cache(json.dumps(good).encode())
    for fname in ("/etc/passwd", "fonts/../../x.ttf", "other/x.ttf"):
        bad = {**good, "ttflist": [{"fname": fname}]}
        assert not _datafiles._check_font_cache(json.dumps(bad).encode())
    assert not _datafiles._check_font_cache(b"not json")
