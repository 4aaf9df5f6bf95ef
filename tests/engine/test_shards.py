"""Tasks larger than one shard: planning, placement, shard runs, the task's aggregate state,
its summary report, failures, resume and cancel (engine on LocalGrid; the rules in
tests/rules/test_rules_shards.py)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType, MetadataOperation, Resource
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import AccessDeniedError, ConfigError, TaskStateError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.domain.shards import aggregate
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.planning import Candidate, ShardDraft, ShardPlanner, capacity, place_shards
from compute_to_data.engine.selection import select_compute_resource
from compute_to_data.grid.local import LocalGrid
from compute_to_data.lifecycle.shard_records import shard_records
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.notebook import summarize as task_summary
from compute_to_data.service.tasks import TaskService
from compute_to_data.web.app import WebConfig, create_app
from tests.support.client_support import run_cli
from tests.support.engine_support import (
    IMAGES,
    RESULTS,
    ScriptedRunner,
    assert_no_half_pair,
    assert_tagged_once_by,
    make_config,
    make_grid,
    make_settings,
)

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402


# --- planning: pure ---------------------------------------------------------------------------------
def candidates(collection: str, count: int, size: int = 10, on: tuple[str, ...] = ("lts",)) -> list[Candidate]:
    return [Candidate(f"{collection}/{i:03d}.png", f"/z/in/{collection}", size, on) for i in range(count)]


def plan(tmp_path: Path, shard_size: int, *groups: list[Candidate]) -> tuple[ShardPlanner, list[ShardDraft]]:
    planner = ShardPlanner(shard_size, tmp_path / "plan")
    for group in groups:
        planner.add_all(group)
    return planner, planner.finish()


def test_sub_collections_stay_together_unless_larger_than_a_shard(tmp_path: Path) -> None:
    planner, drafts = plan(tmp_path, 10, candidates("a", 4), candidates("b", 5), candidates("c", 3), candidates("d", 23))
    assert [d.count for d in drafts] == [9, 3, 10, 10, 3]  # a+b fit; c alone; d cut into full shards, its rest
    assert [d.first for d in drafts] == ["a/000.png", "c/000.png", "d/000.png", "d/010.png", "d/020.png"]
    lines = planner.inputs_file(1).read_text().splitlines()
    assert lines == [f"a/{i:03d}.png" for i in range(4)] + [f"b/{i:03d}.png" for i in range(5)]
    assert sum(len(planner.inputs_file(d.number).read_text().splitlines()) for d in drafts) == 4 + 5 + 3 + 23
    assert planner.total == 35


def test_a_planned_shard_knows_the_bytes_each_resource_holds(tmp_path: Path) -> None:
    _, [draft] = plan(tmp_path, 10, candidates("a", 3, size=5, on=("gpu1", "lts")), candidates("b", 2, size=7, on=("lts",)))
    assert draft.size == 29 and draft.bytes_on == {"gpu1": 15, "lts": 29}


def resource(name: str, max_tasks: int | None = None, gpus: int | None = None) -> Resource:
    avus = []
    if max_tasks is not None:
        avus.append(AVU(names.MAX_TASKS_ATTRIBUTE, str(max_tasks)))
    if gpus is not None:
        avus.append(AVU(names.GPUS_ATTRIBUTE, str(gpus)))
    return Resource(name, f"{name}-host", f"/vault/{name}", avus=tuple(avus))


def draft(number: int, count: int, **bytes_on: int) -> ShardDraft:
    return ShardDraft(number, count, sum(bytes_on.values()), dict(bytes_on))


def test_without_spread_each_shard_goes_where_its_bytes_are() -> None:
    shards = [draft(1, 10, b=100), draft(2, 10, a=50, b=10), draft(3, 10, c=1)]
    assert place_shards(shards, [resource("a"), resource("b"), resource("c")]) == ["b", "a", "c"]


def test_equally_good_resources_prefer_a_free_slot_then_less_load() -> None:
    """Observed on a real zone: a task waited for gpu_resc while gpu_resc2 (same locality) stood idle."""
    a, b = resource("gpu_resc"), resource("gpu_resc2")
    assert place_shards([draft(1, 10)], [a, b], load={"gpu_resc": 1}) == ["gpu_resc2"]
    assert place_shards([draft(1, 10)], [a, b]) == ["gpu_resc"]  # the name breaks the last tie
    # the plan's own shards count: two shards without locality go to both
    assert place_shards([draft(1, 10), draft(2, 10)], [a, b]) == ["gpu_resc", "gpu_resc2"]
    # and a single task's choice follows the same rule
    assert select_compute_resource([a, b], [], "GPU_COMPUTE", load={"gpu_resc": 1}).name == "gpu_resc2"
    big = resource("gpu_resc", max_tasks=2)
    assert select_compute_resource([big, b], [], "GPU_COMPUTE", load={"gpu_resc": 1, "gpu_resc2": 1}).name == "gpu_resc"


def test_spread_balances_by_capacity_and_keeps_locality_within_each_share() -> None:
    a, b, c = resource("a"), resource("b"), resource("c")
    shards = [draft(i, 10, a=100) for i in range(1, 4)]
    assert place_shards(shards, [a, b, c]) == ["a", "a", "a"]  # locality alone
    assert place_shards(shards, [a, b, c], spread=True) == ["a", "b", "c"]  # balanced: the first stays local
    # capacity: MAX_TASKS x GPUS; a resource with twice the capacity takes twice the images
    big = resource("big", max_tasks=1, gpus=2)
    assert capacity(big) == 2 and capacity(resource("x", max_tasks=3)) == 3
    placed = place_shards([draft(i, 10) for i in range(1, 7)], [big, resource("small")], spread=True)
    assert placed.count("big") == 4 and placed.count("small") == 2


# --- the engine on LocalGrid ---------------------------------------------------------------------------
FILES = {f"{sub}/img_{i:02d}.png": str(i % 3).encode() for sub in ("a", "b", "c") for i in range(8)}


@pytest.fixture
def zone(tmp_path: Path) -> tuple[LocalGrid, LocalGrid]:
    admin, alice = make_grid(tmp_path, FILES, users=("alice", "bob"))
    admin.make_resource("gpu_resc2")
    admin.apply_metadata([MetadataOperation("add", EntityType.RESOURCE, "gpu_resc2",
                                            AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE))])
    return admin, alice


def context(tmp_path: Path, grid: LocalGrid, runner: ScriptedRunner | None = None, **settings: object) -> TaskContext:
    settings.setdefault("max_shard_size", 10)
    return TaskContext(grid=grid, settings=make_settings(tmp_path, **settings), runner=runner or ScriptedRunner())


def run_now(config, ctx: TaskContext):  # noqa: ANN201
    """A task run now through the task service (its shards here, one after the other)."""
    return TaskService(ctx.grid, ctx.settings).run_now(config, ctx)


def sharded_config(**overrides: object):  # noqa: ANN201
    overrides.setdefault("inputs", {"collection": IMAGES, "pattern": "*.png", "recursive": True})
    return make_config(**overrides)


def test_a_task_larger_than_one_shard_runs_as_shards_and_reports_once(tmp_path: Path, zone) -> None:
    admin, alice = zone
    runner = ScriptedRunner()
    outcome = run_now(sharded_config(compute={"spread": True}), context(tmp_path, alice, runner))
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    task = TaskStateStore(alice).read(outcome.collection)
    assert task.is_sharded and task.get(names.A_SHARDS) == "3"
    assert task.get(names.A_PROGRESS) == "24/24" and task.get(names.A_INPUTS) == "24"
    assert task.get(names.A_REPORT) == f"{outcome.collection}/report.html"
    shards = shard_records(alice, outcome.collection)
    assert [s.collection for s in shards] == [names.shard_collection(outcome.collection, n) for n in (1, 2, 3)]
    assert [s.get(names.A_SHARD) for s in shards] == ["0001/0003", "0002/0003", "0003/0003"]
    assert {s.state for s in shards} == {TaskState.SUCCEEDED}
    assert sorted(s.get(names.A_COMPUTE_RESOURCE) for s in shards) == ["gpu_resc", "gpu_resc", "gpu_resc2"]
    # each shard: its own inputs (a sub-collection each), report, predictions; run under its own key
    for number, shard in enumerate(shards, 1):
        sub = "abc"[number - 1]
        listed = alice.read_data_object(f"{shard.collection}/{names.SHARD_INPUTS_FILE}").decode().splitlines()
        assert listed == [f"{sub}/img_{i:02d}.png" for i in range(8)]
        assert shard.get(names.A_REPORT) == f"{shard.collection}/report.html"
        assert alice.data_object_exists(f"{shard.collection}/predictions.json")
    assert sorted(r.task_id for r in runner.requests) == sorted(
        [f"{outcome.task_id}-{n:04d}" for n in (1, 2, 3)] + [f"{outcome.task_id}-summary"])
    # every image tagged once, with the task's own units (not a shard's)
    assert_tagged_once_by(alice, outcome.task_id, expect=24)
    # one report and one predictions file for the whole task
    whole = json.loads(alice.read_data_object(f"{outcome.collection}/predictions.json"))
    assert whole["task_id"] == outcome.task_id and len(whole["images"]) == 24
    assert sorted(e["file"] for e in whole["images"]) == sorted(FILES)
    csv_rows = alice.read_data_object(f"{outcome.collection}/predictions.csv").decode().splitlines()
    assert len(csv_rows) == 25
    report = alice.read_data_object(f"{outcome.collection}/report.html").decode()
    assert 'href="shards/0002/report.html"' in report and "gpu_resc2" in report
    # a task is listed and found once: its shards are not tasks
    store = TaskStateStore(alice)
    assert [r.collection for r in store.list()] == [outcome.collection]
    assert store.find(outcome.task_id).collection == outcome.collection


def test_the_summary_shows_the_shards_thumbnails_of_the_least_certain_images(tmp_path: Path, zone) -> None:
    """Each shard's notebook leaves thumbnails of its least certain images (``thumbnails.json``);
    the summary stages them next to the predictions (the images stay on the shards' hosts) and
    shows them with the task's least certain images. A shard without one costs only its pictures."""
    from compute_to_data.contract.results import THUMBNAILS_FILE, write_thumbnails

    admin, alice = zone
    picture = "data:image/png;base64,iVBORw0KGgo="

    def leave_thumbnails(request) -> None:  # noqa: ANN001
        params = request.parameters
        if params["input_dir"].endswith("/inputs") and not any(Path(params["input_dir"]).glob("c/*")):
            files = sorted(p.relative_to(params["input_dir"]).as_posix() for p in Path(params["input_dir"]).rglob("*.png"))
            write_thumbnails(Path(params["output_dir"]), [{"file": f, "path": f, "thumbnail": picture} for f in files])

    runner = ScriptedRunner(before_return=leave_thumbnails)
    outcome = run_now(sharded_config(), context(tmp_path, alice, runner))
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    shards = shard_records(alice, outcome.collection)
    with_pictures = [s for s in shards if alice.data_object_exists(f"{s.collection}/{THUMBNAILS_FILE}")]
    assert len(with_pictures) == 2  # the shard of sub-collection c left none
    report = alice.read_data_object(f"{outcome.collection}/report.html").decode()
    shown = re.findall(r'<img class="c2d-thumbnail" src="([^"]+)" alt="([^"]+)"', report)
    assert shown and {src for src, _ in shown} == {picture}
    assert {alt.split("/")[0] for _, alt in shown} <= {"a", "b"}
    rows = re.findall(r"<tr><td>(.*?)</td><td>([abc]/img_\d+\.png)</td>", report)
    assert len(rows) == 15 and all(bool(cell) == (name[0] != "c") for cell, name in rows)


def test_a_task_smaller_than_one_shard_runs_as_today(tmp_path: Path, zone) -> None:
    admin, alice = zone
    outcome = run_now(sharded_config(), context(tmp_path, alice, max_shard_size=24))
    assert outcome.state == TaskState.SUCCEEDED
    record = TaskStateStore(alice).read(outcome.collection)
    assert not record.is_sharded and names.A_SHARD not in record.values
    assert not alice.collection_exists(f"{outcome.collection}/{names.SHARDS_COLLECTION}")
    assert outcome.compute_resource == "gpu_resc"


def test_a_task_larger_than_one_shard_run_in_one_go_is_refused_before_anything_is_written(tmp_path: Path, zone) -> None:
    """``task.run()`` (the demo, a config run in-process) runs one run; a larger task is
    refused with what to do instead, and the catalog is left as it was."""
    admin, alice = zone
    with pytest.raises(TaskStateError, match=r"larger than one shard \(10 images\): submit it"):
        create_task(sharded_config(), context(tmp_path, alice)).run()
    assert not alice.collection_exists(RESULTS) or alice.list_collections(RESULTS) == []


def test_already_tagged_images_do_not_count_towards_sharding(tmp_path: Path, zone) -> None:
    admin, alice = zone
    first = run_now(sharded_config(inputs={"collection": f"{IMAGES}/a", "pattern": "*.png"}),
                        context(tmp_path, alice))
    assert first.succeeded
    outcome = run_now(sharded_config(), context(tmp_path, alice, max_shard_size=16))
    assert outcome.succeeded and outcome.skipped_already_tagged == 8 and outcome.inputs == 16
    assert not TaskStateStore(alice).read(outcome.collection).is_sharded


def test_a_refusal_found_in_a_late_page_writes_nothing(tmp_path: Path, zone) -> None:
    admin, alice = zone
    late = f"{IMAGES}/c/img_07.png"
    admin.set_acl("read", "alice", late)  # read, no longer own: cannot be tagged
    assert alice.has_access(late, AccessLevel.READ) and not alice.has_access(late, AccessLevel.MODIFY)
    ctx = context(tmp_path, alice)
    ctx.listing_page_size = 2
    with pytest.raises(AccessDeniedError, match="cannot write metadata on .*c/img_07.png"):
        create_task(sharded_config(), ctx).submit()
    assert not alice.collection_exists(RESULTS) or alice.list_collections(RESULTS) == []


def test_compute_resources_must_carry_the_role(tmp_path: Path, zone) -> None:
    admin, alice = zone
    with pytest.raises(Exception, match="do not carry COMPUTE_RESOURCE_ROLE=GPU_COMPUTE"):
        create_task(sharded_config(compute={"resources": ["gpu_resc", "lts_resc"]}), context(tmp_path, alice)).submit()
    with pytest.raises(ConfigError, match="either resource"):
        sharded_config(compute={"resource": "gpu_resc", "resources": ["gpu_resc"]})


def test_submit_queues_every_shard_and_the_task_follows_them(tmp_path: Path, zone) -> None:
    admin, alice = zone
    ctx = context(tmp_path, alice)
    lifecycle = TaskService(alice, ctx.settings)
    outcome = lifecycle.submit(sharded_config(compute={"resources": ["gpu_resc2"]}), ctx).outcome
    assert len(outcome.shard_collections) == 3
    task = lifecycle.read(outcome.collection)
    assert task.state == TaskState.QUEUED and task.get(names.A_COMPUTE_RESOURCE) == "gpu_resc2"
    assert lifecycle.machine.queued_runs(task) == outcome.shard_collections
    assert {lifecycle.read(c).state for c in outcome.shard_collections} == {TaskState.QUEUED}
    lifecycle.start(outcome.shard_collections[0], ctx)
    task = lifecycle.read(outcome.collection)
    assert task.state == TaskState.RUNNING and task.get(names.A_PROGRESS) == "8/24"
    assert not task.is_stale(0.0)  # its shards show their own signs of life
    for collection in outcome.shard_collections[1:]:
        lifecycle.start(collection, ctx)
    assert lifecycle.read(outcome.collection).state == TaskState.SUCCEEDED


def test_a_failed_shard_fails_alone_and_resume_reruns_only_it(tmp_path: Path, zone) -> None:
    admin, alice = zone
    runner = ScriptedRunner()
    original = runner.run

    failing = {"on": True}

    def fail_second(request):  # noqa: ANN001, ANN202
        runner.fail = "CUDA out of memory" if failing["on"] and request.task_id.endswith("-0002") else None
        return original(request)

    runner.run = fail_second  # type: ignore[method-assign]
    ctx = context(tmp_path, alice, runner)
    outcome = run_now(sharded_config(), ctx)
    assert outcome.state == TaskState.FAILED
    assert "1 of 3 shards did not succeed" in outcome.error and "shard 0002" in outcome.error
    assert "CUDA out of memory" in outcome.error
    shards = shard_records(alice, outcome.collection)
    assert [s.state for s in shards] == [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.SUCCEEDED]
    assert not alice.data_object_exists(f"{outcome.collection}/report.html")  # no summary of a failed task
    assert_tagged_once_by(alice, outcome.task_id, expect=16)
    lifecycle = TaskService(alice, ctx.settings)
    resumed = lifecycle.resume(outcome.task_id, by="alice").record
    assert resumed.state == TaskState.QUEUED
    queued = lifecycle.machine.queued_runs(resumed)
    assert queued == [shards[1].collection]
    runner.requests.clear()
    failing["on"] = False
    for collection in queued:
        lifecycle.start(collection, ctx)
    assert [r.task_id for r in runner.requests] == [f"{outcome.task_id}-0002", f"{outcome.task_id}-summary"]
    final = lifecycle.read(outcome.collection)
    assert final.state == TaskState.SUCCEEDED and final.get(names.A_RESUMED) == "1", final.values
    assert_tagged_once_by(alice, outcome.task_id, expect=24)
    assert_no_half_pair(alice)


def test_cancel_stops_every_shard(tmp_path: Path, zone) -> None:
    admin, alice = zone
    ctx = context(tmp_path, alice)
    lifecycle = TaskService(alice, ctx.settings)
    outcome = lifecycle.submit(sharded_config(), ctx).outcome
    lifecycle.start(outcome.shard_collections[0], ctx)
    cancelled = lifecycle.cancel(outcome.task_id, by="alice")
    assert cancelled.record.state == TaskState.CANCELLED and cancelled.effects == ()
    states = [lifecycle.read(c).state for c in outcome.shard_collections]
    assert states == [TaskState.SUCCEEDED, TaskState.CANCELLED, TaskState.CANCELLED]
    with pytest.raises(Exception, match="cancelled"):
        lifecycle.start(outcome.shard_collections[1], ctx)
    with pytest.raises(Exception, match="shard 0002/0003 of task"):
        lifecycle.cancel(outcome.shard_collections[1], by="alice")
    assert lifecycle.read(outcome.collection).state == TaskState.CANCELLED
    # resume: the cancelled shards run again, the succeeded one does not
    resumed = lifecycle.resume(outcome.task_id, by="alice").record
    assert lifecycle.machine.queued_runs(resumed) == outcome.shard_collections[1:]


def test_resume_of_a_task_whose_shards_all_succeeded_makes_only_the_summary(tmp_path: Path, zone) -> None:
    admin, alice = zone
    runner = ScriptedRunner()
    ctx = context(tmp_path, alice, runner)
    broken = {"on": True}
    original = runner._summarize

    def summary_fails(request, out):  # noqa: ANN001, ANN202
        if broken["on"]:
            raise RuntimeError("disk full")
        return original(request, out)

    runner._summarize = summary_fails  # type: ignore[method-assign]
    outcome = run_now(sharded_config(), ctx)
    assert outcome.state == TaskState.FAILED and "summary report could not be made" in outcome.error
    broken["on"] = False
    lifecycle = TaskService(alice, ctx.settings)
    resumed = lifecycle.resume(outcome.task_id, by="alice").record
    assert lifecycle.machine.queued_runs(resumed) == [outcome.collection]
    runner.requests.clear()
    final = lifecycle.start(outcome.collection, ctx)
    assert final.state == TaskState.SUCCEEDED
    assert [r.task_id for r in runner.requests] == [f"{outcome.task_id}-summary"]


# --- the summary, streaming ----------------------------------------------------------------------------
def test_summary_streams_the_shards_into_one_set_of_files(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for number, scores in (("0001", [0.9, 0.2]), ("0002", [0.55])):
        images = [{"file": f"{number}/{i}.png", "path": f"/z/{number}/{i}.png",
                   "classifications": [{"class": "cat" if s > 0.5 else "dog", "score": s}, {"class": "x", "score": 0.0}],
                   "below_threshold": s < 0.3} for i, s in enumerate(scores)]
        images.append({"file": f"{number}/bad.png", "path": f"/z/{number}/bad.png", "error": "cannot identify image file"})
        (inputs / f"{number}.json").write_text(json.dumps({"task_id": "t", "labels": ["cat", "dog"], "images": images}))
    table = tmp_path / "shards.json"
    table.write_text(json.dumps({"shards": [{"shard": "0001", "resource": "gpu_a", "images": 3, "state": "succeeded",
                                             "report": "shards/0001/report.html"}]}))
    out = tmp_path / "out"
    result = task_summary.summarize(inputs, out, table, "T", least_certain=2)
    assert (result.images, result.classified, result.unreadable, result.below_threshold) == (5, 3, 2, 1)
    assert result.counts == {"cat": 2, "dog": 1}
    assert [row[0] for row in result.least_certain] == [0.2, 0.55]
    assert [row.shard for row in result.shards] == ["0001", "0002"] and result.shards[1].predictions == 1 + 1
    whole = json.loads((out / "predictions.json").read_text())
    assert whole["task_id"] == "T" and whole["labels"] == ["cat", "dog"] and len(whole["images"]) == 5
    assert len((out / "predictions.csv").read_text().splitlines()) == 6
    html = task_summary.text_report(result)
    assert '<a href="shards/0001/report.html">0001</a>' in html


def test_aggregate_counts_states_and_progress() -> None:
    records = [
        TaskRecord("/z/t/shards/0001", {names.A_STATE: "succeeded", names.A_PROGRESS: "5/5", names.A_INPUTS: "5"}),
        TaskRecord("/z/t/shards/0002", {names.A_STATE: "running", names.A_PROGRESS: "2/5", names.A_INPUTS: "5",
                                        names.A_IMAGES_FAILED: "1"}),
        TaskRecord("/z/t/shards/0003", {names.A_STATE: "queued", names.A_INPUTS: "4"}),
    ]
    total = aggregate(records)
    assert total.progress == "7/14" and total.images_failed == 1 and not total.finished
    assert total.describe() == "3 shards: 1 queued, 1 running, 1 succeeded"


# --- what a user sees: c2d status and the report browser --------------------------------------------
def test_status_and_the_task_page_show_the_shards(tmp_path: Path, zone, capsys, monkeypatch) -> None:
    admin, alice = zone
    outcome = run_now(sharded_config(compute={"spread": True}), context(tmp_path, alice))
    assert outcome.succeeded
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run_cli(capsys, monkeypatch, "status", outcome.task_id, "--local", str(alice.root), "--user", "alice")
    assert code == 0, err
    assert "3 shards: 3 succeeded" in out and "0002/0003" in out and "gpu_resc2" in out
    code, out, err = run_cli(capsys, monkeypatch, "status", outcome.task_id, "--json", "--local", str(alice.root),
                             "--user", "alice")
    doc = json.loads(out)
    assert doc[names.A_SHARDS] == "3" and [s[names.A_SHARD] for s in doc["shards"]] == ["0001/0003", "0002/0003", "0003/0003"]
    code, out, err = run_cli(capsys, monkeypatch, "list", "--local", str(alice.root), "--user", "alice")
    assert len([line for line in out.splitlines() if outcome.task_id in line]) == 1 and "24/24" in out  # shards are not tasks

    client = TestClient(create_app(WebConfig.for_local(alice.root, "alice", cache_dir=tmp_path / "cache")), base_url="http://127.0.0.1")
    page = client.get(f"/tasks/{outcome.task_id}").text
    table = page[page.index('id="shards"'):page.index("</table>", page.index('id="shards"'))]
    assert table.count("<tr><td class=\"num\">") == 3 and "gpu_resc2" in table
    assert f'href="/tasks/{outcome.task_id}/report/shards/0002/report.html"' in table
    assert "3 shards: 3 succeeded; images 24/24" in page
    shard_report = client.get(f"/tasks/{outcome.task_id}/report/shards/0002/report.html")
    assert shard_report.status_code == 200 and "sandbox" in shard_report.headers["content-security-policy"]
    assert client.get(f"/tasks/{outcome.task_id}/report/shards/..%2F..%2Fx/report.html").status_code == 404
    assert client.get(f"/tasks/{outcome.task_id}/report/content").status_code == 200


def test_a_summary_that_never_started_or_died_is_found_and_resume_makes_it(tmp_path: Path, zone, monkeypatch) -> None:
    import time

    from compute_to_data.engine.summary import TaskSummary

    admin, alice = zone
    ctx = context(tmp_path, alice, heartbeat_interval_seconds=0.2, heartbeat_lease_seconds=1.0)
    run = TaskSummary.run
    monkeypatch.setattr(TaskSummary, "run", lambda self: None)  # the run that ended the last shard died first
    outcome = run_now(sharded_config(), ctx)
    lifecycle = TaskService(alice, ctx.settings)
    assert lifecycle.read(outcome.collection).state == TaskState.RUNNING
    assert lifecycle.status(outcome.task_id).record.state == TaskState.RUNNING  # within the lease: it may come
    time.sleep(2.1)
    found = lifecycle.status(outcome.task_id).record
    assert found.state == TaskState.FAILED and "summary report was not made" in found.get(names.A_ERROR)
    monkeypatch.setattr(TaskSummary, "run", run)
    resumed = lifecycle.resume(outcome.task_id, by="alice").record
    assert lifecycle.machine.queued_runs(resumed) == [outcome.collection]
    assert lifecycle.start(outcome.collection, ctx).state == TaskState.SUCCEEDED
    # a summary whose run dies while it runs: its heartbeat goes silent, its host records it
    again = (sharded_config(inputs={"collection": f"{IMAGES}/a", "pattern": "*.png"}, tagging={
        "class_attribute": "c2", "score_attribute": "s2"}), context(tmp_path, alice, max_shard_size=4,
                                                               heartbeat_interval_seconds=0.2, heartbeat_lease_seconds=1.0))
    monkeypatch.setattr(TaskSummary, "run", lambda self: self.lifecycle.store.write(self.collection, {
        names.A_SUMMARY_RESOURCE: self.resource.name, names.A_RUN_HOST: self.resource.host,
        names.A_HEARTBEAT: names.iso_utc()}))
    task = run_now(*again)
    assert lifecycle.read(task.collection).state == TaskState.RUNNING
    time.sleep(2.1)
    dead = lifecycle.status(task.task_id).record
    assert dead.state == TaskState.FAILED
    assert dead.get(names.A_ERROR).startswith("its summary report was not made: no sign of life from localhost since ")


def test_a_summary_taken_on_by_another_run_is_left_to_it(tmp_path: Path, zone, monkeypatch) -> None:
    from compute_to_data.engine.summary import TaskSummary

    admin, alice = zone
    runner = ScriptedRunner()
    ctx = context(tmp_path, alice, runner)
    run = TaskSummary.run
    monkeypatch.setattr(TaskSummary, "run", lambda self: None)
    outcome = run_now(sharded_config(), ctx)
    monkeypatch.setattr(TaskSummary, "run", run)
    lifecycle = TaskService(alice, ctx.settings)
    task = lifecycle.read(outcome.collection)
    assert task.state == TaskState.RUNNING and task.get(names.A_SUMMARY_RESOURCE) == names.SUMMARY_PENDING
    first, second = (TaskSummary.for_task(lifecycle.machine, task, ctx.runner, "gpu_resc2") for _ in range(2))
    assert first._claim(task)  # the first run swaps pending for its resource
    runner.requests.clear()
    assert second.run().state == TaskState.RUNNING and runner.requests == []  # the second leaves it alone
    assert lifecycle.read(outcome.collection).get(names.A_SUMMARY_RESOURCE) == "gpu_resc2"


# --- issue 20 item 4: progress counts what is tagged, after every salvage ---------------------------
def test_a_shard_stopped_by_a_cancel_counts_what_it_tagged_and_so_does_its_task(tmp_path: Path, zone) -> None:
    """The task is cancelled while a shard runs: the shard stops at its next sign of life, having
    tagged its first part; the shard's and the (cancelled) task's progress say so."""
    admin, alice = zone
    settings = {"heartbeat_interval_seconds": 0.0, "part_size": 4}
    lifecycle = TaskService(alice, make_settings(tmp_path, max_shard_size=10, **settings))

    def cancel_at_six(request, i):  # noqa: ANN001, ANN202
        if i == 6:
            lifecycle.cancel(request.task_id.rsplit("-", 1)[0], by="alice")

    ctx = context(tmp_path, alice, ScriptedRunner(part_size=4, after_image=cancel_at_six), **settings)
    ctx.progress_interval = 0.0
    outcome = lifecycle.submit(sharded_config(), ctx).outcome
    first = outcome.shard_collections[0]
    assert lifecycle.start(first, ctx).state == TaskState.CANCELLED
    assert lifecycle.read(first).state == TaskState.CANCELLED
    assert_tagged_once_by(alice, outcome.task_id, expect=4)
    assert lifecycle.read(first).get(names.A_PROGRESS) == "4/8"
    task = lifecycle.read(outcome.collection)
    assert task.state == TaskState.CANCELLED and task.get(names.A_PROGRESS) == "4/24"


def test_the_reaper_s_salvage_of_a_shard_counts_in_the_shard_and_its_task(tmp_path: Path, zone) -> None:
    """A shard's run died after its notebook finished a part: the reaper tags that part, and the
    shard's and the task's progress count it."""
    from compute_to_data.contract.parts import PartWriter
    from compute_to_data.engine.predictions import store_selection

    admin, alice = zone
    settings = {"heartbeat_interval_seconds": 0.2, "heartbeat_lease_seconds": 1.0}
    ctx = context(tmp_path, alice, **settings)
    lifecycle = TaskService(alice, ctx.settings)
    outcome = lifecycle.submit(sharded_config(), ctx).outcome
    shard = lifecycle.read(outcome.shard_collections[0])
    inputs = alice.read_data_object(f"{shard.collection}/{names.SHARD_INPUTS_FILE}").decode().splitlines()
    resource = shard.get(names.A_COMPUTE_RESOURCE)
    lifecycle.machine.begin_run(shard.collection, {names.A_PROGRESS: f"0/{len(inputs)}", names.A_RUN_HOST: "localhost"})
    lifecycle.machine.settle(outcome.collection)
    store_selection(alice, shard.collection, resource, inputs)
    staging = Path(ctx.settings.staging_directory_for("localhost", resource)) / shard.run_key / "outputs"
    writer = PartWriter(staging, task_id=shard.run_key, total=len(inputs), part_size=4, part_seconds=3600)
    writer.add([{"file": name, "path": f"{IMAGES}/{name}",
                 "classifications": [{"class": "1", "score": 0.9}, {"class": "2", "score": 0.1}]} for name in inputs[:4]])
    import time

    time.sleep(1.3)  # a lease without a sign of life
    status = lifecycle.status(outcome.task_id)
    reaped = lifecycle.read(shard.collection)
    assert reaped.state == TaskState.FAILED and "1 part(s) it had finished are tagged now" in reaped.get(names.A_ERROR)
    assert reaped.get(names.A_PROGRESS) == f"4/{len(inputs)}"
    assert_tagged_once_by(alice, outcome.task_id, expect=4)
    assert status.record.get(names.A_PROGRESS) == "4/24"


# --- issue 20 item 2: one model, one labels file, one notebook per task ------------------------------
def test_a_model_replaced_between_shards_fails_the_later_shards_naming_it(tmp_path: Path, zone) -> None:
    admin, alice = zone
    runner = ScriptedRunner()
    ctx = context(tmp_path, alice, runner)
    lifecycle = TaskService(alice, ctx.settings)
    outcome = lifecycle.submit(sharded_config(), ctx).outcome
    task = lifecycle.read(outcome.collection)
    model = f"{IMAGES.rsplit('/', 1)[0]}/models/model.pt"
    pinned = task.get(names.A_MODEL_CHECKSUM)
    assert pinned == alice.get_data_object(model).checksum and pinned.startswith("sha2:")
    assert task.get(names.A_LABELS_CHECKSUM).startswith("sha2:") and task.get(names.A_NOTEBOOK_CHECKSUM).startswith("sha2:")
    first, second, third = outcome.shard_collections
    assert lifecycle.start(first, ctx).succeeded
    replacement = tmp_path / "other-model.pt"
    replacement.write_bytes(b"another model")
    alice.put_file(replacement, model, "lts_resc", overwrite=True)
    now = alice.get_data_object(model).checksum
    for collection in (second, third):
        failed = lifecycle.start(collection, ctx)
        assert failed.state == TaskState.FAILED
        assert failed.error.startswith(f"the model {model} changed since the task was submitted ({pinned}, now {now})")
    assert len(runner.requests) == 1  # nothing classified with the other model
    assert lifecycle.read(first).get(names.A_MODEL_CHECKSUM) == pinned
    final = lifecycle.read(outcome.collection)
    assert final.state == TaskState.FAILED and "changed since the task was submitted" in final.get(names.A_ERROR)
    assert final.get(names.A_MODEL_CHECKSUM) == pinned  # the task still names the model it ran with
    assert_tagged_once_by(alice, outcome.task_id, expect=8)


def test_the_summary_report_shows_the_pinned_checksums(tmp_path: Path, zone) -> None:
    admin, alice = zone
    runner = ScriptedRunner()
    outcome = run_now(sharded_config(), context(tmp_path, alice, runner))
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    task = TaskStateStore(alice).read(outcome.collection)
    [summary] = [r for r in runner.requests if r.notebook_name == names.SUMMARY_NOTEBOOK]
    shown = summary.parameters[names.REPORT_CONTEXT_PARAMETER]["provenance"]
    assert shown["model_checksum"] == task.get(names.A_MODEL_CHECKSUM) != ""
    assert shown["labels_checksum"] == task.get(names.A_LABELS_CHECKSUM) != ""
    assert shown["shards_notebook_checksum"] == task.get(names.A_NOTEBOOK_CHECKSUM) != ""
    from compute_to_data.notebook.execute import _provenance_cell

    cell = _provenance_cell(shown).source
    assert task.get(names.A_MODEL_CHECKSUM) in cell and task.get(names.A_LABELS_CHECKSUM) in cell
    assert "labels checksum" in cell and "notebook checksum of the shards" in cell
