"""The rule entry points end to end, called exactly as the rule engine calls them.

A fake server (tests/fakes, following docs/irods-behaviour.md) runs the rulebase over a
LocalGrid catalog: rules get a list of unquoted strings, a callback and a rei; irule shows
stdout only when a rule succeeds and the msiExit message otherwise; the delay server runs
queued Python bodies as the submitting user; remoteExec runs a rule on another host.
"""

from __future__ import annotations

import json
import posixpath
import re
from pathlib import Path

import pytest

from compute_to_data import rules
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel, EntityType
from tests.support.rules_support import CONFIG, HOME, IMAGES, MODEL, RESULTS, Zone, build_zone, config_doc

TASK_ID = re.compile(r"task_id: (\d{8}T\d{6}Z-[0-9a-f]{6})")
MUTATING = ("msiCollCreate", "msiDataObjCreate", "msiDataObjWrite", "msiDataObjRepl", "msiCollRepl",
            "msi_atomic_apply_metadata_operations", "msiModAVUMetadata", "delayExec")


@pytest.fixture
def zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    return build_zone(tmp_path, monkeypatch)


def fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line and not line.startswith("follow"))


def assert_readable(message: str) -> None:
    """What a researcher sees: no C++ locations, no Python tracebacks, no raw error markers."""
    assert message
    assert "iRods__Error__Code" not in message and ".cpp" not in message and "Traceback" not in message


# --- c2d_submit + the delay server ----------------------------------------------------------------
def test_submit_returns_at_once_with_state_queued_and_the_delayed_body_runs_the_task(zone: Zone) -> None:
    run = zone.irule("c2d_submit", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    task_id = out["task_id"]
    collection = f"{RESULTS}/{task_id}"
    assert out["state"] == "queued" and out["collection"] == collection
    assert "irods_rule_engine_plugin-irods_rule_language-instance -F c2d_status.r" in run.stdout
    # Nothing ran yet: recorded as queued, no container, no tags; one delayed rule, in Python.
    assert zone.record(collection)[names.A_STATE] == "queued"
    assert zone.runner.requests == []
    assert all(avus == [] for avus in zone.predictions().values())
    [queued] = zone.server.delay_queue
    assert queued.user == "alice" and queued.instance == rules.PYTHON_INSTANCE
    assert "<PLUSET>" in queued.hints
    assert re.fullmatch(r'callback\.c2d_run_task\("[A-Za-z0-9_-]+"\)', queued.body)
    assert len(queued.hints) + len(queued.body) < rules.MAX_RULE_TEXT

    [delayed] = zone.server.run_delay_queue()
    assert delayed.ok, delayed.error
    assert fields(delayed.stdout)["state"] == "succeeded"
    record = zone.record(collection)
    assert record[names.A_STATE] == "succeeded" and record[names.A_SUBMITTED_BY] == "alice"
    assert record[names.A_REPORT] == f"{collection}/report.html"
    assert len(zone.runner.requests) == 1
    predictions = zone.predictions()
    assert len(predictions) == 6
    for path, avus in predictions.items():
        assert {a.attribute for a in avus} == {"predictedclass", "predictedscore"}
        assert {a.units for a in avus} == {f"c2d:{task_id}"}
    # outputs are data objects owned by the caller, on the compute resource
    alice = zone.alice
    for name in ("report.html", "task_config.json", "predictions.json"):
        obj = alice.get_data_object(f"{collection}/{name}")
        assert obj.good_replica_on("gpu_resc") is not None
        assert alice.has_access(obj.path, AccessLevel.OWN)


def test_run_now_writes_id_state_collection_and_report(zone: Zone) -> None:
    run = zone.irule("c2d_run", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    collection = f"{RESULTS}/{out['task_id']}"
    assert out["state"] == "succeeded"
    assert out["collection"] == collection
    assert out["report"] == f"{collection}/report.html"
    assert zone.alice.read_data_object(out["report"]) == b"<html>report</html>"
    assert zone.server.delay_queue == []


def test_c2d_run_of_one_run_here_checks_everything_once(zone: Zone) -> None:
    """A c2d_run whose one run is on this host runs at once: the config validated, the resource
    chosen, the permissions and inputs checked once, not once for a submit and again for the
    queued run's start (0.6 s of a 2,000-image task on a real zone's costs)."""
    run = zone.irule("c2d_run", CONFIG)
    assert run.ok, run.error
    timings = json.loads(zone.record(fields(run.stdout)["collection"])[names.A_TIMINGS])
    assert {"validate", "select_compute_resource", "check_permissions", "select_inputs", "execute"} <= set(timings)
    assert not [step for step in timings if step.startswith("submit.")], timings
    assert zone.server.delay_queue == [] and zone.server.remote_calls == []


def test_arguments_arrive_unquoted_or_quoted(zone: Zone) -> None:
    assert zone.irule("c2d_submit", f'"{CONFIG}"').ok  # python-irodsclient with quotes in the value
    assert zone.irule("c2d_submit", f"'{CONFIG}'").ok


def test_failed_task_fails_c2d_run_with_its_error_and_report(zone: Zone) -> None:
    zone.runner.fail = "CUDA out of memory"
    run = zone.irule("c2d_run", CONFIG)
    assert run.code == rules.ACTION_FAILED_ERR and run.stdout == ""
    assert "ended failed" in run.error and "CUDA out of memory" in run.error and "report.html" in run.error
    assert_readable(run.error)
    [collection] = zone.task_collections()
    assert zone.record(collection)[names.A_STATE] == "failed"


# --- status ----------------------------------------------------------------------------------------
def test_status_by_task_id_and_by_collection(zone: Zone) -> None:
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    collection = f"{RESULTS}/{task_id}"
    queued = fields(zone.irule("c2d_status", task_id).stdout)
    assert queued["state"] == "queued" and queued["collection"] == collection
    assert queued["submitted_by"] == "alice" and queued["created"] and "started" not in queued
    assert re.fullmatch(r"validate [\d.]+ s, select_compute_resource [\d.]+ s, check_permissions [\d.]+ s, "
                        r"select_inputs [\d.]+ s, prepare_task_collection [\d.]+ s", queued["timings"])
    zone.server.run_delay_queue()
    done = zone.irule("c2d_status", collection)
    assert done.ok
    out = fields(done.stdout)
    assert out["task_id"] == task_id and out["state"] == "succeeded"
    assert out["report"] == f"{collection}/report.html"
    assert out["started"] and out["finished"] and out["progress"] == "6/6"
    assert out["compute_resource"] == "gpu_resc" and out["runner"] == "inprocess"
    # Where the time went, step by step (the submit's checks first), in one line.
    steps = [part.split(" ")[0] for part in out["timings"].split(", ")]
    assert steps[0] == "submit.validate" and "stage_inputs" in steps and steps[-1] == "finalize"
    missing = zone.irule("c2d_status", "20990101T000000Z-000000")
    assert not missing.ok and "no task with id" in missing.error
    assert_readable(missing.error)
    # bob cannot see alice's task
    assert not zone.irule("c2d_status", task_id, user="bob").ok


# --- cancel ----------------------------------------------------------------------------------------
def test_cancel_of_a_queued_task(zone: Zone) -> None:
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    collection = f"{RESULTS}/{task_id}"
    assert not zone.irule("c2d_cancel", task_id, user="bob").ok  # not bob's to cancel
    cancel = zone.irule("c2d_cancel", task_id)
    assert cancel.ok, cancel.error
    assert fields(cancel.stdout)["state"] == "cancelled"
    assert zone.record(collection)[names.A_STATE] == "cancelled"
    [delayed] = zone.server.run_delay_queue()
    assert delayed.ok  # the delayed run checks the state first and exits quietly
    assert fields(delayed.stdout)["state"] == "cancelled"
    assert zone.runner.requests == []
    assert all(avus == [] for avus in zone.predictions().values())
    again = zone.irule("c2d_cancel", collection)
    assert not again.ok and "already cancelled" in again.error


def test_cancel_of_a_running_task_stops_its_container(zone: Zone) -> None:
    seen = []
    zone.runner.before_return = lambda request: seen.append(zone.irule("c2d_cancel", request.task_id))
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    [delayed] = zone.server.run_delay_queue()
    [cancel] = seen
    assert cancel.ok, cancel.error
    assert "stopped: yes" in cancel.stdout
    assert zone.runner.stopped == {task_id}
    record = zone.record(f"{RESULTS}/{task_id}")
    assert record[names.A_STATE] == "cancelled" and record[names.A_FINISHED]
    assert all(avus == [] for avus in zone.predictions().values())  # a cancelled run tags nothing


# --- refusals before any change --------------------------------------------------------------------
def test_caller_without_write_on_the_destination_is_refused_before_any_change(zone: Zone) -> None:
    bob = zone.admin.as_user("bob")
    bob.create_collection("/tempZone/home/bob/results")
    zone.admin.set_acl("read", "alice", "/tempZone/home/bob/results")
    zone.put_config(config_doc(output={"collection": "/tempZone/home/bob/results"}))
    vault_before = sorted(p for p in (zone.root / "grid" / "vaults" / "gpu_resc").rglob("*"))
    zone.server.calls.clear()
    for rule in ("c2d_submit", "c2d_run"):
        run = zone.irule(rule, CONFIG)
        assert run.code == -818000 and run.error_name == "CAT_NO_ACCESS_PERMISSION"
        assert "cannot write to /tempZone/home/bob/results" in run.error
        assert_readable(run.error)
    assert not any(zone.server.calls[name] for name in MUTATING), zone.server.calls
    assert zone.server.delay_queue == []
    assert zone.admin.list_collections("/tempZone/home/bob/results") == []
    assert sorted(p for p in (zone.root / "grid" / "vaults" / "gpu_resc").rglob("*")) == vault_before
    assert all(avus == [] for avus in zone.predictions().values())


def test_invalid_or_missing_configs_are_reported_readably(zone: Zone) -> None:
    missing = zone.irule("c2d_submit", f"{HOME}/nope.json")
    assert not missing.ok and "nope.json" in missing.error
    assert_readable(missing.error)
    broken = f"{HOME}/broken.json"
    local = zone.root / "broken.json"
    local.write_text('{"task_type": "image_classification",')
    zone.alice.put_file(local, broken, "lts_resc")
    run = zone.irule("c2d_submit", broken)
    assert run.code == -130000 and "not valid JSON" in run.error and "line 1" in run.error
    zone.put_config({**config_doc(), "parameters": {"model": MODEL, "labels": MODEL, "batch_size": 0}, "extra": 1})
    run = zone.irule("c2d_submit", CONFIG)
    assert not run.ok and "$.extra" in run.error and "$.parameters.batch_size" in run.error
    assert zone.irule("c2d_submit").error.startswith("c2d_submit: missing task config path")
    assert zone.server.delay_queue == [] and zone.task_collections() == []


# --- dispatch to the compute resource's host -------------------------------------------------------
def test_run_is_dispatched_to_the_compute_resource_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, compute_host="gpu-node-1")
    run = zone.irule("c2d_run", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    assert out["state"] == "succeeded"
    [(host, text)] = zone.server.remote_calls
    assert host == "gpu-node-1" and re.fullmatch(r'c2d_run_task\("[A-Za-z0-9_-]+"\)', text)
    assert zone.runner_hosts == ["gpu-node-1"]  # the runner (Docker) is only ever made there
    assert zone.runner.requests[0].workdir.is_relative_to(tmp_path / "staging")

    # the delayed path too: the delay server runs on the provider and hands the run over
    zone.put_config(config_doc(inputs={"collection": IMAGES, "pattern": "*.png", "skip_tagged": False}))
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    [delayed] = zone.server.run_delay_queue()
    assert delayed.ok, delayed.error
    assert zone.record(f"{RESULTS}/{task_id}")[names.A_STATE] == "succeeded"
    assert [h for h, _ in zone.server.remote_calls] == ["gpu-node-1", "gpu-node-1"]
    assert zone.runner_hosts == ["gpu-node-1", "gpu-node-1"]


def test_cancel_of_a_running_task_on_another_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, compute_host="gpu-node-1")
    seen = []
    zone.runner.before_return = lambda request: seen.append(zone.irule("c2d_cancel", request.task_id))
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    [delayed] = zone.server.run_delay_queue()
    [cancel] = seen
    assert cancel.ok, cancel.error
    assert "stopped: requested on gpu-node-1" in cancel.stdout
    assert [host for host, text in zone.server.remote_calls if text.startswith("c2d_cancel_here(")] == ["gpu-node-1"]
    assert zone.runner.stopped == {task_id}
    assert zone.runner_hosts == ["gpu-node-1", "gpu-node-1"]  # the run, then the cancel: both there
    assert zone.record(f"{RESULTS}/{task_id}")[names.A_STATE] == "cancelled"


def test_unreachable_or_unrecognised_compute_host_fails_the_task_readably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, compute_host="gpu-node-1")
    from compute_to_data.grid import hosts

    monkeypatch.setattr(hosts, "is_local_host", lambda host, extra=(): host == "localhost")  # nobody knows itself
    run = zone.irule("c2d_run", CONFIG)
    assert run.code == rules.ACTION_FAILED_ERR
    assert "local_host_names" in run.error
    [collection] = zone.task_collections()
    assert zone.record(collection)[names.A_STATE] == "failed"
    assert zone.runner_hosts == []


# --- the upload trigger --------------------------------------------------------------------------
@pytest.fixture
def trigger_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    zone = build_zone(tmp_path, monkeypatch, settings={"upload_trigger_enabled": True})
    zone.server.rules["acPostProcForPut"] = rules.acPostProcForPut
    return zone


def test_upload_trigger_fires_only_for_c2d_json(trigger_zone: Zone) -> None:
    zone = trigger_zone
    image = zone.root / "new.png"
    image.write_bytes(b"1")
    zone.server.calls.clear()
    pep = zone.server.put(image, f"{IMAGES}/new.png")
    assert pep is not None and pep.ok
    assert sum(zone.server.calls.values()) == 0  # not a single catalog call for other uploads
    assert zone.server.delay_queue == []

    doc = config_doc()
    del doc["inputs"]["collection"]  # defaults to the collection the config is put in
    local = zone.root / "classify.c2d.json"
    local.write_text(json.dumps(doc))
    pep = zone.server.put(local, f"{IMAGES}/classify.c2d.json")
    assert pep is not None and pep.ok
    [queued] = zone.server.delay_queue
    assert queued.user == "alice"
    [avu] = zone.admin.get_avus(EntityType.DATA_OBJECT, f"{IMAGES}/classify.c2d.json")
    assert avu.attribute == names.A_TASK_ID
    collection = f"{RESULTS}/{avu.value}"
    record = zone.record(collection)
    assert record[names.A_STATE] == "queued" and record[names.A_INPUT_COLLECTION] == IMAGES
    [run] = zone.server.run_delay_queue()
    assert run.ok and zone.record(collection)[names.A_STATE] == "succeeded"
    tagged = {path for path, avus in zone.predictions().items() if avus}
    assert len(tagged) == 7 and f"{IMAGES}/new.png" in tagged  # six images and new.png
    assert f"{IMAGES}/classify.c2d.json" not in tagged  # the pattern *.png keeps the config out


def test_upload_trigger_records_why_a_config_was_refused_and_never_fails_the_upload(trigger_zone: Zone) -> None:
    zone = trigger_zone
    local = zone.root / "bad.c2d.json"
    local.write_text(json.dumps({"task_type": "image_classification", "output": {"collection": RESULTS}}))
    pep = zone.server.put(local, f"{HOME}/bad.c2d.json")
    assert pep is not None and pep.ok
    [avu] = zone.admin.get_avus(EntityType.DATA_OBJECT, f"{HOME}/bad.c2d.json")
    assert avu.attribute == rules.A_SUBMIT_ERROR and "$.parameters" in avu.value
    assert zone.server.delay_queue == []


def test_upload_trigger_is_off_unless_enabled(zone: Zone) -> None:
    zone.server.rules["acPostProcForPut"] = rules.acPostProcForPut
    local = zone.root / "x.c2d.json"
    local.write_text(json.dumps(config_doc()))
    pep = zone.server.put(local, f"{HOME}/x.c2d.json")
    assert pep is not None and pep.ok
    assert zone.server.delay_queue == [] and zone.task_collections() == []


def test_rulebase_exports_the_user_rules_but_not_the_upload_pep() -> None:
    assert set(rules.__all__) == {
        "c2d_run", "c2d_submit", "c2d_status", "c2d_cancel", "c2d_resume", "c2d_run_task", "c2d_cancel_here",
        "c2d_reap_here", "c2d_series_step", "c2d_replicate_chunk",
    }
    assert "acPostProcForPut" not in rules.__all__


# --- the native rule files users run --------------------------------------------------------------
RULE_FILES = Path(__file__).resolve().parents[2] / "rules"


@pytest.mark.parametrize("name, variable", [
    ("c2d_run", "config"), ("c2d_submit", "config"), ("c2d_status", "task"), ("c2d_cancel", "task"),
    ("c2d_resume", "task"),
])
def test_native_rule_files(name: str, variable: str) -> None:
    text = (RULE_FILES / f"{name}.r").read_text()
    body = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert re.search(rf"\{{\s*{name}\(\*{variable}\)\s*;?\s*\}}", "\n".join(body)), text
    assert any(re.fullmatch(rf'INPUT \*{variable}=".+"', line.strip()) for line in body), text
    assert any(line.strip() == "OUTPUT ruleExecOut" for line in body), text


# --- with the real notebook (in-process runner, real inference) ---------------------------------------
@pytest.mark.slow
def test_submit_with_the_real_notebook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Demo digits and model, the real notebook through the in-process runner, real host checks."""
    from compute_to_data.demo import run as demo
    from tests.fakes.irods_server import FakeIrodsServer

    alice, facts = demo.build_zone(tmp_path, images=24)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"allowed_runners": ["inprocess"], "staging_directory": str(tmp_path / "staging")}))
    monkeypatch.setenv(names.SETTINGS_ENV, str(settings))
    config = tmp_path / "task.json"
    config.write_text(json.dumps(demo.task_document(force=False, batch_size=8)))
    alice.put_file(config, f"{demo.HOME}/task.json", "lts_resc")
    server = FakeIrodsServer(alice.root, host="irods-provider")  # resources are on "localhost": loopback
    server.load_rulebase(rules)

    submitted = server.irule("c2d_submit", f"{demo.HOME}/task.json")
    assert submitted.ok, submitted.error
    task_id = fields(submitted.stdout)["task_id"]
    [run] = server.run_delay_queue()
    assert run.ok, run.error
    out = fields(run.stdout)
    assert out["state"] == "succeeded", out
    collection = posixpath.join(demo.RESULTS, task_id)
    stored = {o.name for o in alice.list_data_objects(collection)}
    assert {"report.html", "notebook.ipynb", "predictions.csv", "predictions.json", "task_config.json"} <= stored
    objects = alice.list_data_objects(demo.INPUTS, recursive=True, avu_attributes=("predictedclass", "predictedscore"))
    assert len(objects) == facts["images"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    hits = 0
    for obj in objects:
        tags = {a.attribute: a for a in obj.avus}
        assert tags["predictedclass"].units == f"c2d:{task_id}"
        hits += tags["predictedclass"].value == truth[posixpath.relpath(obj.path, demo.INPUTS)]
    assert hits / len(objects) > 0.7


# --- resume and signs of life -------------------------------------------------------------------------
def test_a_failed_task_is_resumed_through_the_rules(zone: Zone) -> None:
    zone.runner.fail = "CUDA out of memory"
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    zone.server.run_delay_queue()
    assert zone.record(f"{RESULTS}/{task_id}")[names.A_STATE] == "failed"
    assert not zone.irule("c2d_resume", task_id, user="bob").ok  # not bob's
    zone.runner.fail = None
    resumed = zone.irule("c2d_resume", task_id)
    assert resumed.ok, resumed.error
    out = fields(resumed.stdout)
    assert out["state"] == "queued" and out["resumed"] == "1" and "c2d_status.r" in resumed.stdout
    [delayed] = zone.server.run_delay_queue()
    assert fields(delayed.stdout)["state"] == "succeeded", delayed.stdout
    record = zone.record(f"{RESULTS}/{task_id}")
    assert record[names.A_RESUMED] == "1" and names.A_ERROR not in record
    again = zone.irule("c2d_resume", task_id)
    assert not again.ok and "is succeeded; only a failed or cancelled task can be resumed" in again.error
    assert_readable(again.error)


def test_status_of_a_silent_task_has_its_compute_host_check_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run died on gpu-node-1; c2d_status on the provider asks that host, which records it failed."""
    from compute_to_data.domain.settings import Settings
    from compute_to_data.service.tasks import TaskService

    zone = build_zone(tmp_path, monkeypatch, compute_host="gpu-node-1",
                      settings={"heartbeat_lease_seconds": 1.0, "heartbeat_interval_seconds": 0.5})
    task_id = fields(zone.irule("c2d_submit", CONFIG).stdout)["task_id"]
    collection = f"{RESULTS}/{task_id}"
    TaskService(zone.alice, Settings.load(zone.settings_file)).machine.begin_run(
        collection, {names.A_RUN_HOST: "gpu-node-1", names.A_PROGRESS: "2/6"})
    assert fields(zone.irule("c2d_status", task_id).stdout)["state"] == "running"
    import time

    time.sleep(2.1)
    out = fields(zone.irule("c2d_status", task_id).stdout)
    assert [h for h, text in zone.server.remote_calls if text.startswith("c2d_reap_here(")] == ["gpu-node-1"]
    assert out["state"] == "failed" and out["error"].startswith("no sign of life from gpu-node-1 since ")
    assert out["error"].endswith("2/6 images done")
