"""Guest code: the Python that runs *inside* the sandbox to boot the snapshot and enter each run.

The bootstrap runs once, as ``python -c BOOTSTRAP``, on a fresh instance with the fixed
mount layout (see ``_mounts``). It imports what runs need, defines the entry function,
warms the compiler, freezes the garbage collector, prints the addresses the host needs
and aborts: the host captures linear memory at that trap. Each run then calls the entry
function in a fresh instance of the captured image. The entry reads its request
(marshal-encoded, code included) from a buffer the host writes into guest memory, or
from ``/__execr__/request.bin`` when it is too large for the buffer; it makes the
interpreter look like ``python /__execr__/main.py`` (argv, environ, sys.path, cwd, a
fresh ``__main__``, fresh ``random`` state), runs the script, and writes the exit
status into a mailbox the host reads. It returns instead of exiting, so one instance
can take several requests in turn: a request with ``fresh: False`` keeps the previous
``__main__`` (a session), and ``final: False`` defers the atexit handlers.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

__all__ = [
    "BOOTSTRAP",
    "BOOTSTRAP_VERSION",
    "MAILBOX_MAGIC",
    "MAILBOX_MARK",
    "PRELOAD",
    "REQUEST_BOX",
    "TURN_ENTRY",
    "bootstrap",
    "rng_key",
]

BOOTSTRAP_VERSION: Final = "9"
#: Bytes of guest memory reserved for a request; larger requests go through a file.
REQUEST_BOX: Final = 256 * 1024
MAILBOX_MAGIC: Final = 0x52434558  # b"XECR" little-endian
#: The mailbox's bytes at boot, so the host can check it found the right address.
MAILBOX_MARK: Final = b"EXECR-MAILBOX-01"

#: Standard modules imported at boot, so that runs import them for free.
PRELOAD: Final = [
    "atexit",
    "base64",
    "bisect",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "hashlib",
    "heapq",
    "importlib",
    "io",
    "itertools",
    "json",
    "linecache",
    "math",
    "operator",
    "pathlib",
    "random",
    "re",
    "statistics",
    "string",
    "struct",
    "textwrap",
    "time",
    "traceback",
    "types",
    "typing",
]

_TEMPLATE: Final = """
import sys, os, gc
for _name in %(preload)r:
    __import__(_name)
del _name
sys.dont_write_bytecode = True


def _make_entry():
    MAILBOX_MARK = %(mark)r
    import atexit, builtins, linecache, marshal, random, struct, sys, types
    from importlib.machinery import SourceFileLoader

    box = bytearray(MAILBOX_MARK + bytes(%(box)d))
    pack_into, unpack_from, loads = struct.pack_into, struct.unpack_from, marshal.loads
    stdlib = tuple(p for p in sys.path if p.startswith("/usr/local/lib"))
    for key in [k for k in sys.path_importer_cache if not k.startswith(stdlib)]:
        del sys.path_importer_cache[key]  # finders for the boot's own directories
    boot_finders = frozenset(sys.path_importer_cache)

    def exit_status(exc):
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        try:
            print(code, file=sys.stderr)
        except BaseException:
            pass
        return 1

    def flush():
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except BaseException:
                pass

    def __execr_entry__():
        status = 1
        req = None
        try:
            size = unpack_from("<I", box, 16)[0]
            pack_into("<Ii", box, 0, 0, 0)
            if size == 0xFFFFFFFF:
                with open("/__execr__/request.bin", "rb") as f:
                    req = loads(f.read())
            else:
                req = loads(bytes(box[20 : 20 + size]))
            script, source = req["script"], req["code"]
            sys.argv[:] = [script, *req["args"]]
            sys.orig_argv[:] = ["python", script, *req["args"]]
            if os.environ:
                os.environ.clear()
            os.environ.update(req["env"])
            sys.path[:] = [os.path.dirname(script), *req["path"], *stdlib]
            if len(sys.path_importer_cache) != len(boot_finders):  # a session's earlier request added some
                for key in [k for k in sys.path_importer_cache if k not in boot_finders]:
                    del sys.path_importer_cache[key]
            if req["cwd"] != os.getcwd():
                os.chdir(req["cwd"])
%(reseed)s            if req.get("fresh", True):
                main = types.ModuleType("__main__")
                main.__file__ = script
                main.__cached__ = None
                main.__builtins__ = builtins
                main.__loader__ = SourceFileLoader("__main__", script)
                sys.modules["__main__"] = main
            main = sys.modules["__main__"]
            linecache.clearcache()
            text = source.decode("utf-8", "replace")
            linecache.cache[script] = (len(text), None, text.splitlines(True), script)
            code = compile(source, script, "exec", dont_inherit=True)
            exec(code, main.__dict__)
            status = 0
        except SystemExit as exc:
            status = exit_status(exc)
        except BaseException as exc:
            tb = exc.__traceback__
            tb = tb.tb_next if tb is not None else None  # drop this entry frame
            try:
                sys.excepthook(type(exc), exc.with_traceback(tb), tb)
            except BaseException:
                pass
            status = 130 if isinstance(exc, KeyboardInterrupt) else 1
        if req is None or req.get("final", True):
            try:
                atexit._run_exitfuncs()
            except BaseException:
                pass
        flush()
        pack_into("<Ii", box, 0, %(magic)d, status)

    return __execr_entry__, box


_entry, _mailbox = _make_entry()
exec(compile("def _f(x):\\n    return [i * 2 for i in range(x)]\\n_f(3)\\n", "<warm>", "exec"), {})
gc.collect()
gc.freeze()
%(publish)s"""

#: The default runtime's ending: set ``random`` to a known key (``rng_key``; the host writes fresh
#: OS entropy over it per run), print the addresses the host needs and abort (captured at the trap).
_ABORT: Final = (
    "import random\n"
    "random.setstate((3, (*[(%(mult)d * (_i + 1)) & 0xFFFFFFFF for _i in range(624)], 624), None))\n"
    'sys.stdout.write("EXECR-BOOT %%d %%d %%d %%d\\n" %% (id(_entry), id(()), id(type(_entry)), id(_mailbox)))\n'
    "sys.stdout.flush()\n"
    "os.abort()\n"
)
#: A reactor's ending: publish the entry as a builtin (each run calls it in a ``turn``) and return.
#: It also sets both Mersenne Twisters to known keys (``rng_key``) so the host can find their
#: state in the image and write fresh OS entropy there per run (cheaper than seeding in the guest).
_PUBLISH: Final = (
    "import builtins, random\n"
    "builtins.__execr_entry__ = _entry\n"
    "_key = [(%(mult)d * (_i + 1)) & 0xFFFFFFFF for _i in range(624)]\n"
    "random.setstate((3, (*_key, 624), None))\n"
    '_npr = sys.modules.get("numpy.random")\n'
    "if _npr is not None:\n"
    '    _npr.set_state(("MT19937", [_k ^ %(xor)d for _k in _key], 624))\n'
    'sys.stdout.write("EXECR-BOOT %%d %%d\\n" %% (id(_mailbox), _npr is not None))\n'
    "sys.stdout.flush()\n"
    "del _entry, _mailbox, builtins, _key, _npr\n"
)
_MULT: Final = 0x9E3779B1
_XOR: Final = 0x5A5A5A5A
#: A reactor's plain path (no snapshot): run the entry at once on request.bin, exit with its status.
_CALL: Final = (
    "import struct\n"
    'struct.pack_into("<I", _mailbox, 16, 0xFFFFFFFF)\n'
    "_entry()\n"
    'raise SystemExit(struct.unpack_from("<i", _mailbox, 4)[0])\n'
)
#: Runs reseed ``random`` (and numpy's legacy global generator) in the guest only when the host
#: did not write fresh state into them (``reseed``: the host could not find them in the image).
_RESEED: Final = (
    '            if req.get("reseed", True):\n'
    "                random.seed()\n"
    '                numpy_random = sys.modules.get("numpy.random")\n'
    "                if numpy_random is not None:\n"
    "                    numpy_random.seed()\n"
)


def rng_key(numpy: bool) -> bytes:
    """The key the reactor bootstrap gives ``random`` (or, ``numpy``, numpy.random's MT19937) at boot."""
    key = [(_MULT * (i + 1)) & 0xFFFFFFFF for i in range(624)]
    return struct.pack("<624I", *[k ^ _XOR for k in key] if numpy else key)


#: What a reactor's ``turn`` runs to enter one request.
TURN_ENTRY: Final = b"__execr_entry__()"


def bootstrap(preload: Sequence[str] = (), *, reactor: bool = False, call: bool = False) -> str:
    """The bootstrap: ``PRELOAD`` after ``preload``; a reactor variant reseeds numpy and publishes the entry.

    ``call``: instead, run the entry right away on ``/__execr__/request.bin`` and exit with its
    status (a reactor's plain path: the same entry, without a snapshot).
    """
    return _TEMPLATE % {
        "preload": [*preload, *PRELOAD],
        "magic": MAILBOX_MAGIC,
        "mark": MAILBOX_MARK,
        "box": REQUEST_BOX,
        "reseed": _RESEED,
        "publish": _CALL if call else (_PUBLISH if reactor else _ABORT) % {"mult": _MULT, "xor": _XOR},
    }


#: The default runtime's bootstrap (run as ``python -c BOOTSTRAP``).
BOOTSTRAP: Final = bootstrap()
