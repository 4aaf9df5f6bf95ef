"""The ``c2d`` command: one Typer app, sub-command groups in their own modules."""

from __future__ import annotations

import logging
import sys

import typer

from compute_to_data import __version__
from compute_to_data.cli import client_cmds, image_cmds, local_cmds, task_cmds
from compute_to_data.domain.errors import ComputeToDataError

app = typer.Typer(
    name="c2d",
    help="compute_to_data: run containerized classification notebooks where the data lives (iRODS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
task_cmds.register(app)
client_cmds.register(app)
app.add_typer(local_cmds.app, name="local")
app.add_typer(image_cmds.app, name="image")


@app.callback()
def _global(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages to stderr."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point: turn the project's errors into a readable message and exit code 1."""
    try:
        app()
    except ComputeToDataError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True, fg=typer.colors.RED)
        raise SystemExit(130) from None
