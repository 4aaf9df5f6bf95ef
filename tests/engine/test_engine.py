"""The Template Method engine on LocalGrid, with a scripted runner standing in for the notebook."""

from __future__ import annotations

import dataclasses
import json
import posixpath
import threading
import time
from pathlib import Path

import pytest

from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, AccessLevel, DataObject, EntityType, MetadataOperation, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import (
    AccessDeniedError,
    NoEligibleInputsError,
    NotAllowedError,
    ObjectNotFoundError,
    ResourceSelectionError,
)
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.slots import ResourceSlot
from compute_to_data.engine.steps import Checked, Inputs, Placement, Running, Selection, Staged, Tagging, TaskRun
from compute_to_data.engine.task import ComputeToDataTask
from compute_to_data.lifecycle.store import Heartbeat, TaskStateStore
from compute_to_data.runners.base import Runner, RunResult
from compute_to_data.service.tasks import TaskService
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


@pytest.fixture
def grid(tmp_path: Path):
    return make_grid(tmp_path)


def run_task(tmp_path, alice, runner=None, config=None, **settings):
    runner = runner or ScriptedRunner()
    context = TaskContext(grid=alice, settings=make_settings(tmp_path, **settings), runner=runner)
    task = create_task(config or make_config(), context)
    return task, task.run()


def avus_of(grid, path):
    return {a.attribute: a for a in grid.get_avus(EntityType.DATA_OBJECT, path)}


def test_run_classifies_tags_and_records_provenance(tmp_path, grid):
    admin, alice = grid
    task, outcome = run_task(tmp_path, alice)
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert outcome.compute_resource == "gpu_resc"
    assert outcome.inputs == 6 and outcome.tagged == 6
    assert outcome.class_counts == {"0": 2, "1": 2, "2": 2}

    tags = avus_of(alice, f"{IMAGES}/img_04.png")
    assert tags["predictedclass"].value == "1"
    assert tags["predictedscore"].value == "0.9000"
    assert tags["predictedclass"].units == f"c2d:{task.task_id}"

    record = TaskStateStore(alice).read(posixpath.join(RESULTS, task.task_id))
    assert record.state == TaskState.SUCCEEDED
    assert record.get(names.A_TASK_TYPE) == "image_classification"
    assert record.get(names.A_MODEL) == f"{HOME}/models/model.pt"
    assert record.get(names.A_MODEL_CHECKSUM).startswith("sha2:")
    assert record.get(names.A_NOTEBOOK_CHECKSUM).startswith("sha2:")
    assert json.loads(record.get(names.A_PARAMETERS))["top_k"] == 3
    assert record.get(names.A_PROGRESS) == "6/6"
    assert record.get(names.A_INPUTS) == "6"
    assert record.get(names.A_SUBMITTED_BY) == "alice"
    assert record.get(names.A_REPORT) == f"{RESULTS}/{task.task_id}/report.html"
    assert record.get(names.A_STARTED) <= record.get(names.A_FINISHED)
    assert names.A_ERROR not in record.values

    stored = {o.name for o in alice.list_data_objects(posixpath.join(RESULTS, task.task_id))}
    assert {"report.html", "predictions.json", "task_config.json", "runner.log"} <= stored
    config_back = json.loads(alice.read_data_object(f"{RESULTS}/{task.task_id}/task_config.json"))
    assert config_back["inputs"]["collection"] == IMAGES
    # The staging directory is gone after the run.
    assert not (tmp_path / "staging" / task.task_id).exists()


def test_inputs_are_hard_links_to_the_compute_replicas(tmp_path, grid):
    admin, alice = grid
    seen: dict[str, int] = {}

    def inspect(request):
        for path in Path(request.parameters["input_dir"]).rglob("*.png"):
            seen[path.name] = path.stat().st_ino

    task, outcome = run_task(tmp_path, alice, ScriptedRunner(before_return=inspect),
                             config=make_config(compute={"replicate": "always"}))
    assert outcome.succeeded
    for obj in alice.list_data_objects(IMAGES):
        replica = obj.good_replica_on("gpu_resc")
        assert replica is not None
        assert Path(replica.physical_path).stat().st_ino == seen[obj.name]
    # Only the task's inputs were visible: 6 images, no model files, nothing else of the vault.
    assert sorted(seen) == [f"img_{i:02d}.png" for i in range(6)]


def test_replicates_only_what_is_not_on_the_compute_resource(tmp_path, grid):
    admin, alice = grid
    alice.replicate(f"{IMAGES}/img_00.png", "gpu_resc")
    alice.replicate(f"{HOME}/models/model.pt", "gpu_resc")
    _, outcome = run_task(tmp_path, alice, config=make_config(compute={"replicate": "always"}))
    expected = sum(o.size for o in alice.list_data_objects(IMAGES) if o.name != "img_00.png")
    expected += alice.get_data_object(f"{HOME}/models/labels.txt").size
    assert outcome.replicated_bytes == expected
    # A second run (forced) finds everything in place and copies nothing.
    _, again = run_task(tmp_path, alice, config=make_config(inputs__skip_tagged=False, compute={"replicate": "always"}))
    assert again.succeeded and again.replicated_bytes == 0


def test_when_needed_links_what_is_on_the_compute_resource_and_streams_the_rest(tmp_path, grid):
    admin, alice = grid
    alice.replicate(f"{IMAGES}/img_00.png", "gpu_resc")
    _, outcome = run_task(tmp_path, alice)
    assert outcome.succeeded and outcome.replicated_bytes == 0
    assert (outcome.staging["on_resource"], outcome.staging["linked"], outcome.staging["streamed"]) == (1, 1, 7)
    assert [o.name for o in alice.list_data_objects(IMAGES) if o.good_replica_on("gpu_resc")] == ["img_00.png"]


def test_rerun_skips_tagged_inputs_and_force_replaces_without_duplicates(tmp_path, grid):
    admin, alice = grid
    first, _ = run_task(tmp_path, alice)
    with pytest.raises(NoEligibleInputsError, match="already carry predictedclass"):
        run_task(tmp_path, alice)
    second, outcome = run_task(tmp_path, alice, config=make_config(inputs__skip_tagged=False))
    assert outcome.succeeded
    avus = alice.get_avus(EntityType.DATA_OBJECT, f"{IMAGES}/img_01.png")
    predictions = [a for a in avus if a.attribute in ("predictedclass", "predictedscore")]
    assert len(predictions) == 2
    assert {a.units for a in predictions} == {f"c2d:{second.task_id}"}


def test_new_images_only_are_classified_on_rerun(tmp_path, grid):
    admin, alice = grid
    run_task(tmp_path, alice)
    extra = tmp_path / "img_99.png"
    extra.write_bytes(b"2")
    alice.put_file(extra, f"{IMAGES}/img_99.png", "lts_resc")
    _, outcome = run_task(tmp_path, alice)
    assert outcome.inputs == 1 and outcome.skipped_already_tagged == 6


def test_failing_notebook_records_failure_registers_report_and_tags_nothing(tmp_path, grid):
    admin, alice = grid
    task, outcome = run_task(tmp_path, alice, ScriptedRunner(fail="ZeroDivisionError: division by zero"))
    assert outcome.state == TaskState.FAILED
    record = TaskStateStore(alice).read(task.collection)
    assert record.state == TaskState.FAILED
    assert "ZeroDivisionError" in record.get(names.A_ERROR)
    assert record.get(names.A_REPORT) == f"{task.collection}/report.html"
    assert alice.data_object_exists(f"{task.collection}/report.html")
    for obj in alice.list_data_objects(IMAGES, avu_attributes=("predictedclass", "predictedscore")):
        assert obj.avus == ()


def test_exception_in_a_step_leaves_a_truthful_state(tmp_path, grid):
    admin, alice = grid

    class Exploding(ScriptedRunner):
        def run(self, request):
            raise RuntimeError("the runner fell over")

    task, outcome = run_task(tmp_path, alice, Exploding())
    assert outcome.state == TaskState.FAILED
    record = TaskStateStore(alice).read(task.collection)
    assert record.state == TaskState.FAILED
    assert "the runner fell over" in record.get(names.A_ERROR)


def test_corrupt_image_is_reported_and_the_task_succeeds(tmp_path):
    admin, alice = make_grid(tmp_path, {"a.png": b"1", "broken.png": b"\x89garbage", "b.png": b"2"})
    task, outcome = run_task(tmp_path, alice)
    assert outcome.succeeded and outcome.tagged == 2 and outcome.failed_images == 1
    # No prediction on it: only the mark that says which task could not read it (and its size then).
    assert avus_of(alice, f"{IMAGES}/broken.png") == {
        names.A_UNCLASSIFIED: AVU(names.A_UNCLASSIFIED, "unreadable:8", f"c2d:{task.task_id}")}
    predictions = json.loads(alice.read_data_object(f"{task.collection}/predictions.json"))
    assert any(e.get("error") for e in predictions["images"] if e["file"] == "broken.png")


def test_predictions_for_files_outside_the_task_are_never_tagged(tmp_path, grid):
    admin, alice = grid

    def forge(request):
        path = Path(request.parameters["output_dir"]) / names.PREDICTIONS_JSON
        doc = json.loads(path.read_text())
        doc["images"].append({"file": "../models/model.pt", "classifications": [{"class": "x", "score": 1.0}]})
        path.write_text(json.dumps(doc))

    _, outcome = run_task(tmp_path, alice, ScriptedRunner(before_return=forge))
    assert outcome.succeeded and outcome.tagged == 6
    assert avus_of(alice, f"{HOME}/models/model.pt") == {}


def test_recursive_inputs_keep_their_relative_paths(tmp_path):
    admin, alice = make_grid(tmp_path, {"cam1/a.png": b"1", "cam2/deep/b.png": b"2", "c.jpg": b"0"})
    seen: list[str] = []
    runner = ScriptedRunner(
        before_return=lambda r: seen.extend(
            sorted(p.relative_to(r.parameters["input_dir"]).as_posix() for p in Path(r.parameters["input_dir"]).rglob("*") if p.is_file())
        )
    )
    _, outcome = run_task(tmp_path, alice, runner, config=make_config(inputs__recursive=True))
    assert seen == ["cam1/a.png", "cam2/deep/b.png"]
    assert avus_of(alice, f"{IMAGES}/cam2/deep/b.png")["predictedclass"].value == "2"


# --- refusals before any change -------------------------------------------------------------------

def snapshot(tmp_path, grid):
    return vault_files(tmp_path), grid.collection_exists(RESULTS)


def test_no_write_access_on_destination_is_refused_before_any_change(tmp_path, grid):
    admin, alice = grid
    admin.add_user("bob")
    bob = admin.as_user("bob")
    alice.set_acl("read", "bob", IMAGES, recursive=True)
    alice.set_acl("read", "bob", f"{HOME}/models", recursive=True)
    before = snapshot(tmp_path, alice)
    with pytest.raises(AccessDeniedError, match=r"where the results \(/tempZone/home/alice/results"):
        run_task(tmp_path, bob)
    assert snapshot(tmp_path, alice) == before


def test_unreadable_inputs_are_refused_before_any_change(tmp_path, grid):
    admin, alice = grid
    admin.add_user("bob")
    bob = admin.as_user("bob")
    alice.set_acl("read", "bob", IMAGES)
    alice.set_acl("read", "bob", f"{HOME}/models", recursive=True)
    config = make_config(output={"collection": "/tempZone/home/bob/results"})
    before = snapshot(tmp_path, alice)
    task = create_task(config, TaskContext(grid=bob, settings=make_settings(tmp_path), runner=ScriptedRunner()))
    with pytest.raises(NoEligibleInputsError, match="none that bob may read"):
        task.run()
    assert snapshot(tmp_path, alice) == before


def test_read_only_access_to_images_is_refused_because_tags_need_write(tmp_path, grid):
    admin, alice = grid
    admin.add_user("bob")
    bob = admin.as_user("bob")
    alice.set_acl("read", "bob", IMAGES, recursive=True)
    alice.set_acl("read", "bob", f"{HOME}/models", recursive=True)
    config = make_config(output={"collection": "/tempZone/home/bob/results"})
    task = create_task(config, TaskContext(grid=bob, settings=make_settings(tmp_path), runner=ScriptedRunner()))
    with pytest.raises(AccessDeniedError, match="modify_object"):
        task.run()
    assert not bob.collection_exists("/tempZone/home/bob/results")


def test_missing_model_is_refused(tmp_path, grid):
    admin, alice = grid
    config = make_config(parameters={"model": f"{HOME}/models/nope.pt", "labels": f"{HOME}/models/labels.txt"})
    with pytest.raises(ObjectNotFoundError, match="nope.pt"):
        run_task(tmp_path, alice, config=config)


def test_runner_not_allowed_by_settings_is_refused(tmp_path, grid):
    admin, alice = grid
    with pytest.raises(NotAllowedError, match="scripted"):
        run_task(tmp_path, alice, allowed_runners=("docker",))
    assert not alice.collection_exists(RESULTS)


# --- resource selection -----------------------------------------------------------------------------

def tag(admin, resource, role):
    admin.apply_metadata([MetadataOperation("add", EntityType.RESOURCE, resource, AVU(names.ROLE_ATTRIBUTE, role))])


def test_no_resource_with_the_role_names_the_role_and_the_fix(tmp_path, grid):
    admin, alice = grid
    with pytest.raises(ResourceSelectionError, match="imeta add -R <resource> COMPUTE_RESOURCE_ROLE CPU_COMPUTE"):
        run_task(tmp_path, alice, config=make_config(compute={"role": "CPU_COMPUTE"}))


def test_resource_holding_most_input_bytes_wins_then_name(tmp_path, grid):
    admin, alice = grid
    admin.make_resource("gpu_b")
    admin.make_resource("gpu_a")
    tag(admin, "gpu_b", names.ROLE_GPU_COMPUTE)
    tag(admin, "gpu_a", names.ROLE_GPU_COMPUTE)
    from compute_to_data.engine.selection import select_compute_resource

    candidates = alice.find_resources(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)
    objects = alice.list_data_objects(IMAGES)
    # No input anywhere near a GPU: the first by name.
    assert select_compute_resource(candidates, objects, names.ROLE_GPU_COMPUTE).name == "gpu_a"
    for i in (0, 1):
        alice.replicate(f"{IMAGES}/img_0{i}.png", "gpu_b")
    _, outcome = run_task(tmp_path, alice)
    assert outcome.compute_resource == "gpu_b"
    assert outcome.replicated_bytes < sum(o.size for o in objects) + 100


def test_explicit_resource_must_carry_the_role(tmp_path, grid):
    admin, alice = grid
    with pytest.raises(ResourceSelectionError, match="'lts_resc' does not carry"):
        run_task(tmp_path, alice, config=make_config(compute={"resource": "lts_resc"}))
    _, outcome = run_task(tmp_path, alice, config=make_config(compute={"resource": "gpu_resc"}))
    assert outcome.compute_resource == "gpu_resc"


@pytest.mark.parametrize(("field", "compute"), [("$.compute.resource", {"resource": "nope"}),
                                                ("$.compute.resources", {"resources": ["gpu_resc", "nope"]})])
def test_an_unknown_resource_is_named_with_its_field_not_as_lacking_the_role(tmp_path, grid, field, compute):
    _, alice = grid
    with pytest.raises(ResourceSelectionError) as info:
        run_task(tmp_path, alice, config=make_config(compute=compute))
    assert str(info.value).startswith(f"{field}: no resource named 'nope'")
    assert "imeta add" not in str(info.value)
    assert not alice.collection_exists(RESULTS) or alice.list_collections(RESULTS) == []  # nothing created


def test_an_unknown_archive_resource_is_named_with_its_field(tmp_path, grid):
    _, alice = grid
    with pytest.raises(ResourceSelectionError, match=r"^\$\.archive\.resource: no resource named 'nope'"):
        run_task(tmp_path, alice, config=make_config(archive={"resource": "nope"}))


# --- states, archive, slots -------------------------------------------------------------------------

def test_submit_records_queued_and_a_later_run_takes_it_over(tmp_path, grid):
    admin, alice = grid
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner())
    submitted = create_task(make_config(), context).submit()
    assert TaskStateStore(alice).read(submitted.collection).state == TaskState.QUEUED
    resumed = create_task(make_config(), context, task_id=submitted.task_id)
    outcome = resumed.run()
    assert outcome.succeeded
    assert TaskStateStore(alice).read(submitted.collection).state == TaskState.SUCCEEDED


def test_cancelled_queued_task_does_not_run(tmp_path, grid):
    admin, alice = grid
    runner = ScriptedRunner()
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=runner)
    submitted = create_task(make_config(), context).submit()
    TaskService(alice, context.settings).cancel(submitted.collection, "alice")
    from compute_to_data.domain.errors import TaskCancelled

    with pytest.raises(TaskCancelled):
        create_task(make_config(), context, task_id=submitted.task_id).run()
    assert runner.requests == []


def test_cancel_while_running_ends_cancelled_and_untagged(tmp_path, grid):
    admin, alice = grid

    def cancel_midway(request):
        collection = posixpath.join(RESULTS, request.task_id)
        TaskService(alice, make_settings(tmp_path)).cancel(collection, "alice")

    task, outcome = run_task(tmp_path, alice, ScriptedRunner(before_return=cancel_midway))
    assert outcome.state == TaskState.CANCELLED
    assert TaskStateStore(alice).read(task.collection).state == TaskState.CANCELLED
    assert avus_of(alice, f"{IMAGES}/img_00.png") == {}


def test_archive_role_replicates_results_to_long_term_storage(tmp_path, grid):
    admin, alice = grid
    task, outcome = run_task(tmp_path, alice, config=make_config(archive={"role": "LONG_TERM_STORAGE"}))
    assert outcome.succeeded
    for obj in alice.list_data_objects(task.collection):
        assert obj.good_replica_on("lts_resc") is not None and obj.good_replica_on("gpu_resc") is not None


def test_progress_is_recorded_while_running(tmp_path, grid):
    admin, alice = grid
    seen = []

    def look(request):
        collection = posixpath.join(RESULTS, request.task_id)
        seen.append(TaskStateStore(alice).read(collection).get(names.A_PROGRESS))

    run_task(tmp_path, alice, ScriptedRunner(before_return=look))
    assert seen and seen[0].endswith("/6")


def test_slots_allow_at_most_capacity_holders(tmp_path):
    holders, peak, lock = [], [0], threading.Lock()

    def work():
        slot = ResourceSlot(tmp_path / "locks", "gpu_resc", capacity=2, poll_seconds=0.01)
        with slot:
            with lock:
                holders.append(1)
                peak[0] = max(peak[0], len(holders))
            time.sleep(0.05)
            with lock:
                holders.pop()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_second_task_on_a_busy_resource_waits_queued(tmp_path, grid):
    admin, alice = grid
    states: list[str | None] = []
    release = threading.Event()

    class Holding(ScriptedRunner):
        def run(self, request):
            release.wait(10)
            return super().run(request)

    settings = make_settings(tmp_path)
    first = create_task(make_config(), TaskContext(grid=alice, settings=settings, runner=Holding()))
    thread = threading.Thread(target=first.run)
    thread.start()
    deadline = time.time() + 10
    while time.time() < deadline and (first.outcome.state != TaskState.RUNNING):
        time.sleep(0.02)
    second = create_task(make_config(inputs__skip_tagged=False), TaskContext(grid=admin.as_user("alice"), settings=settings, runner=ScriptedRunner()))
    second_thread = threading.Thread(target=second.run)
    second_thread.start()
    time.sleep(1.0)
    states.append(TaskStateStore(alice).read(second.collection).get(names.A_STATE))
    release.set()
    thread.join(10)
    second_thread.join(10)
    assert states == ["queued"]
    assert second.outcome.state == TaskState.SUCCEEDED


def test_template_method_order_is_fixed_and_steps_overridable(tmp_path, grid):
    admin, alice = grid
    order: list[str] = []
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner())
    context.step_listeners.append(lambda step, event, _: order.append(step) if event == "start" else None)
    task = create_task(make_config(), context)
    assert "run" not in type(task).__dict__ and ComputeToDataTask.run.__final__  # type: ignore[attr-defined]
    task.run()
    assert order == [
        "validate", "select_compute_resource", "check_permissions", "select_inputs",
        "prepare_task_collection", "stage_inputs", "execute", "ingest_outputs", "tag_results", "finalize",
    ]


def test_steps_hand_on_values_and_leave_nothing_of_the_run_on_the_task(tmp_path, grid):
    """What a step produced (the resource, the inputs, the staging directory, the runner's
    result...) is a frozen value handed to the next steps, never left on the task for a later
    step to find: after a run (and a resumed one), the task holds what it was made with."""
    admin, alice = grid
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner())
    submitted = create_task(make_config(), context).submit()
    for task in (create_task(make_config(), context, task_id=submitted.task_id),
                 create_task(make_config(inputs__skip_tagged=False), context)):
        before = dict(vars(task))
        assert task.run().succeeded
        step_products = (Resource, DataObject, TaskWorkdir, RunResult, Runner, Heartbeat)
        left = {k: v for k, v in vars(task).items()
                if isinstance(v, step_products) or (isinstance(v, list) and any(isinstance(i, step_products) for i in v))}
        assert left == {} and set(vars(task)) == set(before)
    for value in (Checked, Selection, Inputs, Placement, Running, Staged, TaskRun, Tagging):
        assert dataclasses.fields(value) and value.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_access_levels_enforced_for_owner_only_destinations(tmp_path, grid):
    admin, alice = grid
    admin.add_user("bob")
    alice.set_acl("read", "bob", IMAGES, recursive=True)
    assert alice.has_access(IMAGES, AccessLevel.OWN)
    assert not admin.as_user("bob").has_access(IMAGES, AccessLevel.MODIFY)


def test_tagging_is_batched_and_adds_only_where_no_prediction_exists(tmp_path, grid):
    admin, alice = grid
    calls: list[tuple[str, int]] = []

    class Spy(type(alice)):
        inside_add_new = False

        def add_new_avus(self, entity_type, avus_by_entity):
            calls.append(("add_new", len(avus_by_entity)))
            self.inside_add_new = True
            try:
                return super().add_new_avus(entity_type, avus_by_entity)
            finally:
                self.inside_add_new = False

        def apply_metadata(self, operations):
            if not self.inside_add_new and operations and operations[0].entity_type == EntityType.DATA_OBJECT:
                calls.append(("apply", len({op.entity_name for op in operations})))
            return super().apply_metadata(operations)

    spy = Spy(alice.root, user="alice")
    context = TaskContext(grid=spy, settings=make_settings(tmp_path), runner=ScriptedRunner(), tag_batch_size=4,
                          taggers=1)
    create_task(make_config(), context).run()
    assert calls == [("add_new", 4), ("add_new", 2)]
    calls.clear()
    context = TaskContext(grid=spy, settings=make_settings(tmp_path), runner=ScriptedRunner(), tag_batch_size=4,
                          taggers=1)
    create_task(make_config(inputs__skip_tagged=False), context).run()
    assert calls == [("apply", 4), ("apply", 2)]


def test_several_taggers_tag_at_once_and_a_re_tag_costs_no_query_per_image(tmp_path):
    """On a grid that may be called from several threads, batches of whole images go to several
    taggers at once; images that carry an earlier prediction are re-tagged by removing the values
    the engine read and adding the new pair (replace_avus), never by a read per image."""
    images = {f"img_{i:02d}.png": str(i % 3).encode() for i in range(24)}
    admin, alice = make_grid(tmp_path, images)
    threads: list[tuple[str, str, int]] = []
    # the first batches wait for one another: they pass only when two taggers work at once
    meet = {"add": threading.Barrier(2, timeout=10), "replace": threading.Barrier(2, timeout=10)}

    def together(kind: str) -> None:
        if sum(1 for t in threads if t[0] == kind) <= 2:
            meet[kind].wait()

    class Spy(type(alice)):
        def add_new_avus(self, entity_type, avus_by_entity):
            threads.append(("add", threading.current_thread().name, len(avus_by_entity)))
            together("add")
            return super().add_new_avus(entity_type, avus_by_entity)

        def replace_avus(self, entity_type, changes):
            threads.append(("replace", threading.current_thread().name, len(changes)))
            together("replace")
            for path, (old, new) in changes.items():
                assert [a.attribute for a in old] == ["predictedclass", "predictedscore"], (path, old)
            return super().replace_avus(entity_type, changes)

        def get_avus(self, entity_type, name):
            if entity_type == EntityType.DATA_OBJECT:
                threads.append(("get_avus", name, 1))
            return super().get_avus(entity_type, name)

    spy = Spy(alice.root, user="alice")
    context = TaskContext(grid=spy, settings=make_settings(tmp_path), runner=ScriptedRunner(), taggers=3)
    first = create_task(make_config(), context).run()
    assert first.succeeded and first.tagged == 24
    adds = [t for t in threads if t[0] == "add"]
    assert sum(n for _, _, n in adds) == 24 and len({name for _, name, _ in adds}) > 1
    assert all(name.startswith("c2d-tag") for _, name, _ in adds)
    threads.clear()
    context = TaskContext(grid=spy, settings=make_settings(tmp_path), runner=ScriptedRunner(), taggers=3)
    second = create_task(make_config(inputs__skip_tagged=False), context).run()
    assert second.succeeded and second.tagged == 24
    replaced = [t for t in threads if t[0] == "replace"]
    assert sum(n for _, _, n in replaced) == 24 and len({name for _, name, _ in replaced}) > 1
    assert not [t for t in threads if t[0] in ("get_avus", "add")]
    assert_tagged_once_by(alice, second.task_id, expect=24)


def test_runner_preflight_refusal_replicates_nothing(tmp_path, grid):
    admin, alice = grid
    from compute_to_data.domain.errors import RunnerError

    class NotBuilt(ScriptedRunner):
        def preflight(self, image):
            raise RunnerError("container image x is allowed but not present on this host")

    before = vault_files(tmp_path)
    task, outcome = run_task(tmp_path, alice, NotBuilt())
    assert outcome.state == TaskState.FAILED and "not present on this host" in outcome.error
    assert [f for f in vault_files(tmp_path) if f.startswith("gpu_resc/home/alice/images")] == []
    assert TaskStateStore(alice).read(task.collection).state == TaskState.FAILED
    assert len(before) <= len(vault_files(tmp_path))


def test_uploaded_task_configs_are_not_inputs(tmp_path):
    admin, alice = make_grid(tmp_path, {"a.png": b"1", "run.c2d.json": b"{}"})
    _, outcome = run_task(tmp_path, alice, config=make_config(inputs__pattern="*"))
    assert outcome.inputs == 1


# --- timings and the report's context ---------------------------------------------------------------

STEPS_BEFORE_THE_COLLECTION = ["validate", "select_compute_resource", "check_permissions", "select_inputs"]


class TimedRunner(ScriptedRunner):
    """Reports sub-timings as the notebook entrypoint does (``<name>_seconds``)."""

    def run(self, request):  # noqa: ANN001, ANN201
        result = super().run(request)
        result.timings = {"kernel_start_seconds": 0.5, "papermill_seconds": 2.0, "docker_start_seconds": 0.25}
        return result


def test_timings_are_written_with_every_state_and_refreshed_as_steps_end(tmp_path, grid):
    admin, alice = grid
    store = TaskStateStore(alice)
    seen: dict[str, dict[str, float]] = {}

    def look(request):
        record = store.read(posixpath.join(RESULTS, request.task_id))
        seen[record.get(names.A_STATE)] = record.timings

    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=TimedRunner(before_return=look))
    submitted = create_task(make_config(), context).submit()
    queued = store.read(submitted.collection)
    assert queued.state == TaskState.QUEUED
    assert list(queued.timings) == [*STEPS_BEFORE_THE_COLLECTION, "prepare_task_collection"]
    assert all(isinstance(v, float) and v >= 0 for v in queued.timings.values())

    outcome = create_task(make_config(), context, task_id=submitted.task_id).run()
    assert outcome.succeeded
    # While the notebook ran: the submit's checks, the run's own steps and staging, not execute yet.
    running = seen["running"]
    assert [k for k in running if k.startswith("submit.")] == [
        f"submit.{s}" for s in [*STEPS_BEFORE_THE_COLLECTION, "prepare_task_collection"]
    ]
    assert {"validate", "wait_for_slot", "stage_inputs"} <= set(running) and "execute" not in running
    final = store.read(submitted.collection)
    assert final.state == TaskState.SUCCEEDED
    steps = [k for k in final.timings if "." not in k]
    assert steps == [*STEPS_BEFORE_THE_COLLECTION, "prepare_task_collection", "wait_for_slot", "stage_inputs",
                     "execute", "ingest_outputs", "tag_results", "finalize"]
    assert final.timings["run.kernel_start"] == 0.5 and final.timings["run.papermill"] == 2.0
    assert final.timings["run.docker_start"] == 0.25
    assert json.loads(final.get(names.A_TIMINGS)) == final.timings  # plain JSON: step -> seconds


def test_a_failed_task_shows_where_its_time_went(tmp_path, grid):
    admin, alice = grid

    from compute_to_data.engine.image_classification import ImageClassificationTask

    class FailingTagging(ImageClassificationTask):
        def tag_results(self, run, staged, result):
            time.sleep(0.05)
            raise RuntimeError("the catalog went away")

    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=TimedRunner())
    task = FailingTagging(make_config(), context)
    outcome = task.run()
    assert outcome.state == TaskState.FAILED
    record = TaskStateStore(alice).read(task.collection)
    assert record.state == TaskState.FAILED and "the catalog went away" in record.get(names.A_ERROR)
    assert record.timings["tag_results"] >= 0.05 and "finalize" not in record.timings
    assert {"stage_inputs", "execute", "run.papermill", "ingest_outputs"} <= set(record.timings)


def test_the_report_context_carries_provenance_timings_and_how_to_show_host_paths(tmp_path, grid):
    admin, alice = grid
    runner = ScriptedRunner()
    task, outcome = run_task(tmp_path, alice, runner)
    assert outcome.succeeded
    params = runner.requests[0].parameters
    context = params[names.REPORT_CONTEXT_PARAMETER]
    provenance = context["provenance"]
    record = TaskStateStore(alice).read(task.collection)
    assert provenance["task_id"] == task.task_id and provenance["model"] == f"{HOME}/models/model.pt"
    assert provenance["model_checksum"] == record.get(names.A_MODEL_CHECKSUM)
    assert provenance["notebook_checksum"] == record.get(names.A_NOTEBOOK_CHECKSUM)
    assert provenance["parameters"] == json.loads(record.get(names.A_PARAMETERS))
    assert provenance["input_collection"] == IMAGES and provenance["inputs"] == 6
    assert {"validate", "stage_inputs"} <= set(provenance["timings"]) and "execute" not in provenance["timings"]
    # The scripted runner sees host paths; the report shows them as the container would.
    workdir = Path(params["input_dir"]).parent
    assert context["paths"] == {str(workdir / "inputs"): "/inputs", str(workdir / "outputs"): "/outputs",
                                str(workdir / "task"): "/task"}
    json.dumps(params)  # params.json stays plain JSON


def test_a_run_the_scheduler_holds_back_shows_queued_with_its_reason(tmp_path, grid):
    """A batch scheduler's pending job: readers show ``queued`` and why, never a false ``running``."""
    admin, alice = grid
    seen = []

    def pending_then_running(request):
        collection = posixpath.join(RESULTS, request.task_id)
        request.on_status("queued", "waiting for a GPU (Slurm job 42: Resources)")
        held = TaskStateStore(alice).read(collection)
        seen.append((held.display_state(60), held.queue_reason))
        request.on_status("running", None)
        started = TaskStateStore(alice).read(collection)
        seen.append((started.display_state(60), started.queue_reason))

    task, outcome = run_task(tmp_path, alice, ScriptedRunner(before_return=pending_then_running))
    assert outcome.succeeded
    assert seen == [("queued", "waiting for a GPU (Slurm job 42: Resources)"), ("running", "")]
    assert names.A_QUEUE_REASON not in TaskStateStore(alice).read(outcome.collection).values


def test_a_run_that_ends_while_held_back_keeps_no_queue_reason(tmp_path, grid):
    admin, alice = grid

    def pending(request):
        request.on_status("queued", "waiting for a GPU")

    task, outcome = run_task(tmp_path, alice, ScriptedRunner(before_return=pending, fail="the job was cancelled"))
    record = TaskStateStore(alice).read(outcome.collection)
    assert record.state.value == "failed" and names.A_QUEUE_REASON not in record.values
    assert record.display_state(60) == "failed"


def test_a_labels_file_naming_a_class_twice_is_refused_before_any_change(tmp_path, grid):
    from compute_to_data.domain.errors import ConfigError

    _, alice = grid
    labels = tmp_path / "dup.txt"
    labels.write_text("0\n1\n\n 1 \n2\n")
    alice.put_file(labels, f"{HOME}/models/dup.txt", "lts_resc")
    config = make_config(parameters={"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/dup.txt"})
    with pytest.raises(ConfigError) as info:
        run_task(tmp_path, alice, config=config)
    assert str(info.value) == (
        f"labels file {HOME}/models/dup.txt: class '1' is listed twice (lines 2 and 4); each line names the class "
        "of one model output, so every name must differ")
    assert not alice.collection_exists(RESULTS) or alice.list_collections(RESULTS) == []  # nothing created
