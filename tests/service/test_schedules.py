"""Continuous runs: a scheduled task config becomes a series of tasks (tasks/schedule.py).

Through the fake rule-engine server (the delay server honours ``PLUSET`` on its own clock, which
a test moves on with ``advance``), on LocalGrid (the local dispatcher, driven by a test clock),
and through ``c2d`` and the report browser. No test waits for a schedule but one, which uses a
two-second interval that only a test setting allows.
"""

from __future__ import annotations

import base64
import json
import posixpath
import re
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compute_to_data import rules
from compute_to_data.client import connect as connect_module
from compute_to_data.client.local_worker import main as worker_main
from compute_to_data.client.local_worker import run_queued_task
from compute_to_data.client.submitters import LocalSubmitter
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AccessLevel
from compute_to_data.domain.conventions import SeriesState, TaskState
from compute_to_data.domain.errors import ConfigError, SettingsError, TaskStateError
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig, parse_duration
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.lifecycle import series as schedule
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.scheduler import SeriesScheduler, StepKind, follow
from compute_to_data.web.app import WebConfig, create_app

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402

from tests.support.client_support import run_cli
from tests.support.engine_support import HOME, IMAGES, RESULTS, ScriptedRunner, make_grid, make_settings
from tests.support.rules_support import CONFIG, MODEL, Zone, build_zone, config_doc

DAY = 86400
STEP_BODY = re.compile(r'callback\.c2d_series_step\("([A-Za-z0-9_-]+)"\)')


def fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line)


def decoded(body: str) -> dict:
    payload = STEP_BODY.fullmatch(body).group(1)
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def add_images(grid, tmp: Path, names_and_contents: dict[str, bytes]) -> list[str]:
    folder = tmp / f"new-{len(list(tmp.glob('new-*')))}"
    folder.mkdir()
    paths = []
    for name, content in names_and_contents.items():
        (folder / name).write_bytes(content)
        paths.append(grid.put_file(folder / name, f"{IMAGES}/{name}", "lts_resc").path)
    return paths


def units_by_image(grid) -> dict[str, set[str]]:
    return {
        o.path: {a.units for a in o.avus}
        for o in grid.list_data_objects(IMAGES, avu_attributes=("predictedclass", "predictedscore"))
    }


# --- the task config and the settings ----------------------------------------------------------------
def scheduled_doc(every: str = "1d", **inputs: object) -> dict:
    return {
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png", **inputs},
        "output": {"collection": RESULTS},
        "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
        "schedule": {"every": every},
    }


@pytest.mark.parametrize("every, seconds", [("30m", 1800), ("6h", 21600), ("1d", DAY), ("1w", 7 * DAY), ("45s", 45)])
def test_schedule_every_takes_a_whole_number_and_a_unit(every, seconds):
    assert TaskConfig.from_document(scheduled_doc(every)).schedule_seconds == seconds
    assert TaskConfig.from_document({k: v for k, v in scheduled_doc().items() if k != "schedule"}).schedule_seconds is None


@pytest.mark.parametrize("every, expected", [
    ("1 day", "$.schedule.every: '1 day' is not valid: how often, as a whole number and a unit: s, m, h, d or w"),
    ("0d", "$.schedule.every: '0d' is not valid"),
    ("1.5h", "$.schedule.every: '1.5h' is not valid"),
    ("400d", "$.schedule.every: '400d' is longer than a year; the longest interval is 366d"),
])
def test_a_malformed_schedule_is_refused_with_its_path(every, expected):
    with pytest.raises(ConfigError) as caught:
        TaskConfig.from_document(scheduled_doc(every))
    assert expected in str(caught.value)


def test_a_schedule_needs_every_and_nothing_else():
    doc = scheduled_doc()
    doc["schedule"] = {"every": "1d", "at": "02:00"}
    with pytest.raises(ConfigError, match=r"\$\.schedule\.at: unknown field; allowed here: every"):
        TaskConfig.from_document(doc)
    doc["schedule"] = {}
    with pytest.raises(ConfigError, match=r"\$\.schedule\.every: required field is missing"):
        TaskConfig.from_document(doc)


def test_a_scheduled_task_cannot_classify_everything_again():
    with pytest.raises(ConfigError, match=r"\$\.inputs\.skip_tagged: a scheduled task classifies only the images"):
        TaskConfig.from_document(scheduled_doc(skip_tagged=False))
    assert TaskConfig.from_document(scheduled_doc(skip_tagged=True)).schedule_every == "1d"


def test_durations_share_one_syntax_and_read_back():
    assert parse_duration("90m") == timedelta(minutes=90) and parse_duration("2 h") == timedelta(hours=2)
    assert parse_duration("soon") is None and parse_duration("1y") is None
    assert [schedule.describe_every(s) for s in (45, 60, 5400, 3600, DAY, 7 * DAY, 10 * DAY)] == [
        "45s", "1m", "90m", "1h", "1d", "1w", "10d"]


def test_the_settings_minimum_interval(tmp_path):
    assert Settings().schedule_min_interval_seconds == 3600
    settings = Settings.from_document({"schedule_min_interval_seconds": 60}, "s.json")
    assert settings.schedule_min_interval_seconds == 60 and settings.to_document()["schedule_min_interval_seconds"] == 60
    with pytest.raises(SettingsError, match="schedule_min_interval_seconds must be at least 1"):
        Settings.from_document({"schedule_min_interval_seconds": 0}, "s.json")


def test_the_next_run_keeps_the_series_cadence():
    due = "2026-11-22T02:00:00Z"
    on_time = datetime(2026, 11, 22, 2, 0, 40, tzinfo=UTC)
    assert schedule.next_due(due, DAY, on_time) == "2026-11-23T02:00:00Z"  # not 02:00:40: no drift
    three_days_late = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # the delay server was down
    assert schedule.next_due(due, DAY, three_days_late) == "2026-11-26T02:00:00Z"  # no replay of missed runs


# --- through the rules and the fake delay server ----------------------------------------------------
@pytest.fixture
def zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    return on_the_servers_clock(build_zone(tmp_path, monkeypatch), monkeypatch)


def on_the_servers_clock(zone: Zone, monkeypatch: pytest.MonkeyPatch) -> Zone:
    """The rules read the time of the host they run on, which is the delay server's: when a test
    lets a day pass for the fake delay server, it passes for the rules too."""
    monkeypatch.setattr(names, "utc_now", lambda: datetime.fromtimestamp(zone.server.now, UTC))
    return zone


def submit_series(zone: Zone, every: str = "1d", **sections: object) -> tuple[str, str]:
    zone.put_config(config_doc(schedule={"every": every}, **sections))
    run = zone.irule("c2d_submit", CONFIG)
    assert run.ok, run.error
    head = fields(run.stdout)["task_id"]
    return head, f"{RESULTS}/{head}"


def steps(zone: Zone) -> list:
    return [e for e in zone.server.delay_queue if "c2d_series_step" in e.body]


def test_a_series_picks_up_the_images_added_between_two_runs_and_nothing_else(zone, tmp_path):
    zone.put_config(config_doc(schedule={"every": "1d"}))
    run = zone.irule("c2d_submit", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    head = out["task_id"]
    head_collection = f"{RESULTS}/{head}"
    assert out["series"] == head and out["schedule"] == "every 1d" and out["next_run"]
    assert f"c2d_cancel of {head}" in run.stdout
    # The first task is queued as any task, and carries the series: its own id.
    record = zone.record(head_collection)
    assert record[names.A_STATE] == "queued" and record[names.A_SERIES] == head
    assert record[names.A_SCHEDULE] == "1d" and record[names.A_SERIES_STATE] == "active"
    assert record[names.A_SERIES_NEXT_RUN] == out["next_run"]
    # Two delayed rules: the first run now, the series' next step a day later (PLUSET in seconds).
    queued_run, queued_step = zone.server.delay_queue
    assert "c2d_run_task" in queued_run.body
    assert f"<PLUSET>{DAY}s</PLUSET>" in queued_step.hints and f"<INST_NAME>{rules.PYTHON_INSTANCE}</INST_NAME>" in queued_step.hints
    assert decoded(queued_step.body) == {"series": head_collection, "due": out["next_run"]}
    assert len(queued_step.hints) + len(queued_step.body) < rules.MAX_RULE_TEXT

    [first] = zone.server.run_delay_queue()  # the step is not due yet
    assert first.ok and fields(first.stdout)["state"] == "succeeded"
    assert steps(zone) == [queued_step]
    run_one = units_by_image(zone.alice)
    assert len(run_one) == 6 and set().union(*run_one.values()) == {f"c2d:{head}"}

    new = add_images(zone.alice, tmp_path, {"cam_a.png": b"1", "cam_b.png": b"2", "cam_c.png": b"0"})
    zone.server.advance(DAY)
    ran = zone.server.run_delay_queue()  # the step, then the run it queued
    assert [r.ok for r in ran] == [True, True], [r.error for r in ran]
    assert fields(ran[0].stdout)["step"] == "started"
    [second_collection] = [c for c in zone.task_collections() if c != head_collection]
    second = zone.record(second_collection)
    assert second[names.A_SERIES] == head and second[names.A_STATE] == "succeeded" and second[names.A_INPUTS] == "3"
    assert names.A_SERIES_STATE not in second and names.A_SCHEDULE not in second  # only the head carries the series' own state
    # The new images, and only they, were classified by the second task; run 1's images keep theirs.
    assert sorted(zone.runner.classified[6:]) == ["cam_a.png", "cam_b.png", "cam_c.png"]
    now = units_by_image(zone.alice)
    assert {p: u for p, u in now.items() if p not in new} == run_one
    assert all(now[p] == {f"c2d:{posixpath.basename(second_collection)}"} for p in new)
    # The next step is queued, a day on, and the head says when.
    [following] = steps(zone)
    assert decoded(following.body)["due"] == zone.record(head_collection)[names.A_SERIES_NEXT_RUN] != out["next_run"]
    assert zone.record(head_collection)[names.A_SERIES_CHECKED]

    status = fields(zone.irule("c2d_status", posixpath.basename(second_collection)).stdout)
    assert status["series"] == head and status["schedule"] == "every 1d" and status["series_state"] == "active"
    assert status["next_run"] == decoded(following.body)["due"]


def marks_by_image(grid) -> dict[str, list[tuple[str, str]]]:
    listing = grid.list_data_objects(IMAGES, avu_attributes=(names.A_UNCLASSIFIED,))
    return {o.path: [(a.value, a.units) for a in o.avus] for o in listing if o.avus}


def test_a_series_does_not_offer_again_an_image_it_could_not_read_until_it_is_replaced(zone, tmp_path):
    [bad] = add_images(zone.alice, tmp_path, {"bad.png": b"x"})  # the scripted notebook cannot read it
    head, head_collection = submit_series(zone)
    [first] = zone.server.run_delay_queue()
    assert first.ok and zone.record(head_collection)[names.A_IMAGES_FAILED] == "1"
    # The image a run could not read is marked (its size then, the task that tried), not tagged.
    assert marks_by_image(zone.alice) == {bad: [("unreadable:1", f"c2d:{head}")]}
    assert bad not in {p for p, u in units_by_image(zone.alice).items() if u}
    zone.server.advance(DAY)
    [step] = zone.server.run_delay_queue()
    assert fields(step.stdout)["step"] == "nothing_new", step.stdout  # not offered again, day after day
    assert zone.task_collections() == [head_collection]

    # Replaced by a readable file (of another size), it is classified; the mark goes with the prediction.
    (tmp_path / "fixed.png").write_bytes(b"77")
    zone.alice.put_file(tmp_path / "fixed.png", bad, "lts_resc", overwrite=True)
    zone.server.advance(DAY)
    ran = zone.server.run_delay_queue()
    assert [fields(r.stdout).get("step", fields(r.stdout).get("state")) for r in ran] == ["started", "succeeded"]
    [second_collection] = [c for c in zone.task_collections() if c != head_collection]
    assert zone.record(second_collection)[names.A_INPUTS] == "1"
    assert marks_by_image(zone.alice) == {}
    assert units_by_image(zone.alice)[bad] == {f"c2d:{posixpath.basename(second_collection)}"}


def test_a_series_does_not_offer_again_images_scored_under_its_threshold(zone, tmp_path):
    head, head_collection = submit_series(zone, parameters={"model": MODEL, "labels": f"{HOME}/models/labels.txt",
                                                            "score_threshold": 0.95})
    [first] = zone.server.run_delay_queue()  # the scripted notebook scores every image 0.9
    assert first.ok and fields(first.stdout)["state"] == "succeeded"
    marks = marks_by_image(zone.alice)
    assert len(marks) == 6 and all(m == [("below_threshold:1", f"c2d:{head}")] for m in marks.values())
    assert not any(units_by_image(zone.alice).values())
    new = add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.server.advance(DAY)
    ran = zone.server.run_delay_queue()
    assert [r.ok for r in ran] == [True, True]
    [second_collection] = [c for c in zone.task_collections() if c != head_collection]
    assert zone.record(second_collection)[names.A_INPUTS] == "1"  # the new image only
    assert zone.runner.classified[6:] == ["cam_a.png"]
    assert marks_by_image(zone.alice)[new[0]] == [("below_threshold:1", f"c2d:{posixpath.basename(second_collection)}")]


def test_a_one_off_task_classifies_marked_images_again_and_a_prediction_replaces_the_mark(zone, tmp_path):
    head, head_collection = submit_series(zone, parameters={"model": MODEL, "labels": f"{HOME}/models/labels.txt",
                                                            "score_threshold": 0.95})
    zone.server.run_delay_queue()
    assert len(marks_by_image(zone.alice)) == 6
    zone.put_config(config_doc())  # the same images, no schedule, no threshold
    run = zone.irule("c2d_run", CONFIG)
    assert run.ok, run.error
    task = fields(run.stdout)["task_id"]
    assert marks_by_image(zone.alice) == {}
    assert all(u == {f"c2d:{task}"} for u in units_by_image(zone.alice).values())


def test_a_run_with_nothing_new_creates_no_task_and_the_series_goes_on(zone):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    zone.server.advance(DAY)
    [step] = zone.server.run_delay_queue()
    assert step.ok and fields(step.stdout)["step"] == "nothing_new"
    assert zone.task_collections() == [head_collection]
    record = zone.record(head_collection)
    assert record[names.A_SERIES_STATE] == "active" and record[names.A_SERIES_CHECKED]
    [following] = steps(zone)
    assert decoded(following.body)["due"] == record[names.A_SERIES_NEXT_RUN]
    assert any("nothing new to classify" in line for line in zone.server.server_log)


def test_cancel_of_the_series_stops_further_runs(zone, tmp_path):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    assert zone.record(head_collection)[names.A_STATE] == "succeeded"
    cancel = zone.irule("c2d_cancel", head)  # a succeeded first task: the series is what is cancelled
    assert cancel.ok, cancel.error
    assert fields(cancel.stdout)["series_state"] == "cancelled" and "no further run" in cancel.stdout
    record = zone.record(head_collection)
    assert record[names.A_STATE] == "succeeded"  # what it did stays true
    assert record[names.A_SERIES_STATE] == "cancelled" and record[names.A_SERIES_REASON].startswith("cancelled by alice")
    assert names.A_SERIES_NEXT_RUN not in record
    add_images(zone.alice, tmp_path, {"late.png": b"1"})
    zone.server.advance(DAY)
    [step] = zone.server.run_delay_queue()  # the queued step checks the series first and exits
    assert step.ok and fields(step.stdout)["step"] == "stopped"
    assert zone.task_collections() == [head_collection] and zone.server.delay_queue == []
    again = zone.irule("c2d_cancel", head)
    assert again.code < 0 and "already succeeded and its series is cancelled" in again.error


def test_cancel_of_the_series_also_cancels_its_queued_run(zone):
    head, head_collection = submit_series(zone)
    cancel = zone.irule("c2d_cancel", head)  # the first task is still queued
    assert cancel.ok and zone.record(head_collection)[names.A_STATE] == "cancelled"
    assert zone.record(head_collection)[names.A_SERIES_STATE] == "cancelled"
    zone.server.advance(DAY)
    runs = zone.server.run_delay_queue()
    assert [fields(r.stdout).get("state") or fields(r.stdout).get("step") for r in runs] == ["cancelled", "stopped"]
    assert zone.runner.requests == []


def test_cancelling_another_task_of_the_series_cancels_that_task_alone(zone, tmp_path):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.server.advance(DAY)
    zone.server.run_delay_queue(limit=1)  # the step queued the second task; its run waits
    [second] = [c for c in zone.task_collections() if c != head_collection]
    cancel = zone.irule("c2d_cancel", posixpath.basename(second))
    assert cancel.ok and f"task of the series {head}, which goes on" in cancel.stdout
    assert zone.record(second)[names.A_STATE] == "cancelled"
    assert zone.record(head_collection)[names.A_SERIES_STATE] == "active"
    zone.server.run_delay_queue()  # the cancelled run exits without running
    zone.server.advance(DAY)
    zone.server.run_delay_queue()  # the next run takes the image the cancelled task never classified
    third = [c for c in zone.task_collections() if c not in (head_collection, second)]
    assert len(third) == 1 and zone.record(third[0])[names.A_STATE] == "succeeded"
    assert zone.runner.classified[-1] == "cam_a.png"


def test_a_failing_run_does_not_stop_the_series(zone, tmp_path):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1", "cam_b.png": b"2"})
    zone.runner.fail = "CUDA out of memory"
    zone.server.advance(DAY)
    zone.server.run_delay_queue()
    [failed] = [c for c in zone.task_collections() if c != head_collection]
    assert zone.record(failed)[names.A_STATE] == "failed"
    assert zone.record(head_collection)[names.A_SERIES_STATE] == "active" and len(steps(zone)) == 1
    zone.runner.fail = None
    add_images(zone.alice, tmp_path, {"cam_c.png": b"0"})
    zone.server.advance(DAY)
    zone.server.run_delay_queue()
    [third] = [c for c in zone.task_collections() if c not in (head_collection, failed)]
    assert zone.record(third)[names.A_STATE] == "succeeded" and zone.record(third)[names.A_INPUTS] == "3"
    assert sorted(zone.runner.classified[-3:]) == ["cam_a.png", "cam_b.png", "cam_c.png"]


def test_a_config_that_lost_its_model_ends_the_series_with_the_reason(zone, tmp_path):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.admin.set_acl(AccessLevel.NONE, "alice", MODEL)  # access lost (as good as deleted, for alice)
    zone.server.advance(DAY)
    [step] = zone.server.run_delay_queue()
    assert step.ok and fields(step.stdout)["step"] == "ended"
    record = zone.record(head_collection)
    assert record[names.A_SERIES_STATE] == "ended" and names.A_SERIES_NEXT_RUN not in record
    assert "its task config cannot run any more" in record[names.A_SERIES_REASON] and MODEL in record[names.A_SERIES_REASON]
    assert zone.task_collections() == [head_collection]
    status = fields(zone.irule("c2d_status", head).stdout)
    assert status["series_state"].startswith("ended (its task config cannot run any more") and "next_run" not in status
    zone.server.advance(DAY)
    [last] = zone.server.run_delay_queue()  # the step queued before the end exits
    assert fields(last.stdout)["step"] == "stopped" and zone.server.delay_queue == []


def test_an_interval_below_the_settings_minimum_is_refused_and_ends_a_series(zone, tmp_path):
    zone.put_config(config_doc(schedule={"every": "30m"}))
    refused = zone.irule("c2d_submit", CONFIG)
    assert refused.code < 0 and refused.error_name == "SYS_INVALID_INPUT_PARAM"
    assert "$.schedule.every: '30m' is more often than this zone allows: at most every 1h" in refused.error
    assert zone.task_collections() == [] and zone.server.delay_queue == []
    head, head_collection = submit_series(zone, "1h")
    zone.server.run_delay_queue()
    settings = json.loads(zone.settings_file.read_text())
    zone.settings_file.write_text(json.dumps({**settings, "schedule_min_interval_seconds": 2 * 3600}))
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.server.advance(3600)
    zone.server.run_delay_queue()
    record = zone.record(head_collection)
    assert record[names.A_SERIES_STATE] == "ended" and "at most every 2h" in record[names.A_SERIES_REASON]


def test_c2d_run_refuses_a_scheduled_config(zone):
    zone.put_config(config_doc(schedule={"every": "1d"}))
    run = zone.irule("c2d_run", CONFIG)
    assert run.code < 0 and "has a schedule (every 1d): submit it" in run.error
    assert zone.task_collections() == []


def test_a_step_runs_once_when_the_delay_server_starts_it_twice(zone, tmp_path):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    [step] = steps(zone)
    zone.server.delay_queue.append(type(step)(step.id + 1, step.user, step.zone, step.hints, step.body,
                                              step.instance, step.not_before))
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.server.advance(DAY)
    runs = zone.server.run_delay_queue()
    kinds = sorted(fields(r.stdout).get("step", "") for r in runs if "step" in fields(r.stdout))
    assert kinds == ["not_its_turn", "started"]
    assert len(zone.task_collections()) == 2


def test_a_step_waits_for_the_series_previous_run(zone, tmp_path):
    head, head_collection = submit_series(zone)
    first_run = zone.server.delay_queue.pop(0)  # the delay server is backed up: the first task is still queued
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.server.advance(DAY)
    [step] = zone.server.run_delay_queue()
    assert fields(step.stdout)["step"] == "busy" and zone.task_collections() == [head_collection]
    assert any(f"task {head} of the series is still queued; this run is skipped" in line for line in zone.server.server_log)
    zone.server.delay_queue.insert(0, first_run)
    zone.server.run_delay_queue()
    assert zone.record(head_collection)[names.A_STATE] == "succeeded" and len(zone.runner.classified) == 7


def test_the_step_of_the_longest_output_collection_fits_a_delayed_rule(zone):
    longest = RESULTS + "".join("/" + c * 240 for c in "abcd")
    longest = longest[: 1088 - 64]
    assert len(longest.encode()) <= 1088 - 64
    head, _ = submit_series(zone, output={"collection": longest})
    [step] = steps(zone)
    assert len(step.hints) + len(step.body) < rules.MAX_RULE_TEXT
    assert decoded(step.body)["series"] == f"{longest}/{head}"


def test_the_upload_trigger_starts_the_series_of_a_scheduled_config(tmp_path, monkeypatch):
    zone = on_the_servers_clock(build_zone(tmp_path, monkeypatch, settings={"upload_trigger_enabled": True}), monkeypatch)
    zone.server.rules["acPostProcForPut"] = rules.acPostProcForPut
    local = tmp_path / "daily.c2d.json"
    local.write_text(json.dumps(config_doc(schedule={"every": "1d"})))
    zone.server.put(local, f"{IMAGES}/daily.c2d.json")
    [head_collection] = zone.task_collections()
    assert zone.record(head_collection)[names.A_SERIES_STATE] == "active" and len(steps(zone)) == 1


# --- the scheduler on its own: taking over from a step that died ------------------------------------
class RecordingQueue:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str, int]] = []
        self.runs: list[str] = []

    def queue_step(self, head_collection: str, due: str, delay_seconds: int) -> None:
        self.steps.append((head_collection, due, delay_seconds))

    def queue_run(self, collection: str) -> None:
        self.runs.append(collection)


def local_series(tmp_path: Path, every: str = "1d"):
    admin, alice = make_grid(tmp_path)
    settings = make_settings(tmp_path)
    config = TaskConfig.from_document(scheduled_doc(every))
    runner = ScriptedRunner()

    def context(config, link):  # noqa: ANN001, ANN202
        return TaskContext(grid=alice, settings=settings, runner=runner, series=link)

    outcome = create_task(config, context(config, schedule.SeriesLink())).submit()
    queue = RecordingQueue()
    clock = [datetime(2026, 11, 22, 2, 0, tzinfo=UTC)]
    scheduler = SeriesScheduler(alice, settings, queue, context, clock=lambda: clock[0])
    scheduler.start(outcome.collection)
    return alice, scheduler, queue, clock, outcome, runner, context


def test_a_step_takes_over_from_one_that_died_after_queuing_it(tmp_path):
    alice, scheduler, queue, clock, head, runner, context = local_series(tmp_path)
    run_queued_task(alice, head.collection, context(None, None))
    [(_, first_due, delay)] = queue.steps
    assert first_due == "2026-11-23T02:00:00Z" and delay == DAY
    add_images(alice, tmp_path, {"cam_a.png": b"1"})
    # The step due on the 23rd queued its successor (the 24th), then died before it claimed its turn.
    clock[0] = datetime(2026, 11, 24, 2, 0, 5, tzinfo=UTC)
    outcome = scheduler.step(head.collection, "2026-11-24T02:00:00Z")
    assert outcome.kind == StepKind.STARTED and outcome.inputs == 1
    assert scheduler.series.read(head.collection).next_run == "2026-11-25T02:00:00Z"
    assert queue.steps[-1][1:] == ("2026-11-25T02:00:00Z", DAY - 5)
    # A step of a turn long taken does nothing.
    stale = scheduler.step(head.collection, "2026-11-23T02:00:00Z")
    assert stale.kind == StepKind.NOT_ITS_TURN and len(queue.runs) == 1


def test_a_step_whose_next_run_cannot_be_queued_ends_the_series(tmp_path):
    alice, scheduler, queue, clock, head, runner, context = local_series(tmp_path)

    def refuse(*args: object) -> None:
        raise TaskStateError("the delay queue is full")

    scheduler.queue.queue_step = refuse  # type: ignore[method-assign]
    clock[0] += timedelta(days=1)
    outcome = scheduler.step(head.collection, "2026-11-23T02:00:00Z")
    assert outcome.kind == StepKind.ENDED
    info = scheduler.series.read(head.collection)
    assert info.state == SeriesState.ENDED and "could not be queued: the delay queue is full" in info.reason


def test_creating_a_task_of_a_series_needs_its_link(tmp_path):
    admin, alice = make_grid(tmp_path)
    config = TaskConfig.from_document(scheduled_doc())
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner())
    with pytest.raises(ConfigError, match=r"has a schedule \(every 1d\): submit it"):
        create_task(config, context).run()
    assert alice.list_collections(HOME) == [f"{HOME}/images", f"{HOME}/models"]


# --- on LocalGrid: the local dispatcher -------------------------------------------------------------
class LocalZone:
    """alice's LocalGrid with a submitter whose runs happen at once, in this process."""

    def __init__(self, tmp_path: Path, **settings: object) -> None:
        self.tmp = tmp_path
        self.admin, self.alice = make_grid(tmp_path)
        self.settings = make_settings(tmp_path, **settings)
        self.runner = ScriptedRunner()
        self.dispatchers: list[str] = []
        self.submitter = LocalSubmitter(self.alice, launcher=self.launch, context_factory=self.context,
                                        series_launcher=lambda grid, head: self.dispatchers.append(head))

    def context(self, grid):  # noqa: ANN001, ANN201
        return TaskContext(grid=grid, settings=self.settings, runner=self.runner, progress_interval=0.0)

    def launch(self, grid, collection):  # noqa: ANN001
        run_queued_task(grid, collection, self.context(grid))

    def tasks(self) -> list[str]:
        return sorted(c.path for c in self.alice.find_collections_with_avu(names.A_TASK_ID))


def test_on_localgrid_a_series_runs_through_the_local_dispatcher(tmp_path):
    local = LocalZone(tmp_path)
    head = local.submitter.submit_config(TaskConfig.from_document(scheduled_doc("1d")))
    head_collection = f"{RESULTS}/{head}"
    assert local.dispatchers == [head_collection]  # the detached dispatcher was started for it
    store = TaskStateStore(local.alice)
    assert store.read(head_collection).get(names.A_SERIES) == head
    assert store.read(head_collection).state == TaskState.SUCCEEDED and len(local.runner.classified) == 6

    scheduler = local.submitter.scheduler()
    clock = [names.utc_now()]
    scheduler.clock = lambda: clock[0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the test clock: a day passes in no time
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    new = add_images(local.alice, tmp_path, {"cam_a.png": b"1", "cam_b.png": b"2"})
    [outcome] = follow(scheduler, head_collection, sleep=sleep, poll_seconds=3 * 3600, max_steps=1)
    assert outcome.kind == StepKind.STARTED and outcome.inputs == 2
    assert DAY - 60 <= sum(slept) <= DAY + 60 and max(slept) <= 3 * 3600  # it slept until the next run, looking now and then
    second = store.read(outcome.collection)
    assert second.get(names.A_SERIES) == head and second.state == TaskState.SUCCEEDED
    assert sorted(local.runner.classified[6:]) == ["cam_a.png", "cam_b.png"]
    assert all(u == {f"c2d:{outcome.task_id}"} for p, u in units_by_image(local.alice).items() if p in new)

    [nothing] = follow(scheduler, head_collection, sleep=sleep, poll_seconds=3 * 3600, max_steps=1)
    assert nothing.kind == StepKind.NOTHING_NEW and len(local.tasks()) == 2

    local.submitter.cancel(store.read(head_collection))
    assert store.read(head_collection).get(names.A_SERIES_STATE) == "cancelled"
    add_images(local.alice, tmp_path, {"cam_c.png": b"0"})
    assert follow(scheduler, head_collection, sleep=sleep, poll_seconds=3 * 3600) == []  # it ends
    assert len(local.tasks()) == 2


def test_on_localgrid_a_seconds_interval_allowed_by_a_test_setting_runs_in_real_time(tmp_path):
    local = LocalZone(tmp_path, schedule_min_interval_seconds=1)
    head = local.submitter.submit_config(TaskConfig.from_document(scheduled_doc("2s")))
    head_collection = f"{RESULTS}/{head}"
    add_images(local.alice, tmp_path, {"cam_a.png": b"1"})
    started = time.monotonic()
    [outcome] = follow(local.submitter.scheduler(), head_collection, poll_seconds=0.5, max_steps=1)
    assert outcome.kind == StepKind.STARTED and outcome.inputs == 1
    assert time.monotonic() - started < 30
    with pytest.raises(ConfigError, match="at most every 1h"):
        LocalZone(tmp_path / "strict").submitter.submit_config(TaskConfig.from_document(scheduled_doc("2s")))


def test_the_local_worker_follows_a_series_until_it_is_cancelled(tmp_path, monkeypatch):
    local = LocalZone(tmp_path)
    head = local.submitter.submit_config(TaskConfig.from_document(scheduled_doc("1d")))
    local.submitter.cancel(TaskStateStore(local.alice).read(f"{RESULTS}/{head}"))
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(local.settings.to_document()))
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(worker_main([
        "--grid", str(tmp_path / "grid"), "--user", "alice", "--series", f"{RESULTS}/{head}",
        "--settings", str(settings_file)])))
    worker.start()
    worker.join(timeout=30)
    assert done == [0]


# --- c2d and the report browser -----------------------------------------------------------------------
@pytest.fixture
def cli(tmp_path, monkeypatch):
    local = LocalZone(tmp_path)
    monkeypatch.setattr(connect_module, "make_submitter", lambda grid, options: LocalSubmitter(
        grid, launcher=local.launch, context_factory=local.context,
        series_launcher=lambda g, head: local.dispatchers.append(head)))
    monkeypatch.setenv("COLUMNS", "250")
    return local


def test_c2d_submit_list_status_and_cancel_of_a_series(cli, capsys, monkeypatch, tmp_path):
    config = tmp_path / "daily.json"
    config.write_text(json.dumps(scheduled_doc("1d")))
    args = ("--local", str(tmp_path / "grid"), "--user", "alice")
    code, out, err = run_cli(capsys, monkeypatch, "submit", str(config), *args)
    assert code == 0, err
    head = out.strip()
    assert f"series {head}: every 1d, active, next run " in err and f"c2d cancel {head}" in err
    add_images(cli.alice, tmp_path, {"cam_a.png": b"1"})
    scheduler = cli.submitter.scheduler()
    scheduler.clock = lambda: names.utc_now() + timedelta(days=1, minutes=1)
    [step] = follow(scheduler, f"{RESULTS}/{head}", max_steps=1)
    second = step.task_id

    code, out, err = run_cli(capsys, monkeypatch, "list", *args)
    assert code == 0 and "series" in out.splitlines()[0], out
    [head_line] = [line for line in out.splitlines() if line.split()[:1] == [head]]
    [second_line] = [line for line in out.splitlines() if line.split()[:1] == [second]]
    assert f"{head} every 1d, active" in head_line and f" {head} " in second_line
    code, out, err = run_cli(capsys, monkeypatch, "list", "--series", head, *args)
    assert code == 0 and f"series {head}: every 1d, active, next run" in err
    assert {line.split()[0] for line in out.splitlines()[2:] if line.strip()} == {head, second}, out

    code, out, _ = run_cli(capsys, monkeypatch, "status", second, *args)
    assert code == 0 and re.search(rf"series +{head}, every 1d", out) and re.search(r"series state +active", out), out
    assert "next run" in out and "last looked" in out
    code, out, _ = run_cli(capsys, monkeypatch, "status", head, *args)
    assert "(this is its first task)" in out

    code, out, err = run_cli(capsys, monkeypatch, "cancel", head, *args)  # a succeeded first task: the series stops
    assert code == 0, err
    assert f"{head}: succeeded" in out and f"series {head}: cancelled" in out
    code, out, _ = run_cli(capsys, monkeypatch, "status", second, *args)
    assert re.search(r"series state +cancelled: cancelled by alice", out) and "next run" not in out, out
    code, out, err = run_cli(capsys, monkeypatch, "cancel", head, *args)
    assert code != 0 and "already succeeded" in err
    code, out, err = run_cli(capsys, monkeypatch, "list", "--series", "20000101T000000Z-000000", *args)
    assert code != 0 and "no task with id" in err


def test_c2d_run_local_refuses_a_scheduled_config(tmp_path, capsys, monkeypatch):
    make_grid(tmp_path)
    config = tmp_path / "daily.json"
    config.write_text(json.dumps(scheduled_doc("1d")))
    code, out, err = run_cli(capsys, monkeypatch, "run", str(config), "--local", str(tmp_path / "grid"), "--user", "alice")
    assert code != 0 and "has a schedule (every 1d): submit it" in (out + err)


def test_the_report_browser_shows_a_series_and_the_series_on_each_task(zone, tmp_path):
    head, head_collection = submit_series(zone)
    zone.server.run_delay_queue()
    add_images(zone.alice, tmp_path, {"cam_a.png": b"1"})
    zone.server.advance(DAY)
    zone.server.run_delay_queue()
    [second] = [posixpath.basename(c) for c in zone.task_collections() if c != head_collection]
    client = TestClient(create_app(WebConfig.for_local(zone.root / "grid", "alice", cache_dir=tmp_path / "cache")), base_url="http://127.0.0.1")

    tasks = client.get("/tasks")
    assert tasks.status_code == 200 and tasks.text.count(f'href="/series/{head}"') == 2
    page = client.get(f"/tasks/{second}")
    assert page.status_code == 200 and 'id="series"' in page.text and f'<a href="/series/{head}">' in page.text
    assert "A run of" in page.text and "next run" in page.text
    assert "The first task of" in client.get(f"/tasks/{head}").text
    series = client.get(f"/series/{head}")
    assert series.status_code == 200
    assert f'href="/tasks/{head}"' in series.text and f'href="/tasks/{second}"' in series.text
    assert "every 1d" in series.text and "state-active" in series.text
    assert zone.record(head_collection)[names.A_SERIES_NEXT_RUN] in series.text

    zone.irule("c2d_cancel", head)
    series = client.get(f"/series/{head}")
    assert "state-cancelled" in series.text and "cancelled by alice" in series.text and "next run" not in series.text
    assert client.get("/series/not-an-id").status_code == 404
    assert client.get(f"/series/{second}").status_code == 404  # a task of a series is not a series


def test_the_fake_delay_server_starts_a_rule_when_its_pluset_is_due(zone):
    callback = zone.server.callback()
    hints = f"<INST_NAME>{rules.PYTHON_INSTANCE}</INST_NAME><PLUSET>2h</PLUSET>"
    callback.delayExec(hints, 'callback.writeLine("serverLog", "later")', "")
    assert zone.server.run_delay_queue() == [] and len(zone.server.delay_queue) == 1
    zone.server.advance(2 * 3600 - 30)  # due by the next poll
    assert len(zone.server.run_delay_queue()) == 1 and "later" in zone.server.server_log
    with pytest.raises(RuntimeError, match="malformed PLUSET"):
        callback.delayExec(f"<INST_NAME>{rules.PYTHON_INSTANCE}</INST_NAME><PLUSET>soon</PLUSET>", "pass", "")


def test_a_step_with_a_malformed_due_time_does_nothing(tmp_path):
    alice, scheduler, queue, clock, head, runner, context = local_series(tmp_path)
    assert scheduler.series._change(head.collection, {}, {names.A_SERIES_NEXT_RUN: None})  # as if never scheduled
    for due in ("", "tomorrow"):
        assert scheduler.step(head.collection, due).kind == StepKind.NOT_ITS_TURN
    assert queue.runs == [] and len(queue.steps) == 1
