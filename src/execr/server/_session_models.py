"""Session wire models: the JSON the ``/v1/sessions`` routes take and answer (pydantic, for validation and OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from .._limits import UNSET
from ._models import FORBIDDEN_KEYS, Base64File, LimitsModel

__all__ = ["CallLimits", "CheckpointOut", "SessionCreate", "SessionInfo", "SessionRestore", "SessionRun"]

_Seconds = StrictFloat | StrictInt | None


class _Budgets(BaseModel):
    """A session's budgets; one left out takes the server's default (``null``: none, if the server allows it)."""

    idle_timeout: _Seconds = Field(
        default=None, description="seconds without a call before the session closes (at most the server's)"
    )
    lifetime: _Seconds = Field(default=None, description="seconds the session may live (at most the server's)")
    max_calls: StrictInt | None = Field(default=None, description="calls the session may take (default 10000)")

    def budgets(self) -> dict[str, Any]:
        """Each budget, ``UNSET`` where the client left it out (so ``null`` and "left out" differ)."""
        return {name: getattr(self, name) if name in self.model_fields_set else UNSET for name in _Budgets.model_fields}


def _no_host_paths(data: Any) -> Any:
    if isinstance(data, dict):
        bad = [k for k in FORBIDDEN_KEYS if k in data]
        if bad:
            raise ValueError(f"{', '.join(bad)} cannot be set over HTTP: host paths are configured by the operator")
    return data


class SessionCreate(_Budgets):
    """A new session: a live interpreter whose state carries from one call to the next."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"runtime": "default", "limits": {"timeout": 5}}]}
    )

    runtime: StrictStr = Field(default="default", description="which CPython: 'default' or 'scientific'")
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict, description="the guest's whole environment")
    files: dict[StrictStr, StrictStr | Base64File] = Field(
        default_factory=dict, description="guest path -> text, or {'base64': ...}; written when the session starts"
    )
    limits: LimitsModel = Field(
        default_factory=LimitsModel,
        description="each call's default limits; memory_limit and the file limits hold for the whole session",
    )

    @model_validator(mode="before")
    @classmethod
    def _check_paths(cls, data: Any) -> Any:
        return _no_host_paths(data)


class CallLimits(BaseModel):
    """One call's limits; one left out takes the session's."""

    model_config = ConfigDict(extra="forbid")

    timeout: StrictFloat | StrictInt | None = Field(default=None, description="wall-clock seconds")
    fuel: StrictInt | None = Field(default=None, description="wasm instruction budget (a session created with fuel)")
    max_stdout: StrictInt | None = Field(default=None, description="bytes of stdout kept")
    max_stderr: StrictInt | None = Field(default=None, description="bytes of stderr kept")
    max_returned_file_bytes: StrictInt | None = Field(default=None, description="bytes of each file returned")

    def given(self) -> dict[str, Any]:
        """Only the limits the client sent."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class SessionRun(BaseModel):
    """One call in a session: ``code`` runs in the session's ``__main__``; ``value`` is its last expression's repr."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "x = 40"}, {"code": "x + 2", "limits": {"timeout": 2}}]},
    )

    code: StrictStr
    stdin: StrictStr = ""
    stdin_base64: StrictStr | None = Field(default=None, description="stdin as base64 (instead of stdin)")
    inputs: dict[StrictStr, Any] = Field(
        default_factory=dict, description="JSON values bound as globals of __main__ before the code runs"
    )
    limits: CallLimits = Field(default_factory=CallLimits)
    atomic: StrictBool = Field(
        default=False, description="roll the session back if the code raises (a call the host stops always is)"
    )


class SessionRestore(_Budgets):
    """A new session from a checkpoint (what ``POST /v1/sessions/{id}/checkpoint`` gave), here or on another server."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: StrictStr = Field(description="the checkpoint's bytes, base64")
    env: dict[StrictStr, StrictStr] = Field(default_factory=dict, description="the guest's whole environment")
    limits: LimitsModel = Field(default_factory=LimitsModel, description="each call's default limits")

    @model_validator(mode="before")
    @classmethod
    def _check_paths(cls, data: Any) -> Any:
        return _no_host_paths(data)


class SessionInfo(BaseModel):
    """A session: its id (for the other routes), runtime, counters, budgets and limits."""

    id: str
    runtime: str
    execution_count: int = Field(description="calls that took effect")
    calls: int = Field(description="calls made, rolled back or not (what max_calls counts)")
    idle_timeout: float | None
    lifetime: float | None
    max_calls: int | None
    limits: dict[str, float | int | None]


class CheckpointOut(BaseModel):
    """A session's state, to restore with ``POST /v1/sessions/restore`` (on this server or another one)."""

    checkpoint: str = Field(description="the checkpoint's bytes, base64 (versioned, with a SHA-256 inside)")
    size: int = Field(description="bytes of the checkpoint (before base64)")
    sha256: str = Field(description="SHA-256 of the checkpoint's bytes, hex")
    runtime: str
    execution_count: int
