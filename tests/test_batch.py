"""Tests for execr._batch: JSONL round trip, resume without duplicates, malformed lines, CLI parser."""

from __future__ import annotations

import argparse
import json

import pytest

from execr._batch import add_batch_parser, run_batch

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
    _write(src, [json.dumps({"code": code, "runtime": "scientific"}), json.dumps({"code": code})])
    assert run_batch(src, out, workers=1, progress=False) == 2
    assert [r["stdout"] for r in _read(out)] == ["15\n", "12\n"]
