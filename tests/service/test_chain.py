"""Chained tasks: a detector writes ``detectedclass``, a classifier ``after`` it selects
``detectedclass = <class>`` (issue 18 item 3); the chain in ``c2d status`` and the browser."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ConfigError, NoEligibleInputsError
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.lifecycle import chain
from compute_to_data.lifecycle.series import SeriesLink
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.tasks import TaskService
from compute_to_data.web.app import WebConfig, create_app
from tests.support.client_support import run_cli
from tests.support.engine_support import (
    IMAGES,
    ScriptedRunner,
    make_config,
    make_grid,
    make_settings,
)

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402

#: the scripted runner classifies an image as the digit it holds: "1" stands for "animal" here
FILES = {f"img_{i:02d}.png": str(i % 3).encode() for i in range(9)}
ANIMALS = sorted(name for name, content in FILES.items() if content == b"1")
DETECTOR = {"class_attribute": "detectedclass", "score_attribute": "detectedscore"}


def detector_config(**extra: object):  # noqa: ANN201
    return make_config(tagging=DETECTOR, **extra)


def classifier_config(after: str, **extra: object):  # noqa: ANN201
    inputs = {"collection": IMAGES, "pattern": "*.png", "where": [{"attribute": "detectedclass", "op": "=", "value": "1"}]}
    return make_config(inputs=inputs, after=after, **extra)


def carried(grid, attribute: str) -> dict[str, str]:  # noqa: ANN001
    found = grid.list_data_objects(IMAGES, avu_attributes=(attribute,))
    return {o.name: o.avus[0].value for o in found if o.avus}


@pytest.fixture
def zone(tmp_path: Path):  # noqa: ANN201
    admin, alice = make_grid(tmp_path, FILES)
    runner = ScriptedRunner()
    return alice, runner, TaskContext(grid=alice, settings=make_settings(tmp_path), runner=runner)


def test_a_detector_then_a_classifier_over_the_detected_frames_only(zone, tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    alice, runner, context = zone
    detector = create_task(detector_config(), context).run()
    assert detector.succeeded, detector.error
    assert set(carried(alice, "detectedclass")) == set(FILES) and carried(alice, "predictedclass") == {}
    runner.classified = []
    classifier = create_task(classifier_config(detector.task_id), context).run()
    assert classifier.succeeded, classifier.error
    assert sorted(runner.classified) == ANIMALS
    assert carried(alice, "predictedclass") == {name: "1" for name in ANIMALS}
    # the detector's AVUs are untouched by the classifier
    assert len(carried(alice, "detectedclass")) == len(FILES)
    record = TaskStateStore(alice).read(classifier.collection)
    assert record.get(names.A_AFTER) == detector.task_id
    assert chain.chain_rows(alice, record) == [("after", f"task {detector.task_id} (succeeded, 9/9)")]
    first = TaskStateStore(alice).read(detector.collection)
    assert chain.chain_rows(alice, first) == [("followed by", f"{classifier.task_id} (succeeded)")]

    monkeypatch.setenv("COLUMNS", "250")
    args = ("--local", str(tmp_path / "grid"), "--user", "alice")
    code, out, err = run_cli(capsys, monkeypatch, "status", classifier.task_id, *args)
    assert code == 0, err
    assert "after" in out and f"task {detector.task_id} (succeeded, 9/9)" in out, out
    code, out, err = run_cli(capsys, monkeypatch, "status", detector.task_id, *args)
    assert code == 0 and "followed by" in out and classifier.task_id in out, out

    web = TestClient(create_app(WebConfig.for_local(tmp_path / "grid", "alice", cache_dir=tmp_path / "cache")), base_url="http://127.0.0.1")
    page = web.get(f"/tasks/{classifier.task_id}")
    assert page.status_code == 200
    assert 'id="chain"' in page.text and f'href="/tasks/{detector.task_id}"' in page.text
    assert f"task {detector.task_id} (succeeded, 9/9)" in page.text
    assert classifier.task_id in web.get(f"/tasks/{detector.task_id}").text


def test_a_chain_resumed_half_way(zone) -> None:  # noqa: ANN001
    alice, runner, context = zone
    lifecycle = TaskService(alice, context.settings)
    # the detector dies after 4 of 9 frames (its first two parts are tagged) ...
    runner.part_size, runner.fail_after = 2, 4
    detector = create_task(detector_config(), context).run()
    assert detector.state == TaskState.FAILED
    assert len(carried(alice, "detectedclass")) == 4
    # ... so the classifier refuses to start: it would see only what the detector did so far
    with pytest.raises(NoEligibleInputsError, match=f"runs after task {detector.task_id} \\(failed, \\d/9\\); "
                                                   f"resume it \\(c2d resume {detector.task_id}\\)"):
        create_task(classifier_config(detector.task_id), context).run()
    assert TaskStateStore(alice).list() == [TaskStateStore(alice).read(detector.collection)]
    # the detector resumed finishes the other frames only
    runner.fail_after, runner.classified = None, []
    lifecycle.resume(detector.task_id, by="alice")
    lifecycle.start(detector.collection, context)
    assert lifecycle.read(detector.collection).state == TaskState.SUCCEEDED
    assert len(runner.classified) == 5 and len(carried(alice, "detectedclass")) == 9
    # the classifier dies half-way through the detected frames, and resumed finishes the rest
    runner.classified, runner.part_size, runner.fail_after = [], 1, 2
    classifier = create_task(classifier_config(detector.task_id), context).run()
    assert classifier.state == TaskState.FAILED and sorted(carried(alice, "predictedclass")) == ANIMALS[:2]
    runner.fail_after, runner.classified = None, []
    lifecycle.resume(classifier.task_id, by="alice")
    lifecycle.start(classifier.collection, context)
    assert lifecycle.read(classifier.collection).state == TaskState.SUCCEEDED
    assert runner.classified == ANIMALS[2:]
    assert carried(alice, "predictedclass") == {name: "1" for name in ANIMALS}


def test_a_series_after_a_series_waits_for_its_latest_run(zone, tmp_path) -> None:  # noqa: ANN001
    alice, runner, context = zone
    settings = context.settings

    def ctx(link: SeriesLink) -> TaskContext:
        return TaskContext(grid=alice, settings=settings, runner=runner, series=link)

    detectors = detector_config(schedule={"every": "1d"})
    head = create_task(detectors, ctx(SeriesLink())).run()
    assert head.succeeded
    classifiers = classifier_config(head.task_id, schedule={"every": "1d"})
    first = create_task(classifiers, ctx(SeriesLink())).run()
    assert first.succeeded and sorted(carried(alice, "predictedclass")) == ANIMALS
    # a new frame; the detector series' next run is queued: the classifier series' has nothing to do yet
    (tmp_path / "new.png").write_bytes(b"1")
    alice.put_file(tmp_path / "new.png", f"{IMAGES}/new.png", "lts_resc")
    queued = create_task(detectors, ctx(SeriesLink(head.task_id))).submit()
    assert TaskStateStore(alice).read(queued.collection).state == TaskState.QUEUED
    with pytest.raises(NoEligibleInputsError, match=f"series {head.task_id}, latest run {queued.task_id} \\(queued"):
        create_task(classifiers, ctx(SeriesLink(first.task_id))).submit()


def test_after_must_name_a_task_the_caller_sees(zone) -> None:  # noqa: ANN001
    alice, runner, context = zone
    with pytest.raises(ConfigError, match=r"\$.after: no task with id '20260101T000000Z-abcdef' is visible to alice"):
        create_task(classifier_config("20260101T000000Z-abcdef"), context).run()
    with pytest.raises(ConfigError, match=r"\$.after: 'detector' is not valid"):
        classifier_config("detector")
