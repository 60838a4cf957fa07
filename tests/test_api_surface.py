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


#: execr's layers, bottom up: a module may import its own layer or those below, never one above.
LAYERS = [
    {"_exceptions", "_limits", "_results", "_run_options", "_verdict", "_process", "_output", "_mounts", "_mailbox"}
    | {"_exports", "_options", "_jsonlike", "_tools"},
    {"_guestfs", "_roots", "_workspace", "_checkpoint"},
    {"_sandbox"},
    {"_image"},
    {"_request", "_launch", "_runtime", "_runtime_info", "_api", "_session", "_session_budget", "_session_state"}
    | {"_async_session"},
    {"_parallel"},
    {"cli", "server", "mcp", "testing", "executor", "__init__", "__main__"},
]


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_no_module_imports_a_higher_layer():
    """The layout's layers hold: every execr import points to the importer's layer or a lower one."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        here = rel.parts[0].removesuffix(".py")
        package = rel.parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.module:
                    targets.append((*base, *node.module.split("."))[0] if base else node.module.split(".")[0])
                else:
                    targets += [base[0] if base else a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("execr."):
                targets.append(node.module.split(".")[1])  # type: ignore[union-attr]
            elif isinstance(node, ast.ImportFrom) and node.module == "execr":
                targets += [a.name for a in node.names]
            for target in targets:
                if target in {"execr"} or not any(target in names for names in LAYERS):
                    continue
                if _layer(target) > _layer(here):
                    bad.append(f"{rel} imports {target}")
    assert not bad, bad
