"""Rendering: one ``Result`` as an MCP tool result (structured output, a hint, images and files).

The structured content is ``RunPythonOutput``; the first text block is its JSON (what the
spec asks for clients that read text only), preceded by a one-line ``outcome: hint`` when
the run did not complete (then the result has ``isError``). Files the run wrote follow:
raster images (PNG, JPEG, GIF, WebP) as image content, everything else (SVG included:
model APIs take raster images only) as embedded resources, text or base64. At most
``MAX_ATTACHED_FILES`` files and ``MAX_ATTACHED_BYTES`` of content in all come back; a cut
image (only its head fits the server's per-file cap) is listed, not sent.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import urllib.parse
from typing import Any

from mcp import types

from .._results import Outcome, OutputFile, Result
from ._models import FileInfo, RunPythonOutput

__all__ = ["MAX_ATTACHED_BYTES", "MAX_ATTACHED_FILES", "mime_type", "render", "resource_uri"]

MAX_ATTACHED_BYTES = 8 * 1024 * 1024
MAX_ATTACHED_FILES = 16

_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_TEXT_TYPES = {".csv": "text/csv", ".md": "text/markdown", ".json": "application/json", ".svg": "image/svg+xml"}


def _raster(content: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image, from its first bytes."""
    for magic, mime in _IMAGE_MAGIC:
        if content.startswith(magic):
            return mime
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def mime_type(file: OutputFile) -> str:
    """What the file is: sniffed for raster images, else guessed from its name."""
    raster = _raster(file.content)
    if raster is not None:
        return raster
    suffix = "." + file.path.rsplit(".", 1)[-1].lower() if "." in file.path.rsplit("/", 1)[-1] else ""
    guessed = _TEXT_TYPES.get(suffix) or mimetypes.guess_type(file.path)[0]
    if guessed:
        return guessed
    try:
        file.content.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain"


def resource_uri(path: str) -> str:
    """The URI an output file is embedded under: ``execr:///`` + its guest path."""
    return "execr://" + urllib.parse.quote(path if path.startswith("/") else "/" + path, safe="/")


def _attachment(file: OutputFile, mime: str) -> types.ImageContent | types.EmbeddedResource:
    if _raster(file.content) is not None:
        return types.ImageContent(type="image", data=base64.b64encode(file.content).decode("ascii"), mimeType=mime)
    uri: Any = resource_uri(file.path)
    try:
        text = file.content.decode("utf-8")
    except UnicodeDecodeError:
        blob = base64.b64encode(file.content).decode("ascii")
        contents: types.TextResourceContents | types.BlobResourceContents = types.BlobResourceContents(
            uri=uri, mimeType=mime, blob=blob
        )
    else:
        contents = types.TextResourceContents(uri=uri, mimeType=mime, text=text)
    return types.EmbeddedResource(type="resource", resource=contents)


def _files(result: Result) -> tuple[list[FileInfo], list[types.ContentBlock]]:
    infos: list[FileInfo] = []
    blocks: list[types.ContentBlock] = []
    budget, room = MAX_ATTACHED_BYTES, MAX_ATTACHED_FILES
    for file in result.files:
        mime = mime_type(file)
        image = _raster(file.content) is not None
        fits = room > 0 and len(file.content) <= budget and not (image and file.truncated)
        returned: Any = None
        if fits:
            blocks.append(_attachment(file, mime))
            budget -= len(file.content)
            room -= 1
            returned = "image" if image else "resource"
        infos.append(
            FileInfo(path=file.path, size=file.size, mime_type=mime, truncated=file.truncated, returned_as=returned)
        )
    return infos, blocks


def render(
    result: Result,
    runtime: str,
    hint: str | None,
    model: type[RunPythonOutput] = RunPythonOutput,
    **extra: Any,
) -> types.CallToolResult:
    """The tool result for ``result``: ``isError`` unless it completed (``model`` with ``extra``: a session call's)."""
    infos, blocks = _files(result)
    output = model(
        outcome=result.outcome.value,
        exit_code=result.exit_code,
        stdout=result.stdout,
        stderr=result.stderr,
        stdout_dropped=result.stdout_dropped,
        stderr_dropped=result.stderr_dropped,
        duration=round(result.duration, 6),
        files=infos,
        runtime=runtime,
        hint=hint,
        error=result.error,
        **extra,
    )
    structured = output.model_dump(mode="json")
    content: list[types.ContentBlock] = []
    failed = result.outcome is not Outcome.COMPLETED
    if failed:
        content.append(types.TextContent(type="text", text=f"{result.outcome.value}: {hint}"))
    content.append(types.TextContent(type="text", text=json.dumps(structured, ensure_ascii=False)))
    content.extend(blocks)
    return types.CallToolResult(content=content, structuredContent=structured, isError=failed)
