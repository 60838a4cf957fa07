"""Server configuration: a frozen ``ServerConfig`` and the helpers that build one.

Importing this module needs nothing beyond execr itself (no FastAPI), so the CLI can
parse ``execr serve`` arguments before the optional ``server`` extra is imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .._exceptions import InvalidArgument, shown
from .._limits import DEFAULT_LIMITS, Limits
from .._options import parse_size

__all__ = ["ServerConfig", "is_loopback", "key_id", "load_api_keys", "parse_size"]

MiB = 1024 * 1024


def key_id(key: str) -> str:
    """A loggable id for an API key: the first 8 hex chars of its SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:8]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_api_keys(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> frozenset[str]:
    """API keys from ``$EXECR_API_KEYS`` (comma-separated) and a file (one key per line, ``#`` comments)."""
    env = os.environ if environ is None else environ
    keys = {k.strip() for k in env.get("EXECR_API_KEYS", "").split(",") if k.strip()}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InvalidArgument(f"cannot read API key file {str(path)!r}: {e.strerror or e}") from e
        keys |= {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    for k in keys:
        if any(c.isspace() for c in k) or not k.isprintable():
            raise InvalidArgument(f"API key {key_id(k)} contains whitespace or control characters")
    return frozenset(keys)


def _clamp(limits: Limits, cap: Limits) -> Limits:
    """``limits`` with every value above ``cap`` lowered to the cap."""
    return limits.replace(**{name: getattr(cap, name) for name in limits.exceeds(cap)})


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """How ``execr serve`` runs.

    - ``api_keys``: accepted bearer tokens; empty means no auth, which is only allowed on
      a loopback ``host`` unless ``insecure`` is set.
    - ``max_limits``: the operator's cap; a request asking for more (or for ``None`` =
      unlimited where the cap is finite) is refused with 422.
    - ``default_limits``: what a request gets for limits it leaves out (values above the
      cap are lowered to the cap).
    - ``max_queue``: runs that may wait for a worker; with ``workers`` running, more are
      refused with 429.
    - ``runtimes``: the runtimes each worker loads before the server is ready (any runtime
      can be requested; one not listed is loaded by a worker on its first request).
    - ``public_metrics`` / ``public_docs``: serve ``/metrics`` / ``/docs`` and
      ``/openapi.json`` without a key. By default, with keys configured, every route needs
      one except ``/healthz`` and ``/readyz`` (for load balancers).
    - ``grace``: seconds in-flight runs get to finish at shutdown before pending ones are
      cancelled.
    - Sessions (``/v1/sessions``, the MCP ``session_*`` tools): ``max_sessions_per_key`` live
      sessions per API key (0: no sessions); ``session_idle_timeout`` and
      ``max_session_lifetime`` are the defaults and the caps of a session's idle timeout and
      lifetime (``None``: no cap); ``max_checkpoint_bytes`` bounds a serialized checkpoint
      (a ``/checkpoint`` answer and a ``/restore`` body); ``max_checkpoints_per_key``
      checkpoints the MCP tools keep for a key (the oldest is dropped).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int | None = None
    api_keys: frozenset[str] = frozenset()
    max_limits: Limits = DEFAULT_LIMITS
    default_limits: Limits = DEFAULT_LIMITS
    max_body_bytes: int = 1 * MiB
    max_batch: int = 32
    max_queue: int = 64
    insecure: bool = False
    public_metrics: bool = False
    public_docs: bool = False
    grace: float = 10.0
    snapshot: bool = True
    cache_dir: str | None = None
    runtimes: tuple[str, ...] = ("default",)
    log_level: str = "info"
    max_sessions_per_key: int = 8
    session_idle_timeout: float | None = 600.0
    max_session_lifetime: float | None = 3600.0
    max_checkpoint_bytes: int = 64 * MiB
    max_checkpoints_per_key: int = 8
    #: What the workers run on, instead of a real ``Runtime``: for tests, ``execr.testing.FakeRuntime``.
    runtime_factory: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        keys = self.api_keys
        if isinstance(keys, str) or not isinstance(keys, Iterable):
            raise InvalidArgument("api_keys must be a set of str")
        keys = frozenset(keys)
        if not all(isinstance(k, str) and k for k in keys):
            raise InvalidArgument("api_keys must be non-empty strings")
        object.__setattr__(self, "api_keys", keys)
        if not isinstance(self.max_limits, Limits) or not isinstance(self.default_limits, Limits):
            raise InvalidArgument("max_limits and default_limits must be execr.Limits")
        object.__setattr__(self, "default_limits", _clamp(self.default_limits, self.max_limits))
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise InvalidArgument(f"workers must be a whole number >= 1, or None; got {shown(self.workers)}")
        for name in ("max_body_bytes", "max_batch", "max_checkpoint_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be a whole number >= 1; got {shown(value)}")
        for name in ("max_queue", "max_sessions_per_key", "max_checkpoints_per_key"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgument(f"{name} must be a whole number >= 0; got {shown(value)}")
        for name in ("session_idle_timeout", "max_session_lifetime"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 1e9):
                raise InvalidArgument(f"{name} must be seconds above 0 (at most 1e9), or None; got {shown(value)}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InvalidArgument(f"port must be 0..65535; got {shown(self.port)}")
        for flag in ("insecure", "public_metrics", "public_docs"):
            if not isinstance(getattr(self, flag), bool):
                raise InvalidArgument(f"{flag} must be a bool; got {shown(getattr(self, flag))}")
        if not (isinstance(self.grace, (int, float)) and self.grace >= 0):
            raise InvalidArgument(f"grace must be seconds >= 0; got {shown(self.grace)}")
        if not self.api_keys and not self.insecure and not is_loopback(self.host):
            raise InvalidArgument(
                f"refusing to serve on non-loopback host {self.host!r} without API keys; "
                "set EXECR_API_KEYS or --api-key-file, or pass --insecure"
            )

    def is_public(self, path: str) -> bool:
        """Whether ``path`` answers without an API key."""
        if path in ("/healthz", "/readyz"):
            return True
        if path == "/metrics":
            return self.public_metrics
        if path in ("/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"):
            return self.public_docs
        return False

    def body_limit(self, path: str) -> int:
        """The largest request body ``path`` takes: ``max_body_bytes``, or room for a checkpoint on a restore."""
        if path == "/v1/sessions/restore":
            return max(self.max_body_bytes, (self.max_checkpoint_bytes + 2) // 3 * 4 + 64 * 1024)  # base64 + options
        return self.max_body_bytes

    @property
    def worker_count(self) -> int:
        """Workers the pool runs (``workers``, or the CPU count)."""
        return self.workers or os.cpu_count() or 1

    @property
    def capacity(self) -> int:
        """Runs admitted at once (queued + in flight) before 429."""
        return self.max_queue + self.worker_count
