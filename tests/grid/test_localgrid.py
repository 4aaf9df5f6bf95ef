"""LocalGrid specifics beyond the Grid contract: admin calls, vault layout, file modes, ACL
administration, whole-batch atomicity, bulk listing cost and concurrent writers."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest

from compute_to_data.domain.catalog import (
    AVU,
    AccessLevel,
    EntityType,
    MetadataOperation,
)
from compute_to_data.domain.errors import (
    AccessDeniedError,
    AlreadyExistsError,
    GridError,
    NothingToRemoveError,
    ObjectNotFoundError,
)
from compute_to_data.domain.registry import grids
from compute_to_data.grid.local import AccessEntry, LocalGrid, irods_checksum

ZONE = "tempZone"
HOME = f"/{ZONE}/home/alice"


@pytest.fixture()
def admin(tmp_path: Path) -> LocalGrid:
    g = LocalGrid.create(tmp_path / "grid", zone=ZONE)
    g.make_resource("lts_resc")
    g.make_resource("gpu_resc")
    g.add_user("alice")
    g.add_user("bob")
    return g


@pytest.fixture()
def alice(admin: LocalGrid) -> LocalGrid:
    return admin.as_user("alice")


def write(tmp_path: Path, content: bytes, name: str = "src.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def add(path: str, a: str, v: str, u: str = "", kind: EntityType = EntityType.DATA_OBJECT) -> MetadataOperation:
    return MetadataOperation("add", kind, path, AVU(a, v, u))


# --- creation, opening, registry --------------------------------------------------------------------------
def test_create_layout_and_open(tmp_path: Path) -> None:
    g = LocalGrid.create(tmp_path / "g", zone="demoZone")
    assert (tmp_path / "g" / "catalog.sqlite").is_file()
    assert (tmp_path / "g" / "vaults").is_dir()
    assert g.user == "rods" and g.is_admin and g.zone == "demoZone" and g.kind == "local"
    assert g.collection_exists("/demoZone") and g.collection_exists("/demoZone/home")
    assert g.collection_exists("/demoZone/home/rods")
    mode = sqlite3.connect(tmp_path / "g" / "catalog.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with pytest.raises(AlreadyExistsError):
        LocalGrid.create(tmp_path / "g")
    with pytest.raises(ObjectNotFoundError, match="no LocalGrid"):
        LocalGrid(tmp_path / "nothing-here")
    with pytest.raises(ObjectNotFoundError, match="nobody"):
        LocalGrid(tmp_path / "g", user="nobody")
    with pytest.raises(ObjectNotFoundError):
        LocalGrid(tmp_path / "g", user="public")  # a group, not a user one can act as
    assert grids.get("local") is LocalGrid


def test_admin_only_calls(alice: LocalGrid, admin: LocalGrid) -> None:
    with pytest.raises(AccessDeniedError, match="rodsadmin"):
        alice.make_resource("mine")
    with pytest.raises(AccessDeniedError):
        alice.add_user("mallory")
    with pytest.raises(AccessDeniedError):
        alice.apply_metadata([add("alice", "x", "y", kind=EntityType.USER)])
    with pytest.raises(AlreadyExistsError):
        admin.make_resource("lts_resc")
    with pytest.raises(AlreadyExistsError):
        admin.add_user("alice")
    with pytest.raises(GridError):
        admin.make_resource("bad/name")
    admin.apply_metadata([add("alice", "dept", "bio", kind=EntityType.USER)])
    assert alice.get_avus(EntityType.USER, "alice") == [AVU("dept", "bio")]


def test_home_collections(admin: LocalGrid, alice: LocalGrid) -> None:
    assert alice.get_acl(HOME) == [AccessEntry("alice", AccessLevel.OWN)]
    bob = admin.as_user("bob")
    assert not bob.collection_exists(HOME)
    assert bob.collection_exists(f"/{ZONE}/home/bob")
    with pytest.raises(ObjectNotFoundError):  # as on a stock zone: /zone/home is rods#zone:own only
        bob.list_collections(f"/{ZONE}/home")
    assert admin.list_collections(f"/{ZONE}/home") == [f"/{ZONE}/home/{u}" for u in ("alice", "bob", "rods")]


# --- vault layout -------------------------------------------------------------------------------------------
def test_physical_layout_modes_and_checksum(alice: LocalGrid, admin: LocalGrid, tmp_path: Path) -> None:
    old = os.umask(0o077)  # files must still be readable by a container running as another uid
    try:
        alice.create_collection(f"{HOME}/imgs/sub")
        obj = alice.put_file(write(tmp_path, b"png-bytes"), f"{HOME}/imgs/sub/a.png", "lts_resc")
        alice.replicate(obj.path, "gpu_resc")
    finally:
        os.umask(old)
    vault = Path(admin.get_resource("lts_resc").vault_path)
    assert vault == admin.root / "vaults" / "lts_resc"
    expected = vault / "home" / "alice" / "imgs" / "sub" / "a.png"
    assert obj.replicas[0].physical_path == str(expected)
    gpu_copy = Path(admin.get_resource("gpu_resc").vault_path) / "home/alice/imgs/sub/a.png"
    for f in (expected, gpu_copy):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
        for d in (f.parent, f.parent.parent, f.parent.parent.parent):
            assert stat.S_IMODE(d.stat().st_mode) == 0o755, d
    assert obj.checksum == irods_checksum(expected)[0]
    assert obj.checksum.startswith("sha2:")
    assert not list(expected.parent.glob(".c2d-*"))  # no temporary files left behind


def test_custom_vault_and_host(admin: LocalGrid, tmp_path: Path) -> None:
    r = admin.make_resource("remote_resc", host="gpu-node-1", vault_path=tmp_path / "elsewhere")
    assert r.host == "gpu-node-1" and r.vault_path == str((tmp_path / "elsewhere").resolve())
    assert (tmp_path / "elsewhere").is_dir()


def test_overwrite_keeps_earlier_hard_links(alice: LocalGrid, tmp_path: Path) -> None:
    """Staging hard-links replicas; overwriting must replace the file, never write into it."""
    obj = alice.put_file(write(tmp_path, b"old"), f"{HOME}/a.txt", "lts_resc")
    link = tmp_path / "staged"
    os.link(obj.replicas[0].physical_path, link)
    alice.put_file(write(tmp_path, b"new content"), f"{HOME}/a.txt", "lts_resc", overwrite=True)
    assert link.read_bytes() == b"old"
    assert alice.read_data_object(f"{HOME}/a.txt") == b"new content"


def test_put_file_onto_other_resource_makes_others_stale(alice: LocalGrid, tmp_path: Path) -> None:
    alice.put_file(write(tmp_path, b"v1"), f"{HOME}/a.txt", "lts_resc")
    obj = alice.put_file(write(tmp_path, b"v2 on gpu"), f"{HOME}/a.txt", "gpu_resc", overwrite=True)
    assert [(r.number, r.resource_name, r.good) for r in obj.replicas] == [(0, "lts_resc", False), (1, "gpu_resc", True)]
    assert obj.size == len(b"v2 on gpu")
    assert alice.read_data_object(obj.path) == b"v2 on gpu"  # reads a good replica, not replica 0
    alice.replicate(obj.path, "lts_resc")
    assert all(r.good for r in alice.get_data_object(obj.path).replicas)


def test_put_errors(alice: LocalGrid, tmp_path: Path) -> None:
    src = write(tmp_path, b"x")
    with pytest.raises(ObjectNotFoundError):
        alice.put_file(src, f"{HOME}/no/such/coll/a.txt", "lts_resc")  # like iput: parent must exist
    with pytest.raises(ObjectNotFoundError):
        alice.put_file(src, f"{HOME}/a.txt", "no_resc")
    with pytest.raises(GridError, match="not a readable file"):
        alice.put_file(tmp_path / "missing", f"{HOME}/a.txt", "lts_resc")
    alice.create_collection(f"{HOME}/c")
    with pytest.raises(AlreadyExistsError):
        alice.put_file(src, f"{HOME}/c", "lts_resc")
    alice.put_file(src, f"{HOME}/a.txt", "lts_resc")
    with pytest.raises(AlreadyExistsError):
        alice.create_collection(f"{HOME}/a.txt")


def test_path_validation_messages(alice: LocalGrid) -> None:
    with pytest.raises(GridError, match="absolute"):
        alice.collection_exists("home/alice")
    with pytest.raises(GridError, match="normalized"):
        alice.collection_exists(f"{HOME}/a/../b")
    with pytest.raises(GridError, match="outside the zone"):
        alice.collection_exists("/otherZone/home/alice")
    with pytest.raises(GridError, match="outside the zone"):
        alice.collection_exists(f"/{ZONE}x/home")


# --- ACLs ---------------------------------------------------------------------------------------------------
def test_acl_administration(admin: LocalGrid, alice: LocalGrid, tmp_path: Path) -> None:
    bob = admin.as_user("bob")
    alice.create_collection(f"{HOME}/shared/sub")
    alice.put_file(write(tmp_path, b"1"), f"{HOME}/shared/a.txt", "lts_resc")
    alice.put_file(write(tmp_path, b"2"), f"{HOME}/shared/sub/b.txt", "lts_resc")
    with pytest.raises(ObjectNotFoundError):
        bob.set_acl("own", "bob", f"{HOME}/shared")  # bob cannot even see it
    alice.set_acl("read", "bob", f"{HOME}/shared", recursive=True)
    assert bob.has_access(f"{HOME}/shared/sub/b.txt", AccessLevel.READ)
    assert [o.path for o in bob.list_data_objects(f"{HOME}/shared", recursive=True)] == [
        f"{HOME}/shared/a.txt", f"{HOME}/shared/sub/b.txt"
    ]
    with pytest.raises(AccessDeniedError):
        bob.set_acl("own", "bob", f"{HOME}/shared/a.txt")  # read is not own
    alice.set_acl("own", "bob", f"{HOME}/shared/a.txt")
    bob.set_acl("null", "alice", f"{HOME}/shared/a.txt")  # an owner may even lock out the other owner
    assert not alice.data_object_exists(f"{HOME}/shared/a.txt")
    assert admin.get_acl(f"{HOME}/shared/a.txt") == [AccessEntry("bob", AccessLevel.OWN)]
    alice.set_acl("null", "bob", f"{HOME}/shared", recursive=True)
    assert not bob.collection_exists(f"{HOME}/shared/sub")
    with pytest.raises(ObjectNotFoundError):
        alice.set_acl("read", "nobody", HOME)
    with pytest.raises(ValueError):
        alice.set_acl("superuser", "bob", HOME)


def test_public_grants_to_everyone(admin: LocalGrid, alice: LocalGrid, tmp_path: Path) -> None:
    admin.add_user("carol")
    alice.put_file(write(tmp_path, b"p"), f"{HOME}/pub.txt", "lts_resc")
    alice.set_acl("read", "public", f"{HOME}/pub.txt")
    carol = admin.as_user("carol")
    assert carol.read_data_object(f"{HOME}/pub.txt") == b"p"
    assert not carol.has_access(f"{HOME}/pub.txt", AccessLevel.MODIFY)


def test_paths_lacking_access_counts_invisible_and_missing(alice: LocalGrid, admin: LocalGrid, tmp_path: Path) -> None:
    bob = admin.as_user("bob")
    bob.put_file(write(tmp_path, b"b"), f"/{ZONE}/home/bob/b.txt", "lts_resc")
    alice.put_file(write(tmp_path, b"a"), f"{HOME}/a.txt", "lts_resc")
    paths = [f"/{ZONE}/home/bob/b.txt", f"{HOME}/missing", f"{HOME}/a.txt", HOME]
    assert alice.paths_lacking_access(paths, AccessLevel.READ) == [f"/{ZONE}/home/bob/b.txt", f"{HOME}/missing"]
    assert admin.paths_lacking_access(paths, AccessLevel.OWN) == [f"{HOME}/missing"]
    many = [f"{HOME}/a.txt"] * 1200  # more than one SQL chunk
    assert alice.paths_lacking_access(many, AccessLevel.OWN) == []


# --- metadata -----------------------------------------------------------------------------------------------
def test_batch_over_several_entities_is_one_transaction(alice: LocalGrid, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        alice.put_file(write(tmp_path, name.encode()), f"{HOME}/{name}.png", "lts_resc")
    alice.apply_metadata([add(f"{HOME}/c.png", "predictedclass", "1")])
    batch = [add(f"{HOME}/{n}.png", "predictedclass", "1") for n in ("a", "b", "c")]
    with pytest.raises(GridError, match="non-empty"):  # an invalid operation late in the batch undoes it all
        alice.apply_metadata([*batch, add(f"{HOME}/c.png", "predictedscore", "")])
    assert alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/a.png") == []
    assert alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/b.png") == []
    # As on a real server, re-adding an AVU an entity carries is no error (c keeps one value).
    alice.apply_metadata(batch)
    assert all(alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/{n}.png") == [AVU("predictedclass", "1", "")]
               for n in ("a", "b", "c"))
    alice.apply_metadata([MetadataOperation("remove", EntityType.DATA_OBJECT, f"{HOME}/a.png", AVU("predictedclass", "1"))])
    with pytest.raises(ObjectNotFoundError):  # a missing entity late in the batch undoes the rest too
        alice.apply_metadata([add(f"{HOME}/a.png", "k", "v"), add(f"{HOME}/zzz.png", "k", "v")])
    assert alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/a.png") == []
    with pytest.raises(GridError, match="non-empty"):
        alice.apply_metadata([add(f"{HOME}/a.png", "k", "")])
    alice.apply_metadata([])  # nothing to do


def test_units_distinguish_avus(alice: LocalGrid, tmp_path: Path) -> None:
    alice.put_file(write(tmp_path, b"a"), f"{HOME}/a.png", "lts_resc")
    alice.apply_metadata([add(f"{HOME}/a.png", "k", "v", "c2d:t1"), add(f"{HOME}/a.png", "k", "v", "c2d:t2")])
    with pytest.raises(NothingToRemoveError):  # k=v without units is not there
        alice.remove_avu(EntityType.DATA_OBJECT, f"{HOME}/a.png", AVU("k", "v"))
    alice.apply_metadata([MetadataOperation("remove", EntityType.DATA_OBJECT, f"{HOME}/a.png", AVU("k", "v"))])
    assert len(alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/a.png")) == 2  # a batch removes nothing either


def test_paginated_listing_with_avu_filter(alice: LocalGrid, tmp_path: Path) -> None:
    alice.create_collection(f"{HOME}/imgs/sub")
    src = write(tmp_path, b"x")
    paths = [f"{HOME}/imgs/{i:03d}.png" for i in range(25)] + [f"{HOME}/imgs/sub/{i:03d}.png" for i in range(5)]
    for p in paths:
        alice.put_file(src, p, "lts_resc")
    ops = [add(p, "predictedclass", str(i % 3)) for i, p in enumerate(paths)]
    ops += [add(p, "validated", "true") for p in paths[:4]]
    alice.apply_metadata(ops)
    page = alice.list_data_objects_page(f"{HOME}/imgs", recursive=True, offset=10, limit=7, avu_attributes=["predictedclass"])
    assert page.total == 30 and [o.path for o in page.items] == sorted(paths)[10:17]
    assert all(len(o.avus) == 1 and o.avus[0].attribute == "predictedclass" for o in page.items)
    assert all(o.replicas for o in page.items)
    twos = alice.list_data_objects_page(f"{HOME}/imgs", recursive=True, limit=100, avu_filter={"predictedclass": "2"})
    assert [o.path for o in twos.items] == sorted(p for i, p in enumerate(paths) if i % 3 == 2)
    both = alice.count_data_objects(f"{HOME}/imgs", True, {"predictedclass": "0", "validated": None})
    assert both == len([i for i in range(4) if i % 3 == 0])
    assert alice.count_data_objects(f"{HOME}/imgs") == 25
    assert alice.list_data_objects_page(f"{HOME}/imgs", offset=100).items == []
    with pytest.raises(GridError):
        alice.list_data_objects_page(f"{HOME}/imgs", offset=-1)


def _bulk_load(grid: LocalGrid, collection: str, count: int) -> None:
    """Catalog rows for ``count`` objects straight through SQL (files are not needed to list)."""
    grid.create_collection(collection)
    conn = sqlite3.connect(grid.catalog_path)
    with conn:
        coll_id = conn.execute("SELECT id FROM collections WHERE path = ?", (collection,)).fetchone()[0]
        user_id = conn.execute("SELECT id FROM users WHERE name = ?", (grid.user,)).fetchone()[0]
        resc_id = conn.execute("SELECT id FROM resources WHERE name = 'lts_resc'").fetchone()[0]
        now = time.time()
        start = (conn.execute("SELECT COALESCE(MAX(id), 0) FROM data_objects").fetchone()[0]) + 1
        ids = range(start, start + count)
        conn.executemany(
            "INSERT INTO data_objects (id, coll_id, name, path, owner_id, created, modified) VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((i, coll_id, f"{i:06d}.png", f"{collection}/{i:06d}.png", user_id, now, now) for i in ids),
        )
        conn.executemany("INSERT INTO access VALUES ('d', ?, ?, 1200)", ((i, user_id) for i in ids))
        conn.executemany(
            "INSERT INTO replicas VALUES (?, 0, ?, ?, 1, 'sha2:x', 1, ?)", ((i, resc_id, f"/v/{i}", now) for i in ids)
        )
        conn.executemany(
            "INSERT INTO avus (entity_type, entity_id, attribute, value, units) VALUES ('d', ?, 'predictedclass', ?, 'c2d:t')",
            ((i, str(i % 10)) for i in ids),
        )
    conn.close()


def _count_statements(grid: LocalGrid, action) -> int:
    statements: list[str] = []
    conn = grid._connect()
    conn.set_trace_callback(statements.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return len([s for s in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))])


def test_listing_query_count_does_not_grow_with_objects(alice: LocalGrid) -> None:
    _bulk_load(alice, f"{HOME}/small", 20)
    _bulk_load(alice, f"{HOME}/big", 2000)
    small = _count_statements(alice, lambda: alice.list_data_objects(f"{HOME}/small", avu_attributes=["predictedclass"]))
    big = _count_statements(alice, lambda: alice.list_data_objects(f"{HOME}/big", avu_attributes=["predictedclass"]))
    assert small == big <= 6
    assert len(alice.list_data_objects(f"{HOME}/big")) == 2000


def test_listing_100k_objects_is_fast(admin: LocalGrid, alice: LocalGrid) -> None:
    _bulk_load(alice, f"{HOME}/huge", 100_000)
    bob = admin.as_user("bob")
    t0 = time.perf_counter()
    objects = alice.list_data_objects(f"{HOME}/huge", recursive=True, avu_attributes=["predictedclass"])
    elapsed = time.perf_counter() - t0
    assert len(objects) == 100_000 and objects[0].avus[0].attribute == "predictedclass"
    assert elapsed < 15, f"listing 100,000 objects took {elapsed:.1f} s"
    t0 = time.perf_counter()
    page = alice.list_data_objects_page(f"{HOME}/huge", True, offset=99_950, limit=50, avu_filter={"predictedclass": "3"})
    assert page.total == 10_000 and page.items == []
    page = alice.list_data_objects_page(f"{HOME}/huge", True, offset=9_950, limit=50, avu_filter={"predictedclass": "3"})
    assert len(page.items) == 50
    assert time.perf_counter() - t0 < 5
    alice.set_acl("read", "bob", f"{HOME}/huge")
    assert bob.list_data_objects(f"{HOME}/huge") == []  # ACL filter on 100k rows: none readable


# --- concurrency --------------------------------------------------------------------------------------------
def _tag_worker(root: str, worker: int, paths: list[str], rounds: int) -> None:
    g = LocalGrid(root, user="alice")
    for r in range(rounds):
        ops = [add(p, f"w{worker}", str(r)) for p in paths]
        ops.append(add(HOME, "c2d::progress", f"{worker}:{r}", kind=EntityType.COLLECTION))
        g.apply_metadata(ops)
        g.set_avus(EntityType.COLLECTION, HOME, [AVU("c2d::state", f"{worker}-{r}")])


def _put_worker(root: str, worker: int, src: str, count: int) -> None:
    g = LocalGrid(root, user="alice")
    for i in range(count):
        g.put_file(Path(src), f"{HOME}/drop/w{worker}-{i}.bin", "lts_resc")


def test_concurrent_processes_and_threads_lose_no_writes(alice: LocalGrid, tmp_path: Path) -> None:
    src = write(tmp_path, b"data")
    paths = []
    for i in range(10):
        p = f"{HOME}/obj{i}.png"
        alice.put_file(src, p, "lts_resc")
        paths.append(p)
    alice.create_collection(f"{HOME}/drop")
    root = str(alice.root)
    rounds = 15
    ctx = multiprocessing.get_context("spawn")  # no inherited connections or locks
    procs = [ctx.Process(target=_tag_worker, args=(root, w, paths, rounds)) for w in range(3)]
    procs += [ctx.Process(target=_put_worker, args=(root, 10 + w, str(src), 10)) for w in range(2)]
    threads = [threading.Thread(target=_tag_worker, args=(root, 20 + w, paths, rounds)) for w in range(3)]
    threads.append(threading.Thread(target=_put_worker, args=(root, 30, str(src), 10)))
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert not any(t.is_alive() for t in threads)
    workers = [0, 1, 2, 20, 21, 22]
    for p in paths:
        avus = alice.get_avus(EntityType.DATA_OBJECT, p)
        assert sorted((a.attribute, a.value) for a in avus) == sorted(
            (f"w{w}", str(r)) for w in workers for r in range(rounds)
        )
    coll = alice.get_avus(EntityType.COLLECTION, HOME)
    assert len([a for a in coll if a.attribute == "c2d::progress"]) == len(workers) * rounds
    assert len([a for a in coll if a.attribute == "c2d::state"]) == 1  # set_avus never leaves two values
    assert len(alice.list_data_objects(f"{HOME}/drop")) == 30
    conn = sqlite3.connect(alice.catalog_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_handle_survives_fork(alice: LocalGrid, tmp_path: Path) -> None:
    """A handle opened before fork() (multiprocessing's default on Linux) works in the children."""
    alice.put_file(write(tmp_path, b"x"), f"{HOME}/x.png", "lts_resc")
    assert alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/x.png") == []  # parent connection is open
    ctx = multiprocessing.get_context("fork")

    def child(i: int) -> None:
        alice.apply_metadata([add(f"{HOME}/x.png", "child", str(i))])

    procs = [ctx.Process(target=child, args=(i,)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    alice.apply_metadata([add(f"{HOME}/x.png", "parent", "1")])  # the parent's connection still works
    assert sorted(a.value for a in alice.get_avus(EntityType.DATA_OBJECT, f"{HOME}/x.png")) == ["0", "1", "1", "2"]


def test_concurrent_replication_makes_one_replica(alice: LocalGrid, tmp_path: Path) -> None:
    obj = alice.put_file(write(tmp_path, os.urandom(200_000)), f"{HOME}/big.bin", "lts_resc")
    errors: list[BaseException] = []

    def replicate() -> None:
        try:
            alice.replicate(obj.path, "gpu_resc")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=replicate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    replicas = alice.get_data_object(obj.path).replicas
    assert [r.resource_name for r in replicas] == ["lts_resc", "gpu_resc"]
    gpu_dir = Path(replicas[1].physical_path).parent
    assert sorted(p.name for p in gpu_dir.iterdir()) == ["big.bin"]  # no temporary files left


def test_put_tree(alice: LocalGrid, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.png").write_bytes(b"a")
    (tree / "sub" / "b.png").write_bytes(b"b")
    made = alice.put_tree(tree, f"{HOME}/imgs", "lts_resc")
    assert [o.path for o in made] == [f"{HOME}/imgs/a.png", f"{HOME}/imgs/sub/b.png"]
    assert alice.list_collections(f"{HOME}/imgs") == [f"{HOME}/imgs/sub"]


def test_a_grid_made_before_version_2_hides_zone_and_home_once_opened(admin: LocalGrid, alice: LocalGrid) -> None:
    """Earlier grids let ``public`` read /zone and /zone/home; a stock zone does not."""
    conn = sqlite3.connect(admin.catalog_path)
    with conn:
        public = conn.execute("SELECT id FROM users WHERE name = 'public'").fetchone()[0]
        for path in (f"/{ZONE}", f"/{ZONE}/home"):
            coll = conn.execute("SELECT id FROM collections WHERE path = ?", (path,)).fetchone()[0]
            conn.execute("INSERT INTO access VALUES ('c', ?, ?, 1050)", (coll, public))
        conn.execute("UPDATE zone_info SET value = '1' WHERE key = 'schema_version'")
    conn.close()
    assert alice.collection_exists(f"/{ZONE}/home")  # the old grant, as an old grid has it
    reopened = LocalGrid(admin.root, "alice")
    assert not reopened.collection_exists(f"/{ZONE}/home") and not reopened.collection_exists(f"/{ZONE}")
    assert reopened.collection_exists(HOME)
    assert [e.user for e in admin.get_acl(f"/{ZONE}/home")] == ["rods"]
    conn = sqlite3.connect(admin.catalog_path)
    assert conn.execute("SELECT value FROM zone_info WHERE key = 'schema_version'").fetchone()[0] == "2"
    conn.close()
