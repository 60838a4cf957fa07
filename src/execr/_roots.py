"""Run roots: where each run's writable root directory comes from, and how used ones go away.

A root is reused only when its run left it empty, with its times reset (creating and
removing a directory costs ~1 ms of kernel time on some file systems); anything else is
removed on a background thread, at any depth, never following a link.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading

from ._process import Drainer, Phase, at_exit

__all__ = ["remove_tree", "roots", "trash"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_tree(path: str) -> None:
    """Delete ``path`` and everything below it: any depth, no link followed, O(1) descriptors."""
    try:
        cur = os.open(path, _DIR_FLAGS)
    except OSError:
        return
    below: list[bytes] = []
    try:
        while True:
            sub = None
            for name in os.listdir(cur):
                b = os.fsencode(name)
                try:
                    if stat.S_ISDIR(os.stat(b, dir_fd=cur, follow_symlinks=False).st_mode):
                        sub = b
                        break
                    os.unlink(b, dir_fd=cur)
                except FileNotFoundError:
                    continue
            if sub is not None:
                nxt = os.open(sub, _DIR_FLAGS, dir_fd=cur)
                os.close(cur)
                cur = nxt
                below.append(sub)
                continue
            if not below:
                break
            up = os.open(b"..", _DIR_FLAGS, dir_fd=cur)
            os.close(cur)
            cur = up
            os.rmdir(below.pop(), dir_fd=cur)
    except OSError:
        pass
    finally:
        os.close(cur)
    with contextlib.suppress(OSError):
        os.rmdir(path)


#: Removes used run roots that are not kept for reuse, on a background thread.
trash: Drainer[str] = Drainer(remove_tree, "execr-trash", Phase.FILES)


class _Roots:
    """Fresh run roots: a used root is reused only when its run left it empty, with its times reset.

    Creating and removing a directory costs ~1 ms of kernel time on some file systems, which
    would halve throughput. A reused root shows a later run nothing: it is empty, its times
    are set to the moment it is handed out, its inode number is virtual (``_guestfs``) and
    its size is reported as that of a new directory (``Tree.fresh``).
    """

    KEEP = 16

    def __init__(self) -> None:
        self._idle: list[str] = []
        self._lock = threading.Lock()
        at_exit(Phase.FILES, self.drop)

    def take(self) -> str:
        with self._lock:
            path = self._idle.pop() if self._idle else None
        if path is None:
            return tempfile.mkdtemp(prefix="execr-run-")
        os.utime(path)  # atime and mtime now; ctime follows
        return path

    def give(self, path: str) -> None:
        try:
            with os.scandir(path) as it:
                empty = next(it, None) is None
        except OSError:
            empty = False
        if empty:
            with self._lock:
                if len(self._idle) < self.KEEP:
                    self._idle.append(path)
                    return
        trash.put(path)

    def drop(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for path in idle:
            remove_tree(path)


roots = _Roots()
