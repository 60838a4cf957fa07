"""Imports: the modules a run's code imports (read from its AST), and what each known name brings into a preload set.

``imports_of`` walks the code's AST (it is parsed, never run) for absolute imports and literal
``__import__``/``importlib.import_module`` calls, and keeps the top-level names. The names
execr knows (``GROUPS``: scipy, sklearn, statsmodels, sympy, matplotlib, seaborn, networkx,
...) expand to the submodules people use (``expand``), with their import cost (the weight
when picking a set) and a short warm-up run at boot (``warm_source``: a set's boot turn, part of
its key); ``provides`` is what a module list covers.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
from collections.abc import Iterable
from typing import Final

from .._exceptions import InvalidArgument, shown

__all__ = [
    "GROUPS",
    "IMPLIES",
    "MATPLOTLIB_WARM",
    "SYMPY_WARM",
    "Group",
    "expand",
    "imports_of",
    "provides",
    "warm_source",
]

_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclasses.dataclass(frozen=True)
class Group:
    """What a top-level import name brings into a preload set."""

    modules: tuple[str, ...]
    cost: float  # seconds its imports take on a fresh run (measured): the weight when picking a set
    warm: str = ""  # trusted source run once at boot after the imports (a tiny real task)


#: matplotlib's warm-up: one plot with text, mathtext and a legend, saved as PNG and SVG into memory,
#: so that the set holds what a run's first plot would otherwise pay for: the lazily imported
#: modules (the Agg and SVG backends, PIL's PNG plugin), the mathtext parser, ``findfont``'s cache,
#: ``__version__`` (PNG metadata) and the fonts themselves. ``FT2Font`` reads its font through
#: ``io.open(path, "rb")`` with a seek and a read per FreeType access, and ``_get_font`` keeps the
#: font open for the process: on a file that is a few thousand guest file calls per plot (~100 ms),
#: and an open file cannot be captured anyway. So while the warm-up draws, ``io.open`` hands
#: ``FT2Font`` the font's bytes in a ``BytesIO`` named like the file (``FT2Font.fname`` stays the
#: path), for matplotlib's own read-only fonts only; it is restored before the image is taken. The
#: cached fonts (DejaVu Sans, its oblique and display faces for mathtext, the Last Resort fallback:
#: 2 MB) are the same read-only bytes in every run, and each run has its own copy of the image; a
#: font the warm-up did not load (bold, serif, STIX...) is read from its file as before.
MATPLOTLIB_WARM: Final = """\
import io, os
import matplotlib
import matplotlib.pyplot as plt
fonts = os.path.join(matplotlib.get_data_path(), "fonts", "")
file_open = io.open
def font_open(file, mode="r", *args, **kwargs):
    if mode == "rb" and not args and not kwargs and isinstance(file, str) and file.startswith(fonts):
        with file_open(file, "rb") as f:
            font = io.BytesIO(f.read())
        font.name = file
        return font
    return file_open(file, mode, *args, **kwargs)
io.open = font_open
try:
    fig, ax = plt.subplots()
    ax.plot([0.0, 1.0, 2.0], [0.0, 1.0, 4.0], label="y")
    ax.set_title(r"$\\alpha^2 + \\beta_i$")
    ax.set_xlabel("x")
    ax.legend()
    fig.savefig(io.BytesIO(), format="png")
    fig.savefig(io.BytesIO(), format="svg")
finally:
    io.open = file_open
    plt.close("all")
"""

#: sympy's warm-up: what a first solve, integral or lambdify imports at run time. A quadratic with
#: irrational roots imports ``sympy.physics.units`` (~300 ms a run), ``integrate`` the Risch and
#: heuristic integrators (~130 ms), ``lambdify`` its printers and every lazy numpy submodule behind
#: ``from numpy import *`` (~300 ms).
SYMPY_WARM: Final = """\
import sympy
x, y = sympy.symbols("x y")
sympy.solve(x**2 - 4, x)
str(sympy.solve(x**2 - 3*x + 1, x))
sympy.solve([x + y - 3, x - y - 1], [x, y])
sympy.simplify(sympy.sin(x)**2 + sympy.cos(x)**2)
sympy.integrate(x**2 * sympy.exp(x), x)
sympy.lambdify(x, sympy.sin(x) + x**2, "numpy")(1.0)
sympy.latex(sympy.sqrt(x) / 2)
sympy.pretty(sympy.sqrt(x) / 2)
"""

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
    "sympy": Group(("sympy",), 1.0, SYMPY_WARM),
    "matplotlib": Group(("matplotlib", "matplotlib.pyplot"), 2.0, MATPLOTLIB_WARM),
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
            raise InvalidArgument(f"preload must list module names; got {shown(item)}")
        group = GROUPS.get(item)
        out += [*group.modules] if group is not None else [item]
    return tuple(dict.fromkeys(out))


def provides(modules: Iterable[str]) -> frozenset[str]:
    """The top-level names ``modules`` make importable at no cost (with those they imply: ``IMPLIES``)."""
    names = {m.partition(".")[0] for m in modules}
    for name in list(names):
        names.update(IMPLIES.get(name, ()))
    return frozenset(names)


def warm_source(modules: tuple[str, ...]) -> str:
    """A set's boot turn: import ``modules`` and run the warm-ups of their groups (each may fail alone)."""
    seen = {m.partition(".")[0] for m in modules}
    warms = [GROUPS[g].warm for g in GROUPS if g in seen and GROUPS[g].warm]
    body = "".join(
        f"    try:\n{_indent(w, 8)}    except Exception:\n        pass\n" for w in warms
    )  # a warm-up that fails costs speed, never the set
    return (
        "def __execr_warm__():\n"
        f"    for name in {list(modules)!r}:\n        __import__(name)\n"
        f"{body}"
        "    import gc\n    gc.collect()\n"
        "__execr_warm__()\ndel __execr_warm__\n"
    )


def _indent(source: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in source.splitlines())
