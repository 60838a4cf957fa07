"""Run tools: ``run_python`` (one program in a fresh sandbox) and ``list_runtimes``.

``run_python``'s arguments pass through ``execr serve``'s own request policy
(``server._policy.build_request``): the same validation, the same defaults, and a limit
over the operator's cap is refused with the same message.
"""

from __future__ import annotations

from typing import Any

from mcp import types

from .._image._flavors import NAMES
from .._results import Outcome
from ..server._models import ExecuteRequest
from ..server._policy import PolicyError, build_request, policy_dict
from ._hints import hint, missing_module, runtimes_with
from ._models import ListRuntimesInput, ListRuntimesOutput, RunPythonInput, RunPythonOutput
from ._render import MAX_ATTACHED_BYTES, MAX_ATTACHED_FILES, render
from ._toolbox import Refused, Services, ToolSpec

__all__ = ["LIST_RUNTIMES", "RUN_PYTHON", "TOOLS"]

_MIB = 1024 * 1024


async def run_python(services: Services, args: RunPythonInput) -> types.CallToolResult:
    """Run ``args.code`` once, in a fresh sandbox, within the server's caps."""
    cfg = services.config
    files = {path: value if isinstance(value, str) else {"base64": value.base64} for path, value in args.files.items()}
    body = ExecuteRequest.model_validate(
        {
            "code": args.code,
            "stdin": args.stdin,
            "files": files,
            "limits": {} if args.timeout is None else {"timeout": args.timeout},
            "runtime": args.runtime,
        }
    )
    try:
        request = build_request(body, cfg.default_limits, cfg.max_limits)
    except PolicyError as e:
        raise Refused(f"{e}; ask for at most the cap (list_runtimes shows this server's limits)") from e
    result = await services.backend.run(request)
    elsewhere: list[str] = []
    module = missing_module(result.stderr) if result.outcome is Outcome.FAILED else None
    if module is not None:
        described = await services.describe()
        packages = {name: list(info.get("packages") or ()) for name, info in described.items() if info.get("available")}
        elsewhere = [name for name in runtimes_with(module, packages) if name != request.runtime]
    why = hint(result, request.runtime, request.limits, cfg.max_limits, elsewhere)
    return render(result, request.runtime, why)


def _entry(name: str, info: dict[str, Any]) -> dict[str, Any]:
    """A runtime's public description (no host paths: those are the operator's)."""
    return {
        "name": name,
        "python_version": info.get("python_version", "?"),
        "description": info.get("description", ""),
        "available": bool(info.get("available")),
        "can_import": info.get("can_import", "the standard library"),
        "packages": dict(info.get("packages") or {}),
        "error": None if info.get("available") else "not installed on this server",
    }


async def list_runtimes(services: Services, args: ListRuntimesInput) -> types.CallToolResult:
    """The runtimes, what each can import, and the limit policy."""
    described = await services.describe()
    cfg = services.config
    output = ListRuntimesOutput(
        runtimes=[_entry(name, described[name]) for name in NAMES if name in described],  # type: ignore[misc]
        default="default",
        limits=policy_dict(cfg.default_limits, cfg.max_limits),  # type: ignore[arg-type]
    )
    structured = output.model_dump(mode="json")
    lines = [
        f"{e.name}: Python {e.python_version}, {e.can_import}"
        + (f" ({len(e.packages)} packages)" if e.packages else "")
        + ("" if e.available else " [not installed on this server]")
        for e in output.runtimes
    ]
    text = "\n".join(lines) + "\n\n" + output.model_dump_json()
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structuredContent=structured, isError=False
    )


RUN_PYTHON = ToolSpec(
    name="run_python",
    title="Run Python",
    description=(
        "Run a Python program in a fresh, isolated WebAssembly sandbox (CPython compiled to WASI): "
        "no network, no host files, nothing kept between calls. Print what you want to see. "
        "Pass input files in `files`; files the program writes in its working directory come back "
        f"(PNG, JPEG, GIF and WebP images as images, other files as resources; at most {MAX_ATTACHED_FILES} "
        f"files and {MAX_ATTACHED_BYTES // _MIB} MiB in all). "
        "The default runtime has the standard library only; call list_runtimes for others "
        "(e.g. runtime='scientific' for numpy, pandas, matplotlib). A traceback or a limit hit comes "
        "back as an error result whose first line names the outcome and what to try next."
    ),
    input=RunPythonInput,
    output=RunPythonOutput,
    annotations=types.ToolAnnotations(
        title="Run Python",
        readOnlyHint=True,  # a fresh sandbox per call: nothing outside it changes
        destructiveHint=False,
        idempotentHint=True,
        openWorldHint=False,  # no network
    ),
    handler=run_python,
)

LIST_RUNTIMES = ToolSpec(
    name="list_runtimes",
    title="List Python runtimes",
    description=(
        "The Python runtimes run_python can use: each one's Python version, whether this server has it, "
        "and the packages it can import; plus the server's limits (default and maximum timeout, memory, output)."
    ),
    input=ListRuntimesInput,
    output=ListRuntimesOutput,
    annotations=types.ToolAnnotations(
        title="List Python runtimes",
        readOnlyHint=True,
        destructiveHint=False,
        idempotentHint=True,
        openWorldHint=False,
    ),
    handler=list_runtimes,
)

#: This module's tools, in the order ``tools/list`` shows them.
TOOLS = (RUN_PYTHON, LIST_RUNTIMES)
