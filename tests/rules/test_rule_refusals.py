"""Refusals end a rule with the iRODS error that says what is wrong, in terms of what the user named.

Scripts that call the rules key on the exit code: a missing or invisible collection is
CAT_UNKNOWN_COLLECTION, a missing or invisible data object CAT_UNKNOWN_FILE, an output
collection the caller cannot write to CAT_NO_ACCESS_PERMISSION -- also when, as on a stock zone,
nothing above it is visible to the caller (docs/irods-behaviour.md). Each refusal comes before
anything is created, replicated or queued. The same refusals hold on LocalGrid (``c2d local``,
the demo), which hides ``/zone`` and ``/zone/home`` from ordinary users as a stock zone does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compute_to_data import rules
from compute_to_data.domain import conventions as names
from compute_to_data.domain import irods_codes as irods_errors
from compute_to_data.domain.errors import AccessDeniedError, ObjectNotFoundError
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from tests.support.engine_support import HOME as ENGINE_HOME
from tests.support.engine_support import ScriptedRunner, make_config, make_grid, make_settings
from tests.support.rules_support import CONFIG, HOME, LABELS, MODEL, Zone, build_zone, config_doc

MUTATING = ("msiCollCreate", "msiDataObjCreate", "msiDataObjWrite", "msiDataObjRepl", "msiCollRepl",
            "msi_atomic_apply_metadata_operations", "msiModAVUMetadata", "delayExec")
BOB_RESULTS = "/tempZone/home/bob/c2d_results"


@pytest.fixture
def zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    return build_zone(tmp_path, monkeypatch)


def refused(zone: Zone, doc: dict, rule: str = "c2d_submit"):
    zone.put_config(doc)
    zone.server.calls.clear()
    run = zone.irule(rule, CONFIG)
    assert not run.ok
    assert "iRods__Error__Code" not in run.error and ".cpp" not in run.error
    assert not any(zone.server.calls[name] for name in MUTATING), zone.server.calls
    assert zone.server.delay_queue == []
    return run


# --- item 2: an output collection nothing of which is visible -------------------------------------
@pytest.mark.parametrize("output", [BOB_RESULTS, "/tempZone/home/carol/results", "/tempZone/projects/x"])
@pytest.mark.parametrize("rule", ["c2d_submit", "c2d_run"])
def test_output_collection_the_caller_cannot_see_is_refused_as_not_writable(zone: Zone, rule: str, output: str) -> None:
    run = refused(zone, config_doc(output={"collection": output}), rule)
    assert run.code == irods_errors.CAT_NO_ACCESS_PERMISSION and run.error_name == "CAT_NO_ACCESS_PERMISSION"
    assert f"cannot write to the output collection {output}" in run.error
    assert "visible" in run.error and HOME in run.error  # says why, and where the user can write
    assert "outside the zone" not in run.error and "'/'" not in run.error


def test_output_collection_under_a_visible_collection_is_still_checked_there(zone: Zone) -> None:
    """The walk up stops at the first visible collection (here bob's, shared read-only)."""
    zone.admin.as_user("bob").create_collection("/tempZone/home/bob/shared")
    zone.admin.set_acl("read", "alice", "/tempZone/home/bob/shared")
    run = refused(zone, config_doc(output={"collection": "/tempZone/home/bob/shared/new/results"}))
    assert run.code == irods_errors.CAT_NO_ACCESS_PERMISSION
    assert "cannot write to /tempZone/home/bob/shared," in run.error


def test_localgrid_refuses_an_invisible_output_collection_the_same_way(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path, users=("alice", "bob"))
    config = make_config(output={"collection": BOB_RESULTS})
    task = create_task(config, TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner()))
    with pytest.raises(AccessDeniedError, match=f"cannot write to the output collection {BOB_RESULTS}") as caught:
        task.run()
    assert caught.value.irods_code == irods_errors.CAT_NO_ACCESS_PERMISSION
    assert admin.list_collections("/tempZone/home/bob") == []


# --- item 3: missing or invisible inputs, model, labels ------------------------------------------
def test_missing_or_invisible_input_collection_ends_with_CAT_UNKNOWN_COLLECTION(zone: Zone) -> None:
    zone.admin.as_user("bob").create_collection("/tempZone/home/bob/images")
    for collection in (f"{HOME}/no_such_images", "/tempZone/home/bob/images"):
        for rule in ("c2d_submit", "c2d_run"):
            run = refused(zone, config_doc(inputs={"collection": collection, "pattern": "*.png"}), rule)
            assert run.code == irods_errors.CAT_UNKNOWN_COLLECTION, (collection, rule, run.code, run.error)
            assert run.error_name == "CAT_UNKNOWN_COLLECTION"
            assert f"input collection {collection} does not exist" in run.error


@pytest.mark.parametrize("what", ["model", "labels"])
def test_missing_or_invisible_model_or_labels_end_with_CAT_UNKNOWN_FILE(zone: Zone, what: str) -> None:
    bob = zone.admin.as_user("bob")
    bob.create_collection("/tempZone/home/bob/models")
    local = zone.root / "bobs-model"
    local.write_bytes(b"x")
    bob.put_file(local, "/tempZone/home/bob/models/m.pt", "lts_resc")
    for path in (f"{HOME}/models/none.pt", "/tempZone/home/bob/models/m.pt"):
        parameters = {"model": MODEL, "labels": LABELS, what: path}
        run = refused(zone, config_doc(parameters=parameters))
        assert run.code == irods_errors.CAT_UNKNOWN_FILE and run.error_name == "CAT_UNKNOWN_FILE", run.error
        assert f"{what} data object {path} does not exist" in run.error


def test_missing_task_config_ends_with_CAT_UNKNOWN_FILE(zone: Zone) -> None:
    for rule in ("c2d_submit", "c2d_run"):
        run = zone.irule(rule, f"{HOME}/nope.json")
        assert run.code == irods_errors.CAT_UNKNOWN_FILE, (rule, run.code, run.error)


def test_localgrid_missing_input_model_and_labels_carry_the_same_codes(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path)
    settings = make_settings(tmp_path)
    cases = [
        (make_config(inputs={"collection": f"{ENGINE_HOME}/none", "pattern": "*.png"}), irods_errors.CAT_UNKNOWN_COLLECTION),
        (make_config(parameters={"model": f"{ENGINE_HOME}/none.pt", "labels": f"{ENGINE_HOME}/models/labels.txt"}),
         irods_errors.CAT_UNKNOWN_FILE),
        (make_config(parameters={"model": f"{ENGINE_HOME}/models/model.pt", "labels": f"{ENGINE_HOME}/none.txt"}),
         irods_errors.CAT_UNKNOWN_FILE),
    ]
    for config, code in cases:
        task = create_task(config, TaskContext(grid=alice, settings=settings, runner=ScriptedRunner()))
        with pytest.raises(ObjectNotFoundError) as caught:
            task.run()
        assert caught.value.irods_code == code, caught.value


def test_a_rule_never_ends_with_CAT_NO_ROWS_FOUND(zone: Zone) -> None:
    """``callback`` answers that code with a status instead of failing, so msiExit cannot end a
    rule with it; a not-found error that carries it ends the rule with OBJ_PATH_DOES_NOT_EXIST."""

    def body(session, args):
        raise ObjectNotFoundError("data object /tempZone/home/alice/x does not exist", irods_code=irods_errors.CAT_NO_ROWS_FOUND)

    zone.server.rules["c2d_probe"] = rules._entry("c2d_probe", body)
    run = zone.irule("c2d_probe")
    assert run.code == irods_errors.OBJ_PATH_DOES_NOT_EXIST, (run.code, run.error)
    assert run.error == "c2d_probe: data object /tempZone/home/alice/x does not exist"


# --- issue 20 item 13: one code for "no such task", by id and by collection path -------------------
@pytest.mark.parametrize("rule", ["c2d_status", "c2d_cancel", "c2d_resume"])
def test_no_such_task_ends_with_CAT_UNKNOWN_COLLECTION_by_id_and_by_path(zone: Zone, rule: str) -> None:
    """A task that does not exist and a task the caller cannot see end every rule with the same
    code, whether named by id or by task collection; the other user still cannot act on it."""
    zone.put_config(config_doc())
    submitted = zone.irule("c2d_submit", CONFIG)
    assert submitted.ok, submitted.error
    task_id = next(line.split(": ", 1)[1] for line in submitted.stdout.splitlines() if line.startswith("task_id: "))
    collection = f"{HOME}/results/{task_id}"
    cases = [
        ("alice", "20990101T000000Z-000000"),  # no such id
        ("alice", f"{HOME}/results/20990101T000000Z-000000"),  # no such collection
        ("alice", f"{HOME}/models"),  # a collection that is no task
        ("bob", task_id),  # alice's task, invisible to bob
        ("bob", collection),
        ("bob", f"'{collection}'"),  # quotes stay inert
    ]
    for user, task in cases:
        run = zone.irule(rule, task, user=user)
        assert not run.ok
        assert run.code == irods_errors.CAT_UNKNOWN_COLLECTION, (rule, user, task, run.code, run.error)
        assert run.error_name == "CAT_UNKNOWN_COLLECTION"
        assert "iRods__Error__Code" not in run.error and ".cpp" not in run.error
    record = zone.record(collection)
    assert record[names.A_STATE] == "queued" and names.A_RESUMED not in record  # bob changed nothing
