"""What every run on a compute host does, whatever notebook it runs.

A task's run (:mod:`.plans`) and a sharded task's summary (:mod:`.summary`) both hold the run
lock on the host (:meth:`~compute_to_data.lifecycle.machine.TaskStateMachine.run_lock`) from
before they are ``running`` until their end is recorded, stage into a staging directory of their
own made empty first, run a notebook by the runner and keep the runner's log with the outputs,
bring every output file into the task collection, and remove the staging directory at the end
(unless asked to keep it). Written once here, so the two cannot drift apart.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain.catalog import Resource
from compute_to_data.domain.settings import Settings
from compute_to_data.grid.base import Grid
from compute_to_data.runners.base import Runner, RunRequest, RunResult


def new_workdir(settings: Settings, resource: Resource, run_key: str) -> TaskWorkdir:
    """The run's staging directory on the resource's host, made empty (what a dead run left of it is gone)."""
    workdir = TaskWorkdir(settings.staging_directory_for(resource.host, resource.name), run_key)
    workdir.create()
    return workdir


def run_notebook(runner: Runner, request: RunRequest, workdir: TaskWorkdir) -> RunResult:
    """The notebook, by the runner; its log (when the runner kept one apart) among the outputs."""
    result = runner.run(request)
    if result.log:
        log_file = workdir.output_dir / result.log_name
        if not log_file.exists():
            log_file.write_text(result.log)
    return result


def put_outputs(grid: Grid, workdir: TaskWorkdir, collection: str, resource: Resource) -> list[Path]:
    """Every file the run wrote under ``outputs/`` as a data object of the task collection, at the
    same relative path, on the run's resource (replacing what a failed earlier run left); returns
    the files."""
    files = workdir.output_files()
    for path in files:
        relative = path.relative_to(workdir.output_dir).as_posix()
        logical = posixpath.join(collection, relative)
        parent = posixpath.dirname(logical)
        if parent != collection:
            grid.create_collection(parent)
        grid.put_file(path, logical, resource.name, overwrite=True)
    return files


def remove_workdir(workdir: TaskWorkdir | None, *, keep: bool) -> None:
    """The staging directory goes at the run's end, however it ended (``keep``: left to look at)."""
    if workdir is not None and not keep:
        workdir.remove()
