"""Sub-commands `c2d local ...` (being written)."""

from __future__ import annotations

import typer

app = typer.Typer(help="local commands", no_args_is_help=True)
