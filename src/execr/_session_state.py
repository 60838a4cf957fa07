"""Session state: the instance a session opens, and the checkpoints taken from it and loaded into it.

``open_slot`` makes a session's ``SessionSlot`` (one instance of the runtime's snapshot and a
working directory), ``take_checkpoint`` turns its state into a ``Checkpoint``, and
``load_checkpoint`` maps one back into it, after checking it is for the same runtime, binary
and engine (``snapshot_key``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ._checkpoint import Checkpoint, pack_files, unpack_files
from ._exceptions import CheckpointRefused, RuntimeUnavailable
from ._image._flavors import flavor
from ._launch import SessionSlot
from ._request import Request
from ._runtime import Runtime
from ._workspace import Workspace

if TYPE_CHECKING:
    from ._sandbox import Image

__all__ = ["load_checkpoint", "open_slot", "snapshot_key", "take_checkpoint"]


def open_slot(rt: Runtime, base: Request, checkpoint: Checkpoint | None) -> tuple[SessionSlot, str, bool]:
    """A live instance of ``base``'s runtime's snapshot on ``rt`` and a working directory (``base``'s
    files, unless a ``checkpoint`` brings its own); the snapshot's key (``snapshot_key``), and
    whether it is the metered engine's (``checkpoint``'s, else as ``base``'s fuel limit needs)."""
    spec = flavor(base.runtime)
    name, metered = spec.name, spec.metered(base.limits.fuel)
    if checkpoint is not None:
        metered = checkpoint.metered
    snap = rt._snapshot_module(name, metered)
    if snap is None:
        raise RuntimeUnavailable(f"sessions need the {name} snapshot: {rt.snapshot_errors[name]}")
    if not snap.compiled.recycle:
        raise RuntimeUnavailable(f"the {name} runtime's instances cannot be saved and rolled back")
    key = snapshot_key(rt, name, metered)
    live = snap.compiled.host.live(snap.compiled)
    try:
        ws = Workspace(
            root=None,
            mounts=base.mounts,
            packages=base.pythonpath,
            files={} if checkpoint is not None else dict(base.files),
        )
    except BaseException:
        live.close()
        raise
    return SessionSlot(live=live, snap=snap, workspace=ws), key, metered


def load_checkpoint(
    slot: SessionSlot, cp: Checkpoint, runtime: str, key: str, memory_limit: int | None
) -> dict[str, Any]:
    """Map ``cp`` into ``slot`` (its files and memory); its counters and budgets (``cp.info``).

    ``CheckpointRefused`` if it is for another runtime or binary, over ``memory_limit``, or cannot be restored.
    """
    if cp.key != key or cp.runtime != runtime:
        raise CheckpointRefused(
            f"checkpoint is for another runtime or binary ({cp.runtime}, {cp.key}); this session is {runtime}, {key}"
        )
    if memory_limit is not None and cp.data_len > memory_limit:
        raise CheckpointRefused(f"checkpoint memory of {cp.data_len} bytes is over the memory_limit of {memory_limit}")
    unpack_files(cp.files, slot.workspace.root)
    problem = slot.workspace.rebase()
    if problem is not None:
        raise CheckpointRefused(f"checkpoint files cannot be restored: {problem}")
    try:
        slot.live.map(_image(cp))
    except (ValueError, OSError) as e:
        raise CheckpointRefused(f"checkpoint memory cannot be restored: {e}") from None
    return cp.info


def take_checkpoint(
    slot: SessionSlot, image: Image, runtime: str, key: str, metered: bool, info: dict[str, Any]
) -> Checkpoint:
    """The checkpoint of ``slot``: ``image`` (``slot.live.image()``), its working directory and ``info``."""
    cp = Checkpoint(
        runtime=runtime,
        key=key,
        metered=metered,
        data_len=image.data_len,
        stack_pointer=image.stack_pointer,
        pages=image.pages(),  # type: ignore[arg-type]  # read-only views of the image
        files=pack_files(slot.workspace.root),
        info=info,
    )
    object.__setattr__(cp, "_image", image)  # forks and restores of it map the image
    return cp


_keys: weakref.WeakKeyDictionary[Runtime, dict[tuple[str, bool], str]] = weakref.WeakKeyDictionary()


def snapshot_key(rt: Runtime, name: str, metered: bool) -> str:
    """The snapshot key a checkpoint must match (its cache entry's name), computed once per Runtime."""
    keys = _keys.setdefault(rt, {})
    if (name, metered) not in keys:
        keys[(name, metered)] = rt.artifacts(name, metered).dir.name
    return keys[(name, metered)]


def _image(cp: Checkpoint) -> Any:
    """``cp``'s pages in a memfd, made once per Checkpoint object (forks and restores map it)."""
    from ._sandbox import Image, State

    image = cp.__dict__.get("_image")
    if image is None:
        image = Image(State(cp.data_len, cp.stack_pointer, cp.pages))
        object.__setattr__(cp, "_image", image)
    return image
