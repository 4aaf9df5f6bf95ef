"""TODO docstring"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(BaseException):
    """SIGTERM turned into an exception in the main thread, so a run records how it ended,
    stops its runner and removes its staging directory (not an Exception: nothing swallows it)."""


@contextlib.contextmanager
def sigterm_as_exception() -> Iterator[None]:
    """For the engine's own processes (local worker, ``c2d run --local``), never inside iRODS.

    The first SIGTERM raises :class:`Terminated` in the main thread; further ones are ignored
    while the run cleans up (SIGKILL remains the way to end it at once).
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
        raise Terminated("terminated (SIGTERM) on the compute host")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
