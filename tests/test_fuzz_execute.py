"""Property-based fuzzing of ``execute()``'s arguments: every call returns a Result or raises InvalidArgument.

The strategies mix plausible values with junk of every type (odd mapping keys, lone
surrogates, NUL, huge and negative numbers, NaN, nested containers) for every parameter.
Guest code comes from a small set of quick snippets plus random text (a syntax error at
worst), so runs stay cheap; ``bench/fuzz.py`` runs the same properties longer.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import execr
from execr import InvalidArgument, Result, Runtime
from execr._limits import UNSET
from execr._request import LIMIT_NAMES, Request, make_request

ODD_TEXT = st.sampled_from(["\ud800", "\udfff", "a\udc80b", "\x00", "", "/", "..", "=", "a=b", " ", "\u2028", "é"])
TEXT = st.one_of(st.text(max_size=12), st.text(alphabet=st.characters(exclude_categories=()), max_size=6), ODD_TEXT)
NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=0, max_value=4096),
    st.sampled_from([0, 1, -1, 2**62, 2**62 + 1, 2**63, 2**64, 65536, 4 * 2**30 + 1]),
    st.builds(lambda: 10**5000),  # too long to print: messages must cope
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e-300, 1e300, 0.05, -0.0]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT, st.binary(max_size=8))
JUNK = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(TEXT, st.integers(), st.none(), st.booleans()), inner, max_size=3),
        st.frozensets(st.one_of(TEXT, st.integers()), max_size=3),
    ),
    max_leaves=6,
)
SNIPPETS = st.sampled_from(
    [
        "pass",
        "print(1)",
        "import sys; sys.exit(3)",
        "raise ValueError('x')",
        "import os; print(sorted(os.listdir('.')))",
        "import sys; print(sys.stdin.read()[:10], sys.argv[1:])",
        "open('out.txt', 'w').write('x' * 100)",
        "print('y' * 5000)",
    ]
)
PATH_TEXT = st.text(alphabet=st.sampled_from("ab/.\ud800\x00_"), min_size=0, max_size=8)
LIMIT_VALUE = st.one_of(NUMBER, st.none(), JUNK)
LIMIT_KEY = st.one_of(st.sampled_from(LIMIT_NAMES), TEXT)


def _maybe(strategy: st.SearchStrategy[Any], junk: st.SearchStrategy[Any] = JUNK) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, junk)


def execute_kwargs(dirs: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """``execute()`` keyword arguments: every parameter present or not, plausible or junk."""
    host_dir = st.sampled_from(dirs) if dirs else st.nothing()
    params: dict[str, st.SearchStrategy[Any]] = {
        "stdin": _maybe(st.one_of(TEXT, st.binary(max_size=20))),
        "args": _maybe(st.one_of(st.none(), st.lists(TEXT, max_size=3))),
        "use_fuel": _maybe(st.booleans()),
        "fuel": _maybe(st.one_of(st.none(), st.integers(min_value=1, max_value=2**64))),
        "mount_fs": _maybe(st.one_of(st.none(), host_dir)),
        "stdio": _maybe(st.one_of(st.none(), host_dir)),
        "env": _maybe(st.one_of(st.none(), st.dictionaries(TEXT, TEXT, max_size=3))),
        "files": _maybe(
            st.one_of(st.none(), st.dictionaries(PATH_TEXT, st.one_of(TEXT, st.binary(max_size=10)), max_size=4))
        ),
        "mounts": _maybe(
            st.lists(
                st.one_of(
                    st.builds(lambda d, g: f"{d}:{g}", host_dir, PATH_TEXT),
                    st.tuples(host_dir, PATH_TEXT, st.booleans()),
                    st.tuples(host_dir, PATH_TEXT),
                ),
                max_size=3,
            )
        ),
        "pythonpath": _maybe(st.one_of(st.none(), host_dir)),
        "limits": _maybe(st.one_of(st.none(), st.dictionaries(LIMIT_KEY, LIMIT_VALUE, max_size=3))),
        "snapshot": st.one_of(st.just(True), st.just(True), st.booleans(), JUNK),
        "runtime": st.one_of(st.none(), st.just("default"), JUNK.filter(lambda v: v != "scientific")),
        **{name: LIMIT_VALUE for name in LIMIT_NAMES},
    }
    chosen = st.lists(st.sampled_from(sorted(params)), unique=True, max_size=6)
    return chosen.flatmap(lambda names: st.fixed_dictionaries({n: params[n] for n in names}))


def check_call(call: Any, code: Any, kwargs: dict[str, Any]) -> Result | None:
    """Run ``call(code, **kwargs)``: a Result, or None when it raised InvalidArgument (anything else fails)."""
    try:
        result = call(code, **kwargs)
    except InvalidArgument as e:
        assert str(e) and len(str(e)) < 2000
        str(e).encode("utf-8")  # the message itself is valid text
        return None
    assert isinstance(result, (Result, Request)), result
    return result


@pytest.fixture(scope="module")
def host_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A few host directories the fuzzer may mount, use as a root, stdio or pythonpath."""
    base = tmp_path_factory.mktemp("fuzz-dirs")
    dirs = []
    for name in ("ro", "rw", "pkgs"):
        (base / name).mkdir()
        dirs.append(str(base / name))
    (base / "ro" / "data.txt").write_text("data")
    return dirs


def test_make_request_accepts_or_raises_invalid_argument(host_dirs: list[str]) -> None:
    """Validation alone (no guest), many cases: a Request or InvalidArgument, never another exception."""

    @settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(code=_maybe(st.one_of(SNIPPETS, TEXT)), kwargs=execute_kwargs(host_dirs))
    def prop(code: Any, kwargs: dict[str, Any]) -> None:
        kwargs.pop("runtime", None) if isinstance(kwargs.get("runtime"), Runtime) else None
        check_call(make_request, code, kwargs)

    prop()


@pytest.mark.guest
def test_execute_returns_a_result_or_raises_invalid_argument(host_dirs: list[str], runtime: Runtime) -> None:
    """Through the real runtime: each generated call returns a Result or raises InvalidArgument, nothing else."""
    outcomes: dict[str, int] = {}

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(code=_maybe(st.one_of(SNIPPETS, SNIPPETS, TEXT)), kwargs=execute_kwargs(host_dirs))
    def prop(code: Any, kwargs: dict[str, Any]) -> None:
        call = execr.execute
        if kwargs.get("runtime", "default") in (None, "default"):
            kwargs.pop("runtime", None)
            call = runtime.execute  # the session's warm runtime (the default CPython)
        result = check_call(call, code, kwargs)
        key = "invalid" if result is None else result.outcome.value  # type: ignore[union-attr]
        outcomes[key] = outcomes.get(key, 0) + 1

    prop()
    assert outcomes.get("invalid") and sum(v for k, v in outcomes.items() if k != "invalid"), outcomes


def test_unset_and_none_stay_distinct() -> None:
    """The fuzzer's plausible values include UNSET semantics: an omitted limit keeps its default."""
    assert make_request("pass", fuel=UNSET).limits.fuel is None
    assert make_request("pass", timeout=None).limits.timeout is None
