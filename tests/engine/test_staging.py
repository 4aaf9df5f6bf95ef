"""Staging on LocalGrid: in place where the data already is, read through iRODS (streamed) where
it is not, replication when asked (``always``) by several agents at once, and what happened
recorded on the task."""

from __future__ import annotations

import errno
import json
import os
import posixpath
import threading
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import DataObject
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import GridError, SettingsError
from compute_to_data.domain.settings import ReplicationSettings, Settings, SharedVault
from compute_to_data.engine import create_task, staging
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.replication import split_chunks, whole_collections
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.service.tasks import TaskService
from tests.support.engine_support import (
    HOME,
    IMAGES,
    ScriptedRunner,
    make_config,
    make_grid,
    make_settings,
    vault_files,
)

MODEL, LABELS = f"{HOME}/models/model.pt", f"{HOME}/models/labels.txt"
#: what the engine writes into task/ besides the model and labels (not staged objects)
CONTRACT_FILES = (names.PARAMS_FILE, names.INPUTS_MANIFEST_FILE, names.STAGING_STATUS_FILE)


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
                if path.is_file() and path.name not in CONTRACT_FILES:
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
    assert outcome.succeeded and calls == []
    record = staging_record(alice, task.collection)
    assert (record["in_place"], record["streamed"], record["replicated"]) == (0, 8, 0)
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice, config=make_config(compute={"replicate": "always"}, inputs__skip_tagged=False),
                        shared_vaults=shared)
    assert outcome.succeeded and len(calls) == 8
    assert staging_record(alice, task.collection)["in_place"] == 0


def test_a_shared_vault_declaration_that_does_not_hold_is_said_and_streamed(tmp_path):
    admin, alice = make_grid(tmp_path)
    empty = tmp_path / "not_the_vault"
    empty.mkdir()
    shared = {"lts_resc": SharedVault("lts_resc", ("*",), str(empty))}
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice, shared_vaults=shared)
    assert outcome.succeeded and calls == []
    assert any("cannot be read in place" in note and "lts_resc" in note for note in outcome.notes)
    record = staging_record(alice, task.collection)
    assert (record["in_place"], record["streamed"], record["replicated"]) == (0, 8, 0)


def test_a_shared_vault_declaration_that_does_not_hold_is_said_and_replicated_when_asked(tmp_path):
    admin, alice = make_grid(tmp_path)
    empty = tmp_path / "not_the_vault"
    empty.mkdir()
    shared = {"lts_resc": SharedVault("lts_resc", ("*",), str(empty))}
    calls = spy_replication(alice)
    task, outcome = run(tmp_path, alice, config=make_config(compute={"replicate": "always"}), shared_vaults=shared)
    assert outcome.succeeded and len(calls) == 8
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


# --- replication by several agents (threads on LocalGrid), with compute.replicate: always ----------------
ALWAYS = {"replicate": "always"}
def survey(tmp_path, count: int = 40):
    images = {f"site{i % 2}/img_{i:03d}.png": str(i % 3).encode() for i in range(count)}
    return make_grid(tmp_path, images)


def parallel(**extra) -> ReplicationSettings:
    return ReplicationSettings(**{"agents": 3, "parallel_minimum": 2, "poll_seconds": 0.05, **extra})


def test_many_inputs_are_replicated_by_several_agents_at_once(tmp_path):
    admin, alice = survey(tmp_path)
    calls = spy_replication(alice)
    config = make_config(inputs__recursive=True, compute=ALWAYS)
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
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True, compute=ALWAYS),
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
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True, compute=ALWAYS), replication=parallel())
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
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True, compute=ALWAYS), replication=parallel())
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
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True, compute=ALWAYS), replication=parallel(),
                        heartbeat_interval_seconds=0.01, heartbeat_lease_seconds=5.0)
    assert outcome.state == TaskState.CANCELLED
    # the run waited for its agents: none replicates after it ended, and they stopped early
    assert not [t for t in threading.enumerate() if t.name.startswith("c2d-replicate")]
    assert len(done) < 62


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
    assert make_config(compute={"replicate": "stream"}).replicate == names.REPLICATE_STREAM
    from compute_to_data.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="compute.replicate"):
        make_config(compute={"replicate": "sometimes"})


# --- streamed: read through iRODS into the staging directory, nothing registered --------------------------
def spy_reads(grid):
    """Record every read_to_file the grid is asked for, with the thread that asked."""
    calls: list[tuple[str, str]] = []
    original = grid.read_to_file

    def read_to_file(path: str, local_path: Path) -> int:
        calls.append((path, threading.current_thread().name))
        return original(path, local_path)

    grid.read_to_file = read_to_file
    return calls


def staged_files():
    """A runner hook noting every staged file: (content, hard links to it)."""
    seen: dict[str, tuple[bytes, int]] = {}

    def inspect(request) -> None:
        for directory in (Path(request.parameters["input_dir"]), Path(request.workdir) / "task"):
            for path in directory.rglob("*"):
                if path.is_file() and path.name not in CONTRACT_FILES:
                    seen[path.relative_to(directory).as_posix()] = (path.read_bytes(), path.stat().st_nlink)

    return seen, inspect


def test_inputs_elsewhere_are_streamed_not_replicated(tmp_path):
    """when_needed (the default): what has no replica on or in place for the compute host is read
    through iRODS by several readers at once, checked against the catalog's checksum, nothing is
    registered, and the copies go with the staging directory."""
    admin, alice = survey(tmp_path, 12)
    replications = spy_replication(alice)
    meet = threading.Barrier(2, timeout=10)  # the first two reads pass only when two readers work at once
    original = alice.read_to_file

    def read_to_file(path: str, local_path: Path) -> int:
        if path in (MODEL, LABELS):  # the first two: the model and the labels
            meet.wait()
        return original(path, local_path)

    alice.read_to_file = read_to_file
    reads = spy_reads(alice)
    seen, inspect = staged_files()
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True),
                        runner=ScriptedRunner(before_return=inspect), replication=parallel(agents=3))
    assert outcome.succeeded, outcome.error
    assert replications == []
    inputs = alice.list_data_objects(IMAGES, recursive=True)
    assert sorted(p for p, _ in reads) == sorted([o.path for o in inputs] + [MODEL, LABELS])  # each once
    assert {t for _, t in reads} <= {f"c2d-stream_{i}" for i in range(3)} and len({t for _, t in reads}) > 1
    assert all([r.resource_name for r in o.replicas] == ["lts_resc"] for o in inputs)  # no replica anywhere else
    for obj in inputs:
        content, links = seen[posixpath.relpath(obj.path, IMAGES)]
        assert content == alice.read_data_object(obj.path) and links == 1  # a copy of its own, no hard link
    assert seen["model/model.pt"] == (b"torchscript", 1)
    record = staging_record(alice, task.collection)
    assert (record["replicate"], record["streamed"], record["readers"], record["checksums_checked"]) == ("when_needed", 14, 3, 14)
    assert (record["replicated"], record["in_place"], record["linked"], record["streamed_bytes"]) == (
        0, 0, 0, sum(o.size for o in inputs) + len(b"torchscript") + len("0\n1\n2\n"))
    assert "stage.stream" in outcome.timings and "stage.replicate" not in outcome.timings
    assert TaskStateStore(alice).read(task.collection).get(names.A_REPLICATED_BYTES) == "0"
    assert not (tmp_path / "staging" / task.run_key).exists()


def test_stream_streams_even_what_lies_in_place(tmp_path):
    """compute.replicate: stream, for sites that want no hard link into their vaults."""
    admin, alice = make_grid(tmp_path, storage_host="localhost")
    alice.replicate(f"{IMAGES}/img_00.png", "gpu_resc")  # even a replica on the compute resource
    seen, inspect = staged_files()
    task, outcome = run(tmp_path, alice, config=make_config(compute={"replicate": "stream"}),
                        runner=ScriptedRunner(before_return=inspect))
    assert outcome.succeeded, outcome.error
    assert all(links == 1 for _, links in seen.values()) and len(seen) == 8
    record = staging_record(alice, task.collection)
    assert (record["replicate"], record["streamed"], record["in_place"], record["on_resource"], record["linked"]) == (
        "stream", 8, 0, 0, 0)


def test_a_read_that_fails_once_is_read_again(tmp_path):
    admin, alice = make_grid(tmp_path)
    doomed = f"{IMAGES}/img_03.png"
    original = alice.read_to_file
    failed: list[str] = []

    def read_to_file(path: str, local_path: Path) -> int:
        if path == doomed and not failed:
            failed.append(path)
            local_path.write_bytes(b"half")  # a partial file is never put in place
            raise GridError("the connection dropped (injected)")
        return original(path, local_path)

    alice.read_to_file = read_to_file
    seen, inspect = staged_files()
    task, outcome = run(tmp_path, alice, runner=ScriptedRunner(before_return=inspect))
    assert outcome.succeeded and failed == [doomed]
    assert seen["img_03.png"][0] == alice.read_data_object(doomed)


def test_an_input_whose_bytes_do_not_match_the_catalog_checksum_fails_the_task_naming_it(tmp_path):
    admin, alice = make_grid(tmp_path)
    doomed = f"{IMAGES}/img_04.png"
    vault_file = Path(alice.get_data_object(doomed).replicas[0].physical_path)
    vault_file.write_bytes(bytes([vault_file.read_bytes()[0] ^ 1]))  # same size, other bytes: bit rot
    task, outcome = run(tmp_path, alice)
    assert outcome.state == TaskState.FAILED
    assert "could not read 1 input(s) through iRODS" in outcome.error and doomed in outcome.error
    assert "checksum" in outcome.error
    assert not (tmp_path / "staging" / task.run_key).exists()


def test_a_cancelled_task_stops_streaming(tmp_path):
    admin, alice = survey(tmp_path, 60)
    original = alice.read_to_file
    done: list[str] = []
    lifecycle = TaskService(alice, make_settings(tmp_path))

    def read_to_file(path: str, local_path: Path) -> int:
        done.append(path)
        if len(done) == 6:
            collection = TaskStateStore(alice).list(posixpath.dirname(posixpath.dirname(IMAGES)))[0].collection
            lifecycle.cancel(collection, "alice")
        threading.Event().wait(0.01)
        return original(path, local_path)

    alice.read_to_file = read_to_file
    task, outcome = run(tmp_path, alice, config=make_config(inputs__recursive=True), replication=parallel(),
                        heartbeat_interval_seconds=0.01, heartbeat_lease_seconds=5.0)
    assert outcome.state == TaskState.CANCELLED
    stopped_at = len(done)
    threading.Event().wait(0.3)
    assert len(done) <= stopped_at + 3 < 62


def test_checksums_of_both_schemes_are_checked(tmp_path):
    import base64
    import hashlib

    from compute_to_data.engine.streaming import checksum_matches

    path = tmp_path / "f"
    path.write_bytes(b"content")
    sha = "sha2:" + base64.b64encode(hashlib.sha256(b"content").digest()).decode()
    assert checksum_matches(path, sha) is True
    assert checksum_matches(path, hashlib.md5(b"content").hexdigest()) is True
    assert checksum_matches(path, "sha2:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode()) is False
    assert checksum_matches(path, "") is None and checksum_matches(path, "sha512:xyz") is None


def test_an_input_s_relative_path_is_its_path_below_the_input_collection(tmp_path: Path) -> None:
    """The name an input is staged and recorded under (a prefix cut, as relpath gave it)."""
    admin, alice = make_grid(tmp_path)
    task = create_task(make_config(inputs={"collection": IMAGES, "pattern": "*.png"}),
                       TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner()))
    assert task.relative_path(DataObject(f"{IMAGES}/site1/a.png", 3)) == "site1/a.png"
    assert task.relative_path(DataObject(f"{IMAGES}/a.png", 3)) == "a.png"
    assert task.relative_path(DataObject(f"{IMAGES}-old/a.png", 3)) == "../images-old/a.png"  # not below it
