"""Session models: the typed input and output of the ``session_*`` tools (``tools/list`` shows their schemas)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from .._image._flavors import NAMES
from ._models import Base64File, RunPythonOutput

__all__ = [
    "SessionCheckpointInput",
    "SessionCheckpointOutput",
    "SessionCloseInput",
    "SessionCloseOutput",
    "SessionCreateInput",
    "SessionForkInput",
    "SessionOutput",
    "SessionRestoreInput",
    "SessionRunInput",
    "SessionRunOutput",
]

_Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
_SESSION_ID = Field(description="the session's id, from session_create, session_fork or session_restore")


def _title(name: str) -> ConfigDict:
    return ConfigDict(extra="forbid", title=f"{name} arguments")


class SessionCreateInput(BaseModel):
    """session_create's arguments."""

    model_config = _title("session_create")

    runtime: StrictStr = Field(
        default="default",
        description="Which CPython: 'default' (the standard library) or another listed by list_runtimes "
        "(e.g. 'scientific': numpy, pandas, scipy, matplotlib...).",
        json_schema_extra={"enum": list(NAMES)},
    )
    files: dict[StrictStr, StrictStr | Base64File] = Field(
        default_factory=dict,
        description='Files written into the working directory (/) when the session starts: path -> text, or {"base64": '
        '"..."} for bytes.',
    )
    timeout: _Seconds | None = Field(
        default=None, description="Each call's wall-clock seconds, unless session_run gives its own (server default)."
    )
    idle_timeout: _Seconds | None = Field(
        default=None,
        description="Seconds without a call after which the session is closed (default and most: the server's).",
    )


class SessionOutput(BaseModel):
    """A live session: pass ``session_id`` to the other session tools."""

    model_config = ConfigDict(extra="forbid")

    session_id: str
    runtime: str
    execution_count: int = Field(description="calls that took effect so far")
    idle_timeout: float | None = Field(description="seconds without a call before it is closed")
    lifetime: float | None = Field(description="seconds it may live in all")
    max_calls: int | None = Field(description="calls it may take in all")


class SessionRunInput(BaseModel):
    """session_run's arguments."""

    model_config = _title("session_run")

    session_id: StrictStr = _SESSION_ID
    code: StrictStr = Field(
        description="Python to run in the session, like a notebook cell: names defined by earlier calls are "
        "there, and the value of a last expression comes back as `value`."
    )
    stdin: StrictStr = Field(default="", description="Text on standard input for this call.")
    inputs: dict[StrictStr, Any] = Field(
        default_factory=dict, description="JSON values bound as global variables before the code runs."
    )
    timeout: _Seconds | None = Field(default=None, description="Wall-clock seconds for this call (else the session's).")
    atomic: StrictBool = Field(
        default=False,
        description="Also undo this call if it raises (a call stopped by a limit or a crash is always undone).",
    )


class SessionRunOutput(RunPythonOutput):
    """What one session call produced, why it ended, and whether the session kept its effects."""

    session_id: str
    value: str | None = Field(description="repr of the code's last expression (null if none, or undone)")
    execution_count: int | None = Field(description="the session's count of calls that took effect (null if undone)")
    rolled_back: bool = Field(description="the session is exactly as it was before this call")


class SessionCheckpointInput(BaseModel):
    """session_checkpoint's arguments."""

    model_config = _title("session_checkpoint")

    session_id: StrictStr = _SESSION_ID


class SessionCheckpointOutput(BaseModel):
    """A checkpoint the server keeps: pass ``checkpoint_id`` to session_restore."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_id: str
    session_id: str = Field(description="the session it was taken from (which goes on unchanged)")
    execution_count: int
    size: int = Field(description="bytes of the checkpoint")
    sha256: str = Field(description="SHA-256 of the checkpoint's bytes")
    expires_in: float = Field(description="seconds the server keeps it (at most; older ones go first)")


class SessionForkInput(BaseModel):
    """session_fork's arguments."""

    model_config = _title("session_fork")

    session_id: StrictStr = _SESSION_ID


class SessionRestoreInput(BaseModel):
    """session_restore's arguments."""

    model_config = _title("session_restore")

    checkpoint_id: StrictStr = Field(description="a checkpoint id from session_checkpoint")
    timeout: _Seconds | None = Field(default=None, description="Each call's wall-clock seconds (server default).")
    idle_timeout: _Seconds | None = Field(
        default=None, description="Seconds without a call after which the new session is closed (server default)."
    )


class SessionCloseInput(BaseModel):
    """session_close's arguments."""

    model_config = _title("session_close")

    session_id: StrictStr = _SESSION_ID


class SessionCloseOutput(BaseModel):
    """The session is gone."""

    model_config = ConfigDict(extra="forbid")

    session_id: str
    closed: bool
