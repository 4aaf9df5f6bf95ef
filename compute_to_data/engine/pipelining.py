"""Inputs streamed while the notebook runs: staging hides behind inference where it can.

The model and the labels are staged before the run starts (the notebook needs them before any
image); the inputs that are read through iRODS (:mod:`.streaming`) then arrive while the
notebook classifies the first ones. The container contract (:mod:`compute_to_data.contract.inputs`)
says how the notebook knows: ``task/inputs.json`` lists every input the run will have (written
before it starts), files appear in ``inputs/`` only complete, and ``task/staging.json`` says when
staging ended, ``done`` or ``failed`` with the reason.

How the inputs are read depends on the grid:

* where the grid may be called from several threads (LocalGrid, python-irodsclient), the
  streamer's readers run in a thread of their own while the run's thread supervises the notebook;
* inside the iRODS server the rule engine's ``callback`` must never be called from two threads,
  so there the run's own thread reads, a slice of :data:`SLICE_SECONDS` at every poll of the
  runner (:meth:`InputStream.pump` is part of the runner's ``on_poll``), and the runner's poll
  loop does not sleep while objects are left to read.

A notebook that does not declare the manifest parameter would list ``inputs/`` at its start and
miss what arrives later: its inputs are all staged before it starts (:meth:`InputStream.finish`
right away), as before.

Whatever ends the run early (the notebook failed, the task was cancelled, the supervision was
interrupted) stops the readers and writes the failed status (:meth:`InputStream.stop`); a
staging failure while the notebook runs stops the run (the runner's ``on_poll`` raises it) and
is the task's error, never the notebook's consequent one.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Sequence

from compute_to_data.contract import inputs as contract
from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain.errors import StagingError
from compute_to_data.engine.staging import StagingSummary
from compute_to_data.engine.streaming import StagingStopped, Streamer, StreamItem
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)

#: how long one poll of the runner reads objects on the run's thread (a grid called from one thread)
SLICE_SECONDS = 0.5


class InputStream:
    """What one run reads through iRODS (the model and labels first, then the inputs), from
    :meth:`start` to :meth:`finish` or :meth:`stop`."""

    def __init__(self, grid: Grid, workdir: TaskWorkdir, first: Sequence[StreamItem], items: Sequence[StreamItem], *,
                 readers: int, keep_alive: Callable[[], None], pipelined: bool,
                 slice_seconds: float | None = None) -> None:
        """``first`` (the model and the labels) are read by :meth:`start` before it returns;
        ``items`` (the inputs) too unless ``pipelined``: then the run starts while they arrive."""
        self.first = list(first)
        self._first = Streamer(grid, workdir, readers=readers, keep_alive=keep_alive)
        self.items = list(items)
        #: True when the run starts before every input is there
        self.pipelined = pipelined and bool(self.items)
        #: readers in a thread of their own (the grid allows it), else slices on the run's thread
        self.background = self.pipelined and grid.concurrent_calls
        # in their own thread the readers never beat the heartbeat: the run's thread does, at every poll
        self.streamer = Streamer(grid, workdir, readers=readers, keep_alive=_nothing if self.background else keep_alive)
        self.workdir = workdir
        self.slice_seconds = SLICE_SECONDS if slice_seconds is None else slice_seconds
        self.error: StagingError | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def finished(self) -> bool:
        return self.ended is not None

    @property
    def seconds(self) -> float:
        """Wall time from the first object read to the last (0 when nothing was streamed)."""
        if self.started is None:
            return 0.0
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started

    def summarize(self, summary: StagingSummary) -> StagingSummary:
        """What was streamed so far, into the run's ``c2d::staging``."""
        first, inputs = self._first.report, self.streamer.report
        summary.streamed = first.streamed + inputs.streamed
        summary.streamed_bytes = first.streamed_bytes + inputs.streamed_bytes
        summary.checksums_checked = first.checksums_checked + inputs.checksums_checked
        summary.readers = max(first.readers if self.first else 0, inputs.readers if self.items else 0)
        summary.pipelined = self.pipelined
        return summary

    def start(self) -> None:
        """Begin reading: pipelined, in a thread of their own where the grid allows it, else at
        each :meth:`pump`; otherwise every input now (StagingError when one cannot be read)."""
        self.started = time.perf_counter()
        if self.first:
            try:
                self._first.stream(self.first)
            except StagingError as exc:
                self._fail(exc)
                raise
        if not self.items:
            self.streamer.begin([])
            self._end(contract.StagingStatus(contract.DONE))
        elif not self.pipelined:
            try:
                self.streamer.stream(self.items)
            except StagingError as exc:
                self._fail(exc)
                raise
            self._end(contract.StagingStatus(contract.DONE))
        elif self.background:
            self._thread = threading.Thread(target=self._read_all, name="c2d-stream-inputs", daemon=True)
            self._thread.start()
        else:
            self.streamer.begin(self.items)

    def pump(self) -> bool:
        """From the runner's poll loop (the run's thread): read for a slice where reading is the
        run's own, and raise the staging error once there is one. True while objects are left to
        read on this thread (the poll loop then does not sleep)."""
        if self.error is not None:
            raise self.error
        if self.finished or self.background:
            return False
        try:
            more = self.streamer.step(self.slice_seconds)
        except StagingError as exc:
            self._fail(exc)
            raise
        if not more:
            self._end(contract.StagingStatus(contract.DONE))
        return more

    def finish(self) -> None:
        """Every input read (what is left is read now), or the StagingError that stopped it."""
        if self._thread is not None:
            self._thread.join()
        else:
            while self.pump():
                pass
        if self.error is not None:
            raise self.error

    def check_covered(self, images_total: int, inputs: int) -> None:
        """A run that started while its inputs arrived and reports fewer images than it was
        given listed ``inputs/`` at its start, ignoring the manifest (a container image older
        than its notebook's parameters cell): its results would silently miss images."""
        if self.pipelined and images_total < inputs:
            raise StagingError(
                f"the notebook took {images_total} of the run's {inputs} inputs: it started while they were being "
                "staged and does not read the inputs manifest (task/inputs.json); rebuild the container image "
                "with this notebook, or ask the administrator to"
            )

    def settle(self, error: BaseException) -> None:
        """The run could not start because the staging disk is full (``error``): the readers
        fail at their next write, and that staging error (which names the input) is the task's."""
        if isinstance(error, OSError) and error.errno == errno.ENOSPC and not self.finished:
            self.finish()

    def stop(self, reason: str) -> StagingError | None:
        """The run ended before staging did: stop the readers, say ``failed`` (``reason``) to
        anyone still reading the contract. Returns the staging error that came first, if any."""
        if not self.finished:
            self._stopping = True
            self.streamer.abort()
            if self._thread is not None:
                self._thread.join()
            if not self.finished:
                self._end(contract.StagingStatus(contract.FAILED, reason))
        return self.error

    # --- what the readers' thread does ---------------------------------------------------------
    def _read_all(self) -> None:
        try:
            self.streamer.stream(self.items)
        except StagingStopped:
            return  # stop() says why
        except StagingError as exc:  # also while stopping: a full staging disk may be why the run ended
            self._fail(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a reader's bug must still end staging, with its reason
            log.exception("streaming the inputs failed")
            if not self._stopping:
                self._fail(StagingError(f"streaming the inputs failed: {type(exc).__name__}: {exc}"))
            return
        self._end(contract.StagingStatus(contract.DONE))

    def _fail(self, exc: StagingError) -> None:
        self.error = exc
        self._end(contract.StagingStatus(contract.FAILED, str(exc)))

    def _end(self, status: contract.StagingStatus) -> None:
        """Write how staging ended (best effort: the staging disk may be what failed)."""
        if self.ended is not None:
            return
        self.ended = time.perf_counter()
        try:
            contract.write_status(self.workdir.status_file, status)
        except OSError as exc:
            log.error("cannot write the staging status %s: %s", self.workdir.status_file, exc)


def _nothing() -> None:
    """The readers' keep_alive in their own thread (the run's thread beats the heartbeat)."""
