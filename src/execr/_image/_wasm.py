"""WebAssembly binary sections: read, instrument and rebuild modules.

A pure-Python, section-level rewriter that turns a booted CPython.wasm into a pre-initialized
snapshot: :func:`instrument` exports the stack pointer and the function table and counts refused
``memory.grow``s in a global the guest cannot touch, :func:`rebuild` bakes a memory image and stack
pointer back in as active data segments, :func:`table_writes` scans function bodies for instructions
that can change a table. Malformed input raises ``ValueError``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from .._exports import GROW_FAILURES_EXPORT, SP_EXPORT, TABLE_EXPORT

HEADER = b"\0asm\x01\0\0\0"
PAGE_SIZE = 65536
INSTRUMENT_VERSION = 2  # bump when instrument()'s output changes: modules built from it are cached
MAX_DATA_SEGMENTS = 100_000  # wasmtime (wasmparser) limit
MERGE_GAP = 64  # zero runs shorter than this stay inside a data segment

# Section ids, and the order known sections must appear in (custom: anywhere).
CUSTOM, TYPE, IMPORT, FUNCTION, TABLE, MEMORY, GLOBAL, EXPORT = 0, 1, 2, 3, 4, 5, 6, 7
CODE, DATA, DATACOUNT = 10, 11, 12
_RANK = {s: i for i, s in enumerate((1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11))}
# Import/export kinds.
FUNC, TABLE_KIND, MEMORY_KIND, GLOBAL_KIND, TAG = 0, 1, 2, 3, 4

_NO_EXPORTS: Mapping[str, tuple[int, int]] = MappingProxyType({})
_ZEROS = re.compile(rb"\x00*")
_I32, _I64, _END, _GLOBAL_GET = 0x7F, 0x7E, 0x0B, 0x23
_FUNC_TYPE, _CALL, _MEMORY_GROW = 0x60, 0x10, 0x40
_COUNTER_INIT = b"\x41\x00\x0b"  # i32.const 0

Limits = tuple[int, int, int | None]  # flag byte, min, max
Sections = list[tuple[int, bytes]]
T = TypeVar("T")


def encode_leb(value: int, signed: bool = False) -> bytes:
    """LEB128 encoding of ``value`` (two's complement if ``signed``)."""
    if value < 0 and not signed:
        raise ValueError(f"cannot encode negative {value} as unsigned LEB128")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        done = (value, byte & 0x40 if signed else 0) in ((0, 0), (-1, 0x40))
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


def decode_leb(data: bytes, pos: int = 0, bits: int = 32, signed: bool = False) -> tuple[int, int]:
    """Decode the LEB128 (of at most ``bits``) at ``pos``: ``(value, next_pos)``."""
    if pos < len(data) and (result := data[pos]) < (0x40 if signed else 0x80):
        return result, pos + 1  # fast path: one byte
    result = shift = 0
    for _ in range((bits + 6) // 7):
        if pos >= len(data):
            raise ValueError(f"truncated LEB128 at offset {pos}")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if signed and byte & 0x40:
                result -= 1 << shift
            lo = -(1 << (bits - 1)) if signed else 0
            if not lo <= result < lo + (1 << bits):
                raise ValueError(f"LEB128 overflow: value does not fit {bits} bits")
            return result, pos
    raise ValueError(f"LEB128 overflow: too many bytes for {bits} bits")


def encode_name(name: str) -> bytes:
    """A wasm name: length-prefixed UTF-8."""
    raw = name.encode()
    return encode_leb(len(raw)) + raw


def _i32_const(value: int) -> bytes:
    """``i32.const value`` for an unsigned 32-bit value (wrapped to signed)."""
    return b"\x41" + encode_leb(value - (value >> 31 << 32), signed=True)


class _Reader:
    """Cursor over one section payload; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def fail(self, msg: str) -> ValueError:
        return ValueError(f"at offset {self.pos}: {msg}")

    def byte(self) -> int:
        return self.take(1)[0]

    def skip(self, n: int) -> int:
        """Advance ``n`` bytes; return the old position."""
        if self.pos + n > len(self.data):
            raise self.fail(f"needs {n} bytes, {len(self.data) - self.pos} left")
        self.pos += n
        return self.pos - n

    def take(self, n: int) -> bytes:
        return self.data[self.skip(n) : self.pos]

    def u(self, bits: int = 32, signed: bool = False) -> int:
        value, self.pos = decode_leb(self.data, self.pos, bits, signed)
        return value

    def name(self) -> str:
        return self.take(self.u()).decode()  # UnicodeDecodeError is a ValueError

    def limits(self) -> Limits:
        flag = self.byte()
        if flag > 0x07:
            raise self.fail(f"unsupported limits flag {flag:#x}")
        bits = 64 if flag & 0x04 else 32
        low = self.u(bits)
        return flag, low, self.u(bits) if flag & 0x01 else None

    def const_expr(self) -> tuple[bytes, bool]:
        """Skip a constant expression; return its bytes and if it uses global.get."""
        start, uses_global = self.pos, False
        while (op := self.byte()) != _END:
            if op in (0x41, 0x42):  # i32.const, i64.const
                self.u(32 if op == 0x41 else 64, signed=True)
            elif op in (0x43, 0x44):  # f32.const, f64.const
                self.take(4 if op == 0x43 else 8)
            elif op in (_GLOBAL_GET, 0xD2):  # global.get, ref.func
                uses_global |= op == _GLOBAL_GET
                self.u()
            elif op == 0xD0:  # ref.null heaptype
                self.u(33, signed=True)
            else:
                raise self.fail(f"unsupported opcode {op:#04x} in constant expression")
        return self.data[start : self.pos], uses_global

    def done(self) -> None:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} trailing bytes")


def iter_sections(module: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(section_id, payload)`` for each section of a binary module."""
    if len(module) < 8 or module[:4] != HEADER[:4]:
        raise ValueError("not a WebAssembly module: bad magic")
    if module[4:8] != HEADER[4:]:
        raise ValueError(f"unsupported WebAssembly version {module[4:8].hex()}")
    pos = 8
    while pos < len(module):
        sid = module[pos]
        size, start = decode_leb(module, pos + 1)  # "truncated LEB128 at offset"
        if start + size > len(module):
            raise ValueError(f"truncated section {sid} at offset {pos} ({size} bytes)")
        yield sid, module[start : start + size]
        pos = start + size


def _split(module: bytes) -> Sections:
    """All sections, checking ids, order and uniqueness of known sections."""
    sections, last = list(iter_sections(module)), -1
    for sid, _ in sections:
        if sid == CUSTOM:
            continue
        if sid not in _RANK:
            raise ValueError(f"unknown section id {sid}")
        if _RANK[sid] <= last:
            raise ValueError(f"section {sid} is duplicated or out of order")
        last = _RANK[sid]
    return sections


def _get(sections: Sections, sid: int) -> bytes | None:
    return next((p for s, p in sections if s == sid), None)


def _put(sections: Sections, sid: int, payload: bytes) -> None:
    """Replace section ``sid``, or insert it where the section order allows."""
    at = 0
    for i, (s, _) in enumerate(sections):
        if s == sid:
            sections[i] = (sid, payload)
            return
        if s != CUSTOM and _RANK[s] < _RANK[sid]:
            at = i + 1
    sections.insert(at, (sid, payload))


def _assemble(sections: Sections) -> bytes:
    parts = [HEADER]
    for sid, payload in sections:
        parts += (bytes((sid,)), encode_leb(len(payload)), payload)
    return b"".join(parts)


def _items(payload: bytes | None, what: str, item: Callable[[_Reader], T]) -> list[T]:
    """Parse a section that is a single vector of ``item``s."""
    r = _Reader(payload or b"\0")
    try:
        out = [item(r) for _ in range(r.u())]
        r.done()
    except ValueError as e:
        raise ValueError(f"malformed {what} section: {e}") from None
    return out


def _import(r: _Reader) -> tuple[int, Limits | None]:
    """One import: its kind, and its limits if a table or memory."""
    r.name()
    r.name()
    if (kind := r.byte()) > TAG:
        raise r.fail(f"unknown import kind {kind}")
    if kind in (TABLE_KIND, GLOBAL_KIND, TAG):
        r.byte()  # table reftype, global valtype or tag attribute
    if kind in (TABLE_KIND, MEMORY_KIND):
        return kind, r.limits()
    (r.byte if kind == GLOBAL_KIND else r.u)()
    return kind, None


def _imports(sections: Sections) -> Counter[int]:
    return Counter(kind for kind, _ in _items(_get(sections, IMPORT), "import", _import))


def _memories(sections: Sections) -> list[Limits]:
    """Limits of every memory in index order: imported ones first."""
    imported = _items(_get(sections, IMPORT), "import", _import)
    mems = [limits for kind, limits in imported if kind == MEMORY_KIND and limits is not None]
    return mems + _items(_get(sections, MEMORY), "memory", _Reader.limits)


def _global(r: _Reader) -> tuple[int, bool, bytes, int]:
    """One defined global as ``(valtype, mutable, init, init_offset)``."""
    vt, mut, at = r.byte(), r.byte(), r.pos
    if mut > 1:
        raise r.fail(f"bad mutability flag {mut}")
    return vt, mut == 1, r.const_expr()[0], at


def _segment(r: _Reader) -> tuple[int, bool]:
    """One data segment as ``(flag, offset_uses_global)``."""
    if (flag := r.u()) > 2:
        raise r.fail(f"unknown data segment flag {flag}")
    if flag == 2:
        r.u()  # memory index
    uses_global = flag != 1 and r.const_expr()[1]
    r.skip(r.u())
    return flag, uses_global


def _export(r: _Reader) -> tuple[str, int, int]:
    return r.name(), r.byte(), r.u()


def _append(payload: bytes | None, entries: list[bytes]) -> bytes:
    """A vector section ``payload`` (``None``: empty) with ``entries`` appended."""
    count, pos = decode_leb(payload := payload or b"\0")
    return encode_leb(count + len(entries)) + payload[pos:] + b"".join(entries)


def _add_exports(payload: bytes | None, new: Mapping[str, tuple[int, int]]) -> bytes:
    """Export section ``payload`` plus ``new`` entries whose names are not taken."""
    have = {name for name, _, _ in _items(payload, "export", _export)}
    entries = [
        encode_name(name) + bytes((kind,)) + encode_leb(index)
        for name, (kind, index) in new.items()
        if name not in have
    ]
    return _append(payload, entries)


def _grow_counter(
    exports: list[tuple[str, int, int]], imported_globals: int, defined: list[tuple[int, bool, bytes, int]]
) -> int | None:
    """Position among the defined globals of the counter :func:`instrument` added (``None``: none).

    It is the global exported as ``GROW_FAILURES_EXPORT``, which must be a defined mutable i32 that
    starts at 0 (else ``ValueError``).
    """
    found = [(kind, index) for name, kind, index in exports if name == GROW_FAILURES_EXPORT]
    if not found:
        return None
    kind, index = found[0]
    at = index - imported_globals
    if kind != GLOBAL_KIND or not 0 <= at < len(defined) or defined[at][:3] != (_I32, True, _COUNTER_INIT):
        raise ValueError(f"export {GROW_FAILURES_EXPORT!r} is not a defined mutable i32 global starting at 0")
    return at


@dataclass(frozen=True)
class ModuleInfo:
    """Module summary; memory limits are the first defined memory's (0/None if none).

    ``globals`` lists every defined global, execr's grow counter included; ``mutable_globals``
    counts the mutable ones *of the original binary* (the counter left out), and
    ``grow_failures_export`` names the counter's export if the module is instrumented.
    """

    memory_min_pages: int
    memory_max_pages: int | None
    globals: list[tuple[int, bool, bytes]]  # defined: (valtype, mutable, init expr)
    imported_globals: int
    num_data_segments: int
    has_passive_data: bool
    export_names: list[str]
    mutable_globals: int
    grow_failures_export: str | None


def module_info(module: bytes) -> ModuleInfo:
    """Parse the sections of ``module`` that :func:`rebuild` and recycling care about."""
    sections = _split(module)
    counts = _imports(sections)
    mems = _items(_get(sections, MEMORY), "memory", _Reader.limits)
    data = _items(_get(sections, DATA), "data", _segment)
    defined = _items(_get(sections, GLOBAL), "global", _global)
    exports = _items(_get(sections, EXPORT), "export", _export)
    counter = _grow_counter(exports, counts[GLOBAL_KIND], defined)
    return ModuleInfo(
        memory_min_pages=mems[0][1] if mems else 0,
        memory_max_pages=mems[0][2] if mems else None,
        globals=[g[:3] for g in defined],
        imported_globals=counts[GLOBAL_KIND],
        num_data_segments=len(data),
        has_passive_data=any(flag == 1 for flag, _ in data),
        export_names=[name for name, _, _ in exports],
        mutable_globals=sum(1 for i, g in enumerate(defined) if g[1] and i != counter),
        grow_failures_export=None if counter is None else GROW_FAILURES_EXPORT,
    )


def instrument(module: bytes) -> bytes:
    """Export the stack pointer and table 0, and count refused ``memory.grow``s.

    Defined global 0 (its index is the number of imported globals, 0 for CPython) is the stack
    pointer that :func:`rebuild` rewrites: exported as ``__execr_sp``; table 0 as ``__execr_table``.
    A new mutable i32 global starting at 0, exported as ``GROW_FAILURES_EXPORT``, counts the
    ``memory.grow`` calls on memory 0 that returned -1 (refused by the store's limiter, or past the
    memory's maximum): a new function performs the grow and counts, and every ``memory.grow 0`` in the
    code calls it instead (grows of other memories are left alone and not counted). Globals and
    functions are appended, so no existing index changes; only the bodies that grow memory are
    re-encoded and, if any was, the ``.debug_*`` custom sections (DWARF, whose code offsets would be
    stale) are dropped; all else stays byte-identical. Without a memory only the counter is added.
    Export names already taken are skipped, and a module that already has the counter gets no second
    one: instrumenting twice returns the first result. Code the decoder cannot read (an unknown
    opcode in a body that may grow memory) raises ``ValueError``.
    """
    sections = _split(module)
    counts = _imports(sections)
    exports = _items(_get(sections, EXPORT), "export", _export)
    defined = _items(_get(sections, GLOBAL), "global", _global)
    if not defined:
        raise ValueError("module defines no global to export as the stack pointer")
    if not counts[TABLE_KIND] and not _Reader(_get(sections, TABLE) or b"\0").u():
        raise ValueError("module has no table to export")
    new = {SP_EXPORT: (GLOBAL_KIND, counts[GLOBAL_KIND]), TABLE_EXPORT: (TABLE_KIND, 0)}
    if _grow_counter(exports, counts[GLOBAL_KIND], defined) is None:
        counter = counts[GLOBAL_KIND] + len(defined)
        _put(sections, GLOBAL, _append(_get(sections, GLOBAL), [bytes((_I32, 1)) + _COUNTER_INIT]))
        if mems := _memories(sections):
            _count_grows(sections, counts[FUNC], counter, wide=bool(mems[0][0] & 0x04))
        new[GROW_FAILURES_EXPORT] = (GLOBAL_KIND, counter)
    _put(sections, EXPORT, _add_exports(_get(sections, EXPORT), new))
    return _assemble(sections)


def _runs(memory: bytes, gap: int) -> list[tuple[int, int]]:
    """Spans covering all non-zero bytes, split at zero runs of ``gap`` or more."""
    zeros, runs, n = b"\0" * gap, [], len(memory)
    start = next(_ZEROS.finditer(memory)).end()
    while start < n:
        stop = memory.find(zeros, start)  # C-speed search, no per-byte loop
        if stop < 0:  # last span: trim its (shorter than gap) zero tail
            tail = memory[max(start, n - gap) :]
            runs.append((start, n - len(tail) + len(tail.rstrip(b"\0"))))
            break
        runs.append((start, stop))
        start = next(_ZEROS.finditer(memory, stop)).end()
    return runs


def rebuild(
    module: bytes,
    memory: bytes | bytearray | memoryview,
    stack_pointer: int,
    *,
    extra_exports: Mapping[str, tuple[int, int]] = _NO_EXPORTS,
) -> bytes:
    """Return ``module`` pre-initialized with the linear-memory image ``memory``.

    The defined memory's minimum becomes ``len(memory)`` pages, defined global 0 (the i32 stack
    pointer) starts at ``stack_pointer``, the data section holds active segments covering the image's
    non-zero bytes (DataCount follows), custom sections are dropped and ``extra_exports``
    (name -> (kind, index)) are added. Passive or ``global.get``-placed data raises ``ValueError``.
    """
    sections, memory = _split(module), bytes(memory)
    old_data = _items(_get(sections, DATA), "data", _segment)
    if any(flag == 1 for flag, _ in old_data):
        raise ValueError("module has passive data segments: cannot keep memory.init")
    if any(uses_global for _, uses_global in old_data):
        raise ValueError("module has a data segment with a global.get offset")
    if len(memory) % PAGE_SIZE:
        raise ValueError(f"memory size {len(memory)} is not a multiple of {PAGE_SIZE}")
    if not 0 <= stack_pointer < 1 << 32:
        raise ValueError(f"stack pointer {stack_pointer} is not a 32-bit address")
    for name, (kind, index) in extra_exports.items():
        if not FUNC <= kind <= TAG or not 0 <= index < 1 << 32:
            raise ValueError(f"bad extra export {name!r}: kind {kind}, index {index}")

    counts = _imports(sections)
    mems = _items(_get(sections, MEMORY), "memory", _Reader.limits)
    if counts[MEMORY_KIND] or len(mems) != 1:
        raise ValueError("module must define exactly one memory and import none")
    flag, low, high = mems[0]
    pages = len(memory) // PAGE_SIZE
    if pages < low or (high is not None and pages > high):
        raise ValueError(f"memory of {pages} pages is outside limits {low}..{high}")
    _put(sections, MEMORY, bytes((1, flag)) + encode_leb(pages) + (b"" if high is None else encode_leb(high)))

    glob = _get(sections, GLOBAL) or b""
    defined = _items(glob, "global", _global)
    if not defined or defined[0][:2] != (_I32, True):
        raise ValueError("defined global 0 must be a mutable i32 (the stack pointer)")
    _, _, init, at = defined[0]
    _put(sections, GLOBAL, glob[:at] + _i32_const(stack_pointer) + bytes((_END,)) + glob[at + len(init) :])
    if extra_exports:
        _put(sections, EXPORT, _add_exports(_get(sections, EXPORT), extra_exports))

    gap = MERGE_GAP
    while len(runs := _runs(memory, gap)) > MAX_DATA_SEGMENTS:
        gap *= 2
    # With DataCount, code may name data segments (data.drop): pad with empty active segments so
    # old indices stay valid (dropped at instantiation, as the originals were).
    has_datacount = _get(sections, DATACOUNT) is not None
    count = max(len(runs), len(old_data) if has_datacount else 0)
    parts: list[bytes | memoryview] = [encode_leb(count)]
    view = memoryview(memory)  # slices without copying
    for s, e in runs + [(0, 0)] * (count - len(runs)):
        offset = b"\x42" + encode_leb(s, signed=True) if flag & 0x04 else _i32_const(s)
        parts += (b"\0" + offset + b"\x0b" + encode_leb(e - s), view[s:e])
    sections = [(s, p) for s, p in sections if s not in (CUSTOM, DATA)]
    if count or has_datacount:
        _put(sections, DATA, b"".join(parts))
    if has_datacount:
        _put(sections, DATACOUNT, encode_leb(count))
    return _assemble(sections)


# --- function bodies -----------------------------------------------------------------------------

_NO_IMMEDIATE = frozenset((0x00, 0x01, 0x05, 0x0A, 0x0B, 0x0F, 0x19, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)))
_ONE_INDEX = frozenset((0x07, 0x08, 0x09, 0x0C, 0x0D, 0x10, 0x12, 0x18, *range(0x20, 0x27), 0x3F, 0x40, 0xD2))
_FC_INDICES = (0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1)  # per 0xFC sub-opcode
_TABLE_SET, _FC_TABLE_WRITES = 0x26, frozenset((12, 14, 15, 17))  # table.init/copy/grow/fill


# A LEB128 valid for every immediate: up to 4 bytes, or 5 below 2**31 (wasm-ld pads indices to 5).
_L = rb"(?:[\x00-\x7f]|[\x80-\xff]{1,3}[\x00-\x7f]|[\x80-\xff]{4}[\x00-\x07])"
_M = rb"(?:[\x00-\x3f]|[\x40-\x7f]" + _L + rb")" + _L  # memarg with a one-byte align
# Runs of instructions that neither change a table nor grow a memory, in common encodings (L: a
# LEB128, M: a memarg), at C speed. What it stops at (br_table, try_table, select t*, long LEBs,
# table writes, memory.grow, unknown or malformed code) _instruction decodes.
_HARMLESS = re.compile(
    rb"(?:[\x02-\x04\x06-\x09\x0c\x0d\x10\x12\x18\x20-\x25\x3f\x41\x42\xd0\xd2]L"
    rb"|[\x00\x01\x05\x0a\x0b\x0f\x19-\x1b\x45-\xc4\xd1]|[\x28-\x3e]M|[\x11\x13]LL|\x43.{4}|\x44.{8}"
    rb"|\xfc(?:[\x00-\x07]|[\x09\x0b\x0d\x10]L|[\x08\x0a]LL)|\xfe(?:[\x00-\x02\x10-\x4e]M|\x03.)"
    rb"|\xfd(?:[\x00-\x0b\x5c\x5d]M|[\x0c\x0d].{16}|[\x15-\x22].|[\x54-\x5b]M.|[\x0e-\x14\x23-\x53\x5e-\x7f]"
    rb"|[\x80-\xff]\x01|[\x80-\x93]\x02))*+".replace(b"L", _L).replace(b"M", _M),
    re.DOTALL,
)


def _valtype(r: _Reader) -> None:
    if r.byte() in (0x63, 0x64):  # (ref null? heaptype)
        r.u(33, signed=True)


def _memarg(r: _Reader) -> None:
    if r.u() & 0x40:  # align flag: a memory index follows
        r.u()
    r.u(64)


def _instruction(r: _Reader) -> bool | None:
    """Skip one instruction: whether it changes a table (``None``: unknown opcode, not skipped)."""
    op = r.byte()
    if op in _ONE_INDEX:
        r.u()
        return op == _TABLE_SET
    if op in (0x02, 0x03, 0x04, 0x06, 0xD0):  # blocktype, ref.null heaptype
        r.u(33, signed=True)
    elif op in (0x41, 0x42):  # i32.const, i64.const
        r.u(32 if op == 0x41 else 64, signed=True)
    elif op in (0x43, 0x44):  # f32.const, f64.const
        r.skip(4 if op == 0x43 else 8)
    elif 0x28 <= op <= 0x3E:  # loads and stores
        _memarg(r)
    elif op in (0x11, 0x13):  # call_indirect, return_call_indirect: type, table
        r.u()
        r.u()
    elif op == 0x0E:  # br_table: labels, default
        for _ in range(r.u() + 1):
            r.u()
    elif op == 0x1F:  # try_table: blocktype, catch clauses (kind, tag unless a catch_all, label)
        r.u(33, signed=True)
        for _ in range(r.u()):
            if (kind := r.byte()) > 3:
                raise r.fail(f"unknown catch kind {kind}")
            for _ in range(2 if kind < 2 else 1):
                r.u()
    elif op == 0x1C:  # select t*
        for _ in range(r.u()):
            _valtype(r)
    elif op == 0xFC:
        if (sub := r.u()) >= len(_FC_INDICES):
            return None
        for _ in range(_FC_INDICES[sub]):
            r.u()
        return sub in _FC_TABLE_WRITES
    elif op == 0xFD:  # SIMD
        if (sub := r.u()) <= 11 or 84 <= sub <= 93:
            _memarg(r)
        if sub in (12, 13):  # v128.const, i8x16.shuffle
            r.skip(16)
        elif 21 <= sub <= 34 or 84 <= sub <= 91:  # lane index
            r.skip(1)
        elif sub > 0x113:
            return None
    elif op == 0xFE:  # atomics
        if (sub := r.u()) == 3:  # atomic.fence
            r.skip(1)
        elif sub <= 2 or 0x10 <= sub <= 0x4E:
            _memarg(r)
        else:
            return None
    elif op not in _NO_IMMEDIATE:
        return None
    return False


def _stops(body: bytes) -> Iterator[tuple[_Reader, int, bool | None]]:
    """Decode a function body (locals first); yield each instruction the fast path stops at.

    Yields ``(reader, offset, writes)``: the reader is just past the instruction, ``writes`` is
    whether it changes a table; after an unknown opcode (``writes`` is ``None``) decoding stops.
    """
    b = _Reader(body)
    for _ in range(b.u()):  # local declarations: count, valtype
        b.u()
        _valtype(b)
    while (pos := _HARMLESS.match(body, b.pos).end()) < len(body):  # type: ignore[union-attr]
        b.pos = pos
        writes = _instruction(b)
        yield b, pos, writes
        if writes is None:
            return
    if body[-1] != _END:
        raise b.fail("function body does not end with 'end'")


def _function_body(r: _Reader) -> bool | None:
    """One code section entry: whether its body changes a table (``None``: unknown opcode met)."""
    size = r.u()
    start, body = r.pos, r.take(size)
    try:
        for _, _, writes in _stops(body):
            if writes is not False:
                return writes
    except ValueError as e:
        raise ValueError(f"function body at offset {start}: {e}") from None
    return False


def _grow_sites(body: bytes) -> list[tuple[int, int]]:
    """Spans of the ``memory.grow 0`` instructions (memory index in any LEB form) in a function body."""
    sites = []
    for b, pos, writes in _stops(body):
        if writes is None:
            raise ValueError(f"unknown opcode {body[pos]:#04x} at offset {pos}: cannot find every memory.grow")
        if body[pos] == _MEMORY_GROW and decode_leb(body, pos + 1)[0] == 0:
            sites.append((pos, b.pos))
    return sites


def _functype(r: _Reader) -> bytes:
    """One type section entry, which must be a plain function type: its bytes."""
    start = r.pos
    if (form := r.byte()) != _FUNC_TYPE:
        raise r.fail(f"unsupported type form {form:#04x} (only function types)")
    for _ in range(2):  # params, results
        for _ in range(r.u()):
            _valtype(r)
    return r.data[start : r.pos]


def _count_grows(sections: Sections, imported_funcs: int, counter: int, wide: bool) -> None:
    """Append ``grow(delta) -> old size or -1`` (counting the -1s in global ``counter``) and call it
    instead of every ``memory.grow 0``; ``wide``: memory 0 is 64-bit (i64 delta and result)."""
    vt = _I64 if wide else _I32
    signature = bytes((_FUNC_TYPE, 1, vt, 1, vt))
    types = _items(_get(sections, TYPE), "type", _functype)
    if signature in types:
        type_index = types.index(signature)
    else:
        type_index = len(types)
        _put(sections, TYPE, _append(_get(sections, TYPE), [signature]))
    functions = _Reader(_get(sections, FUNCTION) or b"\0").u()
    _put(sections, FUNCTION, _append(_get(sections, FUNCTION), [encode_leb(type_index)]))
    g = encode_leb(counter)
    minus_one, eq = (b"\x42\x7f", b"\x51") if wide else (b"\x41\x7f", b"\x46")
    grow = b"".join(
        (
            b"\x00",  # no locals besides the parameter
            b"\x20\x00\x40\x00\x22\x00",  # local.get 0; memory.grow 0; local.tee 0
            minus_one + eq + b"\x04\x40",  # i32/i64.const -1; i32/i64.eq; if
            b"\x23" + g + b"\x41\x01\x6a\x24" + g,  # global.get g; i32.const 1; i32.add; global.set g
            b"\x0b\x20\x00\x0b",  # end; local.get 0; end
        )
    )
    call = bytes((_CALL,)) + encode_leb(imported_funcs + functions)
    code, rewritten = _call_for_grows(_get(sections, CODE) or b"\0", functions, call, grow)
    _put(sections, CODE, code)
    if rewritten:  # DWARF addresses code by offset: it would describe the old bodies
        sections[:] = [(sid, p) for sid, p in sections if sid != CUSTOM or not _custom_name(p).startswith(".debug_")]


def _custom_name(payload: bytes) -> str:
    """A custom section's name ("" if unreadable)."""
    try:
        return _Reader(payload).name()
    except ValueError:
        return ""


def _grow_0_bytes(payload: bytes, start: int) -> list[int]:
    """Offsets of ``40 00`` and ``40 80`` (every memory.grow 0 encodes so), ending with ``len(payload)``.

    A body without them needs no decoding; in one with them, the decoder decides.
    """
    hits = []
    for pattern in (b"\x40\x00", b"\x40\x80"):
        at = payload.find(pattern, start)
        while at >= 0:
            hits.append(at)
            at = payload.find(pattern, at + 1)
    return [*sorted(hits), len(payload)]


def _call_for_grows(payload: bytes, functions: int, call: bytes, body: bytes) -> tuple[bytes, int]:
    """Code section ``payload`` with each ``memory.grow 0`` replaced by ``call`` and ``body`` appended;
    and how many bodies changed. Only those are re-encoded, the rest is copied byte for byte."""
    try:
        count, pos = decode_leb(payload)
        if count != functions:
            raise ValueError(f"{count} bodies for {functions} functions")
        hits = _grow_0_bytes(payload, pos)
        parts: list[bytes | memoryview] = [encode_leb(count + 1)]
        view, kept, h, rewritten = memoryview(payload), pos, 0, 0  # payload[kept:] is not in parts yet
        for _ in range(count):
            entry, (size, start) = pos, decode_leb(payload, pos)
            if (pos := start + size) > len(payload):
                raise ValueError(f"function body at offset {start} needs {size} bytes, {len(payload) - start} left")
            while hits[h] < start:
                h += 1
            if hits[h] >= pos:
                continue
            try:
                sites = _grow_sites(old := payload[start:pos])
            except ValueError as e:
                raise ValueError(f"function body at offset {start}: {e}") from None
            if sites:
                pieces: list[bytes] = []
                prev = 0
                for site_start, site_end in sites:
                    pieces += (old[prev:site_start], call)
                    prev = site_end
                new = b"".join((*pieces, old[prev:]))
                parts += (view[kept:entry], encode_leb(len(new)), new)
                kept, rewritten = pos, rewritten + 1
        if pos != len(payload):
            raise ValueError(f"{len(payload) - pos} trailing bytes")
    except ValueError as e:
        raise ValueError(f"malformed code section: {e}") from None
    parts += (view[kept:], encode_leb(len(body)), body)
    return b"".join(parts), rewritten


def table_writes(module: bytes) -> bool | None:
    """Whether any function body can change a table.

    ``True`` if the code holds table.set, table.grow, table.fill, table.copy or table.init;
    ``False`` if none; ``None`` if the scan met an unknown opcode (assume tables can change).
    """
    found = _items(_get(_split(module), CODE), "code", _function_body)
    return True if True in found else None if None in found else False
