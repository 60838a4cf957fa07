"""Fuzzing ``execr serve`` over HTTP: schemathesis cases from its own OpenAPI, plus raw JSON bodies. No 5xx, ever.

A real server runs on a loopback port for the module (started and stopped here). Every
response must be a 2xx result or a 4xx JSON error (``{"error": {...}}``), never a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from _live import Live  # noqa: E402  (a real server on a loopback socket)
from execr import Limits  # noqa: E402

pytestmark = pytest.mark.guest

KEY = "fuzz-key-0123456789"
CAPS = Limits(timeout=2, memory_limit=64 * 1024 * 1024, max_stdout=64 * 1024, max_stderr=64 * 1024)


def check_response(status: int, body: bytes) -> None:
    """The no-5xx property, and every error a JSON body naming what was wrong."""
    assert status < 500, (status, body[:2000])
    if status >= 400 and status != 405:
        error = json.loads(body)["error"]
        assert error["type"] and error["message"], body


# Raw JSON bodies: junk of every shape, host-path fields, odd text, huge numbers.
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "/", "..", "a/b", "default", "scientific"]),
)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
KEYS = ["code", "stdin", "stdin_base64", "args", "env", "files", "limits", "runtime", "mounts", "mount_fs", "stdio"]
LIMIT_BODY = st.dictionaries(
    st.sampled_from([*Limits().to_dict(), "bogus"]),
    st.one_of(SCALAR, st.sampled_from([2**62, 2**64, 10**30, 1e300, -1, 0, 0.5])),
    max_size=3,
)
BODY = st.one_of(
    st.fixed_dictionaries(
        {"code": st.one_of(st.sampled_from(["print(1)", "pass", "import sys; sys.exit(4)"]), JSON)},
        optional={k: JSON for k in KEYS[1:]} | {"limits": LIMIT_BODY},
    ),
    JSON,
)
RAW = st.one_of(
    BODY.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=40),
    st.sampled_from([b"", b"{", b"[" * 10000 + b"]" * 10000, b'{"code": "\\ud800"}', b'{"code": 1e999}']),
)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """A keyed server with small caps (runs stay cheap), one worker."""
    server = Live(log_level="error", workers=1, api_keys={KEY}, max_limits=CAPS, max_batch=4, max_queue=8)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def schemathesis_cases(url: str) -> tuple[list[Any], Any]:
    """Hypothesis strategies for every operation of the server's own OpenAPI, valid and invalid."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        spec = c.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
    return strategies, schema


def test_schemathesis_finds_no_5xx(live: Live) -> None:
    """Every operation of /openapi.json, positive and negative cases from schemathesis: no 5xx."""
    strategies, _schema = schemathesis_cases(live.url)
    assert len(strategies) >= 8
    tried = [0]

    @settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        case = data.draw(st.one_of(strategies))
        response = case.call(base_url=live.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        tried[0] += 1
        check_response(response.status_code, response.content)

    prop()
    assert tried[0] >= 100


def test_raw_bodies_find_no_5xx(live: Live) -> None:
    """Raw bodies (junk JSON, host-path fields, surrogates, deep nesting, non-JSON) on both POST routes: no 5xx."""
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:

        @settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(raw=RAW, batch=st.booleans())
        def prop(raw: bytes, batch: bool) -> None:
            if batch:
                raw = b'{"requests": [' + raw + b"]}"
            route = "/v1/execute/batch" if batch else "/v1/execute"
            r = c.post(route, content=raw, headers={"content-type": "application/json"})
            check_response(r.status_code, r.content)

        prop()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "pass", "stdin": "\ud800"}, "stdin"),
        ({"code": "pass", "args": ["\udfff"]}, "args[0]"),
        ({"code": "pass", "env": {"K": "\ud800"}}, "env['K']"),
        ({"code": "pass", "files": {"\ud800": "x"}}, "files key"),
        ({"code": "pass", "files": {"a": "x", "a/b": "y"}}, "files key 'a'"),
        ({"code": "pass", "files": {"a": "x", "./a": "y"}}, "files key"),
        ({"code": "\ud800"}, "code"),
        ({"code": "pass", "limits": {"fuel": 2**64}}, "fuel must be at most 2**62"),
    ],
)
def test_bad_text_and_files_are_4xx_naming_the_field(live: Live, body: dict[str, Any], field: str) -> None:
    """Lone surrogates and clashing files keys over HTTP: a 4xx JSON error naming the field (it was a 500)."""
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as c:
        r = c.post("/v1/execute", content=json.dumps(body), headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert field in r.json()["error"]["message"], r.json()
