"""Faults on the fake rule-engine server: the rulebase (c2d_run_task as the delay server runs it,
c2d_status, c2d_resume) over the same catalog, the in-process runner with the notebook stand-in."""

from __future__ import annotations

import json
import time

import pytest

from compute_to_data import rules
from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from tests.fakes.irods_server import FakeIrodsServer
from tests.faults import fault_runner
from tests.faults.support import LEASE, FaultZone
from tests.support.engine_support import HOME, make_config

CONFIG = f"{HOME}/task_config.json"


def fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if ": " in line and not line.startswith("follow"))


@pytest.fixture
def server(fault_zone: FaultZone) -> FakeIrodsServer:
    server = FakeIrodsServer(fault_zone.root / "grid", host="irods-provider")
    server.load_rulebase(rules)
    local = fault_zone.root / "task_config.json"
    local.write_text(json.dumps(make_config(container={"runner": fault_runner.NAME}).document))
    fault_zone.alice.put_file(local, CONFIG, "lts_resc")
    return server


def submit(server: FakeIrodsServer) -> tuple[str, str]:
    run = server.irule("c2d_submit", CONFIG)
    assert run.ok, run.error
    server.delay_queue.clear()  # the driver process plays the delay server
    out = fields(run.stdout)
    return out["task_id"], out["collection"]


def status_within_two_leases(server: FakeIrodsServer, task_id: str, since: float) -> dict[str, str]:
    while True:
        run = server.irule("c2d_status", task_id)
        assert run.ok, run.error
        out = fields(run.stdout)
        if out["state"] in ("succeeded", "failed", "cancelled"):
            return out
        assert time.monotonic() - since < 2 * LEASE, f"c2d_status still says {out['state']}"
        time.sleep(0.05)


def resume_with_the_rules(server: FakeIrodsServer, zone: FaultZone, task_id: str) -> None:
    resumed = server.irule("c2d_resume", task_id)
    assert resumed.ok, resumed.error
    assert fields(resumed.stdout)["state"] == "queued" and fields(resumed.stdout)["resumed"] == "1"
    [delayed] = server.run_delay_queue()
    assert delayed.ok, delayed.error
    assert fields(delayed.stdout)["state"] == "succeeded", delayed.stdout
    zone.assert_complete(task_id)


@pytest.mark.parametrize("kill", ["progress:5", "part:2"], ids=["execute", "between-parts"])
def test_sigkill_of_the_delayed_run(fault_zone: FaultZone, server: FakeIrodsServer, kill: str) -> None:
    task_id, collection = submit(server)
    run = fault_zone.drive(collection, mode="rules", kill=kill)
    assert run.code == -9, run.log[-3000:]
    out = status_within_two_leases(server, task_id, run.ended_at)
    assert out["state"] == "failed" and out["error"].startswith("no sign of life from ")
    fault_zone.assert_nothing_left(task_id)
    resume_with_the_rules(server, fault_zone, task_id)


def test_an_irods_error_in_the_middle_of_tagging(fault_zone: FaultZone, server: FakeIrodsServer) -> None:
    """The 8th msiModAVUMetadata (the second image of the second part, its score) fails once."""
    task_id, collection = submit(server)
    run = fault_zone.drive(collection, mode="rules", env={"C2D_FAULT_IRODS": "msiModAVUMetadata:7"})
    assert run.code == 1, run.log[-3000:]
    record = fault_zone.record(collection)
    assert record.state == TaskState.FAILED and "SYS_INTERNAL_ERR" in record.get(names.A_ERROR), record.values
    fault_zone.assert_nothing_left(task_id)  # no half pair: the image's first AVU was taken back
    resume_with_the_rules(server, fault_zone, task_id)
