"""TODO docstring"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from compute_to_data.domain.errors import TaskStateError


class RunLock:
    """A per-task lock file on the compute host, held for as long as a run of the task lives.

    Two runs of the same task at once are refused (the second cannot take the lock), and a
    reaper knows a silent run is really gone when it can take the lock itself: the OS releases
    it when the process holding it dies, however it dies.
    """

    def __init__(self, directory: Path, task_id: str) -> None:
        self.path = Path(directory) / f"task-{task_id}.lock"
        self._lock: FileLock | None = None

    def acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TaskStateError(f"cannot create the lock directory {self.path.parent}: {exc.strerror}") from exc
        lock = FileLock(str(self.path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return False
        self._lock = lock
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def held(self) -> bool:
        return self._lock is not None
