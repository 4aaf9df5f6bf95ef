"""``inputs.where``: AVU conditions on the inputs, from the schema to the GenQuery each iRODS
adapter sends, honoured by planning, shards, resume and series runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    AVU,
    AVUCondition,
    EntityType,
    MetadataOperation,
)
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import ConfigError, NoEligibleInputsError
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid import genquery_quote as gq
from compute_to_data.grid.client import IrodsClientGrid
from compute_to_data.grid.rule_engine import RuleEngineGrid
from compute_to_data.lifecycle.series import SeriesLink
from compute_to_data.service.tasks import TaskService
from tests.fakes.irods_genquery_parser import compile_condition, parse_conditions
from tests.fakes.irods_server import FakeIrodsServer
from tests.fakes.prc_fake import FakeCatalog, FakeRule, FakeSession
from tests.support.engine_support import (
    IMAGES,
    ScriptedRunner,
    make_config,
    make_grid,
    make_settings,
)
from tests.support.grid_factories import FACTORIES, GridSetup

#: a value with everything the two GenQuery pipelines could misread: quotes, %, _, |, &, unicode
HOSTILE = "l'Étang \"du\" loup 50%_off || x && y — 鹿"


def where(*conditions: dict) -> dict:
    return {"collection": IMAGES, "pattern": "*.png", "where": list(conditions)}


# --- the task config ----------------------------------------------------------------------------
def test_schema_accepts_conditions_and_names_a_bad_one() -> None:
    config = make_config(inputs=where(
        {"attribute": "detectedclass", "op": "=", "value": "animal"},
        {"attribute": "detectedscore", "op": ">=", "value": 0.5, "units": "c2d:x"},
        {"attribute": "exif::datetime", "op": "<", "value": "2026-06-01"},
    ))
    assert config.where == (
        AVUCondition("detectedclass", "=", "animal"),
        AVUCondition("detectedscore", ">=", 0.5, "c2d:x"),
        AVUCondition("exif::datetime", "<", "2026-06-01"),
    )
    with pytest.raises(ConfigError) as error:
        make_config(inputs=where({"attribute": "x", "op": "~", "value": "a"}, {"attribute": "y", "op": "=", "value": True},
                                 {"op": "=", "value": "a"}))
    text = str(error.value) + " ".join(error.value.problems if hasattr(error.value, "problems") else [])
    assert "$.inputs.where[0].op: '~' is not one of" in text
    assert "$.inputs.where[1].value: True is not valid" in text
    assert "$.inputs.where[2].attribute: required field is missing" in text


def test_a_number_compares_numerically_a_string_as_text() -> None:
    score = AVUCondition("s", ">=", 0.5)
    assert score.holds("0.75") and score.holds("10") and not score.holds("0.4999")
    assert not score.holds("high") and not score.holds("nan") and not score.holds("")
    assert AVUCondition("s", "=", 0.9).holds("0.9000")
    assert AVUCondition("s", "<", 10.0).holds("9") and not AVUCondition("s", "<", "10").holds("9")  # text: '9' > '10'
    day = [AVUCondition("exif::datetime", ">=", "2026-05-01"), AVUCondition("exif::datetime", "<", "2026-05-02")]
    assert all(c.holds("2026-05-01T06:30:00") for c in day)
    assert not all(c.holds("2026-05-02T00:00:01") for c in day)
    assert AVUCondition("c", "=", "animal", units="c2d:t1").holds("animal", "c2d:t1")
    assert not AVUCondition("c", "=", "animal", units="c2d:t1").holds("animal", "c2d:t2")
    assert AVUCondition("c", "!=", "empty").met_by([AVU("c", "animal")])
    assert not AVUCondition("c", "!=", "empty").met_by([AVU("other", "animal")])  # no such AVU: not met


def test_the_genquery_of_a_hostile_value_parses_and_matches_it_exactly() -> None:
    condition = AVUCondition("site", "=", HOSTILE, units="q'u")
    parts = gq.avu_condition(condition)
    assert [p.column for p in parts] == ["META_DATA_ATTR_NAME", "META_DATA_ATTR_UNITS", "META_DATA_ATTR_VALUE"]
    text = gq.join(parts)
    assert not any("'" in p.operands[0] for p in parts)  # no literal holds a quote
    parsed = parse_conditions(text, frozenset(gq.DATA_AVU_COLUMNS))
    assert len(parsed) == 3
    assert parsed[2].column == "META_DATA_ATTR_VALUE"
    assert compile_condition(parsed[2].text)(HOSTILE)  # the widened LIKE keeps the value ...
    assert compile_condition(parsed[1].text)("q'u")
    assert not parts[2].exact and parts[2].keep(HOSTILE) and not parts[2].keep(HOSTILE.replace("'", "x"))
    # ... ordering and numeric comparisons are checked on the rows, never sent
    assert [p.column for p in gq.avu_condition(AVUCondition("s", ">=", 0.5))] == ["META_DATA_ATTR_NAME"]
    assert [p.column for p in gq.avu_condition(AVUCondition("d", "<", "2026"))] == ["META_DATA_ATTR_NAME"]


# --- every adapter: the paths in one collection meeting the conditions --------------------------
def _arrange(tag) -> dict[str, list[AVU]]:
    return {
        "a.png": [AVU("detectedclass", "animal", "c2d:t1"), AVU("site", HOSTILE)],
        "b.png": [AVU("detectedclass", "empty", "c2d:t1"), AVU("site", HOSTILE)],
        "c.png": [AVU("detectedclass", "animal", "c2d:t2"), AVU("site", HOSTILE.replace("'", "_"))],
        "d.png": [AVU("detectedclass", "animal", "c2d:t1"), AVU("detectedscore", "0.75", "c2d:t1")],
        "é'.png": [AVU("detectedclass", "animal", "c2d:t1"), AVU("detectedscore", "0.25", "c2d:t1"), AVU("site", "鹿")],
    }


CASES = [
    ([AVUCondition("detectedclass", "=", "animal")], {"a.png", "c.png", "d.png", "é'.png"}),
    ([AVUCondition("detectedclass", "=", "animal", "c2d:t1")], {"a.png", "d.png", "é'.png"}),
    ([AVUCondition("site", "=", HOSTILE)], {"a.png", "b.png"}),  # not c.png: '_' widens, rows are checked
    ([AVUCondition("site", "=", "鹿"), AVUCondition("detectedclass", "=", "animal")], {"é'.png"}),
    ([AVUCondition("detectedscore", ">=", 0.5)], {"d.png"}),
    ([AVUCondition("detectedscore", "<", 0.5), AVUCondition("detectedclass", "!=", "empty")], {"é'.png"}),
    ([AVUCondition("detectedclass", "=", "bird")], set()),
]


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_paths_meeting_on_localgrid_and_the_rule_engine(tmp_path: Path, factory: str) -> None:
    setup: GridSetup = FACTORIES[factory](tmp_path)
    folder = f"{setup.home}/traps"
    for name, avus in _arrange(None).items():
        setup.put(f"{folder}/{name}", b"x")
        setup.tag(EntityType.DATA_OBJECT, f"{folder}/{name}", *avus)
    setup.put(f"{folder}/sub/a.png", b"x")  # below: not in this collection
    setup.tag(EntityType.DATA_OBJECT, f"{folder}/sub/a.png", AVU("detectedclass", "animal"))
    for conditions, expected in CASES:
        assert setup.grid.paths_meeting(folder, conditions) == {f"{folder}/{n}" for n in expected}, conditions


def test_paths_meeting_with_python_irodsclient() -> None:
    catalog = FakeCatalog()
    catalog.add_user("alice", "pw")
    folder = "/tempZone/home/alice/traps"
    for name, avus in _arrange(None).items():
        obj = catalog.mkobj(f"{folder}/{name}", "alice")
        obj.avus.extend((a.attribute, a.value, a.units) for a in avus)
    catalog.mkobj(f"{folder}/sub/a.png", "alice").avus.append(("detectedclass", "animal", ""))
    grid = IrodsClientGrid(FakeSession(catalog, "alice", "pw"), rule_class=FakeRule)
    for conditions, expected in CASES:
        assert grid.paths_meeting(folder, conditions) == {f"{folder}/{n}" for n in expected}, conditions


# --- tasks: planning, shards, resume, series ------------------------------------------------------
FILES = {f"{sub}/img_{i:02d}.png": str(i % 3).encode() for sub in "ab" for i in range(6)}


def detect(admin, names_animal: list[str], units: str = "c2d:detector") -> None:
    """Mark some images as a detector would (the others as empty)."""
    ops = []
    for rel in FILES:
        value = "animal" if rel in names_animal else "empty"
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, f"{IMAGES}/{rel}", AVU("detectedclass", value, units)))
    admin.apply_metadata(ops)


ANIMALS = ["a/img_01.png", "a/img_04.png", "b/img_00.png", "b/img_02.png", "b/img_05.png"]
ANIMAL_WHERE = {"collection": IMAGES, "pattern": "*.png", "recursive": True,
                "where": [{"attribute": "detectedclass", "op": "=", "value": "animal"}]}


def tagged(grid) -> set[str]:
    found = grid.list_data_objects(IMAGES, recursive=True, avu_attributes=("predictedclass",))
    return {o.path.removeprefix(IMAGES + "/") for o in found if o.avus}


def test_a_task_classifies_only_the_images_meeting_its_conditions(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path, FILES)
    detect(admin, ANIMALS)
    runner = ScriptedRunner()
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=runner)
    outcome = create_task(make_config(inputs=ANIMAL_WHERE), context).run()
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert sorted(runner.classified) == sorted(ANIMALS) and tagged(alice) == set(ANIMALS)
    with pytest.raises(NoEligibleInputsError, match="where detectedclass = 'bird'.*inputs.where"):
        create_task(make_config(inputs={**ANIMAL_WHERE, "where": [
            {"attribute": "detectedclass", "op": "=", "value": "bird"}]}), context).run()


def test_through_the_rule_engine_grid(tmp_path: Path) -> None:
    admin, _ = make_grid(tmp_path, FILES)
    detect(admin, ANIMALS)
    server = FakeIrodsServer(admin.root)
    grid = RuleEngineGrid(*server.session("alice"))
    runner = ScriptedRunner()
    context = TaskContext(grid=grid, settings=make_settings(tmp_path), runner=runner)
    outcome = create_task(make_config(inputs=ANIMAL_WHERE), context).run()
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert tagged(admin) == set(ANIMALS)


def test_shards_hold_only_the_images_meeting_the_conditions(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path, FILES)
    detect(admin, ANIMALS)
    runner = ScriptedRunner()
    context = TaskContext(grid=alice, settings=make_settings(tmp_path, max_shard_size=2), runner=runner)
    context.listing_page_size = 2
    outcome = TaskService(alice, context.settings).run_now(make_config(inputs=ANIMAL_WHERE), context)
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert len(outcome.shard_collections) == 3 and outcome.inputs == 5
    planned = [alice.read_data_object(f"{c}/{names.SHARD_INPUTS_FILE}").decode().split() for c in outcome.shard_collections]
    assert sorted(p for shard in planned for p in shard) == sorted(ANIMALS)
    assert tagged(alice) == set(ANIMALS)


def test_a_resumed_task_finishes_only_what_its_conditions_chose(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path, FILES)
    detect(admin, ANIMALS)
    runner = ScriptedRunner(part_size=2, fail_after=3)
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=runner)
    outcome = create_task(make_config(inputs=ANIMAL_WHERE), context).run()
    assert outcome.state == TaskState.FAILED
    assert tagged(alice) == set(sorted(ANIMALS)[:2])  # the first part, tagged
    runner.fail_after, runner.classified = None, []
    lifecycle = TaskService(alice, context.settings)
    lifecycle.resume(outcome.task_id, by="alice")
    lifecycle.start(outcome.collection, context)
    assert lifecycle.read(outcome.collection).state == TaskState.SUCCEEDED
    assert sorted(runner.classified) == sorted(ANIMALS)[2:]
    assert tagged(alice) == set(ANIMALS)


def test_each_run_of_a_series_takes_the_new_images_meeting_the_conditions(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path, FILES)
    detect(admin, ANIMALS[:2])
    runner = ScriptedRunner()
    settings = make_settings(tmp_path)
    config = make_config(inputs=ANIMAL_WHERE, schedule={"every": "1d"})
    first = create_task(config, TaskContext(grid=alice, settings=settings, runner=runner, series=SeriesLink())).run()
    assert first.succeeded and tagged(alice) == set(ANIMALS[:2])
    # the detector marks more frames (its new AVUs replace the old "empty")
    admin.apply_metadata([op for rel in ANIMALS[2:] for op in (
        MetadataOperation("remove", EntityType.DATA_OBJECT, f"{IMAGES}/{rel}", AVU("detectedclass", "empty", "c2d:detector")),
        MetadataOperation("add", EntityType.DATA_OBJECT, f"{IMAGES}/{rel}", AVU("detectedclass", "animal", "c2d:detector")))])
    runner.classified = []
    later = TaskContext(grid=alice, settings=settings, runner=runner, series=SeriesLink(first.task_id))
    second = create_task(config, later).run()
    assert second.succeeded and sorted(runner.classified) == sorted(ANIMALS[2:])
    assert tagged(alice) == set(ANIMALS)
    assert json.loads(alice.read_data_object(f"{second.collection}/{names.TASK_CONFIG_FILE}"))["inputs"]["where"]
