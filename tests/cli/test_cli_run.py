"""`c2d run --local`: a task config file run on a LocalGrid through the CLI, with a plugged-in runner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from compute_to_data.cli.main import app
from compute_to_data.domain import conventions as names
from compute_to_data.domain.registry import runners
from compute_to_data.lifecycle.store import TaskStateStore
from tests.support.engine_support import RESULTS, ScriptedRunner, make_config, make_grid


@pytest.fixture
def scripted_runner_registered():
    class Registered(ScriptedRunner):
        def __init__(self, settings=None):
            super().__init__()

    runners.register("scripted", Registered)
    yield
    runners._items.pop("scripted", None)


def test_run_command_runs_a_config_with_a_registered_runner(tmp_path, scripted_runner_registered):
    admin, alice = make_grid(tmp_path)
    config = tmp_path / "task.json"
    config.write_text(json.dumps(make_config(container={"runner": "scripted"}).document))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"allowed_runners": ["scripted"], "staging_directory": str(tmp_path / "staging")}))
    result = CliRunner().invoke(
        app, ["run", str(config), "--local", str(tmp_path / "grid"), "--user", "alice", "--settings", str(settings)]
    )
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "6 tagged" in result.output
    # the images lie on another host: read through iRODS (with the model and labels), nothing replicated
    assert "replicated to the compute resource: 0 bytes; 8 object(s) read through iRODS" in result.output
    (record,) = TaskStateStore(alice).list(RESULTS)
    assert record.state.value == "succeeded" and record.get(names.A_RUNNER) == "scripted"


def test_run_command_refuses_a_runner_the_settings_do_not_allow(tmp_path, scripted_runner_registered):
    make_grid(tmp_path)
    config = tmp_path / "task.json"
    config.write_text(json.dumps(make_config().document))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"allowed_runners": ["docker"], "staging_directory": str(tmp_path / "staging")}))
    result = CliRunner().invoke(
        app,
        ["run", str(config), "--local", str(tmp_path / "grid"), "--user", "alice", "--settings", str(settings),
         "--runner", "scripted"],
    )
    assert result.exit_code != 0
    assert "runner 'scripted' is not allowed" in str(result.exception)


def _run_cli(tmp_path, config_doc, **settings):
    config = tmp_path / "task.json"
    config.write_text(json.dumps(config_doc))
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps({"allowed_runners": ["scripted"], "staging_directory": str(tmp_path / "staging"),
                                         **settings}))
    return CliRunner().invoke(
        app, ["run", str(config), "--local", str(tmp_path / "grid"), "--user", "alice", "--settings", str(settings_file)]
    )


def test_run_of_a_sharded_task_summarizes_what_its_shards_did(tmp_path, scripted_runner_registered, monkeypatch):
    """The shards run in worker processes (here: the dispatcher's stand-in runs them in this
    process, as a worker would, and returns exit codes only): the summary is the catalog's."""
    from compute_to_data.client.local_dispatcher import LocalDispatcher
    from compute_to_data.domain.settings import Settings
    from compute_to_data.engine.context import TaskContext
    from compute_to_data.grid.local import LocalGrid
    from compute_to_data.service.tasks import TaskService

    images = {f"img_{i:02d}.png": str(i % 3).encode() for i in range(9)}
    make_grid(tmp_path, images)

    def run_in_workers(self, collections):
        grid = LocalGrid(self.grid_dir, user=self.user)
        settings = Settings.load(self.settings_file)
        codes = {}
        for collection in collections:
            context = TaskContext(grid=grid, settings=settings, runner=ScriptedRunner())
            codes[collection] = 0 if TaskService(grid, settings).start(collection, context).succeeded else 1
        return codes

    monkeypatch.setattr(LocalDispatcher, "run", run_in_workers)
    result = _run_cli(tmp_path, make_config(container={"runner": "scripted"}, compute__replicate="always").document,
                      max_shard_size=4)  # replicas asked for: the summary counts what the shards replicated
    assert result.exit_code == 0, result.output
    assert "ran as 3 shards" in result.output
    assert "inputs: 9 selected" in result.output and "images: 9 classified, 0 unreadable; 9 tagged" in result.output
    replicated = int(result.output.split("replicated to the compute resource: ")[1].split(" bytes")[0].replace(",", ""))
    # one byte per image, each replicated from lts_resc by its shard, and the model and labels once
    assert replicated == 9 + len(b"torchscript") + len(b"0\n1\n2\n")
    assert [line.split() for line in result.output.splitlines() if line.split()[:1] in (["0"], ["1"], ["2"])] == [
        ["0", "│", "3"], ["1", "│", "3"], ["2", "│", "3"]]  # the predicted classes table


def test_run_of_a_failed_task_does_not_claim_it_classified_its_inputs(tmp_path, monkeypatch):
    class Failing(ScriptedRunner):
        def __init__(self, settings=None):
            super().__init__(fail="RuntimeError: CUDA out of memory")

    runners.register("scripted", Failing)
    try:
        make_grid(tmp_path)
        result = _run_cli(tmp_path, make_config(container={"runner": "scripted"}).document)
    finally:
        runners._items.pop("scripted", None)
    assert result.exit_code == 1, result.output
    assert "inputs: 6 selected" in result.output and "images: 0 classified, 0 unreadable; 0 tagged" in result.output
    assert "6 classified" not in result.output
