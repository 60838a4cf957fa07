"""The on-disk cache writes atomically, verifies what it reads and locks across processes."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

import execr
from execr._image import _cache


def test_verified_round_trip(tmp_path: Path) -> None:
    """What write_verified stores, read_verified returns."""
    target = tmp_path / "a" / "module.cwasm"
    _cache.write_verified(target, b"compiled")
    assert _cache.read_verified(target) == b"compiled"


def test_corrupt_entry_is_rejected(tmp_path: Path) -> None:
    """A changed or truncated cache file reads as missing, so it is rebuilt rather than used."""
    target = tmp_path / "module.cwasm"
    _cache.write_verified(target, b"compiled module bytes")
    target.write_bytes(b"compiled module byte")
    assert _cache.read_verified(target) is None
    assert _cache.read_verified(tmp_path / "missing") is None


def test_cache_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EXECR_CACHE_DIR moves the cache."""
    monkeypatch.setenv("EXECR_CACHE_DIR", str(tmp_path))
    assert _cache.cache_dir() == tmp_path


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    """Atomic writes leave only the target behind."""
    _cache.atomic_write(tmp_path / "x", b"1")
    _cache.atomic_write(tmp_path / "x", b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["x"]
    assert (tmp_path / "x").read_bytes() == b"2"


def test_lock_is_reentrant_across_calls(tmp_path: Path) -> None:
    """The lock can be taken again once released."""
    with _cache.locked(tmp_path / "l.lock"):
        pass
    with _cache.locked(tmp_path / "l.lock"):
        pass


def test_digest_depends_on_every_part() -> None:
    """Cache keys change when any input changes."""
    assert _cache.digest("a", "b") != _cache.digest("a", "c")
    assert _cache.digest("ab", "c") != _cache.digest("a", "bc")


# -- fault injection: a damaged or unusable cache never breaks a run --

CACHE_LOG = "execr.cache"


def test_corrupt_entry_is_logged_missing_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A truncated entry or a lost checksum logs a warning on 'execr.cache'; a missing entry does not."""
    target = tmp_path / "module.cwasm"
    with caplog.at_level("WARNING", logger=CACHE_LOG):
        assert _cache.read_verified(target) is None
        assert not caplog.records
        _cache.write_verified(target, b"compiled module bytes")
        target.write_bytes(b"compiled")
        assert _cache.read_verified(target) is None
        assert "corrupt or truncated" in caplog.records[-1].getMessage()
        target.with_name(target.name + ".sha256").unlink()
        assert _cache.read_verified(target) is None
        assert "no readable checksum" in caplog.records[-1].getMessage()


def test_full_disk_write_is_a_warning_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC while storing an entry: write_verified returns False, logs, and leaves no temporary file."""

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with caplog.at_level("WARNING", logger=CACHE_LOG):
        assert _cache.write_verified(tmp_path / "m.cwasm", b"data") is False
    assert "No space left" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_lock_below_a_regular_file_still_runs_the_block(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A lock that cannot be created (its directory is under a file) is logged; the block still runs."""
    (tmp_path / "file").write_text("x")
    ran = []
    with caplog.at_level("WARNING", logger=CACHE_LOG), _cache.locked(tmp_path / "file" / "sub" / "l.lock"):
        ran.append(True)
    assert ran and "cannot take the cache lock" in caplog.text


def _copy_cache(runtime: execr.Runtime, dest: Path) -> Path:
    """A private copy of the warm default cache entry (so damaging it leaves the user's cache alone)."""
    for folder in runtime.artifacts("default", metered=False).dirs:
        shutil.copytree(folder, dest / folder.name)
    return dest / runtime.artifacts("default", metered=False).dir.name


@pytest.mark.guest
@pytest.mark.parametrize("damage", ["truncate-snapshot", "corrupt-meta-json", "truncate-plain"])
def test_damaged_cache_entry_is_rebuilt_with_a_warning(
    runtime: execr.Runtime, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated compiled snapshot or plain module, or snapshot metadata that is not JSON (with a
    matching checksum): the next use logs a warning, rebuilds it and runs; no crash."""
    folder = _copy_cache(runtime, tmp_path)
    if damage == "truncate-snapshot":
        data = (folder / "snapshot.cwasm").read_bytes()
        (folder / "snapshot.cwasm").write_bytes(data[: len(data) // 2])
        expect, code = "corrupt or truncated", "print('ok')"
    elif damage == "corrupt-meta-json":
        _cache.write_verified(folder / "snapshot.json", b'{"args": [1, 2], "slots": "oops"')
        expect, code = "snapshot metadata", "print('ok')"
    else:
        plain = runtime.artifacts("default", metered=False).plain
        (tmp_path / plain.parent.name / plain.name).write_bytes(b"\0asm")
        expect, code = "corrupt or truncated", "print('ok')"
    progress: list[str] = []
    with (
        caplog.at_level("WARNING", logger=CACHE_LOG),
        execr.Runtime(cache_dir=tmp_path, progress=progress.append) as rt,
    ):
        result = rt.execute(code, snapshot=damage != "truncate-plain")
    assert (result.outcome.value, result.stdout) == ("completed", "ok\n"), result
    assert expect in caplog.text, caplog.text
    assert progress, "the rebuild reports progress"
    rebuilt = runtime.artifacts("default", metered=False).plain if damage == "truncate-plain" else folder / "x"
    assert _cache.read_verified(
        tmp_path / rebuilt.parent.name / ("plain.cwasm" if damage == "truncate-plain" else "snapshot.cwasm")
    )


@pytest.mark.guest
def test_unusable_cache_dir_builds_in_memory(
    runtime: execr.Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """EXECR_CACHE_DIR below a regular file (cannot be created, as a read-only or unwritable one): runs
    still work, built in memory, with warnings; then a full disk (ENOSPC on every store) likewise."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("EXECR_CACHE_DIR", str(tmp_path / "file" / "cache"))
    with caplog.at_level("WARNING", logger=CACHE_LOG), execr.Runtime(progress=lambda m: None) as rt:
        result = rt.execute("print(6 * 7)")
        assert (result.outcome.value, result.stdout, result.mode) == ("completed", "42\n", "snapshot"), result
        assert rt.execute("print(1)").stdout == "1\n"
    assert "cannot take the cache lock" in caplog.text and "cannot write the cache entry" in caplog.text
    caplog.clear()
    monkeypatch.delenv("EXECR_CACHE_DIR")
    folder = _copy_cache(runtime, tmp_path / "full")
    (folder / "snapshot.cwasm").write_bytes(b"")  # forces a rebuild that cannot be stored

    def full(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with caplog.at_level("WARNING", logger=CACHE_LOG), execr.Runtime(cache_dir=tmp_path / "full") as rt:
        result = rt.execute("print('full disk')")
    assert (result.outcome.value, result.stdout, result.mode) == ("completed", "full disk\n", "snapshot"), result
    assert "No space left on device" in caplog.text
