"""What a hostile user found (issue 9's observations), one test each; each failed before its fix.

Observation 2 (a killed run's state, leftovers and resume) is the fault suite, ``tests/faults/``;
the cancel of observation 5 is also tested at the engine level in ``test_lifecycle.py``.
"""

from __future__ import annotations

import errno
import json
import math
import os
import threading
import time
from pathlib import Path

import pytest

from compute_to_data.client import connect as connect_module
from compute_to_data.client.local_worker import run_queued_task
from compute_to_data.client.submitters import LocalSubmitter
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ConfigError, NotAllowedError, ResourceSelectionError
from compute_to_data.domain.settings import AllowedImage
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore
from tests.support.client_support import run_cli
from tests.support.engine_support import (
    HOME,
    IMAGES,
    RESULTS,
    ScriptedRunner,
    assert_tagged_once_by,
    make_config,
    make_grid,
    make_settings,
    vault_files,
)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")


def context(tmp_path, grid, runner=None, **settings) -> TaskContext:
    return TaskContext(grid=grid, settings=make_settings(tmp_path, **settings), runner=runner or ScriptedRunner())


def states(grid, under=RESULTS) -> list[str]:
    return [r.get(names.A_STATE) for r in TaskStateStore(grid).list(under)]


# --- 1: a failure once the task collection exists is recorded, never left queued -----------------
class FailingPut(LocalGrid):
    """The vault refuses task_config.json, as a filesystem refuses a name that is too long."""

    def put_file(self, local_path, logical_path, resource, overwrite=False):  # noqa: ANN001, ANN201
        if logical_path.endswith("/" + names.TASK_CONFIG_FILE):
            raise OSError(errno.ENAMETOOLONG, "File name too long", logical_path)
        return super().put_file(local_path, logical_path, resource, overwrite)


def test_1_a_failure_in_prepare_after_the_collection_exists_is_recorded(tmp_path):
    make_grid(tmp_path)
    grid = FailingPut(tmp_path / "grid", user="alice")
    outcome = create_task(make_config(), context(tmp_path, grid)).run()
    assert outcome.state == TaskState.FAILED and "File name too long" in outcome.error
    with pytest.raises(OSError):
        create_task(make_config(inputs__skip_tagged=False), context(tmp_path, grid)).submit()
    records = TaskStateStore(grid).list(RESULTS)
    assert [r.state for r in records] == [TaskState.FAILED, TaskState.FAILED]
    assert all("File name too long" in r.get(names.A_ERROR) for r in records)


def test_1_an_output_collection_iRODS_cannot_hold_is_refused_before_anything(tmp_path, capsys, monkeypatch):
    admin, alice = make_grid(tmp_path)
    doc = make_config().document
    doc["output"]["collection"] = HOME + "/" + "r" * 5000
    config = tmp_path / "long.json"
    config.write_text(json.dumps(doc))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"allowed_runners": ["inprocess"], "staging_directory": str(tmp_path / "staging")}))
    before = vault_files(tmp_path)
    code, _, err = run_cli(capsys, monkeypatch, "run", str(config), "--local", str(tmp_path / "grid"), "--user",
                           "alice", "--settings", str(settings))
    assert code == 1 and "error:" in err and "iRODS allows at most 1088 bytes" in err and "Traceback" not in err
    assert vault_files(tmp_path) == before and states(alice, HOME) == []


# --- 3: an incomplete pair is no prediction ---------------------------------------------------------
def test_3_an_image_with_a_class_but_no_score_is_classified_and_replaced_atomically(tmp_path):
    admin, alice = make_grid(tmp_path)
    first = create_task(make_config(), context(tmp_path, alice)).run()
    assert first.succeeded
    crashed = f"{IMAGES}/img_02.png"  # the window add_new_avus describes: class added, score not
    units = names.task_units(first.task_id)
    alice.set_avus(EntityType.DATA_OBJECT, crashed, [AVU("predictedclass", "2", units)], clear=["predictedscore"])
    runner = ScriptedRunner()
    second = create_task(make_config(), context(tmp_path, alice, runner)).run()  # skip_tagged: the default
    assert second.succeeded and second.inputs == 1 and second.skipped_already_tagged == 5
    tags = {a.attribute: a for a in alice.get_avus(EntityType.DATA_OBJECT, crashed)}
    assert set(tags) == {"predictedclass", "predictedscore"} and tags["predictedscore"].units == f"c2d:{second.task_id}"
    assert tags["predictedclass"].units == f"c2d:{second.task_id}"


# --- 4: the archive resource is checked before anything changes ------------------------------------
@pytest.mark.parametrize("archive", [{"role": "LONG_TERM_STORAGE", "resource": "no_such_resc"},
                                     {"role": "LONG_TERM_STORAGE", "resource": "gpu_resc"}])
def test_4_an_unusable_archive_resource_is_refused_before_anything_changes(tmp_path, archive):
    admin, alice = make_grid(tmp_path)
    before = vault_files(tmp_path)
    runner = ScriptedRunner()
    with pytest.raises(ResourceSelectionError, match=archive["resource"]):
        create_task(make_config(archive=archive), context(tmp_path, alice, runner)).run()
    assert runner.requests == [] and vault_files(tmp_path) == before and not alice.collection_exists(RESULTS)


# --- 5: cancelling a --local task stops its run and keeps who cancelled it --------------------------
def test_5_cancel_of_a_local_task_stops_its_run_and_the_error_stays(tmp_path, capsys, monkeypatch):
    admin, alice = make_grid(tmp_path)
    seen: list[int] = []

    class Slow(ScriptedRunner):
        def run(self, request):  # noqa: ANN001, ANN201
            def slowly(req, i):
                seen.append(i)
                time.sleep(0.4)
            self.after_image = slowly
            return super().run(request)

    threads: list[threading.Thread] = []
    settings = make_settings(tmp_path, heartbeat_interval_seconds=0.2)

    def make_context(grid):  # noqa: ANN001, ANN202
        return TaskContext(grid=grid, settings=settings, runner=Slow(), progress_interval=0.0)

    def launch(grid, collection):  # noqa: ANN001, ANN202
        threads.append(threading.Thread(target=run_queued_task, args=(grid, collection, make_context(grid))))
        threads[-1].start()

    monkeypatch.setattr(connect_module, "make_submitter",
                        lambda grid, options: LocalSubmitter(grid, launcher=launch, context_factory=make_context))
    config = tmp_path / "task.json"
    config.write_text(json.dumps(make_config().document))
    local = ["--local", str(tmp_path / "grid"), "--user", "alice"]
    code, out, _ = run_cli(capsys, monkeypatch, "submit", str(config), *local)
    task_id = out.strip()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    code, out, err = run_cli(capsys, monkeypatch, "cancel", task_id, *local)
    assert code == 0 and "cancelled" in out, err
    threads[0].join(20)
    record = TaskStateStore(alice).find(task_id)
    assert record.state == TaskState.CANCELLED and record.get(names.A_ERROR) == "cancelled by alice"
    assert len(seen) < 6  # the run stopped instead of running on to the end
    assert_tagged_once_by(alice, task_id, expect=0)


# --- 6: the image allowlist holds for every runner --------------------------------------------------
def test_6_the_image_allowlist_is_checked_with_the_in_process_runner(tmp_path):
    admin, alice = make_grid(tmp_path)
    config = make_config(container={"image": "evil/miner:latest", "runner": "scripted"})
    settings = {"allowed_images": (AllowedImage("compute-to-data/classifier:0.1.0"),)}
    with pytest.raises(NotAllowedError, match="'evil/miner:latest' is not allowed"):
        create_task(config, context(tmp_path, alice, **settings)).run()
    assert not alice.collection_exists(RESULTS)
    allowed = make_config(container={"image": "compute-to-data/classifier:0.1.0", "runner": "scripted"})
    assert create_task(allowed, context(tmp_path, alice, **settings)).run().succeeded


# --- 7: the settings' default timeout applies ---------------------------------------------------------
def test_7_the_settings_default_timeout_applies_to_a_config_without_one(tmp_path):
    admin, alice = make_grid(tmp_path)
    runner = ScriptedRunner()
    assert make_config().timeout_seconds is None
    create_task(make_config(), context(tmp_path, alice, runner, default_timeout_seconds=123)).run()
    create_task(make_config(inputs__skip_tagged=False, timeout_seconds=50),
                context(tmp_path, alice, runner, default_timeout_seconds=123, max_timeout_seconds=40)).run()
    assert [r.timeout_seconds for r in runner.requests] == [123, 40]


# --- 8: NaN is not a number a config may hold ----------------------------------------------------------
def test_8_nan_and_infinity_are_refused(tmp_path):
    doc = json.dumps(make_config().document).replace('labels.txt"', 'labels.txt", "score_threshold": NaN')
    assert "NaN" in doc
    with pytest.raises(ConfigError, match="NaN is not valid JSON"):
        TaskConfig.from_json(doc)
    with pytest.raises(ConfigError, match=r"\$.parameters.score_threshold: (nan|inf) is not a number JSON allows"):
        make_config(parameters={"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt",
                                "score_threshold": math.inf})


# --- 9: unreadable images are counted and shown -----------------------------------------------------------
def test_9_unreadable_images_are_recorded_and_shown(tmp_path, capsys, monkeypatch):
    images = {f"img_{i:02d}.png": str(i % 3).encode() for i in range(21)}
    images.update({f"bad_{i}.png": b"\x89garbage" for i in range(4)})
    admin, alice = make_grid(tmp_path, images)
    outcome = create_task(make_config(), context(tmp_path, alice)).run()
    assert outcome.succeeded and outcome.failed_images == 4
    record = TaskStateStore(alice).read(outcome.collection)
    assert record.get(names.A_IMAGES_FAILED) == "4" and record.progress_text() == "25/25 (4 unreadable)"
    local = ["--local", str(tmp_path / "grid"), "--user", "alice"]
    code, out, _ = run_cli(capsys, monkeypatch, "status", outcome.task_id, *local)
    assert code == 0 and "25/25 (4 unreadable)" in out
    code, out, _ = run_cli(capsys, monkeypatch, "wait", outcome.task_id, *local)
    assert code == 0 and "images 25/25 (100%), 4 unreadable" in out
    from starlette.testclient import TestClient

    from compute_to_data.web.app import WebConfig, create_app

    page = TestClient(create_app(WebConfig.for_local(tmp_path / "grid", "alice", cache_dir=tmp_path / "cache")), base_url="http://127.0.0.1")
    assert "25/25 (4 unreadable)" in page.get(f"/tasks/{outcome.task_id}").text
    assert "25/25 (4 unreadable)" in page.get("/tasks").text


# --- 10: model and labels of the same name; errors without vault paths ------------------------------------
def test_10_labels_and_model_with_the_same_name_do_not_collide(tmp_path):
    admin, alice = make_grid(tmp_path)
    for sub, content in (("model", b"torchscript"), ("labels", b"0\n1\n2\n")):
        local = tmp_path / f"{sub}.bin"
        local.write_bytes(content)
        alice.create_collection(f"{HOME}/{sub}")
        alice.put_file(local, f"{HOME}/{sub}/weights", "lts_resc")
    seen = {}

    def look(request):
        seen.update({k: Path(request.parameters[k]).read_bytes() for k in ("model_path", "labels_path")})

    config = make_config(parameters={"model": f"{HOME}/model/weights", "labels": f"{HOME}/labels/weights"})
    outcome = create_task(config, context(tmp_path, alice, ScriptedRunner(before_return=look))).run()
    assert outcome.succeeded, outcome.error
    assert seen == {"model_path": b"torchscript", "labels_path": b"0\n1\n2\n"}


def test_10_a_staging_error_names_the_image_not_the_vault(tmp_path):
    admin, alice = make_grid(tmp_path)
    alice.replicate(f"{IMAGES}/img_03.png", "gpu_resc")
    replica = alice.get_data_object(f"{IMAGES}/img_03.png").good_replica_on("gpu_resc")
    os.unlink(replica.physical_path)  # the vault lost a file
    outcome = create_task(make_config(), context(tmp_path, alice)).run()
    record = TaskStateStore(alice).read(outcome.collection)
    error = record.get(names.A_ERROR)
    assert record.state == TaskState.FAILED and f"cannot stage {IMAGES}/img_03.png" in error
    assert str(tmp_path) not in error and "vault" not in error


# --- 11: no tracebacks for odd arguments ----------------------------------------------------------------
def test_11_odd_since_values_and_missing_configs_give_messages(tmp_path, capsys, monkeypatch):
    admin, alice = make_grid(tmp_path)
    outcome = create_task(make_config(), context(tmp_path, alice)).run()
    local = ["--local", str(tmp_path / "grid"), "--user", "alice"]
    code, out, err = run_cli(capsys, monkeypatch, "list", "--since", "99999999d", *local)
    assert code == 0 and outcome.task_id in out and "Traceback" not in err
    code, out, err = run_cli(capsys, monkeypatch, "run", str(tmp_path / "nope.json"), *local)
    assert code == 1 and "error: cannot read the task config" in err and "Traceback" not in err
    from starlette.testclient import TestClient

    from compute_to_data.web.app import WebConfig, create_app

    page = TestClient(create_app(WebConfig.for_local(tmp_path / "grid", "alice", cache_dir=tmp_path / "cache")), base_url="http://127.0.0.1")
    answer = page.get("/tasks?since=99999999d")
    assert answer.status_code == 200 and outcome.task_id in answer.text


# --- 12: clear causes, nothing left behind, costs counted once ------------------------------------------
def test_12_output_collection_equal_to_the_inputs_names_the_cause():
    with pytest.raises(ConfigError, match="is the input collection"):
        make_config(output={"collection": IMAGES})
    with pytest.raises(ConfigError, match="lies inside the output collection"):
        make_config(output={"collection": HOME})


def test_12_a_refused_local_submit_leaves_no_uploaded_config(tmp_path, capsys, monkeypatch):
    admin, alice = make_grid(tmp_path)
    monkeypatch.setattr(connect_module, "make_submitter", lambda grid, options: LocalSubmitter(
        grid, launcher=lambda g, c: None, context_factory=lambda g: context(tmp_path, g)))
    doc = make_config().document
    doc["parameters"]["model"] = f"{HOME}/models/missing.pt"
    config = tmp_path / "task.json"
    config.write_text(json.dumps(doc))
    code, _, err = run_cli(capsys, monkeypatch, "submit", str(config), "--local", str(tmp_path / "grid"), "--user", "alice")
    assert code == 1 and "missing.pt" in err
    folder = f"{HOME}/.c2d/submissions"
    assert not alice.collection_exists(folder) or alice.list_data_objects(folder) == []


def test_12_a_run_that_did_not_wait_stages_what_it_listed_without_listing_again(tmp_path, monkeypatch):
    """Listed a moment ago, with no other run on the resource since (its slot was free), the
    inputs lie where they were listed: staging uses that listing (on a zone a second listing of
    2,000 images cost 0.25 s of a 13 s task). One that waited lists again (the test below)."""
    admin, alice = make_grid(tmp_path)
    listed: list[str] = []
    real = LocalGrid.list_data_objects

    def counting(self, collection, recursive=False, avu_attributes=()):  # noqa: ANN001, ANN202
        listed.append(collection)
        return real(self, collection, recursive, avu_attributes)

    monkeypatch.setattr(LocalGrid, "list_data_objects", counting)
    outcome = create_task(make_config(), context(tmp_path, alice)).run()
    assert outcome.succeeded and outcome.tagged > 0
    assert listed.count(IMAGES) == 1, listed


def test_12_replicated_bytes_are_counted_once_for_a_task_that_waited(tmp_path):
    admin, alice = make_grid(tmp_path)
    release = threading.Event()

    class Holding(ScriptedRunner):
        def run(self, request):  # noqa: ANN001, ANN201
            release.wait(10)
            return super().run(request)

    always = {"replicate": "always"}  # what is counted is replication (by default inputs elsewhere are streamed)
    first = create_task(make_config(compute=always), context(tmp_path, alice, Holding()))
    thread = threading.Thread(target=first.run)
    thread.start()
    deadline = time.monotonic() + 10
    while first.outcome.state != TaskState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.02)
    second = create_task(make_config(inputs__skip_tagged=False, compute=always), context(tmp_path, admin.as_user("alice")))
    result: list = []
    waiting = threading.Thread(target=lambda: result.append(second.run()))
    waiting.start()  # selects its inputs now, then waits for the slot
    time.sleep(1.0)
    release.set()
    thread.join(10)
    waiting.join(10)
    assert first.outcome.succeeded and first.outcome.replicated_bytes > 0
    assert result[0].succeeded and result[0].replicated_bytes == 0
    record = TaskStateStore(alice).read(result[0].collection)
    assert record.get(names.A_REPLICATED_BYTES) == "0"
