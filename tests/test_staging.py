"""Staging on LocalGrid: in place where the data already is, replication only when needed (or
always, when asked), by several agents at once, and what happened recorded on the task."""

from __future__ import annotations

import errno
import json
import os
import posixpath
import threading
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import GridError, SettingsError
from compute_to_data.domain.settings import ReplicationSettings, Settings, SharedVault
from compute_to_data.engine import create_task, staging
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.replication import split_chunks, whole_collections
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.tasks import TaskService

from .engine_support import (
    HOME,
    IMAGES,
    ScriptedRunner,
    make_config,
    make_grid,
    make_settings,
    vault_files,
)

MODEL, LABELS = f"{HOME}/models/model.pt", f"{HOME}/models/labels.txt"


def spy_replication(grid):
    """Record every replication the grid is asked for, with the thread that asked."""
    calls: list[tuple[str, str]] = []
    original = grid.replicate

    def replicate(path: str, resource: str) -> None:
        calls.append((path, threading.current_thread().name))
        original(path, resource)

    grid.replicate = replicate
    return calls


def inodes_seen():
    """A runner hook noting the inode of every staged input, model and labels file."""
    seen: dict[str, int] = {}

    def inspect(request) -> None:
        for directory in (request.parameters["input_dir"], Path(request.workdir) / "task"):
            for path in Path(directory).rglob("*"):
                if path.is_file() and path.name != names.PARAMS_FILE:
                    seen[path.name] = path.stat().st_ino

    return seen, inspect


def run(tmp_path, grid, config=None, runner=None, **settings):
    context = TaskContext(grid=grid, settings=make_settings(tmp_path, **settings), runner=runner or ScriptedRunner())
    task = create_task(config or make_config(), context)
    return task, task.run()


def staging_record(grid, collection: str) -> dict:
    return json.loads(TaskStateStore(grid).read(collection).get(names.A_STAGING))


def inode(path: str) -> int:
    return os.stat(path).st_ino


# --- in place ------------------------------------------------------------------------------------------
def test_when_needed_links_replicas_on_the_compute_host_where_they_lie(tmp_path):
    admin, alice = make_grid(tmp_path, storage_host="localhost")  # lts_resc on the GPU host
    calls = spy_replication(alice)
    seen, inspect = inodes_seen()
    task, outcome = run(tmp_path, alice, runner=ScriptedRunner(before_return=inspect))
    assert outcome.succeeded
    assert calls == []  # no replication at all
    assert not [f for f in vault_files(tmp_path) if f.startswith("gpu_resc/home/alice/images")]
    for obj in alice.list_data_objects(IMAGES):
        assert obj.good_replica_on("gpu_resc") is None
        assert seen[obj.name] == inode(obj.good_replica_on("lts_resc").physical_path)
    assert seen["model.pt"] == inode(alice.get_data_object(MODEL).good_replica_on("lts_resc").physical_path)
    record = staging_record(alice, task.collection)
    assert record["replicate"] == names.REPLICATE_WHEN_NEEDED
    assert (record["in_place"], record["replicated"], record["on_resource"], record["linked"]) == (8, 0, 0, 8)
    assert record["in_place_bytes"] == sum(o.size for o in alice.list_data_objects(IMAGES)) + 11 + 6
    assert TaskStateStore(alice).read(task.collection).get(names.A_REPLICATED_BYTES) == "0"
    assert outcome.staging == record and outcome.replicated_bytes == 0
    assert {"stage.link", "stage_inputs"} <= set(outcome.timings) and "stage.replicate" not in outcome.timings


def test_always_replicates_to_the_compute_resource_even_from_the_compute_host(tmp_path):
    admin, alice = make_grid(tmp_path, storage_host="localhost")
    calls = spy_replication(alice)
    seen, inspect = inodes_seen()
    config = make_config(compute={"replicate": "always"})
    task, outcome = run(tmp_path, alice, config=config, runner=ScriptedRunner(before_return=inspect))
    assert outcome.succeeded
    assert sorted(p for p, _ in calls) == sorted([o.path for o in alice.list_data_objects(IMAGES)] + [MODEL, LABELS])
    for obj in alice.list_data_objects(IMAGES):
        assert seen[obj.name] == inode(obj.good_replica_on("gpu_resc").physical_path)
    record = staging_record(alice, task.collection)
    assert (record["replicate"], record["in_place"], record["replicated"], record["agents"]) == ("always", 0, 8, 1)
    assert record["replicated_bytes"] == outcome.replicated_bytes > 0
    assert "stage.replicate" in outcome.timings


def test_a_replica_on_the_compute_resource_is_preferred_to_one_in_place(tmp_path):
    admin, alice = make_grid(tmp_path, storage_host="localhost")
    alice.replicate(f"{IMAGES}/img_00.png", "gpu_resc")
    calls = spy_replication(alice)
    seen, inspect = inodes_seen()
    task, outcome = run(tmp_path, alice, runner=ScriptedRunner(before_return=inspect))
    assert outcome.succeeded and calls == []
    assert seen["img_00.png"] == inode(alice.get_data_object(f"{IMAGES}/img_00.png").good_replica_on("gpu_resc").physical_path)
    record = staging_record(alice, task.collection)
    assert (record["on_resource"], record["in_place"]) == (1, 7)


def test_a_declared_shared_vault_is_read_in_place_where_it_is_mounted(tmp_path):
    admin, alice = make_grid(tmp_path)  # lts_resc on a host of its own
    mount = tmp_path / "mnt" / "lts"
    mount.parent.mkdir()
    mount.symlink_to(admin.get_resource("lts_resc").vault_path)  # the same files, at another path
    shared = {"lts_resc": SharedVault("lts_resc", ("localhost",), str(mount))}  # gpu_resc's host
    calls = spy_replication(alice)
    seen, inspect = inodes_seen()
    task, outcome = run(tmp_path, alice, runner=ScriptedRunner(before_return=inspect), shared_vaults=shared)
    assert outcome.succeeded and calls == []
    for obj in alice.list_data_objects(IMAGES):
        assert seen[obj.name] == inode(obj.good_replica_on("lts_resc").physical_path)
    assert staging_record(alice, task.collection)["in_place"] == 8


def test_a_shared_vault_declared_for_other_hosts_is_not_used(tmp_path):
    admin, alice = make_grid(tmp_path)
    shared = {"lts_resc": SharedVault("lts_resc", ("gpu-node-9",))}
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice, shared_vaults=shared)
    assert outcome.succeeded and len(calls) == 8
    assert staging_record(alice, task.collection)["in_place"] == 0


def test_a_shared_vault_declaration_that_does_not_hold_is_said_and_replicated(tmp_path):
    admin, alice = make_grid(tmp_path)
    empty = tmp_path / "not_the_vault"
    empty.mkdir()
    shared = {"lts_resc": SharedVault("lts_resc", ("*",), str(empty))}
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice, shared_vaults=shared)
    assert outcome.succeeded and len(calls) == 8
    assert any("cannot be read in place" in note and "lts_resc" in note for note in outcome.notes)
    record = staging_record(alice, task.collection)
    assert (record["in_place"], record["replicated"]) == (0, 8)


def test_in_place_on_another_filesystem_than_the_staging_directory_is_copied_and_said(tmp_path, monkeypatch):
    admin, alice = make_grid(tmp_path, storage_host="localhost")

    def cross_device(source, target):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(staging.os, "link", cross_device)
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice)
    assert outcome.succeeded and calls == []
    assert any("copying inputs instead" in note for note in outcome.notes)
    record = staging_record(alice, task.collection)
    assert (record["in_place"], record["linked"], record["copied"]) == (8, 0, 8)


# --- replication by several agents (threads on LocalGrid) -----------------------------------------------
def survey(tmp_path, count: int = 40):
    images = {f"site{i % 2}/img_{i:03d}.png": str(i % 3).encode() for i in range(count)}
    return make_grid(tmp_path, images)


def parallel(**extra) -> ReplicationSettings:
    return ReplicationSettings(**{"agents": 3, "parallel_minimum": 2, "poll_seconds": 0.05, **extra})


def test_many_inputs_are_replicated_by_several_agents_at_once(tmp_path):
    admin, alice = survey(tmp_path)
    calls = spy_replication(alice)
    config = make_config(inputs__recursive=True)
    task, outcome = run(tmp_path, alice, config=config, replication=parallel())
    assert outcome.succeeded
    inputs = [o.path for o in alice.list_data_objects(IMAGES, recursive=True)]
    assert sorted(p for p, _ in calls) == sorted(inputs + [MODEL, LABELS])  # each once
    threads = {t for _, t in calls}
    assert "MainThread" in threads and any(t.startswith("c2d-replicate-") for t in threads)
    assert all(o.good_replica_on("gpu_resc") for o in alice.list_data_objects(IMAGES, recursive=True))
    record = staging_record(alice, task.collection)
    assert (record["agents"], record["replicated"], record["taken_over"], record["agent_failures"]) == (3, 42, 0, 0)


def test_few_inputs_are_replicated_by_the_run_alone(tmp_path):
    admin, alice = survey(tmp_path, 10)
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True),
                        replication=parallel(parallel_minimum=100))
    assert outcome.succeeded and {t for _, t in calls} == {"MainThread"}
    assert staging_record(alice, task.collection)["agents"] == 1


def test_a_failing_agent_chunk_is_taken_over_by_the_run(tmp_path):
    admin, alice = survey(tmp_path)
    doomed = f"{IMAGES}/site1/img_039.png"  # the last image: in the last agent's chunk
    original = alice.replicate
    failed: list[str] = []

    def replicate(path: str, resource: str) -> None:
        if path == doomed and threading.current_thread().name.startswith("c2d-replicate-") and not failed:
            failed.append(threading.current_thread().name)
            raise GridError("the catalog hiccuped (injected)")
        original(path, resource)

    alice.replicate = replicate
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True), replication=parallel())
    assert outcome.succeeded, outcome.error
    assert failed and alice.get_data_object(doomed).good_replica_on("gpu_resc") is not None
    assert all(o.good_replica_on("gpu_resc") for o in alice.list_data_objects(IMAGES, recursive=True))
    record = staging_record(alice, task.collection)
    assert (record["agent_failures"], record["taken_over"]) == (1, 1)


def test_an_input_that_cannot_be_replicated_fails_the_task_naming_it(tmp_path):
    admin, alice = survey(tmp_path)
    doomed = f"{IMAGES}/site0/img_010.png"
    original = alice.replicate

    def replicate(path: str, resource: str) -> None:
        if path == doomed:
            raise GridError("the vault refused it (injected)")
        original(path, resource)

    alice.replicate = replicate
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True), replication=parallel())
    assert outcome.state == TaskState.FAILED
    assert "could not replicate 1 input(s)" in outcome.error and doomed in outcome.error


def test_a_cancelled_task_stops_replicating(tmp_path):
    admin, alice = survey(tmp_path, 60)
    original = alice.replicate
    done: list[str] = []
    lifecycle = TaskService(alice, make_settings(tmp_path))

    def replicate(path: str, resource: str) -> None:
        done.append(path)
        if len(done) == 6:
            collection = TaskStateStore(alice).list(posixpath.dirname(posixpath.dirname(IMAGES)))[0].collection
            lifecycle.cancel(collection, "alice")
        original(path, resource)

    alice.replicate = replicate
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True), replication=parallel(),
                        heartbeat_interval_seconds=0.01, heartbeat_lease_seconds=5.0)
    assert outcome.state == TaskState.CANCELLED
    stopped_at = len(done)
    threading.Event().wait(0.3)  # the agents stop at their next object
    assert len(done) <= stopped_at + 3 < 62


# --- planning ----------------------------------------------------------------------------------------
def test_whole_collections_are_those_holding_nothing_else():
    top = "/z/home/a/survey"
    listing = [f"{top}/x.png", f"{top}/a/1.png", f"{top}/a/2.png", f"{top}/b/1.png", f"{top}/b/notes.txt",
               f"{top}/c/d/1.png", f"{top}/c/d/2.png", f"{top}/c/e/1.png"]
    needed = [p for p in listing if p.endswith(".png")]
    assert whole_collections(needed, listing, top) == [(f"{top}/a", 2), (f"{top}/c", 3)]
    assert whole_collections(needed + [f"{top}/b/notes.txt"], listing, top) == [(top, 8)]
    # a task that is not recursive needs only the top's own objects: its sub-collections disqualify it
    assert whole_collections([f"{top}/x.png"], listing, top) == []
    assert whole_collections(needed, [], top) == []
    # at most `limit` objects each: a larger one gives way to its sub-collections
    assert whole_collections(needed + [f"{top}/b/notes.txt"], listing, top, limit=3) == [
        (f"{top}/a", 2), (f"{top}/b", 2), (f"{top}/c", 3)]
    assert whole_collections(needed, listing, top, limit=2) == [(f"{top}/a", 2), (f"{top}/c/d", 2), (f"{top}/c/e", 1)]


def test_chunks_are_contiguous_balanced_and_never_split_a_collection():
    paths = [f"/z/p/{i:03d}.png" for i in range(10)]
    chunks = split_chunks(paths, [("/z/p/sub", 10)], 4)
    assert len(chunks) <= 4 and [c.index for c in chunks] == list(range(len(chunks)))
    flat = [p for c in chunks for p in c.paths]
    assert flat == sorted(paths)  # in path order, each once
    assert sum(len(c.collections) for c in chunks) == 1
    assert sum(c.objects for c in chunks) == 20
    even = split_chunks(paths, [], 3)
    assert [len(c.paths) for c in even] in ([4, 3, 3], [3, 4, 3], [3, 3, 4])
    assert split_chunks(paths[:2], [], 5) == split_chunks(paths[:2], [], 2)


def test_replication_and_shared_vault_settings_are_validated():
    settings = Settings.from_document({
        "replication": {"agents": 6, "resources": {"gpu_resc": 8}, "parallel_minimum": 500},
        "shared_vaults": {"lts_resc": {"hosts": ["gpu-node-1", "gpu-node-2"], "path": "/gpfs/lts"}},
    }, "test")
    assert settings.replication.agents_for("gpu_resc") == 8 and settings.replication.agents_for("gpu2") == 6
    vault = settings.shared_vaults["lts_resc"]
    assert vault.visible_on("GPU-node-2") and not vault.visible_on("gpu-node-3")
    assert vault.local_path("/data/lts", "/data/lts/home/a/x.png") == "/gpfs/lts/home/a/x.png"
    assert vault.local_path("/data/lts", "/elsewhere/x.png") is None
    assert Settings.from_document(settings.to_document(), "again").shared_vaults == settings.shared_vaults
    for bad, says in [
        ({"replication": {"agents": 0}}, "replication.agents"),
        ({"replication": {"workers": 2}}, "unknown replication setting"),
        ({"replication": {"parallel_minimum": 1}}, "parallel_minimum"),
        ({"shared_vaults": {"lts_resc": {"hosts": []}}}, "hosts must be a non-empty list"),
        ({"shared_vaults": {"lts_resc": {"hosts": ["a"], "path": "relative/dir"}}}, "absolute"),
        ({"shared_vaults": {"lts_resc": {"hosts": ["a"], "mount": "/x"}}}, "unknown setting"),
        ({"shared_vaults": ["lts_resc"]}, "shared_vaults must map"),
    ]:
        with pytest.raises(SettingsError, match=says):
            Settings.from_document(bad, "test")


def test_replicate_policy_in_the_task_config():
    assert make_config().replicate == names.REPLICATE_WHEN_NEEDED
    assert make_config(compute={"replicate": "always"}).replicate == names.REPLICATE_ALWAYS
    from compute_to_data.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="compute.replicate"):
        make_config(compute={"replicate": "sometimes"})
