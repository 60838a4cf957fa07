"""API surface: the public names, the single wasmtime seam, and the typing marker."""

from __future__ import annotations

import ast
import pathlib

import execr

SRC = pathlib.Path(execr.__file__).parent


def isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 enforces: SCREAMING_CASE, then CamelCase, then the rest, each alphabetical."""
    if name.isupper() and len(name) > 1:
        return 0, name
    if name[:1].isupper():
        return 1, name
    return 2, name


def test_all_is_sorted_and_complete():
    """execr.__all__ is sorted (isort-style, as ruff enforces) and lists exactly the exported public names."""
    assert execr.__all__ == sorted(execr.__all__, key=isort_key)
    assert len(set(execr.__all__)) == len(execr.__all__)
    public = {
        name for name, value in vars(execr).items() if not name.startswith("_") and not isinstance(value, type(execr))
    }
    assert set(execr.__all__) - {"__version__"} == public
    for name in execr.__all__:
        assert hasattr(execr, name)


def test_only_the_sandbox_imports_wasmtime():
    """Only the modules of src/execr/_sandbox/ import wasmtime (the one seam)."""
    importers = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(n == "wasmtime" or n.startswith("wasmtime.") for n in names):
                importers.append(path.relative_to(SRC).as_posix())
        if "wasmtime" in path.read_text() and path.parent.name != "_sandbox":
            text = path.read_text()
            assert 'import_module("wasmtime' not in text and '__import__("wasmtime' not in text, path
    assert importers and all(p.startswith("_sandbox/") for p in importers), importers


def test_py_typed_exists():
    """The package ships a py.typed marker."""
    assert (SRC / "py.typed").is_file()


def test_closed_runtime_refuses_runs():
    """A closed Runtime raises RuntimeClosed instead of running code."""
    rt = execr.Runtime()
    rt.close()
    rt.close()  # idempotent
    try:
        rt.execute("print(1)")
    except execr.RuntimeClosed:
        pass
    else:
        raise AssertionError("a closed Runtime ran code")
