"""Sub-commands `c2d image ...` (being written)."""

from __future__ import annotations

import typer

app = typer.Typer(help="image commands", no_args_is_help=True)
