"""Auth: bearer API keys, compared in constant time against every configured key."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from ._config import key_id

__all__ = ["Authenticator"]


class Authenticator:
    """Checks ``Authorization: Bearer KEY``; ``check`` returns the key id, or None when refused."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [(k.encode("utf-8"), key_id(k)) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, header: bytes | None) -> str | None:
        """The matching key's id (``"-"`` with auth off), or None."""
        if not self._keys:
            return "-"
        if not header:
            return None
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        token = token.strip()
        found = None
        for key, kid in self._keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(token, key):
                found = kid
        return found
