"""Top-level task commands: ``c2d validate``, ``c2d run`` (on a LocalGrid) and ``c2d demo``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from compute_to_data.cli.display import TaskProgressDisplay
from compute_to_data.domain.errors import ConfigError
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.domain.timings import timings_summary
from compute_to_data.engine import create_task
from compute_to_data.engine.task import TaskContext, TaskOutcome

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
    settings_file: Path | None = typer.Option(None, "--settings", help="Server-side settings JSON (else $C2D_SETTINGS or /etc/irods/compute_to_data.json)."),
    runner: str | None = typer.Option(None, "--runner", help="Override the config's runner: docker, inprocess or auto."),
    keep_workdir: bool = typer.Option(False, "--keep-workdir", help="Keep the staging directory for debugging."),
) -> None:
    """Run a task now on a LocalGrid, through the same Template Method the iRODS rules use."""
    from compute_to_data.engine.termination import Terminated, sigterm_as_exception
    from compute_to_data.grid.local import LocalGrid

    try:
        text = config_file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the task config {config_file}: {exc.strerror}") from None
    config = TaskConfig.from_json(text, source=str(config_file))
    if runner is not None:
        config = TaskConfig.from_document({**config.document, "container": {**config.document.get("container", {}), "runner": runner}})
    settings = Settings.load(settings_file)
    grid = LocalGrid(local, user=user)
    context = TaskContext(grid=grid, settings=settings, keep_workdir=keep_workdir,
                          run_shards=_dispatcher(local, user, settings_file, settings.local_concurrent_runs))
    display = TaskProgressDisplay()
    display.attach(context)
    try:
        with display, sigterm_as_exception():  # SIGTERM: the run is recorded failed and cleaned up
            outcome = create_task(config, context).run()
    except Terminated as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(143) from None
    print_outcome(outcome)
    if not outcome.succeeded:
        raise typer.Exit(1)


def _dispatcher(grid_dir: Path, user: str, settings_file: Path | None, workers: int):  # noqa: ANN202
    """A task larger than one shard: its shards in worker processes, at most ``workers`` at once."""
    from compute_to_data.client.local_dispatcher import LocalDispatcher

    def run_shards(task: object, collections: list[str]) -> list[TaskOutcome]:
        console.print(f"running {len(collections)} shards, at most {workers} at once (logs: {grid_dir / 'logs'})")
        LocalDispatcher(grid_dir, user, settings_file=settings_file, workers=workers).run(collections)
        return []

    return run_shards


def demo(
    directory: Path = typer.Argument(Path(".c2d-demo"), help="Where the demo zone lives (created if needed)."),
    force: bool = typer.Option(False, "--force", help="Classify images that are already tagged, again."),
    runner: str = typer.Option("auto", "--runner", help="auto (Docker if available), docker or inprocess."),
    images: int | None = typer.Option(None, "--images", min=1, help="How many images (default: the 540 test digits; more adds shifted variants)."),
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


def print_outcome(outcome: TaskOutcome) -> None:
    colour = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(outcome.state.value if outcome.state else "", "white")
    console.print(f"task [bold]{outcome.task_id}[/]: [{colour}]{outcome.state.value if outcome.state else 'unknown'}[/]")
    console.print(f"  task collection: {outcome.collection}")
    console.print(f"  compute resource: {outcome.compute_resource}   runner: {outcome.runner}")
    console.print(
        f"  inputs: {outcome.inputs} classified, {outcome.skipped_already_tagged} skipped (already tagged), "
        f"{outcome.failed_images} unreadable; {outcome.tagged} tagged"
        + (f"; {outcome.done_before} done by earlier runs" if outcome.done_before else "")
    )
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
