"""The sandbox: the one seam to wasmtime (the only package that imports it).

It owns the process-wide Engine (fuel metering and epoch interruption on) and Linker,
compiles and caches modules, runs one guest per Store, enforces the limits (fuel, memory,
wall clock), serves the guest's WASI calls (clocks, sleeps, exit here; files in
``_guestfs``), recycles instances, and turns every trap, exit and wasmtime error into host
evidence for ``_verdict``.

- ``_host``: ``Host`` (Engine, Linker, compile, run, boot), ``Launch``, ``RawRun``;
- ``_run``: one run's state and how it is stopped (epoch callback, halting, Ctrl-C);
- ``_wasi``: the host functions that replace WASI's, and ``host.call`` (the guest's door to the
  run's tools, ``Launch.tools``: see ``execr._tools``);
- ``_recycle`` and ``_pagemap``: instances kept between runs and put back to their image;
- ``_live``: a session's instance, kept across runs, saved, rolled back and restored;
- ``_threads``: the epoch ticker and the store reaper; ``_signals``: trap handlers;
- ``_overlay``: memory images (a boot's memory mapped copy-on-write over a compiled module's
  instance: snapshots without a compile); ``_stack``: deep-stack threads for Engines whose
  ``max_wasm_stack`` is more than a host thread is sure to have;
- ``_consts``: versions, engine configuration, budgets.

Snapshot runs recycle instances: after a run, the instance's memory is put back to its
image (``_pagemap``: only the pages the run wrote are touched), its stack pointer is reset
and its WASI context replaced, so the next run starts exactly as a fresh instance would.
An instance whose memory grew, or any failure to reset, retires it instead.
``EXECR_RECYCLE=0`` turns recycling off.

The wall clock is enforced twice: an epoch ticker thread wakes a per-store callback that
stops wasm code, and execr's own ``poll_oneoff`` (sleep, select) waits at most until the
deadline, so blocking calls are cut short too. Host functions never raise into wasmtime:
they record why the run must stop and set the epoch deadline to now.
"""

from ._boot import BootImage
from ._consts import ENGINE_CONFIG, KEEP_RESIDENT, MAX_IDLE, UNLIMITED_FUEL, WASMTIME_VERSION
from ._host import EntryPoint, Host, Launch, RawRun, host
from ._live import Image, Live, State
from ._overlay import MemoryImage, overlay
from ._recycle import Compiled, recycling

__all__ = [
    "ENGINE_CONFIG",
    "KEEP_RESIDENT",
    "MAX_IDLE",
    "UNLIMITED_FUEL",
    "WASMTIME_VERSION",
    "BootImage",
    "Compiled",
    "EntryPoint",
    "Host",
    "Image",
    "Launch",
    "Live",
    "MemoryImage",
    "RawRun",
    "State",
    "host",
    "overlay",
    "recycling",
]
