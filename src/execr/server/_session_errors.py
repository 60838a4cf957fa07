"""Session errors: what the session store refuses (``_sessions`` maps each to an HTTP status), and the ids they name."""

from __future__ import annotations

import secrets

from .._exceptions import ExecrError, shown

__all__ = [
    "CheckpointTooLarge",
    "SessionNotFound",
    "SessionsBusy",
    "SessionsDisabled",
    "TooManySessions",
    "new_id",
    "shown_id",
]


class SessionNotFound(ExecrError, LookupError):
    """No such session (or checkpoint) for this owner: unknown, someone else's, closed or expired."""


class TooManySessions(ExecrError):
    """The owner already holds ``max_sessions_per_key`` live sessions."""


class SessionsDisabled(ExecrError):
    """The operator allows no sessions (``max_sessions_per_key`` is 0)."""


class SessionsBusy(ExecrError):
    """As many session calls are running or waiting as the server admits; retry later."""


class CheckpointTooLarge(ExecrError):
    """A checkpoint larger than the operator's ``max_checkpoint_bytes``."""


def new_id(prefix: str) -> str:
    """A new unguessable id (``s_`` a session's, ``c_`` a kept checkpoint's)."""
    return prefix + secrets.token_urlsafe(18)


def shown_id(sid: object) -> str:
    """``sid`` as an error message shows it (at most about 80 characters)."""
    return shown(sid, 80)
