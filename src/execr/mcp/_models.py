"""Models: the typed input and output of each tool (pydantic; their JSON schemas are what ``tools/list`` shows)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from .._image._flavors import NAMES

__all__ = [
    "Base64File",
    "FileInfo",
    "LimitPolicy",
    "ListRuntimesInput",
    "ListRuntimesOutput",
    "OutcomeName",
    "RunPythonInput",
    "RunPythonOutput",
    "RuntimeEntry",
]

#: ``execr.Outcome``'s values (a test keeps the two in step).
OutcomeName = Literal[
    "completed", "failed", "timed_out", "out_of_fuel", "memory_limit", "file_limit", "crashed", "cancelled"
]

_NO_EXTRA = ConfigDict(extra="forbid")


class Base64File(BaseModel):
    """A file's bytes, as base64."""

    model_config = ConfigDict(extra="forbid", title="Base64File")

    base64: StrictStr = Field(description="the file's bytes, base64-encoded")


class RunPythonInput(BaseModel):
    """run_python's arguments."""

    model_config = ConfigDict(extra="forbid", title="run_python arguments")

    code: StrictStr = Field(description="The Python program. It runs as main.py (`python main.py`) in a fresh sandbox.")
    stdin: StrictStr = Field(default="", description="Text on the program's standard input.")
    files: dict[StrictStr, StrictStr | Base64File] = Field(
        default_factory=dict,
        description="Files written into the working directory (/) before the run: path -> text, "
        'or {"base64": "..."} for bytes. Example: {"data.csv": "a,b\\n1,2\\n"}.',
    )
    timeout: Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)] | None = Field(
        default=None,
        description="Wall-clock seconds the run may take. Leave it out for the server's default "
        "(list_runtimes shows the default and the most this server allows).",
    )
    runtime: StrictStr = Field(
        default="default",
        description="Which CPython: 'default' (the standard library) or another listed by list_runtimes "
        "(e.g. 'scientific': numpy, pandas, scipy, matplotlib...).",
        json_schema_extra={"enum": list(NAMES)},
    )


class FileInfo(BaseModel):
    """A file the run created or changed."""

    model_config = _NO_EXTRA

    path: str = Field(description="absolute path in the sandbox")
    size: int = Field(description="bytes")
    mime_type: str
    truncated: bool = Field(description="only the head of the file came back (the server's per-file cap)")
    returned_as: Literal["image", "resource"] | None = Field(
        description="how its content is in this result: an image, an embedded resource, or not at all "
        "(over the size cap, or a cut image)"
    )


class RunPythonOutput(BaseModel):
    """What one run produced and why it ended."""

    model_config = _NO_EXTRA

    outcome: OutcomeName = Field(
        description="completed (exit 0), failed (an exception or a non-zero exit), timed_out, "
        "out_of_fuel, memory_limit, file_limit, crashed or cancelled"
    )
    exit_code: int | None = Field(description="the program's exit code; null when a limit or a trap stopped it")
    stdout: str
    stderr: str
    stdout_dropped: int = Field(description="bytes cut from the middle of stdout (over the output cap)")
    stderr_dropped: int = Field(description="bytes cut from the middle of stderr (over the output cap)")
    duration: float = Field(description="seconds the run took")
    files: list[FileInfo] = Field(description="files the run created or changed")
    runtime: str = Field(description="the runtime it ran on")
    hint: str | None = Field(description="when it did not complete: why, and what to try next")
    error: str | None = Field(description="execr's detail on a limit or a trap")


class ListRuntimesInput(BaseModel):
    """list_runtimes takes no arguments."""

    model_config = ConfigDict(extra="forbid", title="list_runtimes arguments")


class RuntimeEntry(BaseModel):
    """One runtime: its Python, what it can import, and whether this server has it."""

    model_config = _NO_EXTRA

    name: str = Field(description="pass it as run_python's runtime")
    python_version: str
    description: str
    available: bool = Field(description="installed on this server")
    can_import: str = Field(description="what code can import on it")
    packages: dict[str, str] = Field(description="importable packages beyond the standard library -> version")
    error: str | None = Field(description="why it is not available")


class LimitPolicy(BaseModel):
    """The server's limits: what a run gets by default, and the most it may ask for (null: no cap)."""

    model_config = _NO_EXTRA

    defaults: dict[str, StrictFloat | StrictInt | None]
    caps: dict[str, StrictFloat | StrictInt | None]


class ListRuntimesOutput(BaseModel):
    """The runtimes run_python can use, and the limit policy."""

    model_config = _NO_EXTRA

    runtimes: list[RuntimeEntry]
    default: str = Field(description="the runtime used when run_python's runtime is left out")
    limits: LimitPolicy
