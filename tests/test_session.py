"""Sessions: state across calls, rollback of failed calls, checkpoint / fork / restore, budgets."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

import execr
from execr import Checkpoint, CheckpointRefused, Outcome, Runtime, Session, SessionExpired


@pytest.fixture
def session(runtime: Runtime):
    with Session(on=runtime) as s:
        yield s


def test_state_carries_and_values_come_back_like_a_repl(session: Session) -> None:
    """x = 40 then x + 2 gives value "42"; statements give no value; execution_count counts calls."""
    first = session.run("x = 40")
    assert (first.ok, first.value, first.execution_count) == (True, None, 1)
    second = session.run("x + 2")
    assert (second.value, second.execution_count, second.stdout) == ("42", 2, "")
    assert session.run("print('hi'); [x] * 2").value == "[40, 40]"
    assert session.run("None").value is None
    assert session.run("'a\\nb'").value == "'a\\nb'"


def test_inputs_bind_guest_globals(session: Session) -> None:
    """inputs= binds JSON-like values as globals before the call; bad values are refused up front."""
    r = session.run("sum(r['n'] for r in rows)", inputs={"rows": [{"n": 1}, {"n": 2.5}]})
    assert r.value == "3.5"
    assert session.run("rows[0]").value == "{'n': 1}"  # still there in the next call
    with pytest.raises(execr.InvalidArgument, match="JSON-like"):
        session.run("pass", inputs={"x": object()})
    with pytest.raises(execr.InvalidArgument, match="identifiers"):
        session.run("pass", inputs={"not a name": 1})


def test_inputs_in_execute_on_both_paths(runtime: Runtime) -> None:
    """execute(inputs=...) binds the same globals on the snapshot and the plain path."""
    for snapshot in (True, False):
        r = runtime.execute("print(n * 2, names)", inputs={"n": 21, "names": ["a"]}, snapshot=snapshot)
        assert r.stdout == "42 ['a']\n", r


@pytest.mark.parametrize(
    ("code", "limits", "outcome"),
    [
        ("while True: x += 1", {"timeout": 0.3}, Outcome.TIMED_OUT),
        ("big = bytearray(300 * 2**20)", {}, Outcome.MEMORY_LIMIT),
        ("import sys\nsys.stdout.write('y' * 5000)\nx = -1", {"max_stdout": 10}, None),
    ],
    ids=["timeout", "memory", "output-cap"],
)
def test_a_stopped_call_leaves_the_session_as_it_was(runtime: Runtime, code: str, limits: dict, outcome) -> None:
    """A call the host stops (in the middle of changing state) is rolled back: memory, globals, counters."""
    with Session(on=runtime, memory_limit=128 * 2**20) as s:
        s.run("x = 1\ndata = list(range(1000))")
        r = s.run(code, **limits)
        if outcome is None:  # an output cap truncates; the call itself completes and stands
            assert r.ok and r.stdout_truncated and s.run("x").value == "-1"
            return
        assert r.outcome is outcome, r
        assert "rolled back" in (r.error or "") and r.execution_count is None
        assert s.run("x, len(data)").value == "(1, 1000)"
        assert s.execution_count == 2


def test_out_of_fuel_is_rolled_back_in_a_metered_session(runtime: Runtime) -> None:
    """With a fuel limit, each call is metered; running out mid-loop rolls the call back."""
    with Session(on=runtime, fuel=10**9) as s:
        s.run("n = 0")
        r = s.run("while True: n += 1", fuel=2_000_000)
        assert r.outcome is Outcome.OUT_OF_FUEL and r.fuel_consumed == 2_000_000
        assert s.run("n").value == "0"
    with Session(on=runtime) as free, pytest.raises(execr.InvalidArgument, match="metered session"):
        free.run("pass", fuel=10)


def test_an_exception_keeps_earlier_statements_unless_atomic(session: Session) -> None:
    """Like a REPL, a traceback keeps what ran before it; atomic=True rolls it back too."""
    r = session.run("a = 1\nraise ValueError('boom')")
    assert r.outcome is Outcome.FAILED and "ValueError: boom" in r.stderr
    assert session.run("a").value == "1"
    r = session.run("a = 2\nraise ValueError('boom')", atomic=True)
    assert r.outcome is Outcome.FAILED and "rolled back" in (r.error or "")
    assert session.run("a").value == "1"


def test_files_persist_across_calls_and_are_reported_per_call(session: Session) -> None:
    """The working directory lives as long as the session; each result lists what that call changed."""
    r = session.run("open('a.txt', 'w').write('one')")
    assert [f.path for f in r.files] == ["/a.txt"]
    r = session.run("open('b.txt', 'w').write(open('a.txt').read() * 2)")
    assert [(f.path, f.content) for f in r.files] == [("/b.txt", b"oneone")]
    assert session.run("sorted(__import__('os').listdir('.'))").value == "['a.txt', 'b.txt']"


@pytest.mark.parametrize(
    ("code", "value", "stderr"),
    [
        ("x + 2", "42", ""),  # one line, one expression: compiled once, in eval mode
        ("*[x], 1", "(40, 1)", ""),  # an expression statement that eval mode refuses
        ("x + 2;", "42", ""),
        ("x = x + 0", None, ""),
        ("x is 4", "False", "SyntaxWarning"),  # a one-line expression's warnings are shown, once
        ('[1][0]; "\\d"', "'\\\\d'", "SyntaxWarning"),
        ('y = "\\d"', None, "SyntaxWarning"),
        ("y = [0][0if 1 else 1]", None, "SyntaxWarning"),  # the tokenizer's warning, before "="
        ("y = 0x1for 1", None, "SyntaxWarning"),
    ],
)
def test_one_line_values_and_warnings_are_those_of_the_general_path(
    session: Session, code: str, value: str | None, stderr: str
) -> None:
    """A single-line expression takes a shorter path in the guest: same value, each warning once."""
    session.run("x = 40")
    r = session.run(code)
    assert (r.ok, r.value) == (True, value), r.stderr
    assert r.stderr.count("SyntaxWarning") == (1 if stderr else 0), r.stderr


def test_one_line_errors_point_at_the_code(session: Session) -> None:
    """An error in a one-line expression has the traceback and line of the general path."""
    r = session.run("1 / 0")
    assert r.outcome is Outcome.FAILED and r.value is None
    assert r.stderr.splitlines()[1:] == [
        '  File "/__execr__/main.py", line 1, in <module>',
        "    1 / 0",
        "    ~~^~~",
        "ZeroDivisionError: division by zero",
    ]
    r = session.run("(1 +")
    assert "SyntaxError" in r.stderr and r.stderr.count("SyntaxError") == 1


@pytest.mark.parametrize(
    ("setup", "code", "changed"),
    [
        ("", "open('n.txt', 'w').close()", ["/n.txt"]),
        ("open('a.txt', 'w').write('one')", "open('a.txt', 'w')", ["/a.txt"]),  # truncated on open
        ("open('a.txt', 'w').write('one')", "import os; os.rename('a.txt', 'b.txt')", ["/b.txt"]),
        ("open('a.txt', 'w').write('one')", "import os; os.utime('a.txt', (1, 1))", ["/a.txt"]),
        ("open('a.txt', 'w').write('one')", "import os; f = open('a.txt'); os.utime(f.fileno(), (1, 1))", ["/a.txt"]),
        ("open('a.txt', 'w').write('one')", "open('a.txt', 'r+').write('two')", ["/a.txt"]),
        ("open('a.txt', 'w').write('one')", "open('a.txt', 'a').write('!')", ["/a.txt"]),
        ("import os; os.mkdir('d')", "open('d/f', 'w').close()", ["/d/f"]),
        ("open('a.txt', 'w').write('one')", "open('a.txt').read()", []),
    ],
)
def test_each_kind_of_change_is_reported_and_a_read_reports_none(
    runtime: Runtime, setup: str, code: str, changed: list
) -> None:
    """A call that changes no file skips the walk of the working directory; every call that can
    change one (create, truncate, rename, retime, write, append) is still seen."""
    with Session(on=runtime) as s:
        s.run(setup)
        r = s.run(code)
        assert r.ok, r.stderr
        assert [f.path for f in r.files] == changed
        assert s.run("open('z.txt', 'w').close()").files[0].path == "/z.txt"  # the next call still sees its own


def test_removals_count_against_the_file_cap_after_a_quiet_call(runtime: Runtime) -> None:
    """The session's file usage stays exact when calls that change nothing come in between."""
    with Session(on=runtime, max_files=3) as s:
        assert s.run("for i in range(3): open(f'{i}.txt', 'w').close()").ok
        assert s.run("1 + 1").value == "2"
        assert s.run("open('3.txt', 'w')").outcome is Outcome.FILE_LIMIT
        assert s.run("import os; os.remove('0.txt')").ok
        assert s.run("x = 1").ok
        assert s.run("open('4.txt', 'w').close()").ok


def test_checkpoint_fork_and_restore(session: Session, runtime: Runtime) -> None:
    """A checkpoint restores state and files; a fork is independent and draws other random numbers."""
    session.run("import random\nstate = {'k': [1, 2, 3]}\nopen('f.txt', 'w').write('saved')")
    cp = session.checkpoint()
    data = cp.to_bytes()
    assert Checkpoint.from_bytes(data) == cp
    child = session.fork()
    try:
        child.run("state['k'].append(4)")
        assert session.run("state").value == "{'k': [1, 2, 3]}"
        assert child.run("state").value == "{'k': [1, 2, 3, 4]}"
        ours, theirs = session.run("random.random()").value, child.run("random.random()").value
        assert ours != theirs
    finally:
        child.close()
    session.run("state.clear()")
    with Session.restore(data, on=runtime) as back:
        assert back.run("state, open('f.txt').read()").value == "({'k': [1, 2, 3]}, 'saved')"
        assert back.execution_count == cp.info["execution_count"] + 1


def test_checkpoint_size_follows_changed_pages_not_the_heap(runtime: Runtime) -> None:
    """A small change after a big allocation that was freed still checkpoints small; a big live one is big."""
    with Session(on=runtime) as s:
        small = s.checkpoint().size
        s.run("keep = bytes(range(256)) * 40_000")  # ~10 MB kept alive
        big = s.checkpoint().size
    assert small < 4 * 2**20 < 10 * 2**20 < big


def test_restore_in_another_process(runtime: Runtime, tmp_path) -> None:
    """A checkpoint's bytes restore in a new Python process (as on another machine or Ray node)."""
    with Session(on=runtime) as s:
        s.run("greeting = 'from the first process'")
        (tmp_path / "cp.bin").write_bytes(s.checkpoint().to_bytes())
    code = textwrap.dedent(
        f"""
        import execr
        with execr.Session.restore(open({str(tmp_path / "cp.bin")!r}, "rb").read()) as s:
            print(s.run("greeting").value)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout == "'from the first process'\n", out.stderr[-2000:]


def test_bad_or_foreign_checkpoints_are_refused(session: Session, runtime: Runtime) -> None:
    """Corrupt bytes, other formats and other runtimes are refused before anything is loaded."""
    data = bytearray(session.checkpoint().to_bytes())
    for bad, why in [
        (b"junk", "too short"),
        (bytes(data[:-1]) + bytes([data[-1] ^ 1]), "corrupt"),
        (b"X" + bytes(data[1:]), "magic"),
    ]:
        with pytest.raises(CheckpointRefused, match=why):
            Session.restore(bad, on=runtime)
    cp = Checkpoint.from_bytes(bytes(data))
    import dataclasses

    foreign = dataclasses.replace(cp, key="python-0.0-feedface")
    with pytest.raises(CheckpointRefused, match="another runtime or binary"):
        Session.restore(foreign, on=runtime)


def test_budgets_expire_and_carry_across_restore(runtime: Runtime) -> None:
    """max_calls and lifetime end a session (SessionExpired); a restore keeps the calls used and can only tighten."""
    with Session(on=runtime, max_calls=3) as s:
        s.run("x = 1")
        cp = s.checkpoint()
        s.run("x")
        s.run("x")
        with pytest.raises(SessionExpired, match="3 calls"):
            s.run("x")
        assert s.closed
    with Session.restore(cp, on=runtime, max_calls=100) as back:  # cannot loosen: still 3
        assert back.max_calls == 3 and back.calls == 1
        back.run("x")
        back.run("x")
        with pytest.raises(SessionExpired):
            back.run("x")
    with Session(on=runtime, lifetime=0.01) as old:
        import time

        time.sleep(0.05)
        with pytest.raises(SessionExpired, match="lifetime"):
            old.run("1")


def test_closed_session_refuses_use(runtime: Runtime) -> None:
    """After close(), every call raises RuntimeClosed; close() is idempotent."""
    s = Session(on=runtime)
    s.close()
    s.close()
    with pytest.raises(execr.RuntimeClosed):
        s.run("1")
    with pytest.raises(execr.RuntimeClosed):
        s.checkpoint()


def test_sessions_are_isolated_from_each_other(runtime: Runtime) -> None:
    """Two sessions share nothing: globals, modules, files."""
    with Session(on=runtime) as a, Session(on=runtime) as b:
        a.run("secret = 'a'\nimport json\njson.marker = 1\nopen('mine.txt', 'w').write('a')")
        r = b.run("import json, os\n(globals().get('secret'), hasattr(json, 'marker'), os.listdir('.'))")
        assert r.value == "(None, False, [])"


def test_async_session(runtime: Runtime) -> None:
    """AsyncSession mirrors Session with awaitables."""

    async def main() -> tuple[str | None, str | None]:
        async with execr.AsyncSession(on=runtime) as s:
            await s.run("x = 20")
            fork = await s.fork()
            await fork.run("x = 1")
            r = await s.run("x * 2")
            cp = await s.checkpoint()
            back = await execr.AsyncSession.restore(cp, on=runtime)
            other = await back.run("x + 1")
            await back.close()
            await fork.close()
            return r.value, other.value

    assert asyncio.run(main()) == ("40", "21")


def test_bad_session_arguments_are_refused(runtime: Runtime) -> None:
    """Invalid options raise InvalidArgument naming them, before any instance is made."""
    with pytest.raises(execr.InvalidArgument, match="idle_timeout"):
        Session(on=runtime, idle_timeout=-1)
    with pytest.raises(execr.InvalidArgument, match="max_calls"):
        Session(on=runtime, max_calls=0)
    with pytest.raises(execr.InvalidArgument, match="runtime"):
        Session("nope", on=runtime)
    with Session(on=runtime) as s, pytest.raises(execr.InvalidArgument, match="per-call limits"):
        s.run("1", memory_limit=1)


def test_tools_in_a_session(runtime: Runtime) -> None:
    """A session's calls reach its tools; each result records its own calls; a fork keeps them."""
    seen: list[str] = []

    def lookup(name: str) -> dict[str, int]:
        seen.append(name)
        return {"len": len(name)}

    with Session(on=runtime, tools={"lookup": lookup}) as s:
        s.run("from execr_tools import lookup")
        r = s.run("lookup('abc')['len'] * 2")
        assert r.value == "6" and [c.name for c in r.tool_calls] == ["lookup"] and r.tool_calls[0].ok
        child = s.fork()
        try:
            assert child.run("lookup('hello')").value == "{'len': 5}"
        finally:
            child.close()
    assert seen == ["abc", "hello"]


def test_async_tools_run_on_the_session_loop(runtime: Runtime) -> None:
    """AsyncSession runs async tools on its own event loop."""

    async def main() -> str | None:
        loop = asyncio.get_running_loop()
        used: list[object] = []

        async def ping() -> str:
            used.append(asyncio.get_running_loop())
            return "pong"

        async with execr.AsyncSession(on=runtime, tools={"ping": ping}) as s:
            r = await s.run("from execr_tools import ping\nping()")
        assert used == [loop]
        return r.value

    assert asyncio.run(main()) == "'pong'"


def test_a_checkpoint_pickles_as_its_checked_bytes(session: Session, runtime: Runtime) -> None:
    """pickle (Ray's object store, multiprocessing) carries a checkpoint as its verified bytes."""
    import pickle

    session.run("v = 'pickled'")
    cp = pickle.loads(pickle.dumps(session.checkpoint()))
    with Session.restore(cp, on=runtime) as back:
        assert back.run("v").value == "'pickled'"


def test_a_big_heap_is_folded_and_still_rolls_back(runtime: Runtime) -> None:
    """Past a MiB of changed pages, a session folds them into its own file instead of copying
    them before each call: rollback, later writes, checkpoints and forks still see exact state."""
    with Session(on=runtime) as s:
        s.run("big = bytearray(16 << 20)\nfor i in range(0, len(big), 4096): big[i] = 1")
        s.run("big[4096] = 2")  # the save before this call folds the heap
        assert s._slot.live._mapped, "the heap was folded into a mapped image"
        r = s.run("big[8192] = 3\nwhile True: big[12288] = 4", timeout=0.3)
        assert r.outcome is Outcome.TIMED_OUT
        assert s.run("big[4096], big[8192], big[12288], big[16384], sum(big[::4096])").value == "(2, 1, 1, 1, 4097)"
        s.run("big[8192] = 5")
        child = s.fork()
        try:
            child.run("big[8192] = 6")
            assert (s.run("big[8192]").value, child.run("big[8192]").value) == ("5", "6")
        finally:
            child.close()
        with Session.restore(s.checkpoint().to_bytes(), on=runtime) as back:
            assert back.run("big[4096], big[8192], len(big)").value == f"(2, 5, {16 << 20})"


def test_a_busy_small_session_folds_once_and_stays_exact(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """At its 16th call a session folds its pages into its own file, however few (later saves copy
    only what its calls keep writing); at most EARLY_FOLDS sessions of a process do so, and a
    closed session gives its place back. Rollback, fork and checkpoints still see exact state."""
    from execr._sandbox import _live

    monkeypatch.setattr(_live, "EARLY_FOLDS", 1)
    with Session(on=runtime) as first, Session(on=runtime) as second:
        for i in range(_live.EARLY_FOLD_SAVE + 2):
            first.run(f"x = {i}")
            second.run(f"x = {i}")
        assert first._slot.live._folded and not second._slot.live._folded  # the one place was taken
        r = first.run("x = -1\nwhile True: pass", timeout=0.3)
        assert r.outcome is Outcome.TIMED_OUT
        assert first.run("x").value == str(_live.EARLY_FOLD_SAVE + 1)
        child = first.fork()
        try:
            child.run("x = 'child'")
            assert (first.run("x").value, child.run("x").value) == (str(_live.EARLY_FOLD_SAVE + 1), "'child'")
        finally:
            child.close()
        first.close()
        with Session(on=runtime) as third:  # the place came back with the close
            for i in range(_live.EARLY_FOLD_SAVE + 1):
                third.run(f"y = {i}")
            assert third._slot.live._folded
            assert third.run("y").value == str(_live.EARLY_FOLD_SAVE)


def test_kept_and_rolled_back_calls_interleaved_keep_exact_state(runtime: Runtime) -> None:
    """Random kept and failed calls (atomic raises, timeouts, the memory limit), each writing
    scattered pages of a buffer and new objects: after each, the state is exactly what the kept
    calls made. Rollback writes saved pages back over and drops only the pages made private since."""
    import random

    rng = random.Random(1234)
    pages = 3000  # ~12 MiB: past the fold threshold after a few calls
    with Session(on=runtime, memory_limit=256 << 20) as s:
        s.run(f"buf = bytearray({pages} * 4096); keep = {{}}")
        expect: dict[int, int] = {}
        kept = 0
        for call in range(40):
            touched = {rng.randrange(pages): rng.randrange(1, 256) for _ in range(rng.randrange(1, 60))}
            writes = "; ".join(f"buf[{p} * 4096 + 7] = {v}" for p, v in touched.items())
            kind = rng.choice(["keep", "keep", "atomic", "timeout", "memory"])
            if kind == "keep":
                r = s.run(f"{writes}; keep[{call}] = [{call}] * 100")
                assert r.ok, r.stderr
                expect.update(touched)
                kept += 1
            elif kind == "atomic":
                r = s.run(f"{writes}; keep[{call}] = 1; raise ValueError", atomic=True)
                assert r.outcome is Outcome.FAILED
            elif kind == "timeout":
                r = s.run(f"{writes}; keep[{call}] = 1\nwhile True: pass", timeout=0.2)
                assert r.outcome is Outcome.TIMED_OUT
            else:
                r = s.run(f"{writes}; keep[{call}] = 1; junk = [bytearray(1 << 20) for _ in range(400)]")
                assert r.outcome is Outcome.MEMORY_LIMIT
            got = s.run(
                "sum(b * (i + 1) for i, b in enumerate(buf[7::4096]) if b), len(keep), "
                "all(v == [k] * 100 for k, v in keep.items())"
            ).value
            want = (sum(v * (p + 1) for p, v in expect.items()), kept, True)
            assert got == str(want), (call, kind)


def test_busy_sessions_hold_few_descriptors_and_stay_exact(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each session folds its heap into a file of its own; however many are busy, the process keeps
    at most OPEN_FOLDS of those descriptors open (and an idle one none), and a session whose file
    was closed moves its pages to a new one: every session still sees exactly its own state, and
    a failed call still rolls back."""
    import os

    from execr._sandbox import _live

    monkeypatch.setattr(_live, "OPEN_FOLDS", 3)  # the cap, small enough to pass with a few sessions

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    fill = "big = bytearray(5 << 20)\nfor i in range(0, len(big), 4096): big[i] = {n}"
    before = fds()
    sessions = [Session(on=runtime) for _ in range(6)]
    try:
        for n, s in enumerate(sessions):
            s.run(fill.format(n=n))
            s.run("big[1] = 1")  # the save before this call folds the heap
            assert s._slot.live._folded, "the heap was folded into the session's file"
        assert fds() - before <= 3 + 2
        for n, s in enumerate(sessions):  # the first ones' files were closed: they fold into new ones
            s.run(f"big[4096] = {n + 1}\nfor i in range(0, len(big), 4096): big[i + 2] = 251")
            r = s.run("big[8192] = 250\nwhile True: pass", timeout=0.2)  # its save folds again
            assert r.outcome is Outcome.TIMED_OUT
            want = f"({n}, {n + 1}, {n}, 1, {5 << 8})"
            assert s.run("big[0], big[4096], big[8192], big[1], big.count(251)").value == want
        assert fds() - before <= 3 + 2
        sessions[0]._slot.live.trim()  # what the idle reaper does: its descriptor goes
        assert sessions[0].run("big[0], big[4096]").value == "(0, 1)"
    finally:
        for s in sessions:
            s.close()
    assert fds() - before <= 2


def test_each_call_sees_the_session_environment_only(runtime: Runtime) -> None:
    """A call's changes to os.environ do not leak into the next call: each starts from the session's env."""
    with Session(on=runtime, env={"A": "1"}) as s:
        assert s.run("import os\nos.environ['B'] = '2'\ndict(os.environ)").value == "{'A': '1', 'B': '2'}"
        assert s.run("dict(os.environ)").value == "{'A': '1'}"
        assert s.run("del os.environ['A']\ndict(os.environ)").value == "{}"
        assert s.run("os.environ.get('A'), os.getenv('A')").value == "('1', '1')"


def test_checkpoints_of_changing_sizes_stay_exact(runtime: Runtime) -> None:
    """Images after the first are written into memory allocated ahead (a spare file); checkpoints
    of growing and shrinking size, and one taken in a forked child process, each restore exactly."""
    import os

    with Session(on=runtime) as s:
        cps = []
        for n, mib in enumerate((3, 2, 5, 1, 4)):
            s.run(f"buf = bytearray({mib} << 20)\nbuf[::4096] = bytes([{n + 1}]) * len(range(0, len(buf), 4096))")
            cps.append((n + 1, mib, s.checkpoint()))
        pid = os.fork()
        if pid == 0:  # the child takes its own checkpoint: never the parent's spare
            code = 1
            try:
                s.run("buf[::4096] = bytes([99]) * len(range(0, len(buf), 4096))")
                with Session.restore(s.checkpoint(), on=runtime) as back:
                    code = 0 if back.run("set(buf[::4096])").value == "{99}" else 2
            finally:
                os._exit(code)
        s.run("buf[::4096] = bytes([77]) * len(range(0, len(buf), 4096))")
        mine = s.checkpoint()
        assert _wait_child(pid, 120) == 0
        for n, mib, cp in cps:
            with Session.restore(cp, on=runtime) as back:
                assert back.run(
                    "len(buf) >> 20, set(buf[::4096]), sum(buf) // len(range(0, len(buf), 4096))"
                ).value == (f"({mib}, {{{n}}}, {n})")
        with Session.restore(mine, on=runtime) as back:
            assert back.run("set(buf[::4096])").value == "{77}"


def _wait_child(pid: int, timeout: float) -> int | None:
    """A forked child's exit status; it is killed (and None returned) past ``timeout`` seconds."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def test_the_idle_reaper_never_trims_a_session_in_a_call(runtime: Runtime) -> None:
    """The reaper gives back an idle session's save buffer, but never while a call holds the
    session (its save could be reading that buffer): a busy session keeps it."""
    import threading

    from execr import _session

    with Session(on=runtime) as s:
        s.run("x = 1")
        s.run("x + 1")
        live = s._slot.live
        assert live._buffer.getbuffer().nbytes > 0
        reaper = threading.Thread(target=_session._Reaper._trim, args=(s,))  # the reaper's own thread
        with s._lock:  # what a call in progress holds
            reaper.start()
            reaper.join()
            assert live._buffer.getbuffer().nbytes > 0, "trimmed under a running call"
        reaper = threading.Thread(target=_session._Reaper._trim, args=(s,))
        reaper.start()
        reaper.join()
        assert live._buffer.getbuffer().nbytes == 0
        assert s.run("x + 2").value == "3"
