"""The runner port: execute a parameterized notebook over staged inputs, report what happened.

A runner never talks to the grid. It gets directories on the compute host laid out as the
container contract says (``inputs/``, ``task/params.json``, ``outputs/``) and returns a
:class:`RunResult`; the task turns that into catalog entries, tags and state.
"""

from __future__ import annotations

import logging
import os
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import conventions as names

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with (images done, images total) while the notebook runs."""

StartedCallback = Callable[[str], None]
"""Called once the run started, with its handle: ``docker:<container id>``, ``pid:<pid>``..."""

PollCallback = Callable[[], None]
"""Called from the runner's supervise loop (the caller's thread) at every poll while the run
goes on: the task writes its heartbeat and tags finished parts there. An exception it raises
stops the run (the runner kills what it started) and propagates to the caller."""


@dataclass
class RunRequest:
    task_id: str
    notebook_name: str
    #: host path of the notebook (in-process runner); containers use their baked-in copy.
    notebook_path: Path
    #: directory holding ``inputs/``, ``task/`` and ``outputs/`` for this task on the compute host.
    workdir: Path
    #: notebook parameters exactly as the container sees them in ``/task/params.json``.
    parameters: dict[str, Any]
    timeout_seconds: int
    image: str | None = None
    gpus: int = 0
    resource_name: str = ""
    max_concurrent: int = 1
    progress: ProgressCallback | None = None
    on_started: StartedCallback | None = None
    on_poll: PollCallback | None = None

    @property
    def input_dir(self) -> Path:
        return self.workdir / "inputs"

    @property
    def task_dir(self) -> Path:
        return self.workdir / "task"

    @property
    def output_dir(self) -> Path:
        return self.workdir / "outputs"


@dataclass
class RunResult:
    status: str  # "succeeded" | "failed"
    started: str
    finished: str
    duration_seconds: float
    images_total: int = 0
    images_done: int = 0
    error: str | None = None
    log: str = ""
    log_name: str = "runner.log"
    runner: str = ""
    image: str | None = None
    image_digest: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class Runner(ABC):
    """Executes one notebook run. Implementations register themselves by name."""

    name: str = "abstract"
    #: True when the notebook sees the contract's container paths (/inputs, /task, /outputs);
    #: False when it runs on the host and params.json must hold the host paths.
    uses_container_paths: bool = False

    @abstractmethod
    def run(self, request: RunRequest) -> RunResult:
        """Run to completion (or failure, timeout); never raise for a failing notebook.

        Raise :class:`~compute_to_data.errors.RunnerError` only when the run could not be
        started or supervised at all.
        """

    def preflight(self, image: str | None) -> None:
        """Refuse, before any input is replicated, what this runner cannot run on this host
        (e.g. an allowed image that is not built here). Called on the compute host."""

    def describe(self) -> str:
        return self.name

    def cancel(self, task_id: str) -> bool:
        """Stop the run of ``task_id`` if this runner is executing it; True if it was stopped."""
        return False

    # --- runs of other processes (a dead engine's leftovers, a cancel from another rule) ----
    def is_alive(self, handle: str) -> bool:
        """Whether the run with this handle (from ``on_started``) still runs on this host."""
        return False

    def stop(self, handle: str, task_id: str) -> bool:
        """Stop whatever is left of a run on this host, also when another (dead) process started
        it: by its handle, and every process marked with the task id. True if anything ran.
        This default cancels the run if this runner object executes it, and kills the marked
        processes."""
        cancelled = self.cancel(task_id)
        return bool(stop_marked_processes(task_id)) or cancelled


def report_started(request: RunRequest, handle: str) -> None:
    """Tell the task the run's handle; a failing callback never stops the computation."""
    if request.on_started is not None:
        try:
            request.on_started(handle)
        except Exception:
            log.exception("task %s: recording the run handle %s failed", request.task_id, handle)


def poll(request: RunRequest) -> None:
    """The task's poll hook; its exceptions propagate (they stop the run)."""
    if request.on_poll is not None:
        request.on_poll()


def marked_environment(task_id: str) -> dict[str, str]:
    """The environment for a run's processes: ours plus the task marker, inherited by all of
    the run's descendants (Jupyter starts its kernel in a new session; reparenting does not
    lose an environment variable)."""
    return {**os.environ, names.TASK_ID_ENV: task_id}


def marked_processes(task_id: str) -> list[int]:
    """Processes on this host carrying ``C2D_TASK_ID=<task_id>`` (same user, or any as root)."""
    wanted = f"{names.TASK_ID_ENV}={task_id}".encode()
    found = []
    own = {os.getpid(), os.getppid()}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) in own:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:  # gone, or another user's
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry))
    return sorted(found)


def stop_marked_processes(task_id: str) -> list[int]:
    """Freeze every process marked with ``task_id`` (SIGSTOP, until no new one appears, so none
    can fork one we would miss), then SIGKILL them all. The killed pids."""
    frozen: list[int] = []
    for _ in range(5):
        new = [pid for pid in marked_processes(task_id) if pid not in frozen]
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except (ProcessLookupError, PermissionError):
                continue
            frozen.append(pid)
    return kill_processes(frozen)


def kill_processes(pids: list[int]) -> list[int]:
    """SIGKILL ``pids``; the ones that were there to kill."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except (ProcessLookupError, PermissionError):
            pass
    if killed:
        log.info("killed %d process(es) of a run: %s", len(killed), ", ".join(map(str, killed)))
    return killed


def read_progress(output_dir: Path) -> tuple[int, int] | None:
    """``(done, total)`` from the notebook's ``.progress`` file, or None if absent or unreadable."""
    try:
        done, _, total = (output_dir / names.PROGRESS_FILE).read_text().strip().partition("/")
        return int(done), int(total)
    except (OSError, ValueError):
        return None


def report_progress(
    request: RunRequest, last: tuple[int, int] | None, output_dir: Path | None = None
) -> tuple[int, int] | None:
    """Call ``request.progress`` when ``.progress`` changed since ``last``; return the current value.

    Runners poll this while the notebook runs; a failing callback never ends the computation.
    """
    current = read_progress(output_dir if output_dir is not None else request.output_dir)
    if current is None:
        return last
    if current != last and request.progress is not None:
        try:
            request.progress(*current)
        except Exception:
            log.exception("task %s: progress callback failed", request.task_id)
    return current
