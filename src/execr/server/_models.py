"""Wire models: the JSON the HTTP API accepts (pydantic, for validation and OpenAPI)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

from .._request import HOST_PATH_FIELDS

__all__ = ["FORBIDDEN_KEYS", "Base64File", "BatchRequest", "ExecuteRequest", "LimitsModel"]

FORBIDDEN_KEYS = HOST_PATH_FIELDS  # host paths are the operator's: never taken from a client


class LimitsModel(BaseModel):
    """Per-run limits; a limit left out takes the server default, ``null`` asks for none."""

    model_config = ConfigDict(extra="forbid")

    timeout: StrictFloat | StrictInt | None = Field(default=None, description="wall-clock seconds")
    memory_limit: StrictInt | None = Field(default=None, description="bytes of guest linear memory")
    fuel: StrictInt | None = Field(default=None, description="wasm instruction budget")
    max_stdout: StrictInt | None = Field(default=None, description="bytes of stdout kept")
    max_stderr: StrictInt | None = Field(default=None, description="bytes of stderr kept")
    max_file_bytes: StrictInt | None = Field(default=None, description="bytes the guest may write")
    max_files: StrictInt | None = Field(default=None, description="files the guest may create")
    max_returned_file_bytes: StrictInt | None = Field(default=None, description="bytes of each file returned")
    max_open_files: StrictInt | None = Field(default=None, description="descriptors the guest may hold open at once")

    def given(self) -> dict[str, Any]:
        """Only the limits the client sent (so ``null`` and "left out" differ)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class Base64File(BaseModel):
    """A file given as base64 bytes."""

    model_config = ConfigDict(extra="forbid")

    base64: StrictStr


class ExecuteRequest(BaseModel):
    """One run: ``python main.py ARGS`` with ``code`` as main.py."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"code": "print('hello')", "limits": {"timeout": 5}}]},
    )

    code: StrictStr
    stdin: StrictStr = ""
    stdin_base64: StrictStr | None = Field(default=None, description="stdin as base64 (instead of stdin)")
    args: list[StrictStr] = Field(default_factory=list)
    env: dict[str, StrictStr] = Field(default_factory=dict, description="the guest's whole environment")
    files: dict[str, StrictStr | Base64File] = Field(
        default_factory=dict, description="guest path -> text, or {'base64': ...}; written before the run"
    )
    limits: LimitsModel = Field(default_factory=LimitsModel)
    runtime: StrictStr = Field(default="default", description="which CPython: 'default', 'python3.12' or 'scientific'")
    inputs: dict[str, Any] | None = Field(default=None, description="guest globals set first (JSON values)")
    preload: list[StrictStr] | None = Field(
        default=None, description="scientific: run on a snapshot with these modules imported (built if new)"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_host_paths(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = [k for k in FORBIDDEN_KEYS if k in data]
            if bad:
                raise ValueError(f"{', '.join(bad)} cannot be set over HTTP: host paths are configured by the operator")
        return data


class BatchRequest(BaseModel):
    """Several runs; each item is validated on its own (an invalid item gets an error result)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"requests": [{"code": "print(1)"}, {"code": "print(2)"}]}]},
    )

    requests: list[dict[str, Any]] = Field(description="items shaped like POST /v1/execute bodies")
