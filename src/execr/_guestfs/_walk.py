"""Walking a writable tree from the host: any depth, no link followed, no host path built."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from ._abi import _DIR_FLAGS, MAX_DEPTH, Unreadable, _close

# -- walking a writable tree from the host ------------------------------------------------------


def walk(fd: int, max_depth: int = MAX_DEPTH + 56) -> Iterator[tuple[bytes, os.stat_result, int]]:
    """Yield (relative path, lstat, parent dir fd) for every entry below the directory ``fd``.

    Never follows a link and never builds a host path (so no host path-length limit applies);
    ``Unreadable`` is raised for a directory that cannot be opened or listed, or a tree deeper
    than ``max_depth``: a part that cannot be read must count as a violation, never as zero.
    The parent fd is valid only until the next item.
    """
    stack: list[tuple[int, bytes, Iterator[str]]] = []
    try:
        stack.append((fd, b"", iter(_names(fd))))
        while stack:
            dfd, rel, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                if dfd != fd:
                    _close(dfd)
                continue
            bname = os.fsencode(name)
            try:
                st = os.stat(bname, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise Unreadable(f"{(rel + b'/' + bname).decode(errors='replace')!r}: {e.strerror}") from e
            child = rel + b"/" + bname if rel else bname
            yield child, st, dfd
            if stat.S_ISDIR(st.st_mode):
                if len(stack) > max_depth:
                    raise Unreadable(f"{child.decode(errors='replace')[:200]!r}...: deeper than {max_depth} levels")
                try:
                    sub = os.open(bname, _DIR_FLAGS, dir_fd=dfd)
                except OSError as e:
                    raise Unreadable(f"{child.decode(errors='replace')!r}: {e.strerror}") from e
                try:
                    stack.append((sub, child, iter(_names(sub))))
                except BaseException:
                    _close(sub)
                    raise
    finally:
        for dfd, _rel, _names_it in stack:
            if dfd != fd:
                _close(dfd)


def _names(fd: int) -> list[str]:
    try:
        return sorted(os.listdir(fd))
    except OSError as e:
        raise Unreadable(f"cannot list a directory: {e.strerror}") from e
