"""Top-level task commands: ``c2d validate``, ``c2d run`` (on a LocalGrid) and ``c2d demo``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from compute_to_data.cli.display import TaskProgressDisplay
from compute_to_data.client.local_dispatcher import LocalDispatcher
from compute_to_data.client.local_worker import DispatchedRuns
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import PredictionQuery
from compute_to_data.domain.errors import ConfigError
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.domain.timings import timings_summary
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.engine.termination import Terminated, sigterm_as_exception
from compute_to_data.grid.base import Grid
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.shard_records import shard_records
from compute_to_data.service.tasks import TaskService

console = Console()


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("run")(run)
    app.command("demo")(demo)


def validate(config_file: Path = typer.Argument(..., help="Task config JSON file.", exists=False)) -> None:
    """Check a task config against the schema; every problem is listed with its JSON path."""
    try:
        text = config_file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {config_file}: {exc.strerror}") from exc
    config = TaskConfig.from_json(text, source=str(config_file))
    console.print(f"[green]valid[/]: {config_file}")
    console.print(
        f"  {config.task_type}: {config.input_collection} ({config.pattern}"
        f"{', recursive' if config.recursive else ''}) -> {config.output_collection}/<task id>"
    )


def run(
    config_file: Path = typer.Argument(..., help="Task config JSON file (local)."),
    local: Path = typer.Option(..., "--local", envvar="C2D_LOCAL_GRID", help="LocalGrid directory to run against."),
    user: str = typer.Option("rods", "--user", envvar="C2D_USER", help="User the task runs as."),
    settings_file: Optional[Path] = typer.Option(None, "--settings", help="Server-side settings JSON (else $C2D_SETTINGS or /etc/irods/compute_to_data.json)."),
    runner: Optional[str] = typer.Option(None, "--runner", help="Override the config's runner: docker, inprocess or auto."),
    keep_workdir: bool = typer.Option(False, "--keep-workdir", help="Keep the staging directory for debugging."),
) -> None:
    """Run a task now on a LocalGrid, through the same Template Method the iRODS rules use."""
    try:
        text = config_file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the task config {config_file}: {exc.strerror}") from None
    config = TaskConfig.from_json(text, source=str(config_file))
    if runner is not None:
        config = TaskConfig.from_document({**config.document, "container": {**config.document.get("container", {}), "runner": runner}})
    settings = Settings.load(settings_file)
    grid = LocalGrid(local, user=user)
    context = TaskContext(grid=grid, settings=settings, keep_workdir=keep_workdir)
    service = TaskService(grid, settings)
    dispatcher = LocalDispatcher(local, user, settings_file=settings_file, workers=settings.local_concurrent_runs)
    display = TaskProgressDisplay()
    display.attach(context)
    try:
        with display, sigterm_as_exception():  # SIGTERM: the run is recorded failed and cleaned up
            outcome = service.run_now(config, context, _ShardsInWorkers(service, context, dispatcher, local))
    except Terminated as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(143) from None
    if outcome.shard_collections:
        complete_from_catalog(grid, outcome, config.input_collection)
    print_outcome(outcome)
    if not outcome.succeeded:
        raise typer.Exit(1)


def complete_from_catalog(grid: Grid, outcome: TaskOutcome, input_collection: str) -> None:
    """A sharded task's shards ran in worker processes, so this process saw none of their work:
    what they tagged and replicated is read back from the catalog (the shards' records and the
    images carrying the task's predictions), which is also what counts after a salvage."""
    records = shard_records(grid, outcome.collection)
    outcome.replicated_bytes = sum(r.int_value(names.A_REPLICATED_BYTES) for r in records)
    outcome.class_counts = grid.count_predictions(PredictionQuery(outcome.task_id, input_collection))
    outcome.tagged = sum(outcome.class_counts.values())


class _ShardsInWorkers(DispatchedRuns):
    """As the local worker runs them, saying so first."""

    def __init__(self, service: TaskService, context: TaskContext, dispatcher: LocalDispatcher, grid_dir: Path) -> None:
        super().__init__(service, context, dispatcher)
        self.grid_dir = grid_dir

    def run_queued(self, collections: Sequence[str]) -> list[TaskOutcome]:
        if len(collections) > 1:
            console.print(f"running {len(collections)} shards, at most {self.dispatcher.workers} at once "
                          f"(logs: {self.grid_dir / 'logs'})")
        return super().run_queued(collections)


def demo(
    directory: Path = typer.Argument(Path(".c2d-demo"), help="Where the demo zone lives (created if needed)."),
    force: bool = typer.Option(False, "--force", help="Classify images that are already tagged, again."),
    runner: str = typer.Option("auto", "--runner", help="auto (Docker if available), docker or inprocess."),
    images: Optional[int] = typer.Option(None, "--images", min=1, help="How many images (default: the 540 test digits; more adds shifted variants)."),
) -> None:
    """Build a demo zone (LocalGrid) with real images and a trained model, and classify them."""
    from compute_to_data.demo.run import run_demo

    display = TaskProgressDisplay()
    with display:
        result = run_demo(directory, force=force, runner=runner, images=images, context_hook=display.attach)
    for note in result.setup_notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"runner: {result.runner_reason}")
    if result.nothing_to_do:
        console.print(f"[yellow]{result.nothing_to_do}[/]")
        return
    assert result.outcome is not None
    print_outcome(result.outcome)
    if result.accuracy is not None:
        console.print(f"accuracy against the known labels: [bold]{result.accuracy:.1%}[/] over {result.scored} images")
    if result.report_file:
        console.print(f"report: {result.report_file}")
    if not result.outcome.succeeded:
        raise typer.Exit(1)


def images_classified(outcome: TaskOutcome) -> int:
    """Images the task classified (unreadable ones are not), however far a failed run got:
    the selected inputs are what it meant to classify, not what it did."""
    if outcome.images_done is not None:
        done = outcome.images_done
    else:
        done = outcome.done_before + (outcome.run_result.images_done if outcome.run_result is not None else 0)
    return max(0, done - outcome.failed_images)


def print_outcome(outcome: TaskOutcome) -> None:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(outcome.state.value if outcome.state else "", "white")
    console.print(f"task [bold]{outcome.task_id}[/]: [{colour}]{outcome.state.value if outcome.state else 'unknown'}[/]")
    console.print(f"  task collection: {outcome.collection}")
    console.print(f"  compute resource: {outcome.compute_resource}   runner: {outcome.runner}")
    console.print(f"  inputs: {outcome.inputs} selected, {outcome.skipped_already_tagged} skipped (already tagged)"
                  + (f", {outcome.done_before} done by earlier runs" if outcome.done_before else ""))
    console.print(f"  images: {images_classified(outcome)} classified, {outcome.failed_images} unreadable; "
                  f"{outcome.tagged} tagged")
    console.print(f"  replicated to the compute resource: {outcome.replicated_bytes:,} bytes"
                  + (f"; {outcome.staging['in_place']:,} object(s) staged in place, not replicated"
                     if outcome.staging.get("in_place") else "")
                  + (f"; {outcome.staging['streamed']:,} object(s) read through iRODS, not replicated"
                     if outcome.staging.get("streamed") else ""))
    if outcome.error:
        console.print(f"  [red]error:[/] {outcome.error}")
    for note in outcome.notes:
        console.print(f"  [yellow]note:[/] {note}")
    if outcome.class_counts:
        table = Table(title="predicted classes", show_edge=False)
        table.add_column("class")
        table.add_column("images", justify="right")
        for label, count in outcome.class_counts.items():
            table.add_row(label, str(count))
        console.print(table)
    if outcome.timings:
        console.print(f"  timings: {timings_summary(outcome.timings)}")
    if outcome.report_path:
        console.print(f"  report (logical path): {outcome.report_path}")
