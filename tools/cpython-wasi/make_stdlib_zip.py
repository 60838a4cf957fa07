"""Build the stdlib zip for execr's WASI CPython: .pyc only, stored, reproducible.

Run it with the *build* Python (same major.minor as the wasm CPython: the .pyc magic must match).

- Every module of Lib/ except those that cannot work under WASI or are not for users (tests, IDLE,
  tkinter, turtle demos, ensurepip, venv) is compiled to an unchecked-hash .pyc (no mtimes, so the
  zip is byte-for-byte reproducible), optimization level 0 (docstrings and asserts kept).
- The build's _sysconfigdata module is added (sysconfig needs it).
- co_filename of every code object is the path the module has inside the guest
  (GUEST_PREFIX/<name>.py), so tracebacks and inspect name the right module even without source.
- Entries are stored, not deflated: zipimport then needs no zlib at start-up and reads are memcpy's.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import marshal
import pathlib
import sys
import zipfile

EXCLUDE_TOP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "turtle.py",
    "ensurepip",
    "venv",
    "site-packages",
    "__pycache__",
}
EPOCH = (1980, 1, 1, 0, 0, 0)


def pyc_bytes(source: bytes, guest_filename: str) -> bytes:
    code = compile(source, guest_filename, "exec", dont_inherit=True, optimize=0)
    data = bytearray(importlib.util.MAGIC_NUMBER)
    data += (0b01).to_bytes(4, "little")  # PEP 552 flags: hash-based (bit 0), unchecked (bit 1 clear)
    data += importlib.util.source_hash(source)
    data += marshal.dumps(code)
    return bytes(data)


def iter_modules(lib: pathlib.Path):
    for path in sorted(lib.rglob("*.py")):
        rel = path.relative_to(lib)
        if rel.parts[0] in EXCLUDE_TOP or "__pycache__" in rel.parts:
            continue
        if any(part in {"tests", "test"} for part in rel.parts[:-1]):
            continue
        yield path, rel


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, type=pathlib.Path, help="CPython's Lib/ directory")
    ap.add_argument("--sysconfigdata", required=True, type=pathlib.Path, help="build/lib.wasi-wasm32-X.Y")
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--guest-prefix", default="/usr/local/lib/python313.zip")
    ap.add_argument("--with-source", action="store_true", help="also store the .py files")
    ap.add_argument("--replace-prefix", default="", metavar="OLD=NEW", help="rewrite build paths in _sysconfigdata")
    args = ap.parse_args()

    entries: list[tuple[str, bytes]] = []
    sources = list(iter_modules(args.lib))
    sources += [(p, p.relative_to(args.sysconfigdata)) for p in sorted(args.sysconfigdata.glob("_sysconfigdata*.py"))]
    old, _, new = args.replace_prefix.partition("=")
    for path, rel in sources:
        src = path.read_bytes()
        name = rel.as_posix()
        if old and name.startswith("_sysconfigdata"):
            src = src.replace(old.encode(), new.encode())
        try:
            entries.append((name[:-3] + ".pyc", pyc_bytes(src, f"{args.guest_prefix}/{name}")))
        except SyntaxError as exc:  # a few data files under lib2to3-like dirs are not Python 3
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        if args.with_source:
            entries.append((name, src))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    args.out.write_bytes(buf.getvalue())
    print(f"{args.out}: {len(entries)} entries, {args.out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
