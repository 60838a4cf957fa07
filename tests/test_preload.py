"""Preload sets: import detection, set picking and building, the LRU budget, and runs on sets.

The unit tests need no guest. The guest tests share one set (scikit-learn's, built once per
cache) through a session fixture, and the background build test uses networkx's (cheap).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import execr
from execr._exceptions import InvalidArgument
from execr._image import _cache, _flavors, _preload, _set_store
from execr._image._binary import Binary
from execr._sandbox import Compiled

pytestmark = pytest.mark.filterwarnings("error")


# -- reading imports (no guest) --------------------------------------------------------------------


def test_imports_are_read_from_the_ast_without_running_it() -> None:
    """Absolute imports, from-imports and literal dynamic imports count; relative ones and strings do not."""
    code = (
        "import os, sklearn.linear_model as lm\n"
        "from scipy.optimize import minimize\n"
        "from . import sibling\n"
        "def f():\n    import sympy\n"
        "try:\n    import statsmodels.api\nexcept ImportError:\n    pass\n"
        "m = __import__('networkx')\nimport importlib\nimportlib.import_module('matplotlib.pyplot')\n"
        "s = 'import seaborn'\n"
        "raise SystemExit('never run')\n"
    )
    assert _preload.imports_of(code) == {
        "os",
        "sklearn",
        "scipy",
        "sympy",
        "statsmodels",
        "networkx",
        "importlib",
        "matplotlib",
    }
    assert _preload.imports_of("print(1)") == frozenset()
    assert _preload.imports_of("import (") == frozenset()  # does not parse: no guess, the run reports it


def test_expand_names_groups_and_refuses_non_modules() -> None:
    """Known names expand to their submodules after the base; other module names stay as given."""
    mods = _preload.expand(["sklearn", "lxml.etree", "numpy"], ("numpy", "pandas"))
    assert mods[:3] == ("numpy", "pandas", "sklearn") and "sklearn.linear_model" in mods
    assert mods.count("numpy") == 1 and mods[-1] == "lxml.etree"
    with pytest.raises(InvalidArgument, match="module names"):
        _preload.expand(["numpy; import os"])


def test_threshold_and_budget_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """EXECR_PRELOAD_AFTER and EXECR_PRELOAD_BUDGET (bytes or K/M/G), with safe defaults."""
    monkeypatch.setenv("EXECR_PRELOAD_AFTER", "0")
    assert _preload.threshold() == 0
    monkeypatch.setenv("EXECR_PRELOAD_AFTER", "x")
    assert _preload.threshold() == 3
    monkeypatch.setenv("EXECR_PRELOAD_BUDGET", "512M")
    assert _preload.budget() == 512 << 20
    monkeypatch.setenv("EXECR_PRELOAD_BUDGET", "1000")
    assert _preload.budget() == 1000
    monkeypatch.delenv("EXECR_PRELOAD_BUDGET")
    assert _preload.budget() == 2 << 30


# -- storage and the LRU budget (no guest) ----------------------------------------------------------


def _fake_sets(tmp_path: Path) -> _preload.Sets:
    binary = Binary(path=tmp_path / "python.wasm", data=b"", sha256="0" * 64, stdlib_sha256="1" * 64)

    def no_plain() -> Compiled:
        raise AssertionError("not built in this test")

    return _preload.Sets(_flavors.SCIENTIFIC, binary, tmp_path, "engine", no_plain, lambda _m: None)


def _store(sets: _preload.Sets, modules: tuple[str, ...], disk: int, used: float) -> str:
    folder = sets._dir(modules)
    key = sets.key(modules)
    meta = {"key": key, "modules": list(modules), "length": 1 << 20, "disk": disk}
    assert _cache.write_verified(folder / "set.json", json.dumps(meta).encode())
    (folder / "used").touch()
    os.utime(folder / "used", (used, used))
    return key


def test_stored_sets_are_evicted_least_recently_used_past_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXECR_PRELOAD_BUDGET the oldest-used sets go (whole directories), never the one just built."""
    sets = _fake_sets(tmp_path)
    now = time.time()
    old = _store(sets, ("numpy", "pandas", "sympy"), 40 << 20, now - 300)
    mid = _store(sets, ("numpy", "pandas", "networkx"), 40 << 20, now - 200)
    new = _store(sets, ("numpy", "pandas", "scipy"), 40 << 20, now - 100)
    assert {s.key for s in sets.stored(rescan=True)} == {old, mid, new}
    monkeypatch.setenv("EXECR_PRELOAD_BUDGET", "90M")
    assert sets.evict(keep=new) == [old]
    assert {s.key for s in sets.stored(rescan=True)} == {mid, new}
    monkeypatch.setenv("EXECR_PRELOAD_BUDGET", "1M")
    assert sets.evict(keep=new) == [mid]
    assert [p.name for p in tmp_path.iterdir()] == [sets._dir(("numpy", "pandas", "scipy")).name]


def test_a_sets_key_covers_its_warm_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed warm-up is a new set (a stored one built with the old warm-up is never used)."""
    sets = _fake_sets(tmp_path)
    modules = _preload.expand(["sympy"], sets.base)
    before = sets.key(modules)
    assert "sympy.solve" in _preload.warm_source(modules)
    group = _preload.GROUPS["sympy"]
    monkeypatch.setitem(_preload.GROUPS, "sympy", _preload.Group(group.modules, group.cost, "import sympy\n"))
    assert sets.key(modules) != before
    assert sets.key(_preload.expand(["networkx"], sets.base)) == sets.key(_preload.expand(["networkx"], sets.base))


def test_a_set_is_picked_by_what_it_covers(tmp_path: Path) -> None:
    """The set covering the most import cost wins; ties go to the smaller image; nothing relevant: the floor."""
    sets = _fake_sets(tmp_path)
    now = time.time()
    _store(sets, _preload.expand(["sklearn"], sets.base), 90 << 20, now)
    _store(sets, _preload.expand(["sympy"], sets.base), 60 << 20, now)
    infos = {s.modules[2]: s for s in sets.stored(rescan=True)}
    assert infos["sklearn"].provides >= {"numpy", "pandas", "sklearn"}
    wanted = {"sklearn", "sympy"}
    assert infos["sklearn"].score(wanted) > infos["sympy"].score(wanted) > 0
    assert infos["sympy"].score({"networkx"}) == 0


# -- runs on sets (guest) ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sklearn_set(scientific: execr.Runtime) -> _preload.SetInfo:
    """scikit-learn's set, built once per cache (seconds: a boot, no compile)."""
    sets = scientific._sets_of("scientific")
    sets.ensure(["sklearn"])
    return next(s for s in sets.stored(rescan=True) if s.modules == _preload.expand(["sklearn"], sets.base))


def test_code_importing_sklearn_runs_on_its_set(scientific: execr.Runtime, sklearn_set: _preload.SetInfo) -> None:
    """A run whose code imports sklearn starts with it imported; one that does not starts from the snapshot."""
    probe = "import sys\nprint('sklearn.linear_model' in sys.modules)\n"
    on_set = scientific.execute(probe + "from sklearn.linear_model import LinearRegression", runtime="scientific")
    assert (on_set.outcome, on_set.stdout, on_set.mode) == ("completed", "True\n", "snapshot"), on_set.stderr
    assert on_set.data_len == sklearn_set.length
    plain = scientific.execute(probe, runtime="scientific")
    assert plain.stdout == "False\n" and plain.data_len < sklearn_set.length


def test_a_wrong_guess_is_only_slower(scientific: execr.Runtime, sklearn_set: _preload.SetInfo) -> None:
    """A module the set lacks is imported at run time; state never carries over between runs of a set."""
    code = (
        "import sys, sklearn\nprint('networkx' in sys.modules)\nimport networkx as nx\n"
        "print(nx.shortest_path(nx.path_graph(3), 0, 2))\nleak = 'left'\n"
    )
    r = scientific.execute(code, runtime="scientific")
    assert r.stdout == "False\n[0, 1, 2]\n", r.stderr
    r = scientific.execute(
        "import sklearn\nprint('leak' in globals(), 'networkx' in __import__('sys').modules)", runtime="scientific"
    )
    assert r.stdout == "False False\n", r.stderr


def test_limits_hold_on_a_set(scientific: execr.Runtime, sklearn_set: _preload.SetInfo) -> None:
    """A memory limit below a set's image picks the snapshot instead; fuel and timeouts stop set runs."""
    r = scientific.execute(
        "import sys, sklearn\nprint('sklearn.linear_model' in sys.modules)",
        runtime="scientific",
        memory_limit=sklearn_set.length - 65536,
    )
    assert r.stdout == "False\n", (r.outcome, r.stderr)
    r = scientific.execute("import sklearn\nwhile True: pass", runtime="scientific", timeout=0.5)
    assert r.outcome == "timed_out"
    r = scientific.execute("import sklearn\nwhile True: pass", runtime="scientific", fuel=10_000_000)
    assert r.outcome == "out_of_fuel"


def test_runtime_preload_is_a_set_built_ahead(scientific: execr.Runtime, sklearn_set: _preload.SetInfo) -> None:
    """Runtime(preload=...) makes every run start from that set (no compile: the same set on disk)."""
    with execr.Runtime(preload="sklearn") as rt:
        rt.warmup(["scientific"])
        r = rt.execute("import sys\nprint('sklearn.linear_model' in sys.modules)", runtime="scientific")
    assert r.stdout == "True\n", r.stderr
    with pytest.raises(InvalidArgument, match="module names"):
        execr.Runtime(preload=["sklearn; os"])


@pytest.fixture
def fresh_counts(scientific: execr.Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[execr.Runtime]:
    """A Runtime on the same cache whose sets are built after two sightings."""
    monkeypatch.setenv("EXECR_PRELOAD_AFTER", "2")
    with execr.Runtime() as rt:
        yield rt


def test_a_set_is_built_in_the_background_after_being_seen(fresh_counts: execr.Runtime) -> None:
    """Code importing networkx twice queues its set; later runs take it (and a missing one is rebuilt)."""
    rt = fresh_counts
    sets = rt._sets_of("scientific")
    target = _preload.expand(["networkx"], sets.base)
    for info in sets.stored(rescan=True):
        if info.modules == target:
            _set_store.remove(info.dir)
    sets.stored(rescan=True)  # forget the removed set now (the scan is otherwise kept for seconds)
    code = "import sys\nprint('networkx' in sys.modules)\nimport networkx"
    first = [rt.execute(code, runtime="scientific").stdout for _ in range(2)]
    assert first == ["False\n", "False\n"]
    deadline = time.monotonic() + 300
    while not any(s.modules == target for s in sets.stored(rescan=True)):
        assert time.monotonic() < deadline, sets._failed
        time.sleep(0.5)
    assert rt.execute(code, runtime="scientific").stdout == "True\n"


def test_a_corrupt_set_is_not_used(scientific: execr.Runtime, sklearn_set: _preload.SetInfo, tmp_path: Path) -> None:
    """An image that does not match its checksum is refused (the run takes the snapshot) until rebuilt."""
    with execr.Runtime() as rt:
        sets = rt._sets_of("scientific")
        image = sklearn_set.dir / "image.bin"
        saved = tmp_path / "image.bin"
        os.link(image, saved)
        os.unlink(image)
        with open(image, "wb") as f:
            f.write(b"\0" * sklearn_set.length)
        try:
            r = rt.execute(
                "import sys\nprint('sklearn.linear_model' in sys.modules)\nimport sklearn", runtime="scientific"
            )
            assert r.stdout == "False\n", r.stderr
        finally:
            os.replace(saved, image)
        sets.stored(rescan=True)


def test_a_request_can_ask_for_its_set(scientific: execr.Runtime, sklearn_set: _preload.SetInfo) -> None:
    """execute(..., preload=...) runs on that set whatever the code imports; other runtimes refuse it."""
    probe = "import sys\nprint('sklearn.linear_model' in sys.modules)"
    r = scientific.execute(probe, runtime="scientific", preload="sklearn")
    assert r.stdout == "True\n", r.stderr
    with pytest.raises(InvalidArgument, match="scientific runtime"):
        execr.execute("pass", preload="sklearn")
    with pytest.raises(InvalidArgument, match="module names"):
        execr.execute("pass", runtime="scientific", preload=3)  # type: ignore[arg-type]
