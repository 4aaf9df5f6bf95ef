"""`c2d run --local`: a task config file run on a LocalGrid through the CLI, with a plugged-in runner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from compute_to_data.cli.main import app
from compute_to_data.domain import conventions as names
from compute_to_data.domain.registry import runners
from compute_to_data.lifecycle.store import TaskStateStore

from .engine_support import RESULTS, ScriptedRunner, make_config, make_grid


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
