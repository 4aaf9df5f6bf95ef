"""The runner port: execute a parameterized notebook over staged inputs, report what happened.

A runner never talks to the grid. It gets directories on the compute host laid out as the
container contract says (``inputs/``, ``task/params.json``, ``outputs/``) and returns a
:class:`RunResult`; the task turns that into catalog entries, tags and state.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import conventions as names

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""Called with (images done, images total) while the notebook runs."""


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
