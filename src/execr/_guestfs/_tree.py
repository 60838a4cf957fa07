"""Trees and descriptor entries: what each guest descriptor stands for, and resolved paths."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ._abi import Sink, _close

# -- the descriptor table -----------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Tree:
    """One preopened directory: a host directory (``host``), or a virtual read-only one (``files``)."""

    guest: str
    host: str | None = None
    writable: bool = False
    files: Mapping[str, bytes] | None = None  # virtual: name -> content (flat)
    fresh: bool = False  # execr's own run root: its size shows as a new directory's
    fd: int = -1  # the host directory, opened by ``GuestFiles``

    @property
    def virtual(self) -> bool:
        return self.host is None


@dataclasses.dataclass(eq=False)
class _Dir:
    tree: Tree
    rel: tuple[bytes, ...]
    fd: int  # host fd (owned unless it is the tree's own), -1 for a virtual directory
    listing: list[tuple[bytes, int, int]] | None = None  # (name, filetype, virtual inode) while reading


@dataclasses.dataclass(eq=False)
class _File:
    tree: Tree
    fd: int
    key: tuple[int, int]
    read: bool
    write: bool
    append: bool


@dataclasses.dataclass(eq=False)
class _Blob:
    data: bytes
    pos: int = 0
    stdin: bool = False


@dataclasses.dataclass(eq=False)
class _Out:
    sink: Sink


_Entry = _Dir | _File | _Blob | _Out


class _At:
    """A resolved path: the parent directory's host fd and the final name (closes its fds on exit)."""

    __slots__ = ("fds", "name", "parent", "rel", "tree")

    def __init__(self, tree: Tree, parent: int, name: bytes, rel: tuple[bytes, ...], fds: list[int]) -> None:
        self.tree, self.parent, self.name, self.rel, self.fds = tree, parent, name, rel, fds

    def __enter__(self) -> _At:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds:
            _close(fd)
        self.fds = []
