"""The image: what a guest boots from.

- ``_binary``: the CPython binaries, verified by SHA-256 before use;
- ``_flavors``: the runtimes execr offers (default, scientific) and how each starts;
- ``_cache``: the on-disk cache of compiled modules and snapshots (atomic, checksummed, locked);
- ``_wasm``: the WebAssembly rewriter (exports, the refused-grow counter, snapshot rebuild);
- ``_guest``: the Python that runs inside the guest to boot the snapshot and enter each run;
- ``_snapshot``: booting the bootstrap once and rebuilding the module around its memory;
- ``_preload``: preload sets, snapshots picked by the imports of a run's code (memory images, no compile);
- ``_imports``: the modules a run's code imports, and what each known name brings into a set;
- ``_set_store``: the preload sets on disk (named, verified, loaded, evicted least recently used);
- ``_datafiles``: package data extracted read-only from the verified zip (matplotlib's), the scratch directory;
- ``_smoke``: one real task per advertised package, and which passed.
"""
