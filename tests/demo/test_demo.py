"""`c2d demo` end to end with real inference (in-process runner), AVUs checked in the catalog."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compute_to_data.cli.main import app
from compute_to_data.demo.run import INPUTS, RESULTS, run_demo
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="module")
def first_run(demo_dir):
    return run_demo(demo_dir, runner="inprocess", images=120)


def test_demo_classifies_real_images_and_tags_them(first_run, demo_dir):
    outcome = first_run.outcome
    assert outcome is not None and outcome.state == TaskState.SUCCEEDED, outcome and outcome.error
    assert outcome.inputs == 120 and outcome.tagged == 120 and outcome.failed_images == 0
    assert first_run.accuracy is not None and first_run.accuracy > 0.85
    assert sum(outcome.class_counts.values()) == 120

    alice = LocalGrid(demo_dir / "grid", user="alice")
    objects = alice.list_data_objects(INPUTS, recursive=True, avu_attributes=("predictedclass", "predictedscore"))
    truth = json.loads((demo_dir / "truth.json").read_text())
    hits = 0
    for obj in objects:
        labels = {a.attribute: a for a in obj.avus}
        assert labels["predictedclass"].units == f"c2d:{outcome.task_id}"
        assert 0.0 <= float(labels["predictedscore"].value) <= 1.0
        hits += labels["predictedclass"].value == truth[posixpath.relpath(obj.path, INPUTS)]
    assert hits / len(objects) > 0.85

    record = TaskStateStore(alice).read(outcome.collection)
    assert record.state == TaskState.SUCCEEDED
    assert record.get(names.A_RUNNER) == "inprocess"
    stored = {o.name for o in alice.list_data_objects(outcome.collection)}
    assert {"report.html", "notebook.ipynb", "predictions.csv", "predictions.json", "runner.log", "task_config.json"} <= stored
    report = alice.read_data_object(posixpath.join(outcome.collection, "report.html")).decode()
    assert "<html" in report.lower() and "digit_" in report
    # The results first, then the provenance; no code, no host staging paths (notebook.ipynb has them all).
    notebook = alice.read_data_object(posixpath.join(outcome.collection, "notebook.ipynb")).decode()
    staging = str(demo_dir / "staging")
    assert staging not in report and staging in notebook
    assert "import torch" not in report and "import torch" in notebook
    assert report.index('<h1 id="Results"') < report.index('class="c2d-provenance"')
    top = report[report.index('class="c2d-provenance"'):]
    assert f"Provenance of task {outcome.task_id}" in top and record.get(names.A_MODEL_CHECKSUM) in top and "stage_inputs" in top
    # The step timings, the runner's own included, are on the task collection.
    assert {"stage_inputs", "execute", "run.papermill", "run.kernel_start", "run.inference", "finalize"} <= set(record.timings)
    assert first_run.report_file is not None and first_run.report_file.is_file()


def test_demo_rerun_skips_tagged_images_unless_forced(first_run, demo_dir):
    again = run_demo(demo_dir, runner="inprocess")
    assert again.outcome is None and "already carry predictedclass" in (again.nothing_to_do or "")
    alice = LocalGrid(demo_dir / "grid", user="alice")
    before = len(TaskStateStore(alice).list(RESULTS))
    forced = run_demo(demo_dir, runner="inprocess", force=True)
    assert forced.outcome is not None and forced.outcome.succeeded
    assert forced.outcome.replicated_bytes == 0  # everything is on gpu_resc since the first run
    assert len(TaskStateStore(alice).list(RESULTS)) == before + 1
    obj = alice.get_data_object(f"{INPUTS}/digit_00000.png", avu_attributes=("predictedclass", "predictedscore"))
    assert len(obj.avus) == 2 and {a.units for a in obj.avus} == {f"c2d:{forced.outcome.task_id}"}


def test_demo_command_prints_a_summary(first_run, demo_dir):
    result = CliRunner().invoke(app, ["demo", str(demo_dir), "--runner", "inprocess"])
    assert result.exit_code == 0, result.output
    assert "already carry predictedclass" in result.output


def test_a_notebook_that_raises_fails_the_task_registers_the_report_and_tags_nothing(tmp_path):
    """The real notebook through the in-process runner, with a model file that is not TorchScript."""
    from compute_to_data.engine import create_task
    from compute_to_data.engine.context import TaskContext
    from compute_to_data.runners.inprocess import InProcessRunner
    from tests.support.engine_support import IMAGES, make_config, make_grid, make_settings

    admin, alice = make_grid(tmp_path)  # its model.pt holds garbage bytes
    settings = make_settings(tmp_path)
    context = TaskContext(grid=alice, settings=settings, runner=InProcessRunner(settings=settings))
    task = create_task(make_config(), context)
    outcome = task.run()
    assert outcome.state == TaskState.FAILED
    record = TaskStateStore(alice).read(task.collection)
    assert record.state == TaskState.FAILED and record.get(names.A_ERROR)
    report = alice.read_data_object(f"{task.collection}/report.html").decode()
    assert "Error" in report or "error" in report
    for obj in alice.list_data_objects(IMAGES, avu_attributes=("predictedclass", "predictedscore")):
        assert obj.avus == ()


def test_demo_settings_are_written_whole_while_another_run_reads_them(tmp_path):
    """Two demo runs in one directory (the Docker turn-taking test starts two at once): one reads
    settings.json while the other rewrites it, and must never find it empty or half written."""
    import threading

    from compute_to_data.demo.run import demo_settings
    from compute_to_data.domain.settings import Settings

    demo_settings(tmp_path)
    failures: list[Exception] = []
    done = threading.Event()

    def write() -> None:
        for _ in range(300):
            demo_settings(tmp_path)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        try:
            Settings.load(tmp_path / "settings.json")
        except Exception as exc:  # noqa: BLE001 - any failure to read is the bug
            failures.append(exc)
    writer.join()
    assert failures == []
    assert not list(tmp_path.glob(".settings.json.*"))
