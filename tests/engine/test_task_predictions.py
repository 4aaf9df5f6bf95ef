"""A task's own predictions (its predictions file), what became of them, and validations that
name the prediction they judged: client/predictions.py and the grid query helpers, on LocalGrid
and on a zone (python-irodsclient adapter over the PRC fake)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compute_to_data.client.predictions import load_predictions, supersession
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    AVU,
    EntityType,
    MetadataOperation,
    PredictedObject,
    PredictionQuery,
    Validation,
)
from compute_to_data.domain.records import TaskRecord
from compute_to_data.lifecycle.store import TaskStateStore
from tests.fakes.prc_fake import FakeRule, FakeSession
from tests.support.client_support import make_fake_zone, make_grid, make_task

LATER = "20261123T000000Z-aaaaaa"


def local_task(tmp_path: Path, n_images: int):  # noqa: ANN201
    """(alice's LocalGrid, the task make_task laid out, its record)."""
    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=n_images)
    alice = admin.as_user("alice")
    return alice, made, TaskStateStore(alice).read(made.collection)


def query_of(made) -> PredictionQuery:  # noqa: ANN001
    return PredictionQuery(task_id=made.task_id, input_collection=made.input_collection)


def replace_predictions(grid, made, paths: list[str], later: str = LATER) -> None:  # noqa: ANN001
    old, new = names.task_units(made.task_id), names.task_units(later)
    ops = []
    for path in paths:
        ops += [MetadataOperation("remove", EntityType.DATA_OBJECT, path, a) for a in grid.get_avus(EntityType.DATA_OBJECT, path)
                if a.units == old]
        ops += [MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.DEFAULT_CLASS_ATTRIBUTE, "owl", new)),
                MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.DEFAULT_SCORE_ATTRIBUTE, "0.9900", new))]
    grid.apply_metadata(ops)


def test_validation_avus_round_trip_and_name_their_task():
    verdict = Validation("owl", "alice", "2026-11-22T03:26:10Z", task_id="20261122T020304Z-3f9a1c")
    avus = verdict.avus()
    assert [a.attribute for a in avus] == [names.VALIDATED, names.VALIDATED_CLASS, names.VALIDATED_BY, names.VALIDATED_AT]
    assert {a.units for a in avus} == {"c2d:20261122T020304Z-3f9a1c"}
    assert Validation.from_avus([*avus, AVU("predictedclass", "dog", "c2d:other")]) == verdict
    assert verdict.is_for("20261122T020304Z-3f9a1c") and not verdict.is_for("other")
    # A verdict written before validations named their task is still read, with no task.
    legacy = Validation.from_avus([AVU(names.VALIDATED, "true"), AVU(names.VALIDATED_CLASS, "cat")])
    assert legacy == Validation("cat", "", "", None)
    assert Validation.from_avus([AVU(names.VALIDATED, "false")]) is None and Validation.from_avus([]) is None
    item = PredictedObject("/z/a.png", "dog", 0.5, tuple(avus))
    assert item.validation == verdict


def test_the_predictions_file_is_read_as_untrusted_output(tmp_path: Path):
    alice, made, record = local_task(tmp_path, 6)
    # make_task writes predictions.csv only: the CSV is read when there is no JSON.
    csv_read = load_predictions(alice, record, made.input_collection)
    assert csv_read.source.endswith("/" + names.PREDICTIONS_CSV)
    assert [(i.path, i.predicted_class) for i in csv_read.items] == [(p, made.classes[p]) for p in sorted(made.images)]

    inside = made.images[0]
    doc = {"images": [
        {"file": "a", "path": inside, "classifications": [{"class": "cat", "score": 0.97}], "below_threshold": False},
        {"file": "b", "path": made.images[1], "classifications": [{"class": "dog", "score": 0.2}], "below_threshold": True},
        {"file": "c", "path": made.images[2], "error": "cannot identify image file"},
        {"file": "d", "path": "/tempZone/home/bob/secret.png", "classifications": [{"class": "x", "score": 1.0}]},
        {"file": "e", "path": made.input_collection + "/../models/labels.txt", "classifications": [{"class": "x", "score": 1.0}]},
    ]}
    local = tmp_path / "predictions.json"
    local.write_text(json.dumps(doc))
    alice.put_file(local, f"{made.collection}/{names.PREDICTIONS_JSON}", "lts_resc")
    read = load_predictions(alice, record, made.input_collection)
    assert read.source.endswith("/" + names.PREDICTIONS_JSON)
    assert [(i.path, i.predicted_class, i.tagged) for i in read.items] == [(inside, "cat", True), (made.images[1], "dog", False)]
    assert read.counts() == {"cat": 1, "dog": 1} and [i.path for i in read.tagged] == [inside]
    assert read.find(inside).score == 0.97 and read.find("/tempZone/home/bob/secret.png") is None

    empty = TaskRecord("/tempZone/home/alice/results/none", {names.A_TASK_ID: "none"})
    assert load_predictions(alice, empty, made.input_collection).source == ""


def test_superseded_predictions_are_counted_by_later_task_on_local_grid(tmp_path: Path):
    alice, made, record = local_task(tmp_path, 8)
    own = load_predictions(alice, record, made.input_collection)
    query = query_of(made)
    intact = supersession(alice, query, own, current=8)
    assert not intact.changed and intact.tagged == intact.current == 8

    replace_predictions(alice, made, made.images[:3])
    gone = made.images[3]
    alice.apply_metadata([MetadataOperation("remove", EntityType.DATA_OBJECT, gone, a)
                          for a in alice.get_avus(EntityType.DATA_OBJECT, gone)])
    owners = alice.prediction_owners(query)
    assert owners == {**{p: LATER for p in made.images[:3]}, **{p: made.task_id for p in made.images[4:]}}
    fate = supersession(alice, query, own, current=sum(alice.count_predictions(query).values()))
    assert fate.changed and (fate.tagged, fate.current, fate.by_task, fate.removed) == (8, 4, {LATER: 3}, 1)
    assert fate.superseded == 3 and fate.owners[made.images[0]] == LATER


def test_superseded_predictions_on_a_zone(tmp_path: Path):
    from compute_to_data.grid.client import IrodsClientGrid

    catalog, made = make_fake_zone(n_images=6)
    alice = IrodsClientGrid(FakeSession(catalog, "alice", catalog.passwords["alice"]), rule_class=FakeRule)
    csv_text = "path,class,score,top_k\n" + "".join(f"{p},{made.classes[p]},{made.scores[p]:.4f},\n" for p in made.images)
    catalog.mkobj(f"{made.collection}/{names.PREDICTIONS_CSV}", "alice", csv_text.encode())
    replace_predictions(alice, made, made.images[:2])
    record = TaskStateStore(alice).read(made.collection)
    own = load_predictions(alice, record, made.input_collection)
    assert len(own.tagged) == 6
    query = query_of(made)
    assert alice.prediction_owners(query) == {**{p: LATER for p in made.images[:2]}, **{p: made.task_id for p in made.images[2:]}}
    fate = supersession(alice, query, own, current=sum(alice.count_predictions(query).values()))
    assert (fate.tagged, fate.current, fate.by_task, fate.removed) == (6, 4, {LATER: 2}, 0)


@pytest.mark.parametrize("units", ["", "c2d:", "other:x"])
def test_prediction_owners_ignore_avus_that_name_no_task(tmp_path: Path, units: str):
    alice, made, _ = local_task(tmp_path, 2)
    path = made.images[0]
    alice.apply_metadata([MetadataOperation("remove", EntityType.DATA_OBJECT, path, a) for a in alice.get_avus(EntityType.DATA_OBJECT, path)]
                         + [MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.DEFAULT_CLASS_ATTRIBUTE, "cat", units))])
    assert alice.prediction_owners(query_of(made)) == {made.images[1]: made.task_id}
