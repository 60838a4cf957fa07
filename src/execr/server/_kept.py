"""Kept checkpoints: those a server keeps for their owners (MCP's ``session_checkpoint``), bounded and expiring.

A blob in a tool result is no use to an agent, so MCP keeps checkpoints on the server and
hands out their ids: at most ``max_checkpoints_per_key`` per owner (keeping one more drops the
oldest), each for ``max_session_lifetime`` (an hour without one).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

from .._checkpoint import Checkpoint
from ._config import ServerConfig
from ._session_errors import SessionNotFound, SessionsDisabled, new_id, shown_id

__all__ = ["Kept", "KeptCheckpoints"]

_KEEP_FOR = 3600.0  # kept checkpoints' time to live without a max_session_lifetime


@dataclasses.dataclass(frozen=True)
class Kept:
    """A checkpoint the store keeps for its owner (MCP's ``session_checkpoint``)."""

    id: str
    owner: str
    checkpoint: Checkpoint = dataclasses.field(repr=False)
    size: int  # bytes of its serialized form
    sha256: str  # of its serialized form
    expires: float  # time.monotonic()


class KeptCheckpoints:
    """The checkpoints kept for their owners, within ``config``'s bounds (see the module docstring)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._kept: dict[str, Kept] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, owner: str, cp: Checkpoint, data: bytes) -> Kept:
        """Keep ``cp`` for ``owner`` (dropping their oldest past ``max_checkpoints_per_key``)."""
        now = time.monotonic()
        self.expire(now)
        bound = self.config.max_checkpoints_per_key
        if bound == 0:
            raise SessionsDisabled("this server keeps no checkpoints (its operator set max_checkpoints_per_key to 0)")
        mine = [k for k in self._kept.values() if k.owner == owner]
        for old in mine[: max(0, len(mine) - bound + 1)]:  # insertion order: oldest first
            del self._kept[old.id]
        ttl = self.config.max_session_lifetime or _KEEP_FOR
        kept = Kept(new_id("c_"), owner, cp, len(data), hashlib.sha256(data).hexdigest(), now + ttl)
        self._kept[kept.id] = kept
        return kept

    def get(self, owner: str, cid: object) -> Kept:
        """``owner``'s kept checkpoint ``cid`` (``SessionNotFound`` for any other)."""
        self.expire(time.monotonic())
        kept = self._kept.get(cid) if isinstance(cid, str) else None
        if kept is None or kept.owner != owner:
            raise SessionNotFound(
                f"no checkpoint {shown_id(cid)} for this client: it never existed, expired, or was dropped "
                f"(this server keeps the last {self.config.max_checkpoints_per_key} per key)"
            )
        return kept

    def expire(self, now: float) -> None:
        """Forget the checkpoints whose time ran out by ``now`` (``time.monotonic()``)."""
        for kept in [k for k in self._kept.values() if k.expires <= now]:
            del self._kept[kept.id]

    def clear(self) -> None:
        """Forget every checkpoint."""
        self._kept.clear()
