"""Imports: the modules a run's code imports (read from its AST), and what each known name brings into a preload set.

``imports_of`` walks the code's AST (it is parsed, never run) for absolute imports and literal
``__import__``/``importlib.import_module`` calls, and keeps the top-level names. The names
execr knows (``GROUPS``: scipy, sklearn, statsmodels, sympy, matplotlib, seaborn, networkx,
...) expand to the submodules people use (``expand``), with their import cost (the weight
when picking a set) and a short warm-up run at boot; ``provides`` is what a module list covers.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from collections.abc import Iterable
from typing import Final

from .._exceptions import InvalidArgument

__all__ = ["GROUPS", "IMPLIES", "Group", "expand", "imports_of", "provides"]

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclasses.dataclass(frozen=True)
class Group:
    """What a top-level import name brings into a preload set."""

    modules: tuple[str, ...]
    cost: float  # seconds its imports take on a fresh run (measured): the weight when picking a set
    warm: str = ""  # trusted source run once at boot after the imports (a tiny real task)


GROUPS: Final[dict[str, Group]] = {
    "scipy": Group(
        (
            "scipy",
            "scipy.linalg",
            "scipy.optimize",
            "scipy.stats",
            "scipy.integrate",
            "scipy.interpolate",
            "scipy.sparse",
            "scipy.special",
            "scipy.signal",
        ),
        1.6,
        "from scipy.optimize import minimize\nfrom scipy import stats\n"
        "minimize(lambda x: (x[0] - 1.0) ** 2, [0.0])\nstats.norm.cdf(0.5)\n",
    ),
    "sklearn": Group(
        (
            "sklearn",
            "sklearn.base",
            "sklearn.linear_model",
            "sklearn.model_selection",
            "sklearn.preprocessing",
            "sklearn.metrics",
            "sklearn.pipeline",
            "sklearn.ensemble",
            "sklearn.tree",
            "sklearn.cluster",
            "sklearn.decomposition",
            "sklearn.neighbors",
        ),
        1.9,
        "import numpy as np\nfrom sklearn.linear_model import LinearRegression\n"
        "from sklearn.model_selection import train_test_split\n"
        "X = np.arange(20.0).reshape(10, 2)\nLinearRegression().fit(X, X @ [1.0, 2.0]).predict(X)\n"
        "train_test_split(X, test_size=0.2, random_state=0)\n",
    ),
    "statsmodels": Group(
        ("statsmodels", "statsmodels.api", "statsmodels.formula.api"),
        2.5,
        "import numpy as np\nimport statsmodels.api as sm\n"
        "X = sm.add_constant(np.arange(10.0))\nsm.OLS(np.arange(10.0) * 2 + 1, X).fit().summary()\n",
    ),
    "patsy": Group(("patsy",), 0.3),
    "sympy": Group(("sympy",), 1.0, "import sympy\nx = sympy.Symbol('x')\nsympy.solve(x**2 - 4, x)\n"),
    "matplotlib": Group(
        ("matplotlib", "matplotlib.pyplot"),
        2.0,
        # Draws nothing: a text draw would keep font files open in the image (FT2Font caches them).
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [0, 1])\nplt.close('all')\n",
    ),
    "seaborn": Group(("matplotlib", "matplotlib.pyplot", "seaborn"), 3.0),
    "networkx": Group(("networkx",), 0.6, "import networkx as nx\nnx.shortest_path(nx.path_graph(4), 0, 3)\n"),
    "PIL": Group(("PIL", "PIL.Image"), 0.2),
    "lxml": Group(("lxml", "lxml.etree"), 0.2),
    "openpyxl": Group(("openpyxl",), 0.5),
    "bs4": Group(("bs4",), 0.3),
    "yaml": Group(("yaml",), 0.1),
    "jinja2": Group(("jinja2",), 0.2),
    "mpmath": Group(("mpmath",), 0.2),
}

#: Imports that bring in others' modules (seaborn brings matplotlib, scipy.stats, statsmodels' patsy...).
IMPLIES: Final[dict[str, tuple[str, ...]]] = {"seaborn": ("matplotlib",), "statsmodels": ("scipy", "patsy")}


@functools.lru_cache(maxsize=256)
def imports_of(code: str) -> frozenset[str]:
    """Top-level names of the modules ``code`` imports (read from its AST, never run; empty if it does not parse)."""
    if "import" not in code:
        return frozenset()
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func, arg = node.func, node.args[0].value
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module") and isinstance(arg, str):
                names.add(arg.partition(".")[0])
    return frozenset(n for n in names if n)


def expand(items: Iterable[str], base: Iterable[str] = ()) -> tuple[str, ...]:
    """The modules a set for ``items`` imports: ``base`` first, then each item's group (or the item itself).

    Items are module names (``InvalidArgument`` otherwise); known top-level names expand to their
    group's modules (``sklearn`` -> ``sklearn.linear_model``, ...).
    """
    out: list[str] = list(base)
    for item in items:
        if not isinstance(item, str) or not _MODULE.fullmatch(item):
            raise InvalidArgument(f"preload must list module names; got {item!r}")
        group = GROUPS.get(item)
        out += [*group.modules] if group is not None else [item]
    return tuple(dict.fromkeys(out))


def provides(modules: Iterable[str]) -> frozenset[str]:
    """The top-level names ``modules`` make importable at no cost (with those they imply: ``IMPLIES``)."""
    names = {m.partition(".")[0] for m in modules}
    for name in list(names):
        names.update(IMPLIES.get(name, ()))
    return frozenset(names)
