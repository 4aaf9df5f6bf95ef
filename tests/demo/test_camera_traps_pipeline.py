"""The "Camera traps end to end" scenario (issue 18): photos with EXIF uploaded and enriched,
thumbnails, a detector task then a classifier over the detected frames only, browsed; on
LocalGrid (the demo itself) and through the fake rule-engine server (the rules a zone runs)."""

from __future__ import annotations

import json
import posixpath
import warnings
from pathlib import Path

import pytest

from compute_to_data import rules
from compute_to_data.demo import camera_trap_pipeline as demo
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.registry import runners
from compute_to_data.runners.inprocess import InProcessRunner
from compute_to_data.web.app import WebConfig, create_app
from tests.support.rules_support import build_zone

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402

FRAMES = 12


def thumbnails_and_dates(grid) -> tuple[int, int, int]:  # noqa: ANN001
    """(frames with a thumbnail, thumbnails, frames with an EXIF date) under the traps collection."""
    listed = grid.list_data_objects(demo.TRAPS, recursive=True,
                                    avu_attributes=(names.A_THUMBNAIL, names.A_THUMBNAIL_OF, names.A_EXIF_DATETIME))
    linked = [o for o in listed if o.avu_values(names.A_THUMBNAIL)]
    assert all(grid.data_object_exists(o.avu_values(names.A_THUMBNAIL)[0]) for o in linked)
    return (len(linked), sum(1 for o in listed if o.avu_values(names.A_THUMBNAIL_OF)),
            sum(1 for o in listed if o.avu_values(names.A_EXIF_DATETIME)))


def test_the_demo_on_localgrid(tmp_path: Path) -> None:
    result = demo.run_pipeline(tmp_path / "demo", frames=FRAMES)
    truth = json.loads((tmp_path / "demo" / "truth.json").read_text())
    animals = sum(1 for t in truth.values() if t != demo.EMPTY)
    assert 0 < animals < FRAMES
    assert result.with_exif == FRAMES
    assert result.detector.state == TaskState.SUCCEEDED, result.detector.error
    assert result.classifier is not None and result.classifier.state == TaskState.SUCCEEDED, result.classifier.error
    assert result.detected_right == FRAMES and result.classifier.inputs == animals
    assert result.species_right == animals == result.animals
    grid = demo.LocalGrid(tmp_path / "demo" / "grid", user=demo.USER)
    assert thumbnails_and_dates(grid) == (FRAMES, FRAMES, FRAMES)
    assert "species right on" in result.summary() and "c2d serve --local" in result.summary()

    # browse it: the chain, the species, a photo's date and position
    web = TestClient(create_app(WebConfig.for_local(tmp_path / "demo" / "grid", demo.USER, cache_dir=tmp_path / "cache")), base_url="http://127.0.0.1")
    classifier = result.classifier.task_id
    page = web.get(f"/tasks/{classifier}")
    assert page.status_code == 200 and 'id="chain"' in page.text and result.detector.task_id in page.text
    images = web.get(f"/tasks/{classifier}/images")
    assert images.status_code == 200 and f"{animals}" in images.text
    animal = next(r for r, t in sorted(truth.items()) if t != demo.EMPTY)
    photo = web.get(f"/tasks/{classifier}/image", params={"path": posixpath.join(demo.TRAPS, animal)})
    assert photo.status_code == 200, photo.text[-500:]
    assert 'id="taken"' in photo.text and "2026-06-" in photo.text
    site = animal.split("/")[0]
    latitude, longitude, _ = demo.SITES[site]
    assert f"{latitude:g}" in photo.text and f"{longitude:g}" in photo.text and "openstreetmap.org" in photo.text


def test_the_scenario_through_the_fake_rule_engine_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, images={}, settings={
        "ingest": {"collections": [demo.TRAPS]}, "default_timeout_seconds": 1800})
    monkeypatch.setitem(runners._items, "inprocess", lambda settings=None: InProcessRunner())  # the real notebook
    zone.server.rules["acPostProcForPut"] = rules.acPostProcForPut
    alice = zone.alice
    models = demo.export_models(tmp_path / "models")
    alice.create_collection(demo.MODELS)
    for logical, local in ((demo.DETECTOR, "detector"), (demo.DETECTOR_LABELS, "detector_labels"),
                           (demo.SPECIES_MODEL, "species"), (demo.SPECIES_LABELS, "species_labels")):
        alice.put_file(models[local], logical, "lts_resc")
    truth = demo.write_frames(tmp_path / "frames", FRAMES, seed=3)
    for relative in sorted(truth):  # uploads: the acPostProcForPut hook enriches each one
        logical = posixpath.join(demo.TRAPS, relative)
        alice.create_collection(posixpath.dirname(logical))
        run = zone.server.put(tmp_path / "frames" / relative, logical)
        assert run is not None and run.ok, run
    assert thumbnails_and_dates(zone.admin)[2] == FRAMES

    def run_task(doc: dict, path: str) -> dict[str, str]:
        zone.put_config(doc, path)
        run = zone.irule("c2d_run", path)
        assert run.ok, run.error
        return dict(line.split(": ", 1) for line in run.stdout.splitlines() if ": " in line)

    detector = run_task(demo.detector_document(), f"{demo.HOME}/detector.json")
    assert detector["state"] == "succeeded", detector
    classifier = run_task(demo.classifier_document(detector["task_id"]), f"{demo.HOME}/classifier.json")
    assert classifier["state"] == "succeeded", classifier
    detected, species, animals = demo.score(zone.admin, truth)
    assert detected == FRAMES and species == animals > 0
    assert thumbnails_and_dates(zone.admin) == (FRAMES, FRAMES, FRAMES)
    record = zone.record(f"{demo.RESULTS}/{classifier['task_id']}")
    assert record[names.A_AFTER] == detector["task_id"] and record[names.A_INPUTS] == str(animals)


@pytest.mark.docker
@pytest.mark.slow
def test_the_detector_runs_in_a_container_with_its_pt2_model_and_thumbnails(tmp_path: Path) -> None:
    """The container image (rebuilt by tests/support/docker_env.py when the package changed) loads a
    torch.export archive and writes the thumbnails the engine stores beside the frames."""
    from compute_to_data.domain.settings import IngestSettings
    from compute_to_data.domain.taskconfig import TaskConfig
    from compute_to_data.engine.context import TaskContext
    from compute_to_data.runners.docker_runner import DockerRunner
    from compute_to_data.service.tasks import TaskService
    from tests.support.docker_env import get_docker_env

    env = get_docker_env()
    settings = env.settings(image=env.image, staging_directory=str(tmp_path / "staging"),
                            ingest=IngestSettings(collections=(demo.TRAPS,)))
    _, alice = demo.build_zone(tmp_path)
    truth = demo.write_frames(tmp_path / "frames", 8, seed=5)
    assert demo.upload_frames(alice, settings, tmp_path / "frames", truth) == 8
    doc = demo.detector_document()
    doc["container"] = {"runner": "docker", "image": env.image}
    context = TaskContext(grid=alice, settings=settings, runner=DockerRunner(settings, client=env.client))
    outcome = TaskService(alice, settings).run_now(TaskConfig.from_document(doc), context)
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert demo.score(alice, truth)[0] == 8
    assert thumbnails_and_dates(alice) == (8, 8, 8)
    timings = json.loads(alice.read_data_object(posixpath.join(outcome.collection, "timings.json")))
    assert timings["model_format"] == "export"
