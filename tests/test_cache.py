"""The on-disk cache writes atomically, verifies what it reads and locks across processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from execr import _cache


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
