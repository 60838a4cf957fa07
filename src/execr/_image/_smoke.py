"""Smoke tasks: one small real task per package the scientific runtime advertises, and their last results.

``TASKS`` maps each package (as the README and ``MANIFEST`` name it) to code that does one
real thing with it (a fit, a solve, a plot saved to PNG, a workbook written and read back)
and the exact output it must print. ``check`` runs them all and stores the outcome beside the
runtime's other cache entries; ``last`` reads it back, which is what ``execr info`` lists
(``checked_packages``). The test suite runs the same tasks (``tests/test_scientific.py``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from .._results import Result
from . import _cache

__all__ = ["TASKS", "check", "last", "results_path"]

_PNG = "open('/out.png', 'rb').read(8) == b'\\x89PNG\\r\\n\\x1a\\n'"

#: package -> (code, the stdout it must print)
TASKS: Final[dict[str, tuple[str, str]]] = {
    "numpy": ("import numpy as np\nprint(int(np.linalg.solve([[2, 0], [0, 4]], [2, 8]).sum()))", "3\n"),
    "pandas": (
        "import io, pandas as pd\ndf = pd.read_csv(io.StringIO('k,v\\na,1\\nb,2\\na,3'))\n"
        "print(df.groupby('k')['v'].sum().to_dict())",
        "{'a': 4, 'b': 2}\n",
    ),
    "scipy": (
        "from scipy.optimize import minimize\nr = minimize(lambda x: (x[0] - 3) ** 2 + 1, [0.0])\n"
        "print(round(float(r.x[0]), 3), round(float(r.fun), 3))",
        "3.0 1.0\n",
    ),
    "scikit-learn": (
        "import numpy as np\nfrom sklearn.linear_model import LinearRegression\n"
        "X = np.arange(10.0).reshape(-1, 1)\nm = LinearRegression().fit(X, 2 * X.ravel() + 1)\n"
        "print(round(float(m.coef_[0]), 3), round(float(m.intercept_), 3))",
        "2.0 1.0\n",
    ),
    "statsmodels": (
        "import numpy as np, statsmodels.api as sm\nx = np.arange(10.0)\n"
        "fit = sm.OLS(3 * x + 2, sm.add_constant(x)).fit()\nprint([round(float(p), 3) for p in fit.params])",
        "[2.0, 3.0]\n",
    ),
    "sympy": ("import sympy as sp\nx = sp.Symbol('x')\nprint(sp.solve(x**2 - 4, x))", "[-2, 2]\n"),
    "networkx": (
        "import networkx as nx\ng = nx.Graph([(1, 2), (2, 3), (3, 4), (1, 4), (4, 5)])\n"
        "print(nx.shortest_path(g, 1, 5))",
        "[1, 4, 5]\n",
    ),
    "matplotlib": (
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2, 3], [1, 4, 9], label='y')\n"
        f"ax.legend()\nfig.savefig('/out.png')\nfig.savefig('/out.svg')\nprint({_PNG}, "
        "open('/out.svg').read().count('<svg') > 0)",
        "True True\n",
    ),
    "seaborn": (
        "import pandas as pd, seaborn as sns\ndf = pd.DataFrame({'x': [1, 2, 3, 4], 'y': [2, 1, 4, 3]})\n"
        f"ax = sns.lineplot(data=df, x='x', y='y')\nax.figure.savefig('/out.png')\nprint({_PNG})",
        "True\n",
    ),
    "pillow": (
        "import io\nfrom PIL import Image\nim = Image.new('RGB', (4, 3), (255, 0, 0))\nb = io.BytesIO()\n"
        "im.save(b, 'PNG')\nprint(Image.open(io.BytesIO(b.getvalue())).size, im.getpixel((0, 0)))",
        "(4, 3) (255, 0, 0)\n",
    ),
    "lxml": (
        'from lxml import etree\nroot = etree.fromstring(\'<a><b x="1"/><b x="2"/></a>\')\n'
        "print([b.get('x') for b in root.xpath('//b')])",
        "['1', '2']\n",
    ),
    "openpyxl": (
        "import io, openpyxl\nwb = openpyxl.Workbook()\nwb.active['A1'] = 42\nb = io.BytesIO()\nwb.save(b)\n"
        "print(openpyxl.load_workbook(io.BytesIO(b.getvalue())).active['A1'].value)",
        "42\n",
    ),
    "pyyaml": ("import yaml\nprint(yaml.safe_load('a: [1, 2]\\nb: {c: x}'))", "{'a': [1, 2], 'b': {'c': 'x'}}\n"),
    "jinja2": (
        "import jinja2\nprint(jinja2.Template('{% for i in xs %}{{ i * 2 }},{% endfor %}').render(xs=[1, 2]))",
        "2,4,\n",
    ),
    "regex": ("import regex\nprint(regex.findall(r'\\p{Lu}\\w+', 'Hello big World'))", "['Hello', 'World']\n"),
    "tzdata": (
        "from datetime import datetime\nfrom zoneinfo import ZoneInfo\n"
        "print(datetime(2024, 7, 1, 12, tzinfo=ZoneInfo('Europe/Paris')).utcoffset())",
        "2:00:00\n",
    ),
    "beautifulsoup4": (
        "from bs4 import BeautifulSoup\nprint(BeautifulSoup('<p>a<b>b</b></p>', 'html.parser').get_text())",
        "ab\n",
    ),
    "python-dateutil": (
        "from dateutil import parser\nprint(parser.parse('2024-03-05T10:20:30+01:00').isoformat())",
        "2024-03-05T10:20:30+01:00\n",
    ),
}


def results_path(cache_dir: Path, binary_sha256: str) -> Path:
    """Where the last ``check`` of the runtime with this binary is kept."""
    return cache_dir / f"scientific-checked-{binary_sha256[:16]}.json"


def _verdict(result: Result, want: str) -> str:
    if result.stdout == want:
        return "ok"
    detail = (result.stderr or result.error or result.stdout).strip().splitlines()
    return f"failed ({result.outcome.value}): {detail[-1][:200] if detail else 'no output'}"


def check(execute: Callable[[str], Result], where: Path | None = None) -> dict[str, str]:
    """Run every task (``execute(code)`` on the scientific runtime); package -> "ok" or why not.

    With ``where``, the results are stored there (with the time) for ``last``.
    """
    out = {name: _verdict(execute(code), want) for name, (code, want) in TASKS.items()}
    if where is not None:
        _cache.write_verified(where, json.dumps({"checked_at": time.time(), "packages": out}).encode())
    return out


def last(where: Path) -> dict[str, Any] | None:
    """The stored results of the last ``check`` (``{"checked_at": ..., "packages": {...}}``), or None."""
    data = _cache.read_verified(where)
    if data is None:
        return None
    try:
        loaded = json.loads(data)
    except ValueError:
        return None
    return loaded if isinstance(loaded, dict) else None
