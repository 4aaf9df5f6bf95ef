"""Sharded tasks through the rules on a zone with three GPU resources on three hosts.

The fake server routes ``remoteExec`` and the delay server's rules to the named host, whose
rules know they are that host (their own settings, ``local_host_names``); the delay server runs
four rules at once, each in its own thread, so shards on different hosts run at the same time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.conventions import TaskState
from compute_to_data.engine.task import ComputeToDataTask
from compute_to_data.lifecycle.runlock import RunLock
from compute_to_data.lifecycle.shard_records import shard_records
from tests.support.engine_support import assert_no_half_pair, assert_tagged_once_by
from tests.support.rules_support import (
    CONFIG,
    GPU_HOSTS,
    IMAGES,
    RESULTS,
    Zone,
    build_multihost_zone,
    config_doc,
)

LEASE = 1.0


def fields(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines()
                if ": " in line and not line.startswith(("follow", "shard ")))


def images(subs: int, per_sub: int) -> dict[str, bytes]:
    return {f"site{s}/img_{i:04d}.png": str(i % 3).encode() for s in range(subs) for i in range(per_sub)}


def sharded_doc(shard_size: int, **compute: object) -> dict:
    return config_doc(inputs={"collection": IMAGES, "pattern": "*.png", "recursive": True},
                      compute={"shard_size": shard_size, **compute})


@pytest.fixture
def small_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    zone = build_multihost_zone(tmp_path, monkeypatch, images=images(3, 6), settings={
        "heartbeat_interval_seconds": 0.2, "heartbeat_lease_seconds": LEASE})
    zone.put_config(sharded_doc(6, spread=True))
    return zone


def submit(zone: Zone) -> tuple[str, str]:
    run = zone.irule("c2d_submit", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    return out["task_id"], out["collection"]


def test_a_spread_task_of_3000_images_runs_on_all_three_hosts_and_reports_all(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    zone = build_multihost_zone(tmp_path, monkeypatch, images=images(3, 1000))
    zone.put_config(sharded_doc(1000, spread=True))
    running: set[str] = set()
    together: list[int] = []
    lock = threading.Lock()

    def after_image(request, i):  # noqa: ANN001, ANN202 - who runs at the same time
        with lock:
            running.add(request.task_id)
            together.append(len(running))

    zone.runner.after_image = after_image
    run = zone.irule("c2d_submit", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    task_id, collection = out["task_id"], out["collection"]
    assert out["shards"] == "3" and out["inputs"] == "3000"
    assert len(zone.server.delay_queue) == 3  # one queued run per shard
    runs = zone.server.run_delay_queue(concurrency=4)
    assert all(r.ok for r in runs), [r.error for r in runs]
    record = zone.record(collection)
    assert record[names.A_STATE] == "succeeded", record
    assert record[names.A_PROGRESS] == "3000/3000" and record[names.A_SHARDS] == "3"
    shards = shard_records(zone.alice, collection)
    assert sorted(s.get(names.A_COMPUTE_RESOURCE) for s in shards) == sorted(GPU_HOSTS)
    # each shard's run (and its runner) was on its resource's host, and they overlapped
    assert sorted(set(zone.runner_hosts)) == sorted(GPU_HOSTS.values())
    assert max(together) >= 2
    for shard in shards:
        assert shard.get(names.A_RUN_HOST) == "localhost"  # the scripted runner's supervising host
        assert zone.alice.data_object_exists(f"{shard.collection}/report.html")
    # the whole task: every image tagged once with the task's units; one report, one predictions file
    assert_tagged_once_by(zone.alice, task_id, expect=3000)
    whole = json.loads(zone.alice.read_data_object(f"{collection}/predictions.json"))
    assert len(whole["images"]) == 3000 and len({e["file"] for e in whole["images"]}) == 3000
    report = zone.alice.read_data_object(f"{collection}/report.html").decode()
    for number in ("0001", "0002", "0003"):
        assert f'href="shards/{number}/report.html"' in report
    for host in GPU_HOSTS.values():
        assert host in report
    status = zone.irule("c2d_status", task_id)
    assert status.ok, status.error
    assert "shards: 3 shards: 3 succeeded" in status.stdout
    assert re.search(r"shard 0002/0003: succeeded, on gpu_resc\d?, images 1000/1000", status.stdout)


class Killed(Exception):
    """Stands for the agent of one shard dying (kill -9): nothing of it records anything."""


def test_a_killed_shard_alone_is_rerun_by_resume(small_zone: Zone, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = small_zone
    record_failure, settle = ComputeToDataTask.record_failure, ComputeToDataTask.settle_task

    def dies_silently(self: ComputeToDataTask, exc: BaseException, **run: Any) -> None:
        if isinstance(exc, Killed):
            self.killed = True  # type: ignore[attr-defined]
            return
        record_failure(self, exc, **run)

    monkeypatch.setattr(ComputeToDataTask, "record_failure", dies_silently)
    monkeypatch.setattr(ComputeToDataTask, "settle_task",
                        lambda self, shard: None if getattr(self, "killed", False) else settle(self, shard))
    kill = {"armed": True}

    def after_image(request, i):  # noqa: ANN001, ANN202
        if kill["armed"] and request.task_id.endswith("-0002") and i == 3:
            raise Killed("kill -9")

    zone.runner.after_image = after_image
    task_id, collection = submit(zone)
    zone.server.run_delay_queue(concurrency=4)
    shards = shard_records(zone.alice, collection)
    assert [s.state for s in shards] == [TaskState.SUCCEEDED, TaskState.RUNNING, TaskState.SUCCEEDED]
    assert zone.record(collection)[names.A_STATE] == "running"
    time.sleep(LEASE + 0.3)
    # c2d_status on the provider: the silent shard's host checks it, records it failed; the task follows
    status = zone.irule("c2d_status", task_id)
    assert status.ok, status.error
    out = fields(status.stdout)
    assert out["state"] == "failed" and "1 of 3 shards did not succeed" in out["error"], status.stdout
    assert "shard 0002 on gpu_resc2 failed: no sign of life from " in out["error"]
    assert ("gpu-host-b", "c2d_reap_here") in {(h, t.split("(")[0]) for h, t in zone.server.remote_calls}
    kill["armed"] = False
    before = len(zone.runner.requests)
    resumed = zone.irule("c2d_resume", task_id)
    assert resumed.ok, resumed.error
    assert fields(resumed.stdout)["shards_queued"] == "1" and len(zone.server.delay_queue) == 1
    runs = zone.server.run_delay_queue(concurrency=4)
    assert all(r.ok for r in runs), [r.error for r in runs]
    assert [r.task_id for r in zone.runner.requests[before:]] == [f"{task_id}-0002", f"{task_id}-summary"]
    assert zone.record(collection)[names.A_STATE] == "succeeded"
    assert_tagged_once_by(zone.alice, task_id, expect=18)
    assert_no_half_pair(zone.alice)


def test_cancel_stops_the_shards_on_every_host(small_zone: Zone) -> None:
    zone = small_zone
    task_id, collection = submit(zone)
    said: list[str] = []

    def after_image(request, i):  # noqa: ANN001, ANN202 - cancel while shard 0001 runs on its host
        if request.task_id.endswith("-0001") and i == 2 and not said:
            run = zone.irule("c2d_cancel", task_id)
            assert run.ok, run.error
            said.append(run.stdout)

    zone.runner.after_image = after_image
    zone.server.run_delay_queue(limit=1)
    assert zone.record(collection)[names.A_STATE] == "cancelled"
    assert re.search(r"shard 0001/0003: stop requested on gpu-host-\w", said[0]), said
    assert "shards: 3 shards: 3 cancelled" in said[0]
    assert [s.state for s in shard_records(zone.alice, collection)] == [TaskState.CANCELLED] * 3
    runs = zone.server.run_delay_queue(concurrency=4)  # the queued shards exit without running
    assert all(r.ok for r in runs) and len(zone.runner.requests) == 1
    assert_no_half_pair(zone.alice)


def test_c2d_run_runs_the_shards_here_and_the_delayed_runs_leave_them_alone(small_zone: Zone) -> None:
    """With no delay server polling meanwhile, the rule runs every shard itself; the delayed runs
    it queued too, started later, find their shards ended and leave them alone."""
    zone = small_zone
    run = zone.irule("c2d_run", CONFIG)
    assert run.ok, run.error
    out = fields(run.stdout)
    assert out["state"] == "succeeded" and out["shards"] == "3 shards: 3 succeeded"
    assert len(zone.server.delay_queue) == 3  # each shard was given to the delay server too
    assert [r.task_id.rsplit("-", 1)[1] for r in zone.runner.requests] == ["0001", "0002", "0003", "summary"]
    delayed = zone.server.run_delay_queue()
    assert len(delayed) == 3 and all(r.ok for r in delayed), [r.error for r in delayed]
    assert len(zone.runner.requests) == 4  # nothing ran twice
    assert zone.record(out["collection"])[names.A_STATE] == "succeeded"
    assert_tagged_once_by(zone.alice, out["task_id"], expect=18)


def test_c2d_run_shares_its_shards_with_the_delay_server(small_zone: Zone) -> None:
    """While the rule runs its first shard, the delay server starts the others: they run at the
    same time, each exactly once, and the rule returns once all and the summary have ended."""
    zone = small_zone
    others_started = threading.Event()
    delayed: list = []

    def after_image(request, i):  # noqa: ANN001, ANN202
        shard = request.task_id.rsplit("-", 1)[1]
        if shard != "0001" and shard != "summary":
            others_started.set()
        elif shard == "0001" and i == 1:  # the delay server polls now, while shard 0001 runs here
            poller = threading.Thread(target=lambda: delayed.extend(zone.server.run_delay_queue(concurrency=4)))
            poller.start()
            assert others_started.wait(30), "no other shard started while the first ran"
            delayed.append(poller)

    zone.runner.after_image = after_image
    run = zone.irule("c2d_run", CONFIG)
    assert run.ok, run.error
    delayed.pop(0).join(30)
    out = fields(run.stdout)
    assert out["state"] == "succeeded" and out["shards"] == "3 shards: 3 succeeded"
    assert all(r.ok for r in delayed), [r.error for r in delayed]
    ran = sorted(r.task_id.rsplit("-", 1)[1] for r in zone.runner.requests)
    assert ran == ["0001", "0002", "0003", "summary"]  # each once, and one summary
    assert_tagged_once_by(zone.alice, out["task_id"], expect=18)


def test_a_task_smaller_than_a_shard_is_one_run_as_today(small_zone: Zone) -> None:
    zone = small_zone
    zone.put_config(sharded_doc(18, spread=True))
    task_id, collection = submit(zone)
    [delayed] = zone.server.run_delay_queue()
    assert delayed.ok, delayed.error
    record = zone.record(collection)
    assert record[names.A_STATE] == "succeeded" and names.A_SHARDS not in record
    assert not zone.alice.collection_exists(f"{collection}/shards")
    assert zone.task_collections(RESULTS) == [collection]


def test_a_failed_summary_is_made_again_by_resume_on_the_last_shards_host(small_zone: Zone,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    zone = small_zone
    original = zone.runner._summarize
    broken = {"on": True}

    def summary(request, out):  # noqa: ANN001, ANN202
        if broken["on"]:
            raise RuntimeError("disk full")
        return original(request, out)

    monkeypatch.setattr(zone.runner, "_summarize", summary)
    task_id, collection = submit(zone)
    zone.server.run_delay_queue(concurrency=4)
    out = fields(zone.irule("c2d_status", task_id).stdout)
    assert out["state"] == "failed" and "summary report could not be made" in out["error"]
    broken["on"] = False
    resumed = zone.irule("c2d_resume", task_id)
    assert resumed.ok, resumed.error
    [queued] = zone.server.delay_queue  # nothing to run again but the summary
    hosts_before = len(zone.runner_hosts)
    [run] = zone.server.run_delay_queue()
    assert run.ok, run.error
    assert fields(run.stdout)["state"] == "succeeded"
    last = shard_records(zone.alice, collection)[-1].get(names.A_COMPUTE_RESOURCE)
    assert zone.runner_hosts[hosts_before:] == [GPU_HOSTS[last]]
    assert zone.record(collection)[names.A_SUMMARY_RESOURCE] == last


def test_a_series_run_larger_than_one_shard_runs_as_shards(small_zone: Zone, tmp_path: Path) -> None:
    zone = small_zone
    zone.put_config(sharded_doc(6, spread=True) | {"schedule": {"every": "1d"}})
    task_id, collection = submit(zone)
    assert len([e for e in zone.server.delay_queue if "c2d_run_task" in e.body]) == 3  # the first task's shards
    runs = zone.server.run_delay_queue(concurrency=4)  # the series' next step is not due yet
    assert all(r.ok for r in runs), [r.error for r in runs]
    assert zone.record(collection)[names.A_STATE] == "succeeded"
    folder = tmp_path / "new"
    folder.mkdir()
    for i in range(12):  # a new site: 12 images, two shards of 6
        (folder / f"{i}.png").write_bytes(str(i % 3).encode())
        zone.alice.create_collection(f"{IMAGES}/site9")
        zone.alice.put_file(folder / f"{i}.png", f"{IMAGES}/site9/{i}.png", "lts_resc")
    zone.server.advance(86400)
    runs = zone.server.run_delay_queue(concurrency=4)  # the step, then the new task's shards
    assert all(r.ok for r in runs), [r.error for r in runs]
    [second] = [c for c in zone.task_collections(RESULTS) if c != collection and "/shards/" not in c]
    record = zone.record(second)
    assert record[names.A_STATE] == "succeeded" and record[names.A_SHARDS] == "2" and record[names.A_SERIES] == task_id
    assert record[names.A_INPUTS] == "12"


def test_a_delayed_run_leaves_a_shard_whose_run_lock_another_run_holds(small_zone: Zone) -> None:
    """The rule of a c2d_run and the delay server race for a shard: the loser can find the run
    lock held while the winner has not recorded ``running`` yet (the shard still says
    ``queued``). The loser leaves it to the winner quietly; it used to fail the delayed rule."""
    zone = small_zone
    _, collection = submit(zone)
    first = shard_records(zone.alice, collection)[0]
    resource = zone.alice.get_resource(first.get(names.A_COMPUTE_RESOURCE))
    lock = RunLock(zone.root / f"locks-{resource.host}", first.run_key)  # that host's lock directory
    assert lock.acquire()  # the winner, past its lock, not yet running
    try:
        runs = zone.server.run_delay_queue(limit=1)
    finally:
        lock.release()
    assert len(runs) == 1 and runs[0].ok, runs[0].error
    assert zone.record(first.collection)[names.A_STATE] == "queued"  # the winner's to record
    assert zone.runner.requests == []
