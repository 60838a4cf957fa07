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

Before anything else the bootstrap installs ``ASYNCIO_HOOK``, so asyncio's event loop runs
without the self-pipe WASI cannot make; ``PLAIN_MAIN`` brings the same hook to a plain
start-up path that has no bootstrap.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

from .. import _mailbox

__all__ = [
    "ASYNCIO_HOOK",
    "BOOTSTRAP",
    "BOOTSTRAP_VERSION",
    "MAILBOX_MAGIC",
    "MAILBOX_MARK",
    "PLAIN_MAIN",
    "PRELOAD",
    "REQUEST_BOX",
    "TURN_ENTRY",
    "bootstrap",
    "rng_key",
]

BOOTSTRAP_VERSION: Final = "11"
REQUEST_BOX: Final = _mailbox.REQUEST_BOX
MAILBOX_MAGIC: Final = _mailbox.MAGIC
MAILBOX_MARK: Final = _mailbox.MARK

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

#: Makes asyncio work in the guest. Its selector event loop makes a self-pipe with
#: ``socket.socketpair()`` (WASI: ``OSError: [Errno 58] Not supported``) to be woken from other
#: threads and signal handlers; WASI has neither, so the pipe is never needed. A meta path
#: finder wraps the loader of ``asyncio.selector_events`` and, once that module has run, turns
#: the self-pipe methods into no-ops. Lazy: a run that never imports asyncio pays nothing.
#: Sleeps end in ``poll_oneoff``, which the host cuts at the run's deadline; a loop with nothing
#: to wait for waits a day at a time (WASI's poll cannot wait with no descriptor and no timeout).
ASYNCIO_HOOK: Final = """
def _execr_asyncio_hook():
    import sys

    def patch(module):
        loop = module.BaseSelectorEventLoop

        def _make_self_pipe(self):
            self._ssock = self._csock = None
            select = self._selector.select

            def select_bounded(timeout=None):  # poll() with no descriptor and no timeout: ENOTSUP
                return select(86400.0 if timeout is None or timeout < 0 else timeout)

            self._selector.select = select_bounded

        def _no_self_pipe(self):
            pass

        loop._make_self_pipe = _make_self_pipe
        loop._close_self_pipe = loop._write_to_self = _no_self_pipe

    class Loader:
        def __init__(self, inner):
            self.inner = inner

        def create_module(self, spec):
            create = getattr(self.inner, "create_module", None)
            return None if create is None else create(spec)

        def exec_module(self, module):
            module.__spec__.loader = module.__loader__ = self.inner  # the module keeps its own loader
            self.inner.exec_module(module)
            patch(module)

    class ExecrWasiAsyncio:
        "execr: asyncio's selector event loop without its self-pipe (WASI has no sockets or threads)."

        @staticmethod
        def find_spec(name, path=None, target=None):
            if name != "asyncio.selector_events":
                return None
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                spec = None if finder is ExecrWasiAsyncio or find is None else find(name, path, target)
                if spec is not None:
                    if hasattr(spec.loader, "exec_module"):
                        spec.loader = Loader(spec.loader)
                    return spec
            return None

    ExecrWasiAsyncio.__module__, ExecrWasiAsyncio.__qualname__ = "execr", "ExecrWasiAsyncio"
    sys.meta_path.insert(0, ExecrWasiAsyncio)
    if "asyncio.selector_events" in sys.modules:
        patch(sys.modules["asyncio.selector_events"])


_execr_asyncio_hook()
del _execr_asyncio_hook
"""

#: A ``python -c`` program that runs ``argv[1]`` as ``python -B SCRIPT ARGS`` would (argv, orig_argv,
#: ``sys.path[0]``, ``__main__``'s attributes, tracebacks without its own frame, exit status) with
#: ``ASYNCIO_HOOK`` installed first: the default runtime's plain path, which has no bootstrap, needs it
#: for asyncio (``python -B -c PLAIN_MAIN SCRIPT ARGS``).
PLAIN_MAIN: Final = (
    ASYNCIO_HOOK
    + """

def _execr_main():
    import sys
    from importlib.machinery import SourceFileLoader

    scope = sys.modules["__main__"].__dict__
    del scope["_execr_main"]
    del sys.argv[0]  # "-c"
    script = sys.argv[0]
    sys.orig_argv[:] = ["python", "-B", *sys.argv]
    sys.path[0] = script.rpartition("/")[0] or "/"
    scope.update(__file__=script, __cached__=None, __loader__=SourceFileLoader("__main__", script), __annotations__={})
    try:
        with open("/__execr__/inputs.bin", "rb") as f:
            import marshal

            scope.update(marshal.loads(f.read()))
    except FileNotFoundError:
        pass
    try:
        with open(script, "rb") as f:
            code = compile(f.read(), script, "exec", dont_inherit=True)
        exec(code, scope)
    except SystemExit:
        raise
    except BaseException as exc:
        tb = exc.__traceback__
        tb = tb.tb_next if tb is not None else None  # without this frame
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        raise SystemExit(130 if isinstance(exc, KeyboardInterrupt) else 1) from None


_execr_main()
"""
)

_TEMPLATE: Final = """
import sys, os, gc
%(asyncio)s
for _name in %(preload)r:
    __import__(_name)
del _name
sys.dont_write_bytecode = True


def _make_entry():
    MAILBOX_MARK = %(mark)r
    import ast, atexit, builtins, linecache, marshal, random, re, struct, sys, types
    from importlib.machinery import SourceFileLoader

    box = bytearray(MAILBOX_MARK + bytes(%(box)d))
    pack_into, unpack_from, loads = struct.pack_into, struct.unpack_from, marshal.loads
    # more than one line or statement; or what the tokenizer may warn about (an escape, a digit
    # before a letter: a failed eval-mode compile must not have warned, the general path warns)
    not_one = re.compile(rb"[\\r\\n;\\\\]|[0-9][A-Za-z_]").search
    stdlib = tuple(p for p in sys.path if p.startswith("/usr/local/lib"))
    for key in [k for k in sys.path_importer_cache if not k.startswith(stdlib)]:
        del sys.path_importer_cache[key]  # finders for the boot's own directories
    boot_finders = frozenset(sys.path_importer_cache)
    applied = [None, None]  # the environment the last request set, and os.environ's data after

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

    def run(source, script, scope, want_value):
        # with want_value, as a REPL would: the repr of a last expression (or None)
        if not want_value:
            exec(compile(source, script, "exec", dont_inherit=True), scope)
            return None
        if not_one(source.rstrip()) is None:  # one line, maybe an expression (most REPL calls): one compile
            try:
                code = compile(source, script, "eval", dont_inherit=True)
            except SyntaxError:  # a statement: the general path below reports any real error
                code = None
            if code is not None:
                result = eval(code, scope)
                return None if result is None else repr(result)
        tree = compile(source, script, "exec", ast.PyCF_ONLY_AST, dont_inherit=True)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, script, "exec", dont_inherit=True), scope)
        if last is None:
            return None
        result = eval(compile(ast.Expression(last.value), script, "eval", dont_inherit=True), scope)
        return None if result is None else repr(result)

    def __execr_entry__():
        status = 1
        req = None
        value = None
        try:
            size = unpack_from("<I", box, %(size_at)d)[0]
            pack_into("<IiI", box, %(magic_at)d, 0, 0, %(no_value)d)
            if size == %(in_file)d:
                with open("/__execr__/request.bin", "rb") as f:
                    req = loads(f.read())
            else:
                req = loads(bytes(box[%(payload_at)d : %(payload_at)d + size]))
            script, source = req["script"], req["code"]
            sys.argv[:] = [script, *req["args"]]
            sys.orig_argv[:] = ["python", script, *req["args"]]
            env = req["env"]
            if env != applied[0] or os.environ._data != applied[1]:  # a session's next call: mostly the same
                if os.environ:
                    os.environ.clear()
                os.environ.update(env)
                applied[:] = [env, dict(os.environ._data)]
            path = [script.rpartition("/")[0] or "/", *req["path"], *stdlib]
            if sys.path != path:
                sys.path[:] = path
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
            if req.get("inputs"):
                main.__dict__.update(loads(req["inputs"]))
            linecache.clearcache()
            text = source.decode("utf-8", "replace")
            linecache.cache[script] = (len(text), None, text.splitlines(True), script)
            value = run(source, script, main.__dict__, req.get("value", False))
            status = 0
        except SystemExit as exc:
            status = exit_status(exc)
        except BaseException as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code in own:  # drop the entry's own frames
                tb = tb.tb_next
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
        if value is not None:
            data = value.encode("utf-8", "backslashreplace")[: %(value_max)d]
            box[%(payload_at)d : %(payload_at)d + len(data)] = data
            pack_into("<I", box, %(value_at)d, len(data))
        pack_into("<Ii", box, %(magic_at)d, %(magic)d, status)

    own = (__execr_entry__.__code__, run.__code__)
    return __execr_entry__, box


_entry, _mailbox = _make_entry()
exec(compile("def _f(x):\\n    return [i * 2 for i in range(x)]\\n_f(3)\\n", "<warm>", "exec"), {})
gc.collect()
gc.freeze()
%(publish)s"""

#: The default runtime's ending: set ``random`` to a known key (``rng_key``; the host writes fresh
#: OS entropy over it per run), print the addresses the host needs, list every live object for the
#: host to make immortal (``IMMORTAL``) and abort (captured at the trap).
_ABORT: Final = (
    "import random\n"
    "random.setstate((3, (*[(%(mult)d * (_i + 1)) & 0xFFFFFFFF for _i in range(624)], 624), None))\n"
    'sys.stdout.write("EXECR-BOOT %%d %%d %%d %%d\\n" %% (id(_entry), id(()), id(type(_entry)), id(_mailbox)))\n'
    "sys.stdout.flush()\n"
    "%(immortal)s"
    "os.abort()\n"
)
#: Objects alive at the snapshot would be written on every run just to count references to them
#: (a page copied per page touched: ~120 pages for ``x + 1`` in a session). CPython 3.12+ skips
#: that for immortal objects (on 32 bits, a reference count of exactly ``IMMORTAL``), so the
#: bootstrap lists every object reachable from the collector's (all frozen by then) and the host
#: writes that count into each in the captured image (``_snapshot._immortalize``). The walk runs
#: last, with the collector off, so nothing listed can be freed before the image is taken; its
#: own objects are locals, freed unlisted. The list's address, length and ``id(None)`` go in the
#: mailbox's payload (overwritten by the first request).
IMMORTAL: Final = 0x3FFFFFFF
_IMMORTALIZE: Final = (
    "if sys.version_info[:2] in ((3, 12), (3, 13)) and sys.maxsize == 2**31 - 1 \\\n"
    "        and sys.getrefcount(None) == %(immortal)d:\n"
    "    import array, struct\n"
    "    def _execr_objects():\n"
    "        todo, seen, out = gc.get_objects(), set(), array.array('I')\n"
    "        while todo:\n"
    "            o = todo.pop()\n"
    "            if id(o) not in seen:\n"
    "                seen.add(id(o))\n"
    "                out.append(id(o))\n"
    "                todo.extend(gc.get_referents(o))\n"
    "        return out\n"
    "    gc.disable()\n"
    "    _execr_ids = _execr_objects()\n"
    "    struct.pack_into('<III', _mailbox, %(payload_at)d, _execr_ids.buffer_info()[0], len(_execr_ids), id(None))\n"
    "    gc.enable()\n"
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
    'struct.pack_into("<I", _mailbox, %(size_at)d, %(in_file)d)\n'
    "_entry()\n"
    'raise SystemExit(struct.unpack_from("<i", _mailbox, %(status_at)d)[0])\n'
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
    layout = {
        "magic": _mailbox.MAGIC,
        "magic_at": _mailbox.MAGIC_AT,
        "status_at": _mailbox.STATUS_AT,
        "size_at": _mailbox.SIZE_AT,
        "payload_at": _mailbox.PAYLOAD_AT,
        "in_file": _mailbox.IN_FILE,
        "value_at": _mailbox.VALUE_AT,
        "value_max": _mailbox.VALUE_MAX,
        "no_value": _mailbox.NO_VALUE,
    }
    return _TEMPLATE % {
        **layout,
        "preload": [*preload, *PRELOAD],
        "mark": _mailbox.MARK,
        "box": _mailbox.REQUEST_BOX,
        "reseed": _RESEED,
        "publish": (_CALL % layout)
        if call
        else (_PUBLISH if reactor else _ABORT)
        % {"mult": _MULT, "xor": _XOR, "immortal": _IMMORTALIZE % {"immortal": IMMORTAL, **layout}},
        "asyncio": ASYNCIO_HOOK,
    }


#: The default runtime's bootstrap (run as ``python -c BOOTSTRAP``).
BOOTSTRAP: Final = bootstrap()
