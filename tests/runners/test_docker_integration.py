"""The demo end to end through Docker: real containers, real inference, AVUs in the catalog.

Uses the production image (``compute-to-data/classifier:<version>``, as ``c2d demo`` does) and
the task engine on a LocalGrid zone: replication, hard-link staging, the per-resource slot,
ingest and tagging all run as they would on an iRODS compute host.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time

import pytest

from compute_to_data.demo.run import IMAGE, INPUTS, RESULTS, run_demo
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.runners.docker_runner import LABEL_TASK_ID

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGES = 48




@pytest.fixture(scope="module")
def demo(docker_env, tmp_path_factory):
    assert docker_env.image == IMAGE
    directory = tmp_path_factory.mktemp("docker-demo")
    contexts = []

    def keep(context):
        context.keep_workdir = True
        contexts.append(context)

    result = run_demo(directory, runner="docker", images=IMAGES, context_hook=keep)
    return directory, result


def test_demo_runs_in_docker_and_tags_the_images(demo, docker_env):
    directory, result = demo
    outcome = result.outcome
    assert result.runner == "docker"
    assert outcome is not None and outcome.state == TaskState.SUCCEEDED, outcome and outcome.error
    assert outcome.inputs == IMAGES and outcome.tagged == IMAGES
    assert result.accuracy is not None and result.accuracy > 0.85

    alice = LocalGrid(directory / "grid", user="alice")
    record = TaskStateStore(alice).read(outcome.collection)
    assert record.state == TaskState.SUCCEEDED
    assert record.get(names.A_RUNNER) == "docker"
    assert record.get(names.A_IMAGE) == IMAGE
    assert record.get(names.A_IMAGE_DIGEST) == docker_env.client.images.get(IMAGE).id
    assert record.get(names.A_PROGRESS) == f"{IMAGES}/{IMAGES}"

    stored = {o.name for o in alice.list_data_objects(outcome.collection)}
    assert {"report.html", "notebook.ipynb", "predictions.csv", "predictions.json", "container.log",
            "task_config.json"} <= stored
    report = alice.read_data_object(posixpath.join(outcome.collection, "report.html")).decode()
    assert "<html" in report.lower() and "digit_" in report
    # Results first, with thumbnails of the least certain images (Pillow in the container), kept
    # in thumbnails.json for a summary.
    assert report.index('<h1 id="Results"') < report.index('class="c2d-provenance"') < report.index('id="Image-classification"')
    assert report.count('class="c2d-thumbnail"') == 15 and "thumbnails.json" in stored
    container_log = alice.read_data_object(posixpath.join(outcome.collection, "container.log")).decode()
    assert "papermill" in container_log

    objects = alice.list_data_objects(INPUTS, recursive=True, avu_attributes=("predictedclass", "predictedscore"))
    assert len(objects) == IMAGES
    for obj in objects:
        units = {a.attribute: a.units for a in obj.avus}
        assert units == {"predictedclass": f"c2d:{outcome.task_id}", "predictedscore": f"c2d:{outcome.task_id}"}
    assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}={outcome.task_id}"}) == []


def test_inputs_were_hard_links_to_the_replicas(demo):
    directory, result = demo
    outcome = result.outcome
    alice = LocalGrid(directory / "grid", user="alice")
    staged = directory / "staging" / outcome.task_id / "inputs"
    checked = 0
    for obj in alice.list_data_objects(INPUTS, recursive=True):
        replica = obj.good_replica_on("gpu_resc")
        assert replica is not None
        link = staged / posixpath.relpath(obj.path, INPUTS)
        assert os.stat(link).st_ino == os.stat(replica.physical_path).st_ino
        checked += 1
    assert checked == IMAGES
    assert not any("copying inputs instead" in note for note in outcome.notes)
    # only this task's inputs were staged: the model and other vault files are not under inputs/
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == sorted(
        posixpath.relpath(o.path, INPUTS) for o in alice.list_data_objects(INPUTS, recursive=True))


def test_two_tasks_started_together_take_turns_on_one_resource(demo):
    """COMPUTE_RESOURCE_MAX_TASKS absent -> 1 container at a time; the other shows `queued`."""
    directory, _ = demo
    alice = LocalGrid(directory / "grid", user="alice")
    before = {r.collection for r in TaskStateStore(alice).list(RESULTS)}
    executes: dict[int, list[float]] = {0: [], 1: []}
    results: dict[int, object] = {}
    observed: set[tuple[str, ...]] = set()
    stop = threading.Event()

    def hook_for(index):
        def hook(context):
            context.step_listeners.append(
                lambda name, event, _s: executes[index].append(time.monotonic()) if name == "execute" else None)
        return hook

    def run(index):
        results[index] = run_demo(directory, runner="docker", force=True, context_hook=hook_for(index))

    def watch():
        watcher = LocalGrid(directory / "grid", user="alice")
        while not stop.is_set():
            states = tuple(sorted(
                (r.state.value if r.state else "?")
                for r in TaskStateStore(watcher).list(RESULTS) if r.collection not in before))
            if len(states) == 2:
                observed.add(states)
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    stop.set()
    watcher.join(10)

    for index in (0, 1):
        outcome = results[index].outcome
        assert outcome is not None and outcome.state == TaskState.SUCCEEDED, outcome and outcome.error
    (start0, end0), (start1, end1) = executes[0][:2], executes[1][:2]
    assert end0 <= start1 or end1 <= start0, f"containers overlapped: {executes}"
    assert ("queued", "running") in observed, observed


def test_a_task_in_shards_runs_each_shard_and_its_summary_in_containers(demo, docker_env):
    """The same images again (forced), in two shards: each shard and the summary notebook run in
    the locked-down container; the task's report covers both shards and links to their reports."""
    from compute_to_data.demo.run import choose_demo_runner, demo_settings, task_document
    from compute_to_data.domain.taskconfig import TaskConfig
    from compute_to_data.engine.context import TaskContext
    from compute_to_data.lifecycle.shard_records import shard_records
    from compute_to_data.service.tasks import TaskService

    directory, _ = demo
    alice = LocalGrid(directory / "grid", user="alice")
    settings = demo_settings(directory)
    document = task_document(True)
    document["compute"] = {**document.get("compute", {}), "shard_size": IMAGES // 2}
    runner, _ = choose_demo_runner("docker", settings)
    # Submitted and its queued runs (the shards, then the summary) run here, one after the other.
    context = TaskContext(grid=alice, settings=settings, runner=runner)
    outcome = TaskService(alice, settings).run_now(TaskConfig.from_document(document), context)
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    record = TaskStateStore(alice).read(outcome.collection)
    assert record.get(names.A_SHARDS) == "2" and record.get(names.A_PROGRESS) == f"{IMAGES}/{IMAGES}"
    assert record.get(names.A_RUNNER) == "docker"
    shards = shard_records(alice, outcome.collection)
    assert [s.get(names.A_RUNNER) for s in shards] == ["docker", "docker"]
    report = alice.read_data_object(posixpath.join(outcome.collection, "report.html")).decode()
    assert 'href="shards/0001/report.html"' in report and 'href="shards/0002/report.html"' in report
    # The task's least certain images with the thumbnails the shards' notebooks made (the
    # summary's container has only the shards' files, not their images).
    assert report.index('<h1 id="Results"') < report.index('class="c2d-provenance"') < report.index("shards/0001/report.html")
    assert report.count('class="c2d-thumbnail"') == 15
    whole = alice.read_data_object(posixpath.join(outcome.collection, "predictions.json")).decode()
    assert whole.count('"file"') == IMAGES
    for key in (f"{outcome.task_id}-0001", f"{outcome.task_id}-0002", f"{outcome.task_id}-summary"):
        assert docker_env.client.containers.list(all=True, filters={"label": f"{LABEL_TASK_ID}={key}"}) == []
