"""The run lock: one per task (or shard) on its compute host, held for as long as a run lives.

This module is imported by the iRODS server: standard library only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from compute_to_data.domain.errors import TaskStateError

#: How many times an acquirer starts again when the lock file it locked was removed or replaced
#: under it (each time, another process held the lock meanwhile): then it counts as busy.
_ATTEMPTS = 20


class RunLock:
    """A per-task lock file on the compute host, held for as long as a run of the task lives.

    Two runs of the same task at once are refused (the second cannot take the lock), and a
    reaper knows a silent run is really gone when it can take the lock itself: the OS releases
    it when the process holding it dies, however it dies.

    The file is removed when the lock is released, so that no ``task-<id>.lock`` piles up in the
    lock directory (one per task and shard, for ever). Removing a lock file is safe only while
    holding it, and an acquirer must then notice that the file it opened and locked is no longer
    the one at the path (removed, or removed and created again by a third process): after
    locking, it compares the inode it holds with the path's, and starts again if they differ.
    ``filelock`` (used for the resource slots, whose few files are kept) neither removes its
    files nor does this check, hence ``flock`` here.
    """

    def __init__(self, directory: Path, task_id: str) -> None:
        self.path = Path(directory) / f"task-{task_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TaskStateError(f"cannot create the lock directory {self.path.parent}: {exc.strerror}") from exc
        for _ in range(_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise TaskStateError(f"cannot open the run lock {self.path}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                os.close(fd)
                raise TaskStateError(f"cannot lock the run lock {self.path}: {exc.strerror}") from exc
            if self._is_current(fd):
                self._fd = fd
                return True
            os.close(fd)  # removed (and perhaps made again) by its holder meanwhile: start again
        return False

    def _is_current(self, fd: int) -> bool:
        """Whether the file locked through ``fd`` is the one at the path now."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def release(self) -> None:
        """Remove the lock file (while still holding it), then let the lock go."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._is_current(fd):
                os.unlink(self.path)
        except OSError:
            pass  # a lock file that stays is harmless; the next holder removes it
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None
