"""The Grid port's contract: what every adapter must do, observable through the port alone.

Each test takes the fixture ``contract_grid`` (a :class:`grid_factories.GridSetup`); the
fixture is parametrized over ``grid_factories.FACTORIES`` in ``tests/grid/test_grid_contract.py``.
Arrangement (resources, users, other users' files, ACLs) uses the admin LocalGrid; the
behaviour under test goes through ``contract_grid.grid`` (alice) or ``port_for(user)`` only.
The expectations follow iRODS (docs/irods-behaviour.md): what a user holds no
permission on does not exist for them, replication is idempotent, AVU batches on one entity are
all or nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
from pathlib import Path

import pytest

from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType, MetadataOperation
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    GridError,
    NothingToRemoveError,
    ObjectNotFoundError,
)
from tests.support.grid_factories import ALICE, BOB, COMPUTE, CPU, STORAGE, GridSetup

HOSTILE = "it's 50%_off [x] \"q\" é.png"


def sha2(content: bytes) -> str:
    return "sha2:" + base64.b64encode(hashlib.sha256(content).digest()).decode()


def add(entity_type: EntityType, name: str, a: str, v: str, u: str = "") -> MetadataOperation:
    return MetadataOperation("add", entity_type, name, AVU(a, v, u))


def remove(entity_type: EntityType, name: str, a: str, v: str, u: str = "") -> MetadataOperation:
    return MetadataOperation("remove", entity_type, name, AVU(a, v, u))


# --- identity ----------------------------------------------------------------------------------------
def test_identity(contract_grid: GridSetup) -> None:
    g = contract_grid.grid
    assert g.zone == "tempZone"
    assert g.user == ALICE
    assert g.home() == "/tempZone/home/alice"
    assert isinstance(g.kind, str) and g.kind != "abstract"


# --- resources -----------------------------------------------------------------------------------------
def test_find_resources_by_attribute_and_value(contract_grid: GridSetup) -> None:
    g = contract_grid.grid
    gpu = g.find_resources("COMPUTE_RESOURCE_ROLE", "GPU_COMPUTE")
    assert [r.name for r in gpu] == [COMPUTE]
    assert gpu[0].host == "localhost"
    assert gpu[0].avu_int("COMPUTE_RESOURCE_GPUS", 0) == 1
    assert gpu[0].avu_int("COMPUTE_RESOURCE_MAX_TASKS", 1) == 2
    assert set(gpu[0].avu_values("COMPUTE_RESOURCE_ROLE")) == {"GPU_COMPUTE"}
    assert [r.name for r in g.find_resources("COMPUTE_RESOURCE_ROLE")] == sorted([COMPUTE, CPU, STORAGE])
    assert g.find_resources("COMPUTE_RESOURCE_ROLE", "NO_SUCH_ROLE") == []
    assert g.find_resources("NO_SUCH_ATTRIBUTE") == []


def test_get_resource(contract_grid: GridSetup) -> None:
    r = contract_grid.grid.get_resource(STORAGE)
    admin_view = contract_grid.admin.get_resource(STORAGE)
    assert r.name == STORAGE
    assert r.host == "localhost"
    assert r.vault_path == admin_view.vault_path
    assert r.avu_values("COMPUTE_RESOURCE_ROLE") == ["LONG_TERM_STORAGE"]
    with pytest.raises(ObjectNotFoundError):
        contract_grid.grid.get_resource("no_such_resc")


# --- namespace ---------------------------------------------------------------------------------------
def test_exists(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    s.put(f"{s.home}/imgs/a.png", b"a")
    s.put(f"{s.bob_home()}/secret.png", b"s", owner=BOB)
    assert g.collection_exists(f"{s.home}/imgs")
    assert g.data_object_exists(f"{s.home}/imgs/a.png")
    assert not g.collection_exists(f"{s.home}/imgs/a.png")
    assert not g.data_object_exists(f"{s.home}/imgs")
    assert not g.collection_exists(f"{s.home}/nothing")
    assert not g.data_object_exists(f"{s.home}/imgs/nothing.png")
    # what alice holds no permission on does not exist for her
    assert not g.data_object_exists(f"{s.bob_home()}/secret.png")
    assert s.port_for(BOB).data_object_exists(f"{s.bob_home()}/secret.png")


def test_get_data_object(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/imgs/a.png"
    s.put(path, b"hello")
    s.tag(EntityType.DATA_OBJECT, path, AVU("predictedclass", "3", "c2d:t1"), AVU("other", "x"))
    obj = g.get_data_object(path)
    assert obj.path == path and obj.name == "a.png" and obj.collection == f"{s.home}/imgs"
    assert obj.size == 5
    assert obj.checksum == sha2(b"hello")
    assert obj.avus == ()
    assert len(obj.replicas) == 1
    replica = obj.replicas[0]
    assert replica.resource_name == STORAGE and replica.good and replica.size == 5
    assert Path(replica.physical_path).read_bytes() == b"hello"
    assert obj.good_replica_on(STORAGE) == replica
    assert obj.good_replica_on(COMPUTE) is None
    with_avus = g.get_data_object(path, avu_attributes=["predictedclass"])
    assert with_avus.avus == (AVU("predictedclass", "3", "c2d:t1"),)
    with pytest.raises(ObjectNotFoundError):
        g.get_data_object(f"{s.home}/imgs/missing.png")


def test_list_data_objects(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    root = f"{s.home}/imgs"
    for rel in ("b.png", "a.png", "sub/c.png", "sub/deeper/d.png"):
        s.put(f"{root}/{rel}", rel.encode())
    s.put(f"{s.home}/imgs_2/x.png", b"sibling")  # shares the prefix "imgs"
    s.put(f"{s.home}/imgsX/y.png", b"sibling")
    s.tag(EntityType.DATA_OBJECT, f"{root}/a.png", AVU("predictedclass", "1", "c2d:t"), AVU("predictedscore", "0.9000", "c2d:t"))
    s.tag(EntityType.DATA_OBJECT, f"{root}/sub/c.png", AVU("predictedclass", "2", "c2d:t"), AVU("ignored", "z"))

    flat = g.list_data_objects(root)
    assert [o.path for o in flat] == [f"{root}/a.png", f"{root}/b.png"]
    assert all(o.avus == () for o in flat)
    assert flat[0].size == len(b"a.png") and flat[0].replicas[0].resource_name == STORAGE

    deep = g.list_data_objects(root, recursive=True, avu_attributes=["predictedclass", "predictedscore"])
    assert [o.path for o in deep] == sorted(
        [f"{root}/a.png", f"{root}/b.png", f"{root}/sub/c.png", f"{root}/sub/deeper/d.png"]
    )
    by_path = {o.path: o for o in deep}
    assert set(by_path[f"{root}/a.png"].avus) == {AVU("predictedclass", "1", "c2d:t"), AVU("predictedscore", "0.9000", "c2d:t")}
    assert by_path[f"{root}/sub/c.png"].avus == (AVU("predictedclass", "2", "c2d:t"),)
    assert by_path[f"{root}/b.png"].avus == ()
    pages = list(g.iter_data_objects(root, recursive=True, avu_attributes=["predictedclass"], page_size=1))
    assert all(len(page) == 1 for page in pages)
    assert sorted(o.path for page in pages for o in page) == [o.path for o in deep]
    assert {o.path: o.avus for page in pages for o in page}[f"{root}/sub/c.png"] == (AVU("predictedclass", "2", "c2d:t"),)
    assert [o.path for o in g.list_data_objects(f"{root}/sub/deeper")] == [f"{root}/sub/deeper/d.png"]
    with pytest.raises(ObjectNotFoundError):
        g.list_data_objects(f"{s.home}/missing")


def test_object_avus_in_gives_the_named_avus_of_the_objects_carrying_them(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    root = f"{s.home}/imgs"
    for rel in ("a.png", "b.png", "sub/c.png"):
        s.put(f"{root}/{rel}", rel.encode())
    s.put(f"{s.home}/imgs_2/x.png", b"sibling")  # shares the prefix "imgs"
    pair = (AVU("predictedclass", "1", "c2d:t"), AVU("predictedscore", "0.9000", "c2d:t"))
    s.tag(EntityType.DATA_OBJECT, f"{root}/a.png", *pair, AVU("ignored", "z"))
    s.tag(EntityType.DATA_OBJECT, f"{root}/sub/c.png", AVU("predictedclass", "2", "c2d:t"))
    s.tag(EntityType.DATA_OBJECT, f"{s.home}/imgs_2/x.png", AVU("predictedclass", "3", "c2d:t"))
    wanted = ["predictedclass", "predictedscore"]
    flat = g.object_avus_in(root, wanted)
    assert {path: set(avus) for path, avus in flat.items()} == {f"{root}/a.png": set(pair)}  # b.png carries none
    deep = g.object_avus_in(root, wanted, recursive=True)
    assert {path: set(avus) for path, avus in deep.items()} == {
        f"{root}/a.png": set(pair), f"{root}/sub/c.png": {AVU("predictedclass", "2", "c2d:t")}}
    assert g.object_avus_in(f"{root}/sub", ["elsewhere"]) == {}


def test_iter_data_objects_pages_collection_by_collection(contract_grid: GridSetup) -> None:
    """Pages never exceed page_size, hold only readable objects, and a collection's objects come
    together (shard planning groups by sub-collection as the pages come)."""
    s, g = contract_grid, contract_grid.grid
    root = f"{s.home}/paged"
    names = [f"{root}/{sub}/{i:02d}.png" for sub in ("a", "b", "b/deep") for i in range(5)] + [f"{root}/top.png"]
    for path in names:
        s.put(path, b"x")
    pages = list(g.iter_data_objects(root, recursive=True, page_size=2))
    assert all(1 <= len(page) <= 2 for page in pages)
    seen = [o.path for page in pages for o in page]
    assert sorted(seen) == sorted(names)
    order = [posixpath.dirname(p) for p in seen]
    assert len({c for c in order}) == len([c for i, c in enumerate(order) if i == 0 or order[i - 1] != c])
    assert [o.path for page in g.iter_data_objects(root) for o in page] == [f"{root}/top.png"]
    with pytest.raises(ObjectNotFoundError):
        list(g.iter_data_objects(f"{s.home}/missing"))


def test_list_data_objects_only_readable(contract_grid: GridSetup) -> None:
    s = contract_grid
    shared = f"{s.bob_home()}/shared"
    s.put(f"{shared}/public.png", b"p", owner=BOB)
    s.put(f"{shared}/private.png", b"q", owner=BOB)
    s.put(f"{shared}/meta_only.png", b"m", owner=BOB)
    s.chmod("read", ALICE, shared)
    s.chmod("read", ALICE, f"{shared}/public.png")
    s.chmod("read_metadata", ALICE, f"{shared}/meta_only.png")
    assert [o.path for o in s.grid.list_data_objects(shared)] == [f"{shared}/public.png"]
    assert [o.path for o in s.port_for(BOB).list_data_objects(shared)] == sorted(
        f"{shared}/{n}" for n in ("meta_only.png", "private.png", "public.png")
    )


def test_hostile_names(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    coll = f"{s.home}/50%_it's [dir]"
    path = f"{coll}/{HOSTILE}"
    s.put(path, b"hostile")
    s.put(f"{s.home}/50%Xit's [dir]/decoy.png", b"decoy")  # would match a LIKE with an unescaped _
    assert g.data_object_exists(path)
    assert [o.path for o in g.list_data_objects(coll, recursive=True)] == [path]
    assert g.has_access(path, AccessLevel.OWN)
    g.apply_metadata([add(EntityType.DATA_OBJECT, path, "note", "it's 100% _done_", "c2d:'t'")])
    assert g.get_avus(EntityType.DATA_OBJECT, path) == [AVU("note", "it's 100% _done_", "c2d:'t'")]
    g.apply_metadata([add(EntityType.COLLECTION, coll, "c2d::task_id", "x'y")])
    found = g.find_collections_with_avu("c2d::task_id", "x'y", under=s.home)
    assert [c.path for c in found] == [coll]
    g.replicate(path, COMPUTE)
    assert g.get_data_object(path).good_replica_on(COMPUTE) is not None
    assert g.read_data_object(path) == b"hostile"


def test_list_collections(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    for sub in ("b", "a", "a/deep", "a_b"):
        s.mkdir(f"{s.home}/top/{sub}")
    s.put(f"{s.home}/top/file.png", b"f")
    assert g.list_collections(f"{s.home}/top") == [f"{s.home}/top/{n}" for n in ("a", "a_b", "b")]
    assert g.list_collections(f"{s.home}/top/b") == []
    with pytest.raises(ObjectNotFoundError):
        g.list_collections(f"{s.home}/missing")


# --- permissions -----------------------------------------------------------------------------------------
def test_has_access_levels(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    base = f"{s.bob_home()}/acl"
    levels = {"r.png": "read", "m.png": "modify_object", "o.png": "own", "none.png": None}
    for name, level in levels.items():
        s.put(f"{base}/{name}", b"x", owner=BOB)
        if level:
            s.chmod(level, ALICE, f"{base}/{name}")
    s.chmod("read", ALICE, base)
    expectations = {
        "r.png": (True, False, False),
        "m.png": (True, True, False),
        "o.png": (True, True, True),
    }
    for name, (read, modify, own) in expectations.items():
        path = f"{base}/{name}"
        assert g.has_access(path, AccessLevel.READ) is read, name
        assert g.has_access(path, AccessLevel.MODIFY) is modify, name
        assert g.has_access(path, AccessLevel.OWN) is own, name
    assert g.has_access(base, AccessLevel.READ) and not g.has_access(base, AccessLevel.MODIFY)
    with pytest.raises(ObjectNotFoundError):
        g.has_access(f"{base}/none.png", AccessLevel.READ)  # cannot see it
    with pytest.raises(ObjectNotFoundError):
        g.has_access(f"{base}/missing.png", AccessLevel.READ)
    own_path = f"{s.home}/mine.png"
    s.put(own_path, b"m")
    assert g.has_access(own_path, AccessLevel.OWN)
    assert g.has_access(s.home, AccessLevel.OWN)


def test_paths_lacking_access(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    mine = f"{s.home}/mine.png"
    s.put(mine, b"m")
    readable = f"{s.bob_home()}/r.png"
    s.put(readable, b"r", owner=BOB)
    s.chmod("read", ALICE, readable)
    assert g.paths_lacking_access([mine, readable], AccessLevel.READ) == []
    assert g.paths_lacking_access([mine, readable], AccessLevel.MODIFY) == [readable]
    assert g.paths_lacking_access([readable, mine], AccessLevel.OWN) == [readable]
    assert g.paths_lacking_access([], AccessLevel.READ) == []


def test_paths_lacking_levels_answers_each_level_as_asked_apart(contract_grid: GridSetup) -> None:
    """Several levels asked at once: per level, what :meth:`paths_lacking_access` says (in order),
    over few paths (asked one by one) and over many (a bulk query)."""
    s, g = contract_grid, contract_grid.grid
    readable = []
    for i in range(10):
        path = f"{s.bob_home()}/shared/r{i}.png"
        s.put(path, b"r", owner=BOB)
        s.chmod("modify_object" if i == 2 else "read", ALICE, path)
        readable.append(path)
    mine = f"{s.home}/mine.png"
    s.put(mine, b"m")
    levels = [AccessLevel.READ, AccessLevel.MODIFY, AccessLevel.OWN]
    for asked in ([mine, readable[0], readable[2]], [*readable, mine, f"{s.home}/none.png"]):
        together = g.paths_lacking_levels(asked, levels)
        assert together == {level: g.paths_lacking_access(asked, level) for level in levels}
    assert together[AccessLevel.MODIFY] == [p for i, p in enumerate(readable) if i != 2] + [f"{s.home}/none.png"]


# --- replicate ---------------------------------------------------------------------------------------------
def test_replicate_copies_into_target_vault_and_is_idempotent(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/imgs/a.png"
    s.put(path, b"pixels")
    g.replicate(path, COMPUTE)
    obj = g.get_data_object(path)
    assert [r.resource_name for r in obj.replicas] == [STORAGE, COMPUTE]
    assert [r.number for r in obj.replicas] == [0, 1]
    replica = obj.good_replica_on(COMPUTE)
    assert replica is not None and replica.size == 6 and replica.good
    vault = g.get_resource(COMPUTE).vault_path
    assert Path(replica.physical_path).is_relative_to(vault)
    assert Path(replica.physical_path).read_bytes() == b"pixels"
    assert replica.physical_path != obj.good_replica_on(STORAGE).physical_path
    g.replicate(path, COMPUTE)  # no-op
    g.replicate(path, STORAGE)  # no-op: the original is there
    assert g.get_data_object(path).replicas == obj.replicas


def test_replicate_needs_read(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    hidden = f"{s.bob_home()}/hidden.png"
    s.put(hidden, b"h", owner=BOB)
    with pytest.raises(GridError):
        g.replicate(hidden, COMPUTE)
    assert s.admin.get_data_object(hidden).good_replica_on(COMPUTE) is None
    s.chmod("read", ALICE, hidden)
    g.replicate(hidden, COMPUTE)  # read is enough to replicate (as in iRODS)
    assert s.admin.get_data_object(hidden).good_replica_on(COMPUTE) is not None


def test_replicate_collection_replicates_everything_under_it(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    coll = f"{s.home}/survey"
    for path in (f"{coll}/a.png", f"{coll}/site1/b.png", f"{coll}/site1/deep/c.png"):
        s.put(path, b"px")
    s.put(f"{s.home}/outside.png", b"px")
    g.replicate(f"{coll}/a.png", COMPUTE)
    before = g.get_data_object(f"{coll}/a.png").replicas
    g.replicate_collection(coll, COMPUTE)
    assert all(o.good_replica_on(COMPUTE) for o in g.list_data_objects(coll, recursive=True))
    assert g.get_data_object(f"{coll}/a.png").replicas == before  # already there: left alone
    assert g.get_data_object(f"{s.home}/outside.png").good_replica_on(COMPUTE) is None
    with pytest.raises(GridError):
        g.replicate_collection(f"{s.home}/no_such_collection", COMPUTE)


def test_replicate_missing(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    with pytest.raises(GridError):
        g.replicate(f"{s.home}/missing.png", COMPUTE)
    path = f"{s.home}/a.png"
    s.put(path, b"a")
    with pytest.raises(GridError):
        g.replicate(path, "no_such_resc")


# --- collections and files -------------------------------------------------------------------------------------
def test_create_collection(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    deep = f"{s.home}/results/2026/task-1"
    g.create_collection(deep)
    assert g.collection_exists(deep) and g.collection_exists(f"{s.home}/results/2026")
    assert g.has_access(deep, AccessLevel.OWN)
    assert g.has_access(f"{s.home}/results", AccessLevel.OWN)
    g.create_collection(deep)  # no error when it exists
    assert g.list_collections(f"{s.home}/results/2026") == [deep]


def test_create_collection_needs_modify_on_parent(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    s.mkdir(f"{s.bob_home()}/ro", owner=BOB)
    s.chmod("read", ALICE, f"{s.bob_home()}/ro")
    with pytest.raises(AccessDeniedError):
        g.create_collection(f"{s.bob_home()}/ro/mine")
    assert not s.port_for(BOB).collection_exists(f"{s.bob_home()}/ro/mine")
    s.chmod("modify_object", ALICE, f"{s.bob_home()}/ro")
    g.create_collection(f"{s.bob_home()}/ro/mine")
    assert g.has_access(f"{s.bob_home()}/ro/mine", AccessLevel.OWN)


def test_put_file(contract_grid: GridSetup, tmp_path: Path) -> None:
    s, g = contract_grid, contract_grid.grid
    local = tmp_path / "report.html"
    local.write_bytes(b"<html>1</html>")
    coll = f"{s.home}/results/t1"
    g.create_collection(coll)
    obj = g.put_file(local, f"{coll}/report.html", COMPUTE)
    assert obj.path == f"{coll}/report.html"
    assert obj.size == len(b"<html>1</html>") and obj.checksum == sha2(b"<html>1</html>")
    assert [r.resource_name for r in obj.replicas] == [COMPUTE]
    assert Path(obj.replicas[0].physical_path).is_relative_to(g.get_resource(COMPUTE).vault_path)
    assert g.has_access(obj.path, AccessLevel.OWN)
    assert g.read_data_object(obj.path) == b"<html>1</html>"
    assert g.get_data_object(obj.path) == obj
    local.write_bytes(b"changed")
    with pytest.raises(AlreadyExistsError):
        g.put_file(local, obj.path, COMPUTE)
    assert g.read_data_object(obj.path) == b"<html>1</html>"


def test_put_file_overwrite_and_stale_replicas(contract_grid: GridSetup, tmp_path: Path) -> None:
    s, g = contract_grid, contract_grid.grid
    local = tmp_path / "f.txt"
    local.write_bytes(b"version 1")
    path = f"{s.home}/f.txt"
    g.put_file(local, path, STORAGE)
    g.replicate(path, COMPUTE)
    local.write_bytes(b"version two")
    obj = g.put_file(local, path, STORAGE, overwrite=True)
    assert obj.size == len(b"version two") and obj.checksum == sha2(b"version two")
    assert g.read_data_object(path) == b"version two"
    assert obj.good_replica_on(STORAGE) is not None
    assert obj.good_replica_on(COMPUTE) is None  # the other replica is stale now
    g.replicate(path, COMPUTE)  # refreshes the stale replica
    fresh = g.get_data_object(path).good_replica_on(COMPUTE)
    assert fresh is not None and Path(fresh.physical_path).read_bytes() == b"version two"


def test_put_file_needs_modify_on_collection(contract_grid: GridSetup, tmp_path: Path) -> None:
    s, g = contract_grid, contract_grid.grid
    local = tmp_path / "f.txt"
    local.write_bytes(b"x")
    target = f"{s.bob_home()}/drop"
    s.mkdir(target, owner=BOB)
    s.chmod("read", ALICE, target)
    with pytest.raises(AccessDeniedError):
        g.put_file(local, f"{target}/f.txt", STORAGE)
    assert not s.port_for(BOB).data_object_exists(f"{target}/f.txt")
    s.chmod("modify_object", ALICE, target)
    g.put_file(local, f"{target}/f.txt", STORAGE)
    assert g.has_access(f"{target}/f.txt", AccessLevel.OWN)


# --- metadata -----------------------------------------------------------------------------------------------
def test_apply_metadata_and_get_avus(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/a.png"
    s.put(path, b"a")
    g.apply_metadata([
        add(EntityType.DATA_OBJECT, path, "predictedclass", "7", "c2d:t1"),
        add(EntityType.DATA_OBJECT, path, "predictedscore", "0.9100", "c2d:t1"),
        add(EntityType.DATA_OBJECT, path, "multi", "1"),
        add(EntityType.DATA_OBJECT, path, "multi", "2"),
        add(EntityType.COLLECTION, s.home, "c2d::state", "running"),
    ])
    assert sorted(g.get_avus(EntityType.DATA_OBJECT, path), key=lambda a: (a.attribute, a.value)) == [
        AVU("multi", "1"), AVU("multi", "2"),
        AVU("predictedclass", "7", "c2d:t1"), AVU("predictedscore", "0.9100", "c2d:t1"),
    ]
    assert g.get_avus(EntityType.COLLECTION, s.home) == [AVU("c2d::state", "running")]
    g.apply_metadata([remove(EntityType.DATA_OBJECT, path, "multi", "1")])
    assert AVU("multi", "1") not in g.get_avus(EntityType.DATA_OBJECT, path)
    roles = g.get_avus(EntityType.RESOURCE, COMPUTE)
    assert AVU("COMPUTE_RESOURCE_ROLE", "GPU_COMPUTE") in roles


def test_apply_metadata_batch_is_all_or_nothing(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/a.png"
    s.put(path, b"a")
    g.apply_metadata([add(EntityType.DATA_OBJECT, path, "k", "v")])
    with pytest.raises(GridError):  # an invalid operation fails the batch: nothing is applied
        g.apply_metadata([add(EntityType.DATA_OBJECT, path, "new", "1"), add(EntityType.DATA_OBJECT, path, "bad", "")])
    assert g.get_avus(EntityType.DATA_OBJECT, path) == [AVU("k", "v")]
    # As on a real server, a batch is no compare-and-swap: a duplicate add and the removal of what
    # is not there are no errors, and the rest of the batch applies.
    g.apply_metadata([add(EntityType.DATA_OBJECT, path, "new", "1"), add(EntityType.DATA_OBJECT, path, "k", "v"),
                      remove(EntityType.DATA_OBJECT, path, "k", "nope")])
    assert sorted(g.get_avus(EntityType.DATA_OBJECT, path), key=lambda a: a.attribute) == [AVU("k", "v"), AVU("new", "1")]


def test_remove_avu_is_the_removal_that_fails_when_it_is_not_there(contract_grid: GridSetup) -> None:
    """The claim primitive (lifecycle/claims.py): of two removals of one AVU, one fails."""
    s, g = contract_grid, contract_grid.grid
    g.apply_metadata([add(EntityType.COLLECTION, s.home, "c2d::claim", "t1")])
    g.remove_avu(EntityType.COLLECTION, s.home, AVU("c2d::claim", "t1"))
    with pytest.raises(NothingToRemoveError):
        g.remove_avu(EntityType.COLLECTION, s.home, AVU("c2d::claim", "t1"))
    assert g.get_avus(EntityType.COLLECTION, s.home) == []


def test_apply_metadata_errors(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    with pytest.raises(ObjectNotFoundError):
        g.apply_metadata([add(EntityType.DATA_OBJECT, f"{s.home}/missing.png", "k", "v")])
    with pytest.raises(ObjectNotFoundError):
        g.apply_metadata([add(EntityType.COLLECTION, f"{s.home}/missing", "k", "v")])
    with pytest.raises(ObjectNotFoundError):
        g.get_avus(EntityType.DATA_OBJECT, f"{s.home}/missing.png")
    with pytest.raises(ObjectNotFoundError):
        g.get_avus(EntityType.RESOURCE, "no_such_resc")
    readonly = f"{s.bob_home()}/ro.png"
    s.put(readonly, b"r", owner=BOB)
    s.chmod("read", ALICE, readonly)
    with pytest.raises(AccessDeniedError):  # tagging needs modify
        g.apply_metadata([add(EntityType.DATA_OBJECT, readonly, "k", "v")])
    assert g.get_avus(EntityType.DATA_OBJECT, readonly) == []  # reading needs read
    with pytest.raises(GridError):  # resource AVUs are the administrator's
        g.apply_metadata([add(EntityType.RESOURCE, COMPUTE, "COMPUTE_RESOURCE_GPUS", "8")])
    assert g.get_resource(COMPUTE).avu_int("COMPUTE_RESOURCE_GPUS", 0) == 1
    s.chmod("modify_object", ALICE, readonly)
    g.apply_metadata([add(EntityType.DATA_OBJECT, readonly, "k", "v")])
    assert g.get_avus(EntityType.DATA_OBJECT, readonly) == [AVU("k", "v")]


def test_set_avus_replaces_and_clears(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/a.png"
    s.put(path, b"a")
    g.apply_metadata([
        add(EntityType.DATA_OBJECT, path, "predictedclass", "1", "c2d:old"),
        add(EntityType.DATA_OBJECT, path, "predictedclass", "2", "c2d:old"),
        add(EntityType.DATA_OBJECT, path, "validated", "true"),
        add(EntityType.DATA_OBJECT, path, "keep", "me"),
    ])
    g.set_avus(EntityType.DATA_OBJECT, path, [AVU("predictedclass", "3", "c2d:new")], clear=["validated"])
    assert sorted(g.get_avus(EntityType.DATA_OBJECT, path), key=lambda a: a.attribute) == [
        AVU("keep", "me"), AVU("predictedclass", "3", "c2d:new"),
    ]
    g.set_avus(EntityType.DATA_OBJECT, path, [AVU("predictedclass", "3", "c2d:new")])  # unchanged: no error
    assert len(g.get_avus(EntityType.DATA_OBJECT, path)) == 2


def test_read_data_object(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/task_config.json"
    content = os.urandom(3000)
    s.put(path, content)
    assert g.read_data_object(path) == content
    with pytest.raises(GridError):
        g.read_data_object(path, max_bytes=100)
    with pytest.raises(ObjectNotFoundError):
        g.read_data_object(f"{s.home}/missing.json")
    other = f"{s.bob_home()}/x.json"
    s.put(other, b"{}", owner=BOB)
    with pytest.raises(GridError):
        g.read_data_object(other)
    s.chmod("read", ALICE, other)
    assert g.read_data_object(other) == b"{}"


def test_read_to_file_copies_through_irods_and_registers_nothing(contract_grid: GridSetup, tmp_path: Path) -> None:
    """Stream staging: the content arrives in a local file, chunk by chunk (larger than one
    read), and the catalog is left as it was: no replica on any resource, no new object."""
    s, g = contract_grid, contract_grid.grid
    path = f"{s.home}/survey/{HOSTILE}"
    content = os.urandom(5 * 1024 * 1024 + 17)
    s.put(path, content)
    before = g.get_data_object(path)
    target = tmp_path / "staged.png"
    assert g.read_to_file(path, target) == len(content)
    assert target.read_bytes() == content
    after = g.get_data_object(path)
    assert after.replicas == before.replicas and after.good_replica_on(COMPUTE) is None
    assert [o.path for o in g.list_data_objects(f"{s.home}/survey")] == [path]
    target.write_bytes(b"older and longer content")
    empty = f"{s.home}/empty.png"
    s.put(empty, b"")
    assert g.read_to_file(empty, target) == 0 and target.read_bytes() == b""  # truncated
    with pytest.raises(ObjectNotFoundError):
        g.read_to_file(f"{s.home}/missing.png", tmp_path / "missing.png")
    other = f"{s.bob_home()}/x.png"
    s.put(other, b"bob's", owner=BOB)
    with pytest.raises(GridError):
        g.read_to_file(other, tmp_path / "x.png")
    s.chmod("read", ALICE, other)
    assert g.read_to_file(other, tmp_path / "x.png") == 5 and (tmp_path / "x.png").read_bytes() == b"bob's"


def test_find_collections_with_avu(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    results = f"{s.home}/results"
    for task, state in (("t1", "succeeded"), ("t2", "running"), ("t3", "failed")):
        coll = f"{results}/{task}"
        g.create_collection(coll)
        g.apply_metadata([
            add(EntityType.COLLECTION, coll, "c2d::task_id", task),
            add(EntityType.COLLECTION, coll, "c2d::state", state),
        ])
    g.create_collection(f"{s.home}/elsewhere/t4")
    g.apply_metadata([add(EntityType.COLLECTION, f"{s.home}/elsewhere/t4", "c2d::task_id", "t4")])
    g.create_collection(f"{s.home}/results_old/t5")  # shares the prefix "results"
    g.apply_metadata([add(EntityType.COLLECTION, f"{s.home}/results_old/t5", "c2d::task_id", "t5")])
    s.mkdir(f"{s.bob_home()}/results/b1", owner=BOB)
    s.tag(EntityType.COLLECTION, f"{s.bob_home()}/results/b1", AVU("c2d::task_id", "b1"))

    everything = g.find_collections_with_avu("c2d::task_id")
    assert [c.path for c in everything] == sorted(
        [f"{results}/t1", f"{results}/t2", f"{results}/t3", f"{s.home}/elsewhere/t4", f"{s.home}/results_old/t5"]
    )  # not bob's
    under = g.find_collections_with_avu("c2d::task_id", under=results)
    assert [c.path for c in under] == [f"{results}/t1", f"{results}/t2", f"{results}/t3"]
    t2 = g.find_collections_with_avu("c2d::state", "running")
    assert [c.path for c in t2] == [f"{results}/t2"]
    assert set(t2[0].avus) == {AVU("c2d::task_id", "t2"), AVU("c2d::state", "running")}
    assert t2[0].first("c2d::task_id") == "t2" and t2[0].first("missing", "d") == "d"
    assert g.find_collections_with_avu("c2d::state", "cancelled") == []
    assert [c.path for c in s.port_for(BOB).find_collections_with_avu("c2d::task_id")] == [f"{s.bob_home()}/results/b1"]


def test_invalid_paths_are_rejected(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    for bad in ("relative/path", f"{s.home}/", f"{s.home}//x", f"{s.home}/../bob", "/otherZone/home/alice"):
        with pytest.raises(GridError):
            g.create_collection(bad)
    assert posixpath.isabs(g.home())


# --- bulk tagging and a task's predictions ----------------------------------------------------------------------
def test_add_new_avus(contract_grid: GridSetup) -> None:
    s, g = contract_grid, contract_grid.grid
    paths = [f"{s.home}/imgs/{i}.png" for i in range(4)]
    for p in paths:
        s.put(p, b"x")
    g.add_new_avus(
        EntityType.DATA_OBJECT,
        {p: [AVU("predictedclass", str(i), "c2d:t1"), AVU("predictedscore", "0.5000", "c2d:t1")] for i, p in enumerate(paths)},
    )
    for i, p in enumerate(paths):
        assert sorted(g.get_avus(EntityType.DATA_OBJECT, p), key=lambda a: a.attribute) == [
            AVU("predictedclass", str(i), "c2d:t1"), AVU("predictedscore", "0.5000", "c2d:t1"),
        ]
    g.add_new_avus(EntityType.DATA_OBJECT, {})  # nothing to do
    readonly = f"{s.bob_home()}/ro.png"
    s.put(readonly, b"r", owner=BOB)
    s.chmod("read", ALICE, readonly)
    with pytest.raises(GridError):
        g.add_new_avus(EntityType.DATA_OBJECT, {readonly: [AVU("predictedclass", "1", "c2d:t1")]})
    assert g.get_avus(EntityType.DATA_OBJECT, readonly) == []


def test_replace_avus(contract_grid: GridSetup) -> None:
    """Re-tagging: what the caller read is removed, the new AVUs added; other AVUs untouched."""
    s, g = contract_grid, contract_grid.grid
    a, b = f"{s.home}/a.png", f"{s.home}/b.png"
    s.put(a, b"a")
    s.put(b, b"b")
    old = [AVU("predictedclass", "cat", "c2d:t1"), AVU("predictedscore", "0.5000", "c2d:t1")]
    g.apply_metadata([add(EntityType.DATA_OBJECT, p, x.attribute, x.value, x.units) for p in (a, b) for x in old]
                     + [add(EntityType.DATA_OBJECT, a, "validated", "true")])
    new = [AVU("predictedclass", "dog", "c2d:t2"), AVU("predictedscore", "0.9000", "c2d:t2")]
    g.replace_avus(EntityType.DATA_OBJECT, {a: (old, new), b: (old[1:], new[1:])})
    assert set(g.get_avus(EntityType.DATA_OBJECT, a)) == {*new, AVU("validated", "true")}
    assert set(g.get_avus(EntityType.DATA_OBJECT, b)) == {old[0], new[1]}
    g.replace_avus(EntityType.DATA_OBJECT, {})


def _predictions_world(s: GridSetup) -> str:
    """Six images under imgs/ (one unreadable to alice), tagged by tasks t1 and t2."""
    from compute_to_data.domain.catalog import MetadataOperation as Op

    root = f"{s.home}/imgs"
    tags = {  # name -> (class, score) for task t1
        "a.png": ("3", "0.9500"),
        "b.png": ("7", "0.4000"),
        "sub/c.png": ("3", "0.6000"),
        "d.png": ("7", None),  # no score AVU
        "e.png": None,  # not classified by t1
    }
    for name in tags:
        s.put(f"{root}/{name}", b"x")
    ops = []
    for name, tag in tags.items():
        if tag is None:
            continue
        ops.append(Op("add", EntityType.DATA_OBJECT, f"{root}/{name}", AVU("predictedclass", tag[0], "c2d:t1")))
        if tag[1] is not None:
            ops.append(Op("add", EntityType.DATA_OBJECT, f"{root}/{name}", AVU("predictedscore", tag[1], "c2d:t1")))
    ops.append(Op("add", EntityType.DATA_OBJECT, f"{root}/e.png", AVU("predictedclass", "1", "c2d:t2")))
    ops.append(Op("add", EntityType.DATA_OBJECT, f"{root}/a.png", AVU("validated", "true")))
    s.admin.apply_metadata(ops)
    # bob's image inside alice's collection, tagged by t1, that alice cannot read
    s.chmod("own", BOB, root)
    s.put(f"{root}/bobs.png", b"b", owner=BOB)
    s.tag(EntityType.DATA_OBJECT, f"{root}/bobs.png", AVU("predictedclass", "3", "c2d:t1"))
    # the same units outside the input collection do not count
    s.put(f"{s.home}/imgs_other/z.png", b"z")
    s.tag(EntityType.DATA_OBJECT, f"{s.home}/imgs_other/z.png", AVU("predictedclass", "3", "c2d:t1"))
    return root


def test_query_and_count_predictions(contract_grid: GridSetup) -> None:
    from compute_to_data.domain.catalog import PredictionQuery
    from compute_to_data.grid.base import Grid

    s, g = contract_grid, contract_grid.grid
    root = _predictions_world(s)
    q = PredictionQuery("t1", root, extra_attributes=("validated",))
    page = g.query_predictions(q, offset=0, limit=10)
    assert [(i.path, i.predicted_class, i.score) for i in page.items] == [
        (f"{root}/a.png", "3", 0.95), (f"{root}/b.png", "7", 0.4),
        (f"{root}/d.png", "7", None), (f"{root}/sub/c.png", "3", 0.6),
    ]
    assert page.items[0].avu_value("validated") == "true" and page.items[1].avus == ()
    assert not page.has_more and page.total in (4, None)
    first = g.query_predictions(q, offset=0, limit=2)
    assert [i.name for i in first.items] == ["a.png", "b.png"] and first.has_more
    rest = g.query_predictions(q, offset=2, limit=2)
    assert [i.name for i in rest.items] == ["d.png", "c.png"] and not rest.has_more
    threes = g.query_predictions(PredictionQuery("t1", root, predicted_class="3"))
    assert [i.name for i in threes.items] == ["a.png", "c.png"]
    ranged = g.query_predictions(PredictionQuery("t1", root, min_score=0.5, max_score=0.95))
    assert [i.name for i in ranged.items] == ["a.png", "c.png"]  # inclusive; d.png has no score
    assert g.count_predictions(q) == {"3": 2, "7": 2}
    assert g.count_predictions(PredictionQuery("t1", root, min_score=0.5)) == {"3": 2}
    assert g.count_predictions(PredictionQuery("t2", root)) == {"1": 1}
    assert g.count_predictions(PredictionQuery("t9", root)) == {}
    assert g.query_predictions(PredictionQuery("t9", root)).items == ()
    # an override answers exactly as the port's generic version does
    for query in (q, PredictionQuery("t1", root, predicted_class="7"), PredictionQuery("t1", root, max_score=0.6)):
        assert g.query_predictions(query, 1, 2).items == Grid.query_predictions(g, query, 1, 2).items
        assert g.count_predictions(query) == Grid.count_predictions(g, query)
    with pytest.raises((ValueError, GridError)):
        g.query_predictions(q, offset=-1)


def test_missing_things_carry_the_code_of_what_is_missing(contract_grid: GridSetup) -> None:
    """A rule ends with the code of the error it meets, and scripts key on it."""
    from compute_to_data.domain import irods_codes as irods_errors

    s, g = contract_grid, contract_grid.grid
    s.put(f"{s.bob_home()}/secret.png", b"s", owner=BOB)
    for path in (f"{s.home}/missing.png", f"{s.bob_home()}/secret.png"):
        for call in (g.get_data_object, g.read_data_object, lambda p: g.get_avus(EntityType.DATA_OBJECT, p)):
            with pytest.raises(ObjectNotFoundError) as caught:
                call(path)
            assert caught.value.irods_code == irods_errors.CAT_UNKNOWN_FILE, (path, caught.value)
        with pytest.raises(ObjectNotFoundError) as caught:
            g.has_access(path, AccessLevel.READ)
        assert caught.value.irods_code == irods_errors.INVALID_OBJECT_TYPE  # as msiCheckAccess
    for coll in (f"{s.home}/missing", s.bob_home(), f"/{s.zone}/home"):
        for call in (g.list_data_objects, g.list_collections, lambda p: g.get_avus(EntityType.COLLECTION, p)):
            with pytest.raises(ObjectNotFoundError) as caught:
                call(coll)
            assert caught.value.irods_code == irods_errors.CAT_UNKNOWN_COLLECTION, (coll, caught.value)
    with pytest.raises(ObjectNotFoundError) as caught:
        g.get_resource("no_such_resc")
    assert caught.value.irods_code == irods_errors.CAT_INVALID_RESOURCE
