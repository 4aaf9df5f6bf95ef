"""One place turns catalog rows into data objects (grid/rows.py), with one good-replica rule
that every adapter follows: status 1 (good) and 3 (good, read-locked) hold the current content;
0 (stale), 2 (intermediate) and 4 (write-locked) do not."""

from __future__ import annotations

import pytest

from compute_to_data.domain.catalog import Replica
from compute_to_data.grid import rows
from compute_to_data.grid.rule_engine import RuleEngineGrid
from tests.fakes.prc_fake import FakeCatalog, FReplica
from tests.grid.test_client_prc import grid_as

HOME = "/tempZone/home/alice"


@pytest.mark.parametrize(("status", "good"), [("0", False), ("1", True), ("2", False), ("3", True), ("4", False),
                                              (1, True), (3, True), (" 3", True), ("", False)])
def test_good_replica_statuses(status: object, good: bool) -> None:
    assert rows.is_good_status(status) is good


def test_size_and_checksum_come_from_the_first_good_replica_with_a_checksum() -> None:
    stale = Replica(0, "a", "/a", 10, "sha2:old", False)
    read_locked = Replica(1, "b", "/b", 20, "", True)
    good = Replica(2, "c", "/c", 20, "sha2:new", True)
    obj = rows.data_object("/z/x", [good, stale, read_locked])
    assert [r.number for r in obj.replicas] == [0, 1, 2]
    assert (obj.size, obj.checksum) == (20, "sha2:new")
    none_good = rows.data_object("/z/y", [Replica(1, "b", "/b", 5, "", False), Replica(0, "a", "/a", 4, "sha2:s", False)])
    assert (none_good.size, none_good.checksum) == (4, "sha2:s")


def test_the_rule_engine_adapter_counts_a_read_locked_replica_as_good() -> None:
    row = {"COLL_NAME": HOME, "DATA_NAME": "a.png", "DATA_REPL_NUM": "0", "DATA_RESC_NAME": "gpu_resc",
           "DATA_PATH": "/vault/a.png", "DATA_SIZE": "7", "DATA_CHECKSUM": "sha2:x", "DATA_REPL_STATUS": "3"}
    [obj] = RuleEngineGrid._build_objects([row], {})
    assert obj.replicas[0].good and obj.good_replica_on("gpu_resc") is not None


def test_the_python_irodsclient_adapter_counts_a_read_locked_replica_as_good() -> None:
    catalog = FakeCatalog()
    catalog.add_user("alice", "pw")
    catalog.add_resource("gpu_resc", "gpu.example.org", "/gpu", COMPUTE_RESOURCE_ROLE="GPU_COMPUTE")
    obj = catalog.mkobj(f"{HOME}/a.png", "alice", resource="gpu_resc")
    obj.replicas[0].status = "3"
    obj.replicas.append(FReplica(1, "lts_resc", "/lts/a.png", 1, "sha2:abc", status="2"))
    found = grid_as(catalog, "alice").get_data_object(f"{HOME}/a.png")
    assert [(r.number, r.good) for r in found.replicas] == [(0, True), (1, False)]
    assert found.good_replica_on("gpu_resc") is not None and found.good_replica_on("lts_resc") is None
