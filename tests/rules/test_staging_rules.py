"""Staging through the rules on the fake iRODS server: in place without a replication call,
``msiCollRepl`` only for collections holding nothing else, and replication agents that are
rules of their own, queued with the delay server while the run replicates its own share."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import pytest

from compute_to_data import rules
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import EntityType
from tests.fakes.costs import CatalogCosts
from tests.fakes.delay_server import FakeDelayServer
from tests.fakes.irods_server import FakeCallback, irods_error
from tests.support.rules_support import HOME, IMAGES, Zone, build_zone, config_doc

MODEL, LABELS = f"{HOME}/models/model.pt", f"{HOME}/models/labels.txt"
PARALLEL = {"replication": {"agents": 3, "parallel_minimum": 4, "poll_seconds": 0.02}}


#: the replication tests ask for replicas: by default what is elsewhere is streamed, not replicated
ALWAYS = {"replicate": "always"}


def run_task(zone: Zone, **sections) -> dict[str, str]:
    zone.put_config(config_doc(**sections))
    run = zone.irule("c2d_run", f"{HOME}/task_config.json")
    assert run.ok, run.error
    [collection] = zone.task_collections()
    return zone.record(collection)


def staging_of(record: dict[str, str]) -> dict:
    return json.loads(record[names.A_STAGING])


def spy_collection_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = FakeCallback.msi_msiCollRepl

    def msiCollRepl(self, collection, options, status):  # noqa: N802, ANN001, ANN202
        seen.append(collection)
        return original(self, collection, options, status)

    monkeypatch.setattr(FakeCallback, "msi_msiCollRepl", msiCollRepl)
    return seen


def test_in_place_from_the_compute_host_makes_no_replication_call(tmp_path: Path, monkeypatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, storage_host="localhost")  # lts_resc on the compute host
    record = run_task(zone)
    assert record[names.A_STATE] == "succeeded"
    assert zone.server.calls["msiDataObjRepl"] == 0 and zone.server.calls["msiCollRepl"] == 0
    staging = staging_of(record)
    assert (staging["replicate"], staging["in_place"], staging["replicated"]) == ("when_needed", 8, 0)
    assert all(o.good_replica_on("gpu_resc") is None for o in zone.admin.list_data_objects(IMAGES))


def test_inputs_elsewhere_are_streamed_through_the_rule_without_a_replication_call(tmp_path: Path, monkeypatch) -> None:
    """when_needed, inputs on another host: each is read with msiDataObjOpen, msiDataObjRead until
    it hands back None, msiDataObjClose, by the run (a rule never calls callback from two
    threads); no replica is registered and the staged copies go with the staging directory."""
    zone = build_zone(tmp_path, monkeypatch)
    staged: dict[str, bytes] = {}
    original = FakeCallback.msi_msiDataObjClose

    def msiDataObjClose(self, fd, status):  # noqa: N802, ANN001, ANN202
        for path in (tmp_path / "staging").rglob("*"):
            if path.is_file() and "inputs" in path.parts:
                staged[path.name] = path.read_bytes()
        return original(self, fd, status)

    monkeypatch.setattr(FakeCallback, "msi_msiDataObjClose", msiDataObjClose)
    record = run_task(zone)
    assert record[names.A_STATE] == "succeeded", record.get(names.A_ERROR)
    assert zone.server.calls["msiDataObjRepl"] == 0 and zone.server.calls["msiCollRepl"] == 0
    images = zone.admin.list_data_objects(IMAGES)
    assert zone.server.calls["msiDataObjOpen"] >= len(images) + 2  # the images, the model, the labels (and the config)
    assert zone.server.calls["msiDataObjRead"] >= 2 * zone.server.calls["msiDataObjOpen"] - 1  # data, then None
    staging = staging_of(record)
    assert (staging["replicate"], staging["streamed"], staging["readers"], staging["replicated"], staging["in_place"]) == (
        "when_needed", len(images) + 2, 1, 0, 0)
    assert staging["checksums_checked"] == len(images) + 2
    assert all([r.resource_name for r in o.replicas] == ["lts_resc"] for o in images)
    assert {o.name: zone.admin.read_data_object(o.path) for o in images}.items() <= staged.items()
    assert not any(p.is_file() for p in (tmp_path / "staging").rglob("*"))


def pictures(prefix: str, count: int) -> dict[str, bytes]:
    return {f"{prefix}{i:02d}.png": str(i % 3).encode() for i in range(count)}


def test_always_replicates_and_a_collection_of_nothing_but_inputs_is_one_msiCollRepl(tmp_path: Path, monkeypatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, storage_host="localhost", images=pictures("img_", 24))
    collections = spy_collection_calls(monkeypatch)
    record = run_task(zone, compute={"replicate": "always"})
    assert record[names.A_STATE] == "succeeded"
    assert collections == [IMAGES]  # every object of the collection is an input
    assert zone.server.calls["msiDataObjRepl"] == 2  # the model and the labels, elsewhere
    assert all(o.good_replica_on("gpu_resc") for o in zone.admin.list_data_objects(IMAGES))
    staging = staging_of(record)
    assert (staging["replicate"], staging["replicated"], staging["collections"], staging["in_place"]) == ("always", 26, 1, 0)


def test_msiCollRepl_only_where_the_collection_holds_nothing_else(tmp_path: Path, monkeypatch) -> None:
    images = {"x.png": b"1", **pictures("a/", 10), **pictures("b/", 10), "b/notes.txt": b"field notes"}
    zone = build_zone(tmp_path, monkeypatch, images=images)
    collections = spy_collection_calls(monkeypatch)
    record = run_task(zone, inputs={"collection": IMAGES, "pattern": "*.png", "recursive": True}, compute=ALWAYS)
    assert record[names.A_STATE] == "succeeded"
    assert collections == [f"{IMAGES}/a"]  # not b (its notes would be replicated), nor the whole survey
    assert zone.server.calls["msiDataObjRepl"] == 13  # x.png, the 10 of b, the model, the labels
    assert zone.admin.get_data_object(f"{IMAGES}/b/notes.txt").good_replica_on("gpu_resc") is None
    assert all(o.good_replica_on("gpu_resc") for o in zone.admin.list_data_objects(IMAGES, recursive=True)
               if o.name.endswith(".png"))


def test_no_msiCollRepl_for_a_task_that_does_not_take_the_sub_collections(tmp_path: Path, monkeypatch) -> None:
    zone = build_zone(tmp_path, monkeypatch, images={**pictures("img_", 22), "a/1.png": b"1"})
    collections = spy_collection_calls(monkeypatch)
    record = run_task(zone, compute=ALWAYS)  # not recursive: a/1.png is no input, and msiCollRepl would replicate it
    assert record[names.A_STATE] == "succeeded" and collections == []
    assert zone.server.calls["msiDataObjRepl"] == 24
    assert zone.admin.get_data_object(f"{IMAGES}/a/1.png").good_replica_on("gpu_resc") is None


def test_few_objects_to_replicate_are_not_worth_a_listing_for_whole_collections(tmp_path: Path, monkeypatch) -> None:
    zone = build_zone(tmp_path, monkeypatch)  # 6 images: one msiDataObjRepl each is cheaper
    collections = spy_collection_calls(monkeypatch)
    record = run_task(zone, compute=ALWAYS)
    assert record[names.A_STATE] == "succeeded" and collections == []
    assert zone.server.calls["msiDataObjRepl"] == 8


def survey_zone(tmp_path: Path, monkeypatch, count: int = 30, **kwargs) -> Zone:
    images = {f"img_{i:03d}.png": str(i % 3).encode() for i in range(count)}
    images["readme.txt"] = b"not an image: the collection is not replicated whole"
    return build_zone(tmp_path, monkeypatch, images=images, settings=PARALLEL, **kwargs)


def manifests(zone: Zone, collection: str) -> dict[str, dict[str, str]]:
    workspace = posixpath.join(collection, names.TASK_STAGING_COLLECTION)
    return {
        o.path: {a.attribute: a.value for a in o.avus}
        for o in zone.admin.list_data_objects(workspace, avu_attributes=(
            names.A_AGENT_STARTED, names.A_AGENT_RESULT, names.A_TAKEN_OVER))
    }


def test_replication_agents_are_delayed_rules_running_while_the_run_replicates(tmp_path: Path, monkeypatch) -> None:
    # Each replication takes 10 ms, as on a (fast) server, so the agents start while the run works.
    zone = survey_zone(tmp_path, monkeypatch, costs=CatalogCosts({"msiDataObjRepl": 0.01}))
    with FakeDelayServer(zone.server, poll_seconds=0.005) as delay_server:
        record = run_task(zone, compute=ALWAYS)
    assert record[names.A_STATE] == "succeeded"
    agents = [run for entry, run in delay_server.runs if "c2d_replicate_chunk" in entry.body]
    assert len(agents) == 2 and all(run.ok for run in agents)
    inputs = [o for o in zone.admin.list_data_objects(IMAGES) if o.name.endswith(".png")]
    assert all(o.good_replica_on("gpu_resc") for o in inputs)
    staging = staging_of(record)
    assert (staging["agents"], staging["replicated"], staging["collections"]) == (3, 32, 0)
    marks = list(manifests(zone, zone.task_collections()[0]).values())
    assert len(marks) == 2 and all(names.A_AGENT_STARTED in m for m in marks)
    results = [m[names.A_AGENT_RESULT].split() for m in marks]
    assert all(r[0] == "done" and int(r[1]) > 0 for r in results)  # both agents did their share
    assert staging["taken_over"] == 0
    assert zone.server.calls["msiDataObjRepl"] == 32  # each object once, whoever replicated it
    assert zone.admin.get_data_object(f"{IMAGES}/readme.txt").good_replica_on("gpu_resc") is None


def test_a_failing_agent_is_taken_over_by_the_run(tmp_path: Path, monkeypatch) -> None:
    zone = survey_zone(tmp_path, monkeypatch, costs=CatalogCosts({"msiDataObjRepl": 0.01}))
    doomed = f"{IMAGES}/img_029.png"  # the last image: in the last agent's chunk
    original = FakeCallback.msi_msiDataObjRepl
    failed: list[str] = []

    def msiDataObjRepl(self, path, options, status):  # noqa: N802, ANN001, ANN202
        if path == doomed and not failed:
            failed.append(path)
            raise irods_error(-154000, "SYS_INTERNAL_ERR (injected)")
        return original(self, path, options, status)

    monkeypatch.setattr(FakeCallback, "msi_msiDataObjRepl", msiDataObjRepl)
    with FakeDelayServer(zone.server, poll_seconds=0.005) as delay_server:
        record = run_task(zone, compute=ALWAYS)
    assert record[names.A_STATE] == "succeeded", record.get(names.A_ERROR)
    assert failed and zone.admin.get_data_object(doomed).good_replica_on("gpu_resc") is not None
    failing = [run for entry, run in delay_server.runs if not run.ok]
    assert len(failing) == 1 and "c2d_replicate_chunk" in failing[0].error
    staging = staging_of(record)
    assert staging["agent_failures"] == 1 and staging["taken_over"] >= 1
    results = [m.get(names.A_AGENT_RESULT, "") for m in manifests(zone, zone.task_collections()[0]).values()]
    assert sum(r.startswith("failed") for r in results) == 1


def test_agents_the_delay_server_never_starts_are_taken_over(tmp_path: Path, monkeypatch) -> None:
    zone = survey_zone(tmp_path, monkeypatch)
    record = run_task(zone, compute=ALWAYS)  # nobody runs the delay queue meanwhile
    assert record[names.A_STATE] == "succeeded"
    staging = staging_of(record)
    assert (staging["agents"], staging["taken_over"]) == (3, 2)
    assert zone.server.calls["msiDataObjRepl"] == 32
    queued = [e for e in zone.server.delay_queue if "c2d_replicate_chunk" in e.body]
    assert len(queued) == 2
    late = zone.server.run_delay_queue()  # they start at last: their chunks are taken, they leave
    assert all(run.ok and "nothing to do" in run.stdout for run in late)
    assert zone.server.calls["msiDataObjRepl"] == 32
    marks = manifests(zone, zone.task_collections()[0]).values()
    assert all(names.A_TAKEN_OVER in m and names.A_AGENT_STARTED not in m for m in marks)


def test_an_agent_of_a_task_that_is_not_running_does_nothing(tmp_path: Path, monkeypatch) -> None:
    zone = survey_zone(tmp_path, monkeypatch)
    record = run_task(zone, compute=ALWAYS)
    collection = zone.task_collections()[0]
    manifest = posixpath.join(collection, names.TASK_STAGING_COLLECTION, "replicate-late-09.json")
    local = tmp_path / "late.json"
    local.write_text(json.dumps({"resource": "gpu_resc", "task": collection, "chunk": 9,
                                 "paths": [f"{IMAGES}/readme.txt"], "collections": []}))
    zone.alice.put_file(local, manifest, "gpu_resc")
    run = zone.irule("c2d_replicate_chunk", rules._encode({"manifest": manifest}))
    assert run.ok and "nothing to do: task is succeeded" in run.stdout
    assert zone.admin.get_data_object(f"{IMAGES}/readme.txt").good_replica_on("gpu_resc") is None
    assert record[names.A_STATE] == "succeeded"
    assert not zone.admin.get_avus(EntityType.DATA_OBJECT, manifest)


def test_an_agent_that_cannot_be_queued_leaves_its_chunk_to_the_run(tmp_path: Path, monkeypatch) -> None:
    zone = survey_zone(tmp_path, monkeypatch)
    original = FakeCallback.msi_delayExec

    def delayExec(self, hints, body, recovery):  # noqa: N802, ANN001, ANN202
        if "c2d_replicate_chunk" in body:
            raise irods_error(-1024000, "the rule queue is full (injected)")
        return original(self, hints, body, recovery)

    monkeypatch.setattr(FakeCallback, "msi_delayExec", delayExec)
    record = run_task(zone, compute=ALWAYS)
    assert record[names.A_STATE] == "succeeded"
    staging = staging_of(record)
    assert (staging["agents"], staging["taken_over"], staging["replicated"]) == (1, 0, 32)
    assert zone.server.calls["msiDataObjRepl"] == 32 and zone.server.delay_queue == []


def test_inside_the_server_the_rules_thread_streams_while_the_notebook_runs(tmp_path: Path, monkeypatch) -> None:
    """The rule engine's callback is never called from a second thread (the fake refuses it), so
    the run reads the inputs itself at each poll of its runner, a slice at a time (here one
    object a slice): the notebook classifies the first images before the last one is read."""
    from compute_to_data.engine import pipelining

    monkeypatch.setattr(pipelining, "SLICE_SECONDS", 0.0)  # at least one object per poll: one
    zone = build_zone(tmp_path, monkeypatch)
    events: list[str] = []
    original = FakeCallback.msi_msiDataObjOpen

    def msiDataObjOpen(self, spec, fd):  # noqa: N802, ANN001, ANN202
        events.append(f"open {getattr(spec, 'objPath', spec)}")
        return original(self, spec, fd)

    monkeypatch.setattr(FakeCallback, "msi_msiDataObjOpen", msiDataObjOpen)
    zone.runner.after_image = lambda request, done: events.append(f"classified {done}")
    record = run_task(zone)
    assert record[names.A_STATE] == "succeeded", record.get(names.A_ERROR)
    assert zone.server.cross_thread_calls == []
    images = sorted(o.path for o in zone.admin.list_data_objects(IMAGES))
    opened = [e for e in events if e.startswith("open ") and images[-1] in e]
    assert opened and events.index("classified 1") < events.index(opened[-1])
    staging = staging_of(record)
    assert (staging["streamed"], staging["readers"], staging["pipelined"]) == (len(images) + 2, 1, True)
