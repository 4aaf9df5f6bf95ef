"""SIGTERM as an exception, for the engine's own processes, and sections it must not split.

A run in the local worker or ``c2d run --local`` ends on SIGTERM as on any failure: it records
how it ended, stops its runner and removes its staging directory. The signal is turned into
:class:`Terminated`, raised in the main thread between two lines, wherever it is. A few pairs of
lines must not be split: a write to the catalog and the run taking note that it happened (the
run's ``queued -> running``, then knowing which run it is), else the run records its end from
the state before the write and is refused, leaving a state that lies until its lease runs out.
:func:`deferred_termination` holds a signal back until such a section ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

TERMINATED_MESSAGE = "terminated (SIGTERM) on the compute host"


class Terminated(BaseException):
    """SIGTERM turned into an exception in the main thread, so a run records how it ended,
    stops its runner and removes its staging directory (not an Exception: nothing swallows it)."""


class _Deferral:
    """How deep the main thread is in deferred sections, and whether a signal waits for their end."""

    depth = 0
    pending = False


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """For the engine's own processes (local worker, ``c2d run --local``), never inside iRODS.

    The first SIGTERM raises :class:`Terminated` in the main thread (at the end of a deferred
    section when it arrives inside one); further ones are ignored while the run cleans up
    (SIGKILL remains the way to end it at once).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        if _Deferral.depth:
            _Deferral.pending = True
            return
        raise Terminated(TERMINATED_MESSAGE)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _Deferral.pending = False


@contextlib.contextmanager
def deferred_termination() -> Iterator[None]:
    """A section a SIGTERM must not split: one that arrives inside it is raised as it ends
    (when it ends normally; an exception leaving it goes on as it is). Outside the main
    thread, or where no handler turns SIGTERM into an exception, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1
    if _Deferral.depth == 0 and _Deferral.pending:
        _Deferral.pending = False
        raise Terminated(TERMINATED_MESSAGE)
