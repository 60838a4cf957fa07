"""Tests for execr._parallel._batch: JSONL round trip, resume without duplicates, malformed lines, CLI parser."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from execr import InvalidArgument
from execr._parallel._batch import add_batch_parser, run_batch

pytestmark = pytest.mark.guest


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_round_trip_and_malformed(tmp_path):
    """Each line gives one record in input order; malformed lines give an error record."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(
        src,
        [
            json.dumps({"id": "a", "code": "print(input())", "stdin": "hi"}),
            "{not json",
            json.dumps([1, 2]),
            "",
            json.dumps({"code": "import sys; sys.exit(3)"}),
            json.dumps({"id": 9, "code": "print(1)", "timeout": "soon"}),
        ],
    )
    assert run_batch(src, out, workers=2, progress=False) == 5
    records = _read(out)
    assert [r["line"] for r in records] == [1, 2, 3, 5, 6]
    assert records[0]["id"] == "a" and records[0]["stdout"] == "hi\n" and records[0]["outcome"] == "completed"
    for r in (records[1], records[2], records[4]):
        assert r["outcome"] == "crashed" and r["error"].startswith("invalid request: ")
    assert records[3]["outcome"] == "failed" and records[3]["exit_code"] == 3


def test_resume_skips_done_lines(tmp_path):
    """A rerun only runs lines missing from OUT (a torn last line is redone) and never duplicates."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [json.dumps({"id": i, "code": f"print({i})"}) for i in range(10)])
    half = tmp_path / "half.jsonl"
    _write(half, [json.dumps({"id": i, "code": f"print({i})"}) for i in range(5)])
    assert run_batch(half, out, workers=1, progress=False) == 5
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"line": 6, "id": 5, "outc')  # interrupted mid-write
    assert run_batch(src, out, workers=2, progress=False) == 5
    assert run_batch(src, out, workers=2, progress=False) == 0
    records = _read(out)
    assert [r["line"] for r in records] == list(range(1, 11))
    assert [r["stdout"] for r in records] == [f"{i}\n" for i in range(10)]


def test_cli_parser(tmp_path, capsys):
    """add_batch_parser adds 'batch IN [-o OUT] [--workers N] [--no-progress]' returning exit code 0."""
    parser = argparse.ArgumentParser(prog="execr")
    add_batch_parser(parser.add_subparsers())
    src = tmp_path / "in.jsonl"
    _write(src, [json.dumps({"code": "print(5)"})])
    ns = parser.parse_args(["batch", str(src), "--workers", "1", "--no-progress"])
    assert ns.handler(ns) == 0
    assert json.loads(capsys.readouterr().out)["stdout"] == "5\n"


def test_items_choose_their_runtime(tmp_path, scientific):
    """A JSONL item's "runtime" key picks the CPython it runs on."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    code = "import sys; print(sys.version_info[1])"
    items = [{"code": code, "runtime": "scientific"}, {"code": code}, {"code": code, "runtime": "python3.12"}]
    _write(src, [json.dumps(item) for item in items])
    assert run_batch(src, out, workers=1, progress=False) == 3
    assert [r["stdout"] for r in _read(out)] == ["15\n", "13\n", "12\n"]


def _same_file_spellings(tmp_path):
    """(input, output) pairs that name one file: itself, another spelling, a symlink, a hard link."""
    src = tmp_path / "in.jsonl"
    (tmp_path / "sub").mkdir()
    os.symlink(src, tmp_path / "link.jsonl")
    os.link(src, tmp_path / "hard.jsonl")
    return src, [src, tmp_path / "sub" / ".." / "in.jsonl", tmp_path / "link.jsonl", tmp_path / "hard.jsonl"]


def test_output_equal_to_input_is_refused_before_writing(tmp_path):
    """`execr batch X -o X` (any spelling, symlink or hard link) exits 2 with a clear error; IN is untouched."""
    src = tmp_path / "in.jsonl"
    content = json.dumps({"code": "print(1)"}) + "\n" + json.dumps({"code": "print(2)"})  # no final newline
    src.write_text(content)
    _, outs = _same_file_spellings(tmp_path)
    for out in outs:
        with pytest.raises(InvalidArgument, match="is the input file"):
            run_batch(src, out, workers=1, progress=False)
        proc = subprocess.run(
            [sys.executable, "-m", "execr", "batch", str(src), "-o", str(out), "--no-progress"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "is the input file" in proc.stderr and "Traceback" not in proc.stderr
        assert src.read_text() == content


@pytest.mark.parametrize("field", ["mounts", "mount_fs", "stdio", "pythonpath"])
def test_host_path_fields_need_the_operator_flag(tmp_path, field):
    """A line naming a host-path field gets an 'invalid request' record naming it, unless --allow-host-paths."""
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "secret.txt").write_text("host data")
    value = [f"{folder}:/data"] if field == "mounts" else str(folder)
    code = "import os; print(sorted(os.listdir('/data' if os.path.isdir('/data') else '.')))"
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [json.dumps({"code": code, field: value}), json.dumps({"code": "print('plain')"})])
    assert run_batch(src, out, workers=1, progress=False) == 2
    refused, plain = _read(out)
    assert refused["outcome"] == "crashed" and field in refused["error"] and "--allow-host-paths" in refused["error"]
    assert plain["stdout"] == "plain\n"
    out2 = tmp_path / "out2.jsonl"
    assert run_batch(src, out2, workers=1, progress=False, allow_host_paths=True) == 2
    allowed, _ = _read(out2)
    assert allowed["outcome"] == "completed", allowed
    if field in ("mounts", "mount_fs"):
        assert "secret.txt" in allowed["stdout"]


def test_allow_host_paths_flag_on_the_command_line(tmp_path):
    """`execr batch --allow-host-paths` lets a line mount a host directory."""
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "f.txt").write_text("hi")
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, [json.dumps({"code": "print(open('/data/f.txt').read())", "mounts": [f"{folder}:/data"]})])
    from execr.cli import main

    assert main(["batch", str(src), "-o", str(out), "--workers", "1", "--no-progress", "--allow-host-paths"]) == 0
    assert _read(out)[0]["stdout"] == "hi\n"


def test_odd_ids_and_unreadable_input(tmp_path):
    """A lone surrogate or U+2028 in an id still gives one valid UTF-8 JSON line; a missing IN is InvalidArgument."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": "\\ud800", "code": "print(1)"}\n{"id": 1, "code": "\\udfff"}\n{"id": "a\\u2028b"}\n')
    assert run_batch(src, out, workers=1, progress=False) == 3
    first, second, third = _read(out)  # str.splitlines: U+2028 inside a record must not break its line
    assert third["id"] == "a\u2028b" and third["error"] == "invalid request: missing 'code'"
    assert first["id"] == "\ud800" and first["stdout"] == "1\n"
    assert second["outcome"] == "crashed" and "surrogate" in second["error"]
    with pytest.raises(InvalidArgument, match="cannot read the input"):
        run_batch(tmp_path / "missing.jsonl", out, workers=1, progress=False)
