"""Stream staging: a task's inputs read through iRODS into its staging directory.

Registering a replica is bound by catalog transactions: on the measured iRODS 5.0.2 zone one
``msiDataObjRepl`` cost 79 ms per small object, while opening, reading to the end and closing
the same object cost 13.5 ms. So an input that has no replica the compute host can read where it
lies is *read* (``Grid.read_to_file``) rather than replicated, unless the task asks for replicas
(``compute.replicate: always``). Nothing is registered: the copy is an ordinary file of the
task's staging directory and goes with it when the run ends.

* Several readers at once where the grid may be called from several threads (LocalGrid, one
  catalog connection per thread); inside the iRODS server the rule engine's ``callback`` must
  never be called from two threads, so there the run reads alone.
* A file is written outside ``inputs/`` and renamed into place once complete and checked, so the
  container never sees half an image.
* Where the catalog records a checksum (``sha2:`` base64 SHA-256, or a hex MD5) the bytes read
  are checked against it; an object whose read fails or whose bytes do not match is read once
  more at the end, and the task fails naming the inputs that still fail (by logical path). A
  file the compute host cannot write (a full staging disk) fails the task at once.
* ``keep_alive`` (the heartbeat, which raises when the task was cancelled or lost) is called
  from the thread that streams, between objects: a cancelled task stops reading.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain.catalog import DataObject
from compute_to_data.domain.errors import ComputeToDataError, StagingError
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)

#: the run beats the heartbeat at least this often while readers work (seconds)
BEAT_EVERY_SECONDS = 2.0


class StagingStopped(StagingError):
    """The stream was aborted (:meth:`Streamer.abort`): not a failure of its own."""


@dataclass(frozen=True)
class StreamItem:
    """One object to read, and where it goes: ``base/<relative>`` of the task's working directory."""

    obj: DataObject
    base: Path
    relative: str


@dataclass
class StreamReport:
    streamed: int = 0
    streamed_bytes: int = 0
    readers: int = 0
    checksums_checked: int = 0
    retried: int = 0


def checksum_matches(path: Path, checksum: str) -> bool | None:
    """Whether the file's content has the catalog's checksum; None when the catalog has none, or
    one of a scheme this does not know (then nothing is claimed)."""
    if checksum.startswith("sha2:"):
        digest = hashlib.sha256()
    elif len(checksum) == 32 and all(c in "0123456789abcdef" for c in checksum.lower()):
        digest = hashlib.md5(usedforsecurity=False)
    else:
        return None
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if checksum.startswith("sha2:"):
        return base64.b64encode(digest.digest()).decode() == checksum[5:]
    return digest.hexdigest() == checksum.lower()


class Streamer:
    """Reads objects through ``grid`` into ``workdir``, ``readers`` at once where the grid allows.

    Either all at once (:meth:`stream`), or, on a grid that must be called from one thread only,
    a slice at a time from the run's own loop (:meth:`begin`, then :meth:`step` until it says
    nothing is left): the notebook then runs while the inputs arrive (:mod:`.pipelining`).
    Either way every object is read once, and those that failed once more at the end.
    """

    def __init__(self, grid: Grid, workdir: TaskWorkdir, *, readers: int, keep_alive: Callable[[], None]) -> None:
        self.grid = grid
        self.workdir = workdir
        self.readers = max(1, readers) if grid.concurrent_calls else 1
        self.keep_alive = keep_alive
        self.report = StreamReport(readers=self.readers)
        self._stop = threading.Event()
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        self._items: list[StreamItem] = []
        self._todo: deque[int] = deque()
        self._failed: dict[int, str] = {}
        self._retrying = False

    def stream(self, items: Sequence[StreamItem]) -> StreamReport:
        """Stage every item, or raise StagingError naming the inputs that could not be read."""
        self.begin(items)
        if self.readers == 1:
            while self.step(math.inf):
                pass
            return self.report
        while True:
            work = list(self._todo)
            self._todo.clear()
            self._failed.update(self._pass(work))
            if not self._end_pass():
                return self.report

    def begin(self, items: Sequence[StreamItem]) -> None:
        """What to read; nothing is read yet."""
        self._items = list(items)
        self._todo = deque(range(len(self._items)))
        self._failed = {}
        self._retrying = False
        if not self._items:
            self.report.readers = 0

    def step(self, seconds: float) -> bool:
        """Read objects on this thread for about ``seconds`` (at least one); False once all are
        read. Raises StagingError when some still fail after the second try."""
        deadline = time.monotonic() + seconds
        while True:
            if not self._todo and not self._end_pass():
                return False
            index = self._todo.popleft()
            error = self._read(index, self._items[index])
            if error is not None:
                self._failed[index] = error
            self.keep_alive()
            if time.monotonic() >= deadline:
                return True

    def abort(self) -> None:
        """Stop reading (from any thread): readers stop at their next object, and the stream
        ends with a StagingError."""
        self._aborted.set()

    def _end_pass(self) -> bool:
        """A pass over the work ended: True when the failed ones are to be read once more."""
        if self._aborted.is_set():
            raise StagingStopped("staging was stopped before every input was read")
        failed = self._failed
        if failed and not self._retrying:
            self._retrying = True
            self.report.retried = len(failed)
            log.info("%d object(s) could not be read at the first try; reading them once more", len(failed))
            self._todo = deque(sorted(failed))
            self._failed = {}
            return True
        if failed:
            items = self._items
            shown = "; ".join(f"{items[i].obj.path}: {failed[i]}" for i in sorted(failed)[:3])
            more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
            raise StagingError(f"could not read {len(failed)} input(s) through iRODS: {shown}{more}")
        if self._items:
            log.info("streamed %d object(s), %d bytes, %d reader(s), %d checked against the catalog's checksum",
                     self.report.streamed, self.report.streamed_bytes, self.readers, self.report.checksums_checked)
        return False

    def _pass(self, work: list[int]) -> dict[int, str]:
        """Read ``work`` with the readers; index -> why, for what failed."""
        failed: dict[int, str] = {}
        pool = ThreadPoolExecutor(max_workers=self.readers, thread_name_prefix="c2d-stream")
        try:
            pending: dict[Future[str | None], int] = {pool.submit(self._read, i, self._items[i]): i for i in work}
            while pending and not self._aborted.is_set():
                done, _ = wait(pending, timeout=BEAT_EVERY_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    error = future.result()
                    if error is not None:
                        failed[index] = error
                self.keep_alive()
        finally:
            self._stop.set()  # a keep_alive that raised (cancelled): the readers stop at their next object
            pool.shutdown(wait=True, cancel_futures=True)
            self._stop.clear()
        return failed

    def _read(self, index: int, item: StreamItem) -> str | None:
        """Read one object and put it in place; None when done, else why it failed."""
        if self._stop.is_set() or self._aborted.is_set():
            return "stopped"
        incoming = self.workdir.incoming_file(f"{index:09d}")
        try:
            size = self.grid.read_to_file(item.obj.path, incoming)
            if size != item.obj.size:
                return f"read {size} bytes where the catalog records {item.obj.size}"
            matches = checksum_matches(incoming, item.obj.checksum)
            if matches is False:
                return "the bytes read do not match the checksum the catalog records"
            self.workdir.place_streamed(incoming, item.base, item.relative)
        except StagingError:
            raise  # the compute host's side (a full disk): no use reading again, the task fails with it
        except ComputeToDataError as exc:
            log.warning("reading %s through iRODS failed: %s", item.obj.path, exc)
            return str(exc) or type(exc).__name__
        except OSError as exc:
            log.warning("staging %s failed: %s", item.obj.path, exc)
            return exc.strerror or str(exc)
        finally:
            incoming.unlink(missing_ok=True)
        with self._lock:
            self.report.streamed += 1
            self.report.streamed_bytes += size
            if matches:
                self.report.checksums_checked += 1
        return None
