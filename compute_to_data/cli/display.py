"""Live progress for long steps on a terminal (rich), silence when output is not a terminal."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from compute_to_data.engine.context import TaskContext

STEP_TITLES = {
    "validate": "Validating the task",
    "select_compute_resource": "Choosing the compute resource",
    "check_permissions": "Checking permissions",
    "select_inputs": "Selecting inputs",
    "prepare_task_collection": "Preparing the task collection",
    "stage_inputs": "Replicating and staging inputs",
    "execute": "Running the notebook",
    "ingest_outputs": "Registering outputs",
    "tag_results": "Tagging predictions",
    "finalize": "Recording provenance",
}


class TaskProgressDisplay:
    """Attach to a TaskContext: one line per step, a bar for images while the notebook runs."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = self.console.is_terminal
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._current: TaskID | None = None
        self._images: TaskID | None = None

    def attach(self, context: TaskContext) -> None:
        if self.enabled:
            context.step_listeners.append(self.on_step)
            context.progress_listeners.append(self.on_progress)

    def on_step(self, step: str, event: str, seconds: float) -> None:
        title = STEP_TITLES.get(step, step)
        if event == "start":
            self._current = self.progress.add_task(title, total=None)
        elif self._current is not None:
            mark = "[green]✓[/]" if event == "done" else "[red]✗[/]"
            self.progress.update(self._current, description=f"{mark} {title} ({seconds:.1f} s)", total=1, completed=1)
            self._current = None

    def on_progress(self, done: int, total: int) -> None:
        if self._images is None:
            self._images = self.progress.add_task("  images classified", total=total)
        self.progress.update(self._images, completed=done, total=total)

    def __enter__(self) -> "TaskProgressDisplay":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.enabled:
            self.progress.stop()
