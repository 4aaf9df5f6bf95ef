"""Client commands: ``c2d submit/status/list/wait/cancel/resume/report/serve``.

They work against a zone through python-irodsclient, configured like the icommands
(``~/.irods/irods_environment.json`` or ``$IRODS_ENVIRONMENT_FILE``; ``--host/--port/--zone/
--user`` override it; the password comes from ``iinit``'s auth file or a prompt, never from the
command line), or against a LocalGrid with ``--local DIR``.
"""

from __future__ import annotations

import sys
import time
import webbrowser
from datetime import timedelta
from pathlib import Path
from typing import Any, Optional, cast

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from compute_to_data.client import export
from compute_to_data.client.connect import ClientOptions, open_client, open_grid
from compute_to_data.client.review import Agreement, task_agreement
from compute_to_data.client.tasks import (
    EXIT_TIMEOUT,
    TaskClient,
    elapsed,
    format_duration,
    parse_since,
)
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ComputeToDataError, ConfigError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.shards import aggregate
from compute_to_data.domain.timings import format_seconds, timing_rows
from compute_to_data.grid.client import IrodsConnectionOptions
from compute_to_data.lifecycle import series as schedule

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Options shared by the commands, written the way typer 0.7 (Debian 12's python3-typer, what the
# server install has) understands: a default that is a typer.Option, no Annotated (typer >= 0.9).
LOCAL_OPT = typer.Option(None, "--local", envvar="C2D_LOCAL_GRID",
                         help="Work on this LocalGrid directory instead of an iRODS zone.")
USER_OPT = typer.Option(None, "--user", envvar="C2D_USER",
                        help="iRODS user (default: irods_user_name of the environment; 'rods' with --local).")
ENV_OPT = typer.Option(None, "--irods-env", envvar="IRODS_ENVIRONMENT_FILE",
                       help="iRODS environment file (default ~/.irods/irods_environment.json).")
HOST_OPT = typer.Option(None, "--host", help="iRODS server host (overrides the environment file).")
PORT_OPT = typer.Option(None, "--port", help="iRODS server port.")
ZONE_OPT = typer.Option(None, "--zone", help="iRODS zone.")
SETTINGS_OPT = typer.Option(None, "--settings", help="With --local: server-side settings JSON (else $C2D_SETTINGS).")


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("list")(list_tasks)
    app.command("wait")(wait)
    app.command("cancel")(cancel)
    app.command("resume")(resume)
    app.command("report")(report)
    app.command("serve")(serve)
    app.command("export")(export_labels)
    app.command("enrich")(enrich)


def _options(
    local: Path | None, user: str | None, irods_env: Path | None, host: str | None, port: int | None,
    zone: str | None, settings: Path | None = None,
) -> ClientOptions:
    return ClientOptions(
        local=local,
        user=user,
        settings=settings,
        irods=IrodsConnectionOptions(
            env_file=str(irods_env) if irods_env else None, host=host, port=port, zone=zone
        ),
    )


def _client(*args: object, **kwargs: object) -> TaskClient:
    return open_client(_options(*args, **kwargs))  # type: ignore[arg-type]


# --- presentation -----------------------------------------------------------------------------------
STATE_STYLE = {
    "queued": "cyan", "running": "blue", "succeeded": "green", "failed": "red", "cancelled": "yellow",
    names.STALE: "magenta",
}
SERIES_STYLE = {"active": "green", "cancelled": "yellow", "ended": "red"}


def _state_text(record: TaskRecord, client: TaskClient | None = None) -> Text:
    """The state as readers must show it: ``stale`` for a running task with no sign of life."""
    state = client.display_state(record) if client is not None else (
        record.state.value if record.state else (record.get(names.A_STATE) or "unknown"))
    return Text(state, style=STATE_STYLE.get(state, ""))


def _progress_text(record: TaskRecord) -> str:
    return record.progress_text()


def print_record(record: TaskRecord, client: TaskClient | None = None) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows: list[tuple[str, RenderableType | None]] = [
        ("task", record.task_id),
        ("state", _state_text(record, client)),
        ("waiting", record.queue_reason),
        ("images", _progress_text(record)),
        ("elapsed", format_duration(elapsed(record))),
        ("submitted by", record.get(names.A_SUBMITTED_BY)),
        ("created", record.get(names.A_CREATED)),
        ("started", record.get(names.A_STARTED)),
        ("finished", record.get(names.A_FINISHED)),
        ("last sign of life", record.get(names.A_HEARTBEAT) if record.state == TaskState.RUNNING else ""),
        ("runs on", record.get(names.A_RUN_HOST) if record.state == TaskState.RUNNING else ""),
        ("resumed", record.get(names.A_RESUMED) and f"{record.get(names.A_RESUMED)} time(s)"),
        ("collection", record.collection),
        ("inputs", f"{record.get(names.A_INPUT_COLLECTION)} ({record.get(names.A_INPUTS) or '?'} images)"),
        ("compute resource", record.get(names.A_COMPUTE_RESOURCE)),
        ("model", record.get(names.A_MODEL)),
        ("container image", record.get(names.A_IMAGE)),
        ("report", record.get(names.A_REPORT)),
        ("error", Text(record.get(names.A_ERROR), style="red")),
        *_series_rows(record, client),
        *(client.chain(record) if client is not None else []),
        ("timings", _timings_table(record)),
    ]
    if record.is_sharded:
        rows.insert(3, ("shards", record.get(names.A_SHARDS)))
    for label, value in rows:
        if value:
            table.add_row(label, value)
    console.print(table)
    if record.is_sharded and client is not None:
        print_shards(client.shards(record), client)


def print_shards(shards: list[TaskRecord], client: TaskClient) -> None:
    """One line per shard: where it runs, how far it is, how it ended."""
    table = Table(title=aggregate(shards).describe(), show_edge=False, title_justify="left")
    for column in ("shard", "state", "images", "resource", "host", "elapsed", "error"):
        table.add_column(column, no_wrap=column not in ("error",), overflow="fold")
    for shard in shards:
        table.add_row(
            shard.get(names.A_SHARD), _state_text(shard, client), _progress_text(shard),
            shard.get(names.A_COMPUTE_RESOURCE), shard.get(names.A_RUN_HOST),
            format_duration(elapsed(shard)) if shard.get(names.A_STARTED) else "-",
            Text(shard.get(names.A_ERROR), style="red"),
        )
    print_whole(table, [s.get(names.A_SHARD) for s in shards])


def _series_rows(record: TaskRecord, client: TaskClient | None) -> list[tuple[str, RenderableType | None]]:
    """Which series the task belongs to, its schedule and state, and when its next run is."""
    series_id = schedule.series_id_of(record)
    if series_id is None:
        return []
    try:
        info = client.series_info(record) if client is not None else schedule.SeriesInfo(record)
    except ComputeToDataError as exc:
        return [("series", f"{series_id} (its first task cannot be read: {exc})")]
    if info is None:
        return []
    first = " (this is its first task)" if info.series_id == record.task_id else ""
    state = Text(info.state_text, style=SERIES_STYLE.get(info.state_text, ""))
    if info.reason:
        state.append(f": {info.reason}", style="")
    next_run = info.next_run if info.is_active else ""
    if next_run and info.is_overdue():
        next_run += " (overdue: its queued run was lost; cancel the series and submit it again)"
    return [
        ("series", f"{info.series_id}{first}, every {info.every}"),
        ("series state", state),
        ("next run", next_run),
        ("last looked", info.checked),
    ]


def _timings_table(record: TaskRecord) -> Table | None:
    """Seconds per step, in the order they ran; the runner's own times indented under execute."""
    rows = timing_rows(record.timings)
    if not rows:
        return None
    table = Table(show_header=False, box=None, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for row in rows:
        table.add_row(("  " * row.depth) + row.name, format_seconds(row.seconds), style="dim" if row.depth else "")
    return table


def print_whole(renderable: RenderableType, must_show: list[str]) -> None:
    """Print a table without ever cutting the strings in ``must_show`` (task ids users copy).

    On a terminal the table fits the window when it can (long paths fold); if an id or any other
    cell would be cut (a state shown as ``succ…`` misleads as much as a cut id), or when the
    output is not a terminal (piped, at 80 columns), it is printed as wide as its content, one
    line per row.
    """
    if console.is_terminal and _shows_whole(renderable, console.width, must_show):
        console.print(renderable)
        return
    wide = Measurement.get(console, console.options.update(min_width=1, max_width=1_000_000), renderable).maximum
    width = max(wide, console.width if console.is_terminal else 1)
    Console(file=console.file, width=width, force_terminal=console.is_terminal, color_system=cast(Any, console.color_system),
            no_color=console.no_color, highlight=False, soft_wrap=False).print(renderable)


def _shows_whole(renderable: RenderableType, width: int, must_show: list[str]) -> bool:
    lines = console.render_lines(renderable, console.options.update_width(width), pad=False)
    text = "\n".join("".join(segment.text for segment in line) for line in lines)
    return "\u2026" not in text and all(item in text for item in must_show)


# --- commands ----------------------------------------------------------------------------------------
def submit(
    config: str = typer.Argument(..., help="Task config: a local JSON file (uploaded first) or a logical path in the grid."),
    logical: bool = typer.Option(False, "--logical", help="CONFIG is a logical path even if a local file has that name."),
    wait_for_it: bool = typer.Option(False, "--wait", help="Then follow it as `c2d wait` does."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT, settings: Optional[Path] = SETTINGS_OPT,
) -> None:
    """Submit a task (through the c2d_submit rule on a zone); prints the task id."""
    client = _client(local, user, irods_env, host, port, zone, settings)
    submission = client.submit(config, logical=True if logical else None)
    console.print(submission.task_id, highlight=False)
    if submission.record is not None:
        err_console.print(f"[dim]task collection: {submission.record.collection}[/]")
        if schedule.is_head(submission.record):
            info = schedule.SeriesInfo(submission.record)
            err_console.print(f"[dim]series {info.series_id}: {info.summary()}; it runs until: c2d cancel {info.series_id}[/]")
    err_console.print(f"[dim]follow it with: c2d wait {submission.task_id}[/]")
    if wait_for_it:
        raise typer.Exit(_follow(client, submission.task_id, 2.0, None))


def status(
    task: Optional[str] = typer.Argument(None, help="Task id or task collection (default: your newest task)."),
    as_json: bool = typer.Option(False, "--json", help="Print the task's c2d:: AVUs as JSON."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT,
) -> None:
    """Show a task's state, progress and provenance, and once it ended, how the people who
    validated its predictions agreed with the model."""
    import json

    client = _client(local, user, irods_env, host, port, zone)
    record = client.status(task)
    figures = task_agreement(client, record)
    if as_json:
        doc: dict[str, object] = {"collection": record.collection, **dict(record.values)}
        if record.is_sharded:
            doc["shards"] = [{"collection": s.collection, **dict(s.values)} for s in client.shards(record)]
        if figures is not None:
            doc["agreement"] = figures.as_dict()
        console.print_json(json.dumps(doc))
    else:
        print_record(record, client)
        if figures is not None and figures.images:
            print_agreement(figures)


def print_agreement(figures: Agreement) -> None:
    """How the people who validated the task's predictions agreed with the model: the figures of
    the task page (one function computes both), the confusion table once anything is validated."""
    console.print(Text.assemble(("agreement ", "bold"), figures.describe()))
    if not figures.validated:
        return
    table = Table(box=None, pad_edge=False)
    table.add_column("predicted \\ validated", style="bold", no_wrap=True)
    for validated in figures.validated_classes:
        table.add_column(validated, justify="right")
    for predicted in figures.predicted_classes:
        cells = []
        for validated in figures.validated_classes:
            n = figures.confusion.get((predicted, validated), 0)
            cells.append(Text(str(n) if n else "", style="green" if predicted == validated else ""))
        table.add_row(predicted, *cells)
    print_whole(table, [*figures.predicted_classes, *figures.validated_classes])


def list_tasks(
    state: Optional[TaskState] = typer.Option(None, "--state", help="Only tasks in this state."),
    since: Optional[str] = typer.Option(None, "--since", help="Only tasks created since: 2026-11-22, 2026-11-22T10:00Z, or an age: 30m, 2h, 3d."),
    everyone: bool = typer.Option(False, "--all", help="Also tasks other users submitted (that you can read)."),
    series: Optional[str] = typer.Option(None, "--series", help="Only the tasks of this series (the id of its first task), with the series' state and next run."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT,
) -> None:
    """List your tasks, newest first; a task of a scheduled series shows the series' id."""
    client = _client(local, user, irods_env, host, port, zone)
    if series is not None:
        info, _ = client.series(series)
        err_console.print(f"series {info.series_id}: {info.summary()}")
    records = client.list(state=state, since=parse_since(since) if since else None, mine_only=not everyone,
                          series=series)
    if not records:
        err_console.print("no tasks match")
        return
    in_series = any(schedule.series_id_of(r) for r in records)
    table = Table(show_edge=False)
    columns = ["task", "state", "images", "submitted by", "created", "elapsed"] + (["series"] if in_series else []) + ["collection"]
    for column in columns:
        table.add_column(column, no_wrap=column != "collection", overflow="fold" if column == "collection" else "ellipsis")
    for record in records:
        cells: list[RenderableType] = [record.task_id, _state_text(record, client), _progress_text(record), record.get(names.A_SUBMITTED_BY),
                 record.get(names.A_CREATED), format_duration(elapsed(record))]
        if in_series:
            cells.append(_series_cell(record))
        table.add_row(*cells, record.collection)
    print_whole(table, [r.task_id for r in records] + [r.get(names.A_SERIES) for r in records if r.get(names.A_SERIES)])


def _series_cell(record: TaskRecord) -> Text:
    """The series' id; on its first task also the schedule and the series' state."""
    series_id = schedule.series_id_of(record)
    if series_id is None:
        return Text("")
    if not schedule.is_head(record):
        return Text(series_id)
    info = schedule.SeriesInfo(record)
    text = Text(f"{series_id} ")
    text.append(f"every {info.every}, {info.state_text}", style=SERIES_STYLE.get(info.state_text, ""))
    return text


def _follow(client: TaskClient, task: str, poll: float, timeout: float | None) -> int:
    began = time.monotonic()

    def line(record: TaskRecord) -> Text:
        text = Text()
        text.append(f"{record.task_id}  ")
        text.append_text(_state_text(record, client))
        progress = record.progress
        if progress:
            done, total = progress
            percent = f" ({100 * done / total:.0f}%)" if total else ""
            failed = record.int_value(names.A_IMAGES_FAILED)
            text.append(f"  images {done}/{total}{percent}" + (f", {failed} unreadable" if failed else ""))
        shown = elapsed(record) if record.get(names.A_STARTED) else None
        seconds = shown.total_seconds() if shown is not None else time.monotonic() - began
        text.append(f"  elapsed {format_duration(timedelta(seconds=seconds))}")
        return text

    if console.is_terminal:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            result = client.wait(task, poll_seconds=poll, timeout=timeout, on_update=lambda r: live.update(line(r)))
    else:
        last: list[str] = []

        def plain(record: TaskRecord) -> None:
            key = f"{client.display_state(record)} {record.get(names.A_PROGRESS)}"
            if not last or last[-1] != key:
                last.append(key)
                console.print(line(record), highlight=False)

        result = client.wait(task, poll_seconds=poll, timeout=timeout, on_update=plain)
    record = result.record
    if result.timed_out:
        err_console.print(f"still {client.display_state(record)} after {timeout:g} s; stopped waiting (the task goes on)")
    elif result.stale:
        err_console.print(
            f"[magenta]no sign of life[/] from task {record.task_id} since {record.get(names.A_HEARTBEAT) or '?'}, "
            "and its compute host has not recorded how it ended; `c2d status` shows it once it has, and "
            f"`c2d resume {record.task_id}` then runs what is left"
        )
    elif record.state == TaskState.FAILED:
        err_console.print(f"[red]task failed:[/] {record.get(names.A_ERROR) or 'no error recorded'}")
        err_console.print(f"[dim]what is done is kept; run the rest with: c2d resume {record.task_id}[/]")
    elif record.state == TaskState.SUCCEEDED:
        err_console.print(f"[green]done.[/] report: c2d report {record.task_id} --open")
    return result.exit_code


def wait(
    task: str = typer.Argument(..., help="Task id or task collection."),
    poll: float = typer.Option(2.0, "--poll", min=0.05, help="Seconds between looks at the task's state."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, help=f"Stop waiting after this many seconds (exit {EXIT_TIMEOUT})."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT,
) -> None:
    """Follow a task until it ends. Exit code: 0 succeeded, 1 failed, 2 cancelled, 3 timed out,
    4 no sign of life (its compute host has not recorded how it ended)."""
    client = _client(local, user, irods_env, host, port, zone)
    raise typer.Exit(_follow(client, task, poll, timeout))


def cancel(
    task: str = typer.Argument(..., help="Task id or task collection."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT, settings: Optional[Path] = SETTINGS_OPT,
) -> None:
    """Cancel a queued or running task (through the c2d_cancel rule on a zone). The first task of
    a series stops the series (no further run; its run queued or running now is cancelled too)."""
    record = _client(local, user, irods_env, host, port, zone, settings).cancel(task)
    console.print(Text.assemble(f"{record.task_id}: ", _state_text(record)))
    if schedule.is_head(record):
        info = schedule.SeriesInfo(record)
        console.print(Text.assemble(f"series {info.series_id}: ", Text(info.state_text, style=SERIES_STYLE.get(info.state_text, ""))))


def resume(
    task: str = typer.Argument(..., help="Task id or task collection."),
    wait_for_it: bool = typer.Option(False, "--wait", help="Then follow it as `c2d wait` does."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT, settings: Optional[Path] = SETTINGS_OPT,
) -> None:
    """Run a failed or cancelled task again in its collection: only images without a complete
    prediction of the task are classified (through the c2d_resume rule on a zone)."""
    client = _client(local, user, irods_env, host, port, zone, settings)
    record = client.resume(task)
    console.print(Text.assemble(f"{record.task_id}: ", _state_text(record, client)))
    err_console.print(f"[dim]follow it with: c2d wait {record.task_id}[/]")
    if wait_for_it:
        raise typer.Exit(_follow(client, record.task_id, 2.0, None))


def report(
    task: str = typer.Argument(..., help="Task id or task collection."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File or directory to write (default ./<task id>-report.html)."),
    open_it: bool = typer.Option(False, "--open", help="Open it in the web browser."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT,
) -> None:
    """Download a task's HTML report (the rendered notebook)."""
    path = _client(local, user, irods_env, host, port, zone).download_report(task, output)
    console.print(str(path), highlight=False)
    if open_it:
        webbrowser.open(path.resolve().as_uri())


def export_labels(
    task: str = typer.Argument(..., help="Task id or task collection; the id of a series (its first task) exports the whole series."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json."),
    task_only: bool = typer.Option(False, "--task-only", help="The first task of a series alone, not the series."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT,
) -> None:
    """Validated labels out: path, predicted class and score, validated class, who, when (and the
    EXIF date and position where recorded) of every image carrying the task's prediction."""
    if fmt not in export.FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(export.FORMATS)}, not {fmt!r}")
    client = _client(local, user, irods_env, host, port, zone)
    records, rows = export.export_rows(client, task, whole_series=not task_only)
    text = export.render(records, rows, fmt)
    validated = sum(1 for r in rows if r.validated_class)
    what = f"{len(rows)} images of {len(records)} task{'s' if len(records) != 1 else ''}, {validated} validated"
    if output is None:
        sys.stdout.write(text)
        typer.echo(what, err=True)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"{output}: {what}", err=True)


def serve(
    bind: str = typer.Option("127.0.0.1", "--bind", help="Address to listen on (keep 127.0.0.1 unless a TLS proxy is in front)."),
    listen_port: int = typer.Option(8750, "--listen-port", help="Port to listen on."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Thumbnail cache (default ~/.cache/c2d/thumbnails)."),
    open_it: bool = typer.Option(False, "--open", help="Open the browser."),
    behind_tls: bool = typer.Option(False, "--behind-tls", help="Served as https by a proxy: the session cookie is then sent over https only."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT, settings: Optional[Path] = SETTINGS_OPT,
) -> None:
    """Report browser: tasks, reports, images by class, validation. Sign in with your iRODS account
    (with --local: no sign-in, acting as --user)."""
    import uvicorn

    from compute_to_data.web.app import WebConfig, create_app

    options = _options(local, user, irods_env, host, port, zone)
    if options.is_local:
        open_grid(options)  # fail now, with a clear message, if the grid or user does not exist
        config = WebConfig.for_local(options.local, options.user or "rods", cache_dir=cache_dir,  # type: ignore[arg-type]
                                     https_only=behind_tls, settings_file=settings, bind=bind, port=listen_port)
    else:
        config = WebConfig.for_irods(options.irods, cache_dir=cache_dir, https_only=behind_tls, settings_file=settings,
                                     bind=bind, port=listen_port)
    if bind not in ("127.0.0.1", "localhost", "::1") and not behind_tls:
        err_console.print(
            f"[yellow]warning:[/] listening on {bind}: passwords travel in clear text unless a TLS proxy is in front"
        )
    url = f"http://{'127.0.0.1' if bind in ('0.0.0.0', '::') else bind}:{listen_port}/"
    err_console.print(f"report browser on {url}  (Ctrl-C stops it)")
    if open_it:
        webbrowser.open(url)
    uvicorn.run(create_app(config), host=bind, port=listen_port, log_level="warning")


def enrich(
    collection: str = typer.Argument(..., help="Collection whose photos (JPEG, PNG, TIFF) get their EXIF and size as AVUs."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Also the sub-collections (default: yes)."),
    again: bool = typer.Option(False, "--again", help="Also photos enriched before (read their header again)."),
    page_size: int = typer.Option(1000, "--page-size", min=1, max=10000, help="Objects listed per page."),
    local: Optional[Path] = LOCAL_OPT, user: Optional[str] = USER_OPT, irods_env: Optional[Path] = ENV_OPT, host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT, zone: Optional[str] = ZONE_OPT, settings: Optional[Path] = SETTINGS_OPT,
) -> None:
    """Enrich photos uploaded before the upload hook existed (EXIF date, GPS, camera, size), page by page."""
    from compute_to_data.engine.ingest import EnrichReport, enrich_collection

    client = _client(local, user, irods_env, host, port, zone, settings)

    def progress(report: EnrichReport) -> None:
        err_console.print(f"[dim]page {report.pages}: {report.summary()}[/]")

    report = enrich_collection(client.grid, collection.rstrip("/") or "/", recursive=recursive, again=again,
                               page_size=page_size, on_page=progress)
    console.print(report.summary(), highlight=False)
    for path, reason in report.failed[:20]:
        err_console.print(f"[red]{path}: {reason}[/]", highlight=False)
    if report.failed:
        raise typer.Exit(1)
