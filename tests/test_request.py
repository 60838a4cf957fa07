"""make_request (behind execute, Runtime.execute, execute_many, batch, HTTP, Ray): bad input is InvalidArgument.

Every field is checked before anything runs, so none of these tests needs the runtime.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import execr
from execr import InvalidArgument
from execr._request import make_request

SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"code": f"print(1){SURROGATE}"}, "code"),
        ({"stdin": f"a{SURROGATE}"}, "stdin"),
        ({"args": ["ok", SURROGATE]}, "args[1]"),
        ({"env": {"K": SURROGATE}}, "env['K']"),
        ({"env": {SURROGATE: "v"}}, "env key"),
        ({"files": {"a.txt": SURROGATE}}, "files['a.txt']"),
        ({"files": {f"a{SURROGATE}.txt": "x"}}, "files key"),
        ({"mounts": [f"/tmp:/d{SURROGATE}"]}, "mount"),
        ({"mounts": [("/tmp", f"/d{SURROGATE}")]}, "mount"),
    ],
)
def test_lone_surrogates_are_invalid_arguments(kwargs: dict[str, Any], field: str) -> None:
    """A lone surrogate in any text field is InvalidArgument naming the field, not UnicodeEncodeError."""
    kwargs = {"code": "pass", **kwargs}
    with pytest.raises(InvalidArgument) as info:
        make_request(**kwargs)
    assert str(info.value).startswith(field), info.value
    assert "surrogate" in str(info.value) and "'\\ud800'" in str(info.value)
    with pytest.raises(InvalidArgument):  # the public API: validation happens before any run
        execr.execute(**kwargs)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a": "1", "a/b": "2"}, "cannot be inside it"),
        ({"d/a": "1", "d/a/b/c": "2"}, "cannot be inside it"),
        ({"a": "1", "/a": "2"}, "name the same file '/a'"),
        ({"a": "1", "./a": "2"}, "name the same file '/a'"),
        ({"x/y": "1", "x//y": "2"}, "name the same file '/x/y'"),
        ({"x/./y": "1", "/x/y/": "2"}, "name the same file '/x/y'"),
        ({".": "1"}, "names the root directory"),
        ({"../a": "1"}, "must not contain '..'"),
        ({"": "1"}, "non-empty"),
        ({"__execr__/main.py": "1"}, "reserves"),
    ],
)
def test_conflicting_files_keys_are_refused_as_a_set(files: dict[str, str], message: str) -> None:
    """The whole key set is validated up front: duplicates after normalization and file/directory clashes."""
    with pytest.raises(InvalidArgument, match="files key") as info:
        make_request("pass", files=files)
    assert message in str(info.value)


def test_files_keys_inside_a_mount_are_refused(tmp_path: Path) -> None:
    """A files key that lands inside a mount is refused before the run (files go in the root)."""
    with pytest.raises(InvalidArgument, match="inside mount '/data'"):
        make_request("pass", files={"data/x": "1"}, mounts=[execr.Mount.of(tmp_path, "/data")])


def test_files_keys_that_clash_with_mount_fs_are_refused(tmp_path: Path) -> None:
    """A key naming a directory, symlink or FIFO of mount_fs, or passing through a file or symlink, is refused."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    os.symlink("/etc", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    cases = [
        ("dir", "names a directory"),
        ("file/x", "not a directory"),
        ("link/x", "a symlink"),
        ("link", "names a symlink"),
        ("fifo", "a special file"),  # writing it would block the host until a reader came
    ]
    for key, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            make_request("pass", files={key: "1"}, mount_fs=tmp_path)
    assert make_request("pass", files={"dir/new": "1", "new/deeper": "2"}, mount_fs=tmp_path).files


def test_too_many_mounts_is_refused_up_front(tmp_path: Path) -> None:
    """More mounts than slots is InvalidArgument from make_request, not an error at run time."""
    dirs = []
    for i in range(7):
        (tmp_path / str(i)).mkdir()
        dirs.append(f"{tmp_path / str(i)}:/m{i}")
    with pytest.raises(InvalidArgument, match="at most 6 mounts"):
        make_request("pass", mounts=dirs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fuel": 2**64}, "fuel must be at most 2**62"),
        ({"limits": {"fuel": 2**62 + 1}}, "fuel must be at most 2**62"),
        ({"timeout": 1e12}, "timeout must be at most 1e9 seconds"),
        ({"max_stdout": 2**70}, "max_stdout must be at most 2**62"),
        ({"max_returned_file_bytes": 2**70}, "max_returned_file_bytes must be at most 4 GiB"),
        ({"limits": {1: 2}}, "limits keys must be limit names"),
        ({"limits": {"timout": 1}}, "unknown limit 'timout'"),
        ({"fuel": 10**5000}, "fuel must be at most"),  # too long to print: the message is still clean
        ({"env": {10**5000: "x"}}, "env keys"),
        ({"max_open_files": 0}, "max_open_files must be a whole number >= 1"),
        ({"max_open_files": 2**21}, "max_open_files must be at most 2**20"),
    ],
)
def test_limits_and_odd_values_are_invalid_arguments(kwargs: dict[str, Any], message: str) -> None:
    """Numbers past what the host enforces, non-str limit names and unprintable values: InvalidArgument."""
    with pytest.raises(InvalidArgument) as info:
        make_request("pass", **kwargs)
    assert message in str(info.value)
    assert len(str(info.value)) < 600


def test_max_open_files_reaches_the_request() -> None:
    """max_open_files is a limit like the others: default 128, settable, None turns it off."""
    assert make_request("pass").limits.max_open_files == 128
    assert make_request("pass", max_open_files=7).limits.max_open_files == 7
    assert make_request("pass", limits={"max_open_files": None}).limits.max_open_files is None


def test_valid_files_still_pass() -> None:
    """Sibling and nested keys that do not clash are accepted unchanged."""
    req = make_request("pass", files={"a/b": "1", "a/c": b"2", "ab": "3"})
    assert dict(req.files) == {"a/b": b"1", "a/c": b"2", "ab": b"3"}


HUGE = 10**5000  # repr() and str() of it raise ValueError (Python's 4,300-digit limit)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"code": HUGE},
        {"mounts": [("/tmp", HUGE)]},
        {"mounts": [("/tmp", "/m", HUGE)]},
        {"mounts": [HUGE]},
        {"env": {"A": HUGE}},
        {"env": {HUGE: "a"}},
        {"files": {HUGE: "a"}},
        {"files": {"a": HUGE}},
        {"timeout": HUGE},
        {"max_stdout": HUGE},
        {"limits": {HUGE: 1}},
        {"runtime": HUGE},
        {"inputs": {"a": float("nan")}},
        {"inputs": {HUGE: 1}},
        {"args": [HUGE]},
        {"stdin": HUGE},
        {"max_tool_calls": HUGE, "tools": {"f": len}},
        {"tools": {HUGE: len}},
    ],
)
def test_unprintable_values_are_refused_with_a_short_message(kwargs: dict[str, Any]) -> None:
    """A value whose repr fails or runs to thousands of characters is still an InvalidArgument,
    and the message quoting it stays short."""
    code = kwargs.pop("code", "print(1)")
    with pytest.raises(InvalidArgument) as caught:
        execr.execute(code, **kwargs)
    assert len(str(caught.value)) < 400, str(caught.value)[:500]
