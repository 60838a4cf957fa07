"""``execr serve``: the HTTP service (its options and handler live in ``execr.server``)."""

from __future__ import annotations

from typing import Any

__all__ = ["add"]


def add(sub: Any) -> None:
    """Add ``execr serve`` to ``sub``; FastAPI and uvicorn load only when it runs."""
    from ..server import add_serve_parser

    add_serve_parser(sub)
