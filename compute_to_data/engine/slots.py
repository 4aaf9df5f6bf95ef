"""At most N tasks at once per compute resource: host-local lock files, one per slot.

A GPU host must not be oversubscribed. Each slot is a ``filelock`` lock file; a task holds one
from staging to ingest, and the others wait (their state stays ``queued``). Locks are released
by the OS when a process dies, so a crashed run never keeps a slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


class ResourceSlot:
    def __init__(
        self,
        lock_directory: Path,
        resource_name: str,
        capacity: int,
        poll_seconds: float = 0.5,
        on_wait: Callable[[], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.lock_directory = Path(lock_directory)
        self.resource_name = resource_name
        self.capacity = max(1, capacity)
        self.poll_seconds = poll_seconds
        self.on_wait = on_wait
        self.should_stop = should_stop
        self._held: FileLock | None = None
        self.waited_seconds = 0.0
        #: every slot was busy when it was first asked for (another run used the resource meanwhile)
        self.had_to_wait = False

    def acquire(self) -> bool:
        """Block until a slot is free; False if ``should_stop`` said to give up while waiting."""
        self.lock_directory.mkdir(parents=True, exist_ok=True)
        locks = [
            FileLock(str(self.lock_directory / f"{self.resource_name}.slot{i}.lock")) for i in range(self.capacity)
        ]
        started = time.monotonic()
        told = False
        while True:
            for lock in locks:
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                self._held = lock
                self.waited_seconds = time.monotonic() - started
                return True
            if not told:
                self.had_to_wait = True
                log.info("all %d slot(s) of %s are busy; waiting", self.capacity, self.resource_name)
                if self.on_wait:
                    self.on_wait()
                told = True
            if self.should_stop and self.should_stop():
                return False
            time.sleep(self.poll_seconds)

    def release(self) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None

    def __enter__(self) -> "ResourceSlot":
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
