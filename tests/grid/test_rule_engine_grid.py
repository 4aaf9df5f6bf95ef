"""RuleEngineGrid specifics beyond the shared Grid contract (tests/support/grid_contract.py).

Cost (queries per listing, paging), the exact microservices and argument forms used, error
mapping from the rule engine's RuntimeError, streaming writes, the tagging fast path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compute_to_data.domain import errors as c2d_errors
from compute_to_data.domain import irods_codes as irods_errors
from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType, MetadataOperation
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    GridError,
    ObjectNotFoundError,
)
from compute_to_data.grid import rule_engine
from compute_to_data.grid.rule_engine import RuleEngineGrid
from tests.fakes.irods_server import FakeCallback, FakeIrodsServer, irods_error
from tests.support.grid_factories import ALICE, BOB, COMPUTE, GridSetup, rule_engine_factory

#: what a rodsuser's rules may call: no admin-only microservice, no registration, no server policy.
ALLOWED_CALLS = {
    "msiMakeGenQuery", "msiExecGenQuery", "msiGetMoreRows", "msiCheckAccess", "msiCollCreate",
    "msiDataObjRepl", "msiDataObjCreate", "msiDataObjWrite", "msiDataObjClose", "msiDataObjOpen",
    "msiDataObjRead", "msiDataObjChksum", "msiDataObjUnlink", "msi_atomic_apply_metadata_operations",
    "msiModAVUMetadata", "msiCollRepl",
}


@pytest.fixture
def setup(tmp_path: Path) -> GridSetup:
    return rule_engine_factory(tmp_path)


def server_of(setup: GridSetup) -> FakeIrodsServer:
    return setup.server  # type: ignore[attr-defined]


def test_identity_comes_from_the_session(setup: GridSetup) -> None:
    g = setup.grid
    assert (g.kind, g.user, g.zone) == ("rule_engine", ALICE, "tempZone")
    assert RuleEngineGrid(object(), object(), zone="z", user="u").home() == "/z/home/u"


def test_a_listing_costs_a_few_queries_whatever_the_number_of_objects(setup: GridSetup) -> None:
    """600 objects (more than two 256-row pages) with AVUs: the same few queries as for 3."""
    s, g = setup, setup.grid
    server = server_of(s)
    small, large = f"{s.home}/small", f"{s.home}/large"
    for i in range(3):
        s.put(f"{small}/{i:04d}.png", b"x")
    ops = []
    for i in range(600):
        sub = "a" if i % 2 else "b/c"
        s.put(f"{large}/{sub}/{i:04d}.png", b"x")
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, f"{large}/{sub}/{i:04d}.png", AVU("predictedclass", str(i % 10), "c2d:t")))
    s.admin.apply_metadata(ops)
    counts = []
    for coll in (small, large):
        g._grantee_ids = None
        before_q, before_pages = g.query_count, server.calls["msiGetMoreRows"]
        found = g.list_data_objects(coll, recursive=True, avu_attributes=["predictedclass", "predictedscore"])
        counts.append(g.query_count - before_q)
        if coll == large:
            assert len(found) == 600 and all(len(o.avus) == 1 for o in found)
            assert server.calls["msiGetMoreRows"] - before_pages >= 4  # paged, 256 rows at a time
    assert counts[0] == counts[1] <= 6


def test_the_avus_of_a_collections_objects_cost_one_query_of_the_avus_alone(setup: GridSetup) -> None:
    """What a run re-reads before it tags: 600 untagged objects and one tagged cost one GenQuery
    and no further page (a listing pages through every object, its replicas and access)."""
    s, g = setup, setup.grid
    server = server_of(s)
    collection = f"{s.home}/many"
    for i in range(600):
        s.put(f"{collection}/{i:04d}.png", b"x")
    s.admin.apply_metadata([MetadataOperation("add", EntityType.DATA_OBJECT, f"{collection}/0007.png",
                                              AVU("predictedclass", "3", "c2d:t"))])
    before_q, before_pages = g.query_count, server.calls["msiGetMoreRows"]
    found = g.object_avus_in(collection, ["predictedclass", "predictedscore"])
    assert found == {f"{collection}/0007.png": [AVU("predictedclass", "3", "c2d:t")]}
    assert (g.query_count - before_q, server.calls["msiGetMoreRows"] - before_pages) == (1, 0)


def test_setting_one_attribute_is_one_set_call_without_a_query(setup: GridSetup) -> None:
    """A task's advisory values (progress, timings, heartbeat) are one attribute each: one
    ``msiModAVUMetadata set`` (7 ms measured) instead of a read and an atomic batch (35 ms)."""
    s, g = setup, setup.grid
    server = server_of(s)
    collection = f"{s.home}/task"
    g.create_collection(collection)
    g.set_avus(EntityType.COLLECTION, collection, [AVU("c2d::progress", "1/4")])
    before_q, before_calls = g.query_count, dict(server.calls)
    g.set_avus(EntityType.COLLECTION, collection, [AVU("c2d::progress", "3/4")])
    assert g.query_count == before_q
    assert server.calls["msiModAVUMetadata"] - before_calls.get("msiModAVUMetadata", 0) == 1
    assert server.calls["msi_atomic_apply_metadata_operations"] == before_calls.get("msi_atomic_apply_metadata_operations", 0)
    assert [a for a in g.get_avus(EntityType.COLLECTION, collection) if a.attribute == "c2d::progress"] == [
        AVU("c2d::progress", "3/4")]
    with pytest.raises(ObjectNotFoundError):
        g.set_avus(EntityType.COLLECTION, f"{s.home}/missing", [AVU("c2d::progress", "1/4")])


def test_microservices_and_argument_forms(setup: GridSetup, tmp_path: Path) -> None:
    s, g = setup, setup.grid
    server = server_of(s)
    path = f"{s.home}/imgs/a.png"
    s.put(path, b"a")
    assert g.has_access(path, AccessLevel.MODIFY)
    g.replicate(path, COMPUTE)
    g.create_collection(f"{s.home}/out/t1")
    local = tmp_path / "f.bin"
    local.write_bytes(bytes(range(256)))
    g.put_file(local, f"{s.home}/out/t1/f.bin", COMPUTE)
    assert g.read_data_object(f"{s.home}/out/t1/f.bin") == bytes(range(256))  # arbitrary bytes round-trip
    g.apply_metadata([MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU("k", "v"))])
    used = {name for name, count in server.calls.items() if count}
    assert used <= ALLOWED_CALLS, used - ALLOWED_CALLS
    assert {"msiCheckAccess", "msiDataObjRepl", "msiCollCreate", "msiDataObjCreate", "msiDataObjWrite",
            "msiDataObjClose", "msi_atomic_apply_metadata_operations"} <= used


def test_put_file_streams_in_chunks_and_records_a_checksum(setup: GridSetup, tmp_path: Path, monkeypatch) -> None:
    s, g = setup, setup.grid
    server = server_of(s)
    monkeypatch.setattr(rule_engine, "WRITE_CHUNK", 1000)
    monkeypatch.setattr(rule_engine, "READ_CHUNK", 777)
    content = os.urandom(4500)
    local = tmp_path / "big.bin"
    local.write_bytes(content)
    g.create_collection(f"{s.home}/out")
    before = server.calls["msiDataObjWrite"]
    obj = g.put_file(local, f"{s.home}/out/big.bin", COMPUTE)
    assert server.calls["msiDataObjWrite"] - before == 5
    assert obj.size == 4500 and obj.checksum.startswith("sha2:")
    assert server.calls["msiDataObjChksum"] >= 1
    assert g.read_data_object(obj.path) == content
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert g.put_file(empty, f"{s.home}/out/empty", COMPUTE).size == 0


def test_put_file_reports_a_failed_write(setup: GridSetup, tmp_path: Path, monkeypatch) -> None:
    s, g = setup, setup.grid
    local = tmp_path / "f.bin"
    local.write_bytes(b"x" * 10)
    g.create_collection(f"{s.home}/out")
    real = type(g.callback).msi_msiDataObjWrite

    def failing_write(self, fd, data, written):
        raise irods_error(-513000, "disk full")

    monkeypatch.setattr(type(g.callback), "msi_msiDataObjWrite", failing_write)
    with pytest.raises(GridError) as caught:
        g.put_file(local, f"{s.home}/out/f.bin", COMPUTE)
    assert "UNIX_FILE_WRITE_ERR" in str(caught.value) and ".cpp" not in str(caught.value)
    monkeypatch.setattr(type(g.callback), "msi_msiDataObjWrite", real)


def test_apply_metadata_is_one_atomic_call_per_entity(setup: GridSetup) -> None:
    s, g = setup, setup.grid
    server = server_of(s)
    paths = [f"{s.home}/{i}.png" for i in range(3)]
    for p in paths:
        s.put(p, b"x")
    before = server.calls["msi_atomic_apply_metadata_operations"]
    g.apply_metadata([
        MetadataOperation("add", EntityType.DATA_OBJECT, p, AVU(a, "1", "c2d:t")) for p in paths for a in ("x", "y")
    ])
    assert server.calls["msi_atomic_apply_metadata_operations"] - before == 3


def test_add_new_avus_uses_cheap_adds_and_undoes_a_partial_object(setup: GridSetup) -> None:
    s, g = setup, setup.grid
    server = server_of(s)
    a, b = f"{s.home}/a.png", f"{s.home}/b.png"
    s.put(a, b"a")
    s.put(b, b"b")
    s.tag(EntityType.DATA_OBJECT, b, AVU("predictedscore", "0.5000", "c2d:t"))  # makes b's second add fail
    atomic_before = server.calls["msi_atomic_apply_metadata_operations"]
    with pytest.raises(GridError):
        g.add_new_avus(EntityType.DATA_OBJECT, {
            a: [AVU("predictedclass", "1", "c2d:t"), AVU("predictedscore", "0.9000", "c2d:t")],
            b: [AVU("predictedclass", "2", "c2d:t"), AVU("predictedscore", "0.5000", "c2d:t")],
        })
    assert server.calls["msi_atomic_apply_metadata_operations"] == atomic_before
    assert server.calls["msiModAVUMetadata"] >= 4  # a: 2 adds; b: 2 adds tried, 1 undone
    assert len(g.get_avus(EntityType.DATA_OBJECT, a)) == 2
    assert g.get_avus(EntityType.DATA_OBJECT, b) == [AVU("predictedscore", "0.5000", "c2d:t")]  # untouched


def rm_of_what_is_not_there_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """``msiModAVUMetadata rm`` of an AVU the entity does not carry fails with -819000 (observed)."""
    original = FakeCallback.msi_msiModAVUMetadata

    def msiModAVUMetadata(self, flag, name, operation, attribute, value, units):  # noqa: N802, ANN001, ANN202
        if operation == "rm" and AVU(attribute, value, units) not in self.grid.get_avus(EntityType.DATA_OBJECT, name):
            raise irods_error(-819000, "CAT_SUCCESS_BUT_WITH_NO_INFO")
        return original(self, flag, name, operation, attribute, value, units)

    monkeypatch.setattr(FakeCallback, "msi_msiModAVUMetadata", msiModAVUMetadata)


def test_replace_avus_removes_what_was_read_and_adds_without_a_query(setup: GridSetup, monkeypatch) -> None:
    """A re-tag: rm of the values the engine read, then add: four msiModAVUMetadata calls, no
    GenQuery, no atomic batch (10 ms against 35 ms per image on the measured zone)."""
    rm_of_what_is_not_there_fails(monkeypatch)
    s, g = setup, setup.grid
    server = server_of(s)
    path = f"{s.home}/a.png"
    s.put(path, b"a")
    old = [AVU("predictedclass", "cat", "c2d:t1"), AVU("predictedscore", "0.5000", "c2d:t1")]
    new = [AVU("predictedclass", "dog", "c2d:t2"), AVU("predictedscore", "0.9000", "c2d:t2")]
    for avu in old:
        s.tag(EntityType.DATA_OBJECT, path, avu)
    before = dict(server.calls)
    g.replace_avus(EntityType.DATA_OBJECT, {path: (old, new)})
    spent = {k: v - before.get(k, 0) for k, v in server.calls.items() if v != before.get(k, 0)}
    assert spent == {"msiModAVUMetadata": 4}
    assert set(g.get_avus(EntityType.DATA_OBJECT, path)) == set(new)


def test_replace_avus_of_an_image_changed_since_it_was_read_replaces_what_it_carries(setup: GridSetup, monkeypatch) -> None:
    """The engine read one pair, another task tagged the image meanwhile: the rm finds nothing
    (-819000), and what the image carries now of those attributes is replaced atomically, so it
    ends with exactly the new pair (never two)."""
    rm_of_what_is_not_there_fails(monkeypatch)
    s, g = setup, setup.grid
    path = f"{s.home}/a.png"
    s.put(path, b"a")
    read = [AVU("predictedclass", "cat", "c2d:t1"), AVU("predictedscore", "0.5000", "c2d:t1")]
    meanwhile = [AVU("predictedclass", "fox", "c2d:t3"), AVU("predictedscore", "0.7000", "c2d:t3")]
    for avu in [*meanwhile, AVU("other", "kept")]:
        s.tag(EntityType.DATA_OBJECT, path, avu)
    new = [AVU("predictedclass", "dog", "c2d:t2"), AVU("predictedscore", "0.9000", "c2d:t2")]
    g.replace_avus(EntityType.DATA_OBJECT, {path: (read, new)})
    assert set(g.get_avus(EntityType.DATA_OBJECT, path)) == {*new, AVU("other", "kept")}


def test_errors_name_the_irods_error_and_hide_the_stack(setup: GridSetup) -> None:
    s, g = setup, setup.grid
    with pytest.raises(ObjectNotFoundError) as missing:
        g.replicate(f"{s.home}/missing.png", COMPUTE)  # msiDataObjRepl answers status False
    # the message says what the server answered; the code says what is missing (a rule can end with it)
    assert "CAT_NO_ROWS_FOUND" in str(missing.value)
    assert missing.value.irods_code == irods_errors.CAT_UNKNOWN_FILE
    s.put(f"{s.bob_home()}/ro/x.png", b"x", owner=BOB)
    s.chmod("read", ALICE, f"{s.bob_home()}/ro")
    with pytest.raises(AccessDeniedError) as denied:
        g.create_collection(f"{s.bob_home()}/ro/new")
    message = str(denied.value)
    assert "CAT_NO_ACCESS_PERMISSION (-818000)" in message and f"{s.bob_home()}/ro/new" in message
    assert ".cpp" not in message and "iRods__Error__Code" not in message
    assert denied.value.irods_name == "CAT_NO_ACCESS_PERMISSION"
    with pytest.raises(GridError):
        g.replicate(f"{s.home}/x", "bad=name++++")


def test_error_table_and_parsing() -> None:
    exc = irods_error(-818000, "no")
    assert irods_errors.parse_error_code(exc) == -818000
    mapped = c2d_errors.to_grid_error(exc, "tagging /z/a")
    assert isinstance(mapped, AccessDeniedError) and str(mapped) == "tagging /z/a failed: CAT_NO_ACCESS_PERMISSION (-818000)"
    assert isinstance(c2d_errors.to_grid_error(irods_error(-809000, ""), "x"), AlreadyExistsError)
    assert isinstance(c2d_errors.to_grid_error(irods_error(-1105000, ""), "x"), ObjectNotFoundError)
    assert irods_errors.error_name(-510002) == "UNIX_FILE_OPEN_ERR (ENOENT)"
    assert irods_errors.error_name(-999999000) == "iRODS error -999999000"
    assert irods_errors.describe_code(-13000) == "-13000 SYS_NO_API_PRIV"
    plain = c2d_errors.to_grid_error(RuntimeError("something odd\nmore"), "x")
    assert str(plain) == "x failed: something odd" and plain.irods_code == -1828000
    for code, name in ((-808000, "CAT_NO_ROWS_FOUND"), (-130000, "SYS_INVALID_INPUT_PARAM"),
                       (-1084000, "INPUT_ARG_NOT_WELL_FORMED_ERR"), (-1828000, "RULE_ENGINE_ERROR"),
                       (-310000, "USER_FILE_DOES_NOT_EXIST"), (-814000, "CAT_UNKNOWN_COLLECTION"),
                       (-817000, "CAT_UNKNOWN_FILE")):
        assert irods_errors.error_name(code) == name


def test_strict_acl_policy_gives_the_same_answers(tmp_path: Path) -> None:
    setup = rule_engine_factory(tmp_path)
    server_of(setup).acl_policy = "strict"
    s, g = setup, setup.grid
    shared = f"{s.bob_home()}/shared"
    s.put(f"{shared}/public.png", b"p", owner=BOB)
    s.put(f"{shared}/private.png", b"q", owner=BOB)
    s.chmod("read", ALICE, shared)
    s.chmod("read", ALICE, f"{shared}/public.png")
    assert [o.path for o in g.list_data_objects(shared)] == [f"{shared}/public.png"]
    assert g.paths_lacking_access([f"{shared}/public.png", f"{shared}/private.png"], AccessLevel.READ) == [
        f"{shared}/private.png"
    ]


def bobs_images_alice_reads(s: GridSetup, names: list[str]) -> list[str]:
    """Bob's images under data/ (``names`` below it), alice holding read on all, modify on the fourth."""
    paths = [f"{s.bob_home()}/data/{name}" for name in names]
    for path in paths:
        s.put(path, b"x", owner=BOB)
    s.chmod("read", ALICE, f"{s.bob_home()}/data", recursive=True)
    s.chmod("modify_object", ALICE, paths[3])
    return paths


def test_bulk_access_check_over_many_collections(setup: GridSetup) -> None:
    s, g = setup, setup.grid
    paths = bobs_images_alice_reads(s, [f"d{i:02d}/x.png" for i in range(12)])
    before = g.query_count
    assert g.paths_lacking_access(paths, AccessLevel.READ) == []
    assert g.paths_lacking_access(paths, AccessLevel.MODIFY) == [p for i, p in enumerate(paths) if i != 3]
    assert g.query_count - before <= 8  # one recursive query under the common ancestor, not 12+
    assert g.paths_lacking_access(paths + [f"{s.home}/none.png"], AccessLevel.READ) == [f"{s.home}/none.png"]


def test_read_and_modify_on_the_same_inputs_are_one_look_at_what_is_held(setup: GridSetup) -> None:
    """A run checks read and modify on every input: asked together, the levels come from one
    access query per collection, not one per level (the same answers as asked apart)."""
    s, g = setup, setup.grid
    paths = bobs_images_alice_reads(s, [f"x{i:02d}.png" for i in range(12)])
    asked = paths + [f"{s.home}/none.png"]
    before = g.query_count
    apart = {level: g.paths_lacking_access(asked, level) for level in (AccessLevel.READ, AccessLevel.MODIFY)}
    asked_apart = g.query_count - before
    before = g.query_count
    together = g.paths_lacking_levels(asked, [AccessLevel.READ, AccessLevel.MODIFY])
    assert together == apart
    assert together[AccessLevel.READ] == [f"{s.home}/none.png"]
    assert together[AccessLevel.MODIFY] == [p for i, p in enumerate(paths) if i != 3] + [f"{s.home}/none.png"]
    # the access rows of each of the two parent collections, and whether none.png is a collection
    assert g.query_count - before == 3 and asked_apart > 2 * 3


def test_module_imports_without_the_plugin_modules() -> None:
    import subprocess
    import sys

    code = "import compute_to_data.grid.rule_engine, sys; assert 'genquery' not in sys.modules; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_read_data_object_ends_at_the_none_msiDataObjRead_returns(setup: GridSetup, monkeypatch) -> None:
    """18 bytes read 8 at a time: buffers of 8, 8 and 2 bytes, then ``None`` (end of file)."""
    s, g = setup, setup.grid
    server = server_of(s)
    monkeypatch.setattr(rule_engine, "READ_CHUNK", 8)
    content = b"0123456789abcdefgh"
    s.put(f"{s.home}/task_config.json", content)
    before = server.calls["msiDataObjRead"]
    assert g.read_data_object(f"{s.home}/task_config.json") == content
    assert server.calls["msiDataObjRead"] - before == 4
    s.put(f"{s.home}/empty.json", b"")
    assert g.read_data_object(f"{s.home}/empty.json") == b""


def test_every_error_class_default_comes_from_the_one_table() -> None:
    """A class's default code turns back into that class (or a narrower one) through the table,
    and no default is CAT_NO_ROWS_FOUND, which a rule cannot end with."""
    import inspect

    from compute_to_data.domain import errors

    declared = [
        cls for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ComputeToDataError) and "irods_error" in vars(cls)
    ]
    assert {c.__name__ for c in declared} >= {"ComputeToDataError", "NotAllowedError", "ObjectNotFoundError",
                                              "AccessDeniedError", "AlreadyExistsError", "AuthenticationError",
                                              "GridUnreachableError", "TaskFailedError"}
    for cls in declared:
        code = irods_errors.code_of(cls.irods_error)
        assert issubclass(c2d_errors.error_class(code), cls), cls
        assert code != irods_errors.CAT_NO_ROWS_FOUND
        instance = cls("x") if cls is not errors.ConfigError else cls("x", [])
        assert instance.irods_code == code
    assert errors.ObjectNotFoundError("x", irods_code=irods_errors.CAT_UNKNOWN_FILE).irods_code == irods_errors.CAT_UNKNOWN_FILE
    assert len({row.code for row in irods_errors.TABLE}) == len(irods_errors.TABLE)
    assert len({row.name for row in irods_errors.TABLE}) == len(irods_errors.TABLE)
