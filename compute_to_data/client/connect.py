"""Choosing the grid a client command talks to: a zone (python-irodsclient) or a LocalGrid."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compute_to_data.client.submitters import LocalSubmitter, RuleSubmitter, Submitter
from compute_to_data.client.tasks import TaskClient
from compute_to_data.domain.errors import SettingsError
from compute_to_data.domain.settings import Settings
from compute_to_data.grid.base import Grid
from compute_to_data.grid.client import (
    IrodsClientGrid,
    IrodsConnectionOptions,
    PasswordPrompt,
    terminal_prompt,
)
from compute_to_data.grid.local import LocalGrid
from compute_to_data.service.tasks import TaskService

DEFAULT_LOCAL_USER = "rods"


@dataclass
class ClientOptions:
    """What the ``c2d`` client commands accept (``--local`` or the iRODS connection options)."""

    local: Path | None = None
    user: str | None = None
    settings: Path | None = None
    irods: IrodsConnectionOptions = field(default_factory=IrodsConnectionOptions)

    @property
    def is_local(self) -> bool:
        return self.local is not None


def open_grid(options: ClientOptions, prompt: PasswordPrompt | None = terminal_prompt) -> Grid:
    if options.local is not None:
        return LocalGrid(options.local, user=options.user or DEFAULT_LOCAL_USER)
    irods = options.irods
    if options.user:
        irods.user = options.user
    return IrodsClientGrid.connect(irods, prompt=prompt)


def make_submitter(grid: Grid, options: ClientOptions) -> Submitter:
    if grid.kind == "local":
        return LocalSubmitter(grid, settings_file=options.settings)
    return RuleSubmitter(grid)


def client_settings(options: ClientOptions) -> Settings:
    """The settings a client uses for the heartbeat lease (and, with ``--local``, to run tasks):
    ``--settings``, else ``$C2D_SETTINGS`` or the server's file if readable here, else defaults."""
    try:
        return Settings.load(options.settings)
    except SettingsError:
        if options.settings is not None:
            raise
        return Settings()


def open_client(options: ClientOptions, prompt: PasswordPrompt | None = terminal_prompt) -> TaskClient:
    return client_for(open_grid(options, prompt), options)


def client_for(grid: Grid, options: ClientOptions) -> TaskClient:
    """The task client of a grid already open (the CLI's, and the report browser's per user)."""
    settings = client_settings(options)
    if grid.kind == "local":  # this host is the compute host: reading a task reaps a dead run
        return TaskClient(grid, make_submitter(grid, options), service=TaskService(grid, settings))
    return TaskClient(grid, make_submitter(grid, options), lease_seconds=settings.heartbeat_lease_seconds)
