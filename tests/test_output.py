"""Output capture keeps the head and the tail of a stream under its cap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from execr._output import Capture


@given(cap=st.one_of(st.none(), st.integers(0, 64)), chunks=st.lists(st.binary(max_size=40), max_size=12))
def test_capture_keeps_head_and_tail(cap: int | None, chunks: list[bytes]) -> None:
    """Under the cap everything is kept; over it, the first cap/2 and the last cap - cap/2 bytes."""
    capture = Capture(cap)
    for chunk in chunks:
        capture.write(chunk)
    data = b"".join(chunks)
    kept, dropped = capture.value()
    if cap is None or len(data) <= cap:
        assert (kept, dropped) == (data, 0)
    else:
        tail = cap - cap // 2
        assert kept == data[: cap // 2] + (data[-tail:] if tail else b"")
        assert dropped == len(data) - cap


def test_capture_counts_total() -> None:
    """``total`` counts every byte written, kept or not."""
    capture = Capture(4)
    for _ in range(10):
        capture.write(b"abc")
    assert capture.total == 30
    assert capture.value() == (b"abbc", 26)


def test_output_flood_is_held_in_memory_under_its_cap() -> None:
    """A guest printing hundreds of MB keeps only its cap on the host: head and tail kept, the rest counted."""
    import execr

    result = execr.execute("while True: print('x' * 4000)", timeout=2, max_stdout=1 << 20)
    assert result.outcome == "timed_out"
    assert len(result.stdout_bytes) == 1 << 20
    assert result.stdout_dropped > 50 << 20
