"""One task run for real from the client: ``c2d submit --local`` starts a detached worker that
runs the notebook (in-process runner, small trained model, real digit images); ``c2d wait``,
``status``, ``list`` and ``report`` follow it, each in its own process."""

from __future__ import annotations

import json

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore
from tests.support.client_support import c2d, real_run


@pytest.fixture(scope="module")
def run():
    return real_run()


def test_submit_then_wait_follows_a_real_run(run):
    assert run.wait.returncode == 0, run.wait.stdout + run.wait.stderr
    last = run.wait.stdout.strip().splitlines()[-1]
    assert run.task_id in last and "succeeded" in last and "images 40/40" in last
    assert "Traceback" not in run.submit.stderr + run.wait.stderr
    record = TaskStateStore(LocalGrid(run.root, user="alice")).read(run.collection)
    assert record.get(names.A_STATE) == "succeeded" and record.get(names.A_PROGRESS) == "40/40"
    assert record.get(names.A_SUBMITTED_BY) == "alice" and record.get(names.A_RUNNER) == "inprocess"


def test_predictions_are_on_the_images_and_mostly_right(run):
    grid = LocalGrid(run.root, user="alice")
    objects = grid.list_data_objects(run.inputs, recursive=True, avu_attributes=["predictedclass"])
    units = names.task_units(run.task_id)
    predicted = {o.path: a.value for o in objects for a in o.avus if a.units == units}
    assert set(predicted) == set(run.truth)
    right = sum(predicted[p] == run.truth[p] for p in predicted)
    assert right / len(predicted) >= 0.8


def test_status_list_report_in_their_own_processes(run, tmp_path):
    local = ["--local", str(run.root), "--user", "alice"]
    status = c2d("status", run.task_id, *local, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)[names.A_STATE] == "succeeded"
    listing = c2d("list", *local)
    assert run.task_id in listing.stdout
    report = c2d("report", run.task_id, *local, "-o", str(tmp_path))
    html = (tmp_path / f"{run.task_id}-report.html").read_text()
    assert report.returncode == 0 and "<html" in html and "Image classification" in html
    bob = c2d("status", run.task_id, "--local", str(run.root), "--user", "bob")
    assert bob.returncode == 1 and "error:" in bob.stderr and "Traceback" not in bob.stderr
