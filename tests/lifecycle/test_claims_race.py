"""Racing writers on the fake rule-engine server, which (like a real iRODS 5.0.2 zone) applies an
atomic metadata batch that removes a value that is no longer there: exactly one writer wins.

Each writer is a thread with its own rule-engine agent (its own ``callback``). A barrier holds
every writer between its read and its claim, so all of them read the same state and the same
claim token before any of them claims: the race the guard must settle happens every time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType
from compute_to_data.domain.conventions import SeriesState, TaskState
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.settings import Settings
from compute_to_data.grid.local import LocalGrid
from compute_to_data.grid.rule_engine import RuleEngineGrid
from compute_to_data.lifecycle.claims import ClaimedWriter
from compute_to_data.lifecycle.machine import TaskStateMachine
from compute_to_data.lifecycle.series import Series
from tests.fakes.irods_server import FakeIrodsServer
from tests.support.grid_factories import ALICE, ZONE, populate

HOME = f"/{ZONE}/home/{ALICE}"
WRITERS = 8
ROUNDS = 5


@pytest.fixture
def server(tmp_path: Path) -> FakeIrodsServer:
    admin = LocalGrid.create(tmp_path / "grid", zone=ZONE)
    populate(admin)
    return FakeIrodsServer(admin.root)


def machine_of(server: FakeIrodsServer) -> TaskStateMachine:
    """A writer: its own agent on the fake server, as each rule run has."""
    return TaskStateMachine(RuleEngineGrid(*server.session(ALICE)), Settings())


def new_task(server: FakeIrodsServer, name: str, state: TaskState = TaskState.RUNNING) -> str:
    machine = machine_of(server)
    collection = f"{HOME}/results/{name}"
    machine.grid.create_collection(collection)
    machine.create(collection, {names.A_TASK_ID: name})
    if state != TaskState.QUEUED:
        machine.transition(collection, TaskState.RUNNING, {names.A_STARTED: "2026-12-06T00:00:00Z"})
    if state not in (TaskState.QUEUED, TaskState.RUNNING):
        machine.transition(collection, state, {names.A_FINISHED: "2026-12-06T00:00:01Z"})
    return collection


def states(server: FakeIrodsServer, collection: str) -> list[str]:
    return [a.value for a in server.admin.get_avus(EntityType.COLLECTION, collection) if a.attribute == names.A_STATE]


def race(writers: list[Callable[[], object]], monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Run the writers at once, every one held between its first read and its first claim."""
    barrier = threading.Barrier(len(writers), timeout=30)
    real_claim = ClaimedWriter._claim
    held: set[int] = set()

    def claim_after_everyone_read(self: ClaimedWriter, collection: str, token: str, announcement: AVU) -> bool:
        me = threading.get_ident()
        if me not in held:
            held.add(me)
            barrier.wait()
        return real_claim(self, collection, token, announcement)

    monkeypatch.setattr(ClaimedWriter, "_claim", claim_after_everyone_read)
    results: list[object] = [None] * len(writers)

    def run(i: int) -> None:
        try:
            results[i] = writers[i]()
        except ComputeToDataError as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    monkeypatch.setattr(ClaimedWriter, "_claim", real_claim)
    return results


def test_racing_transitions_leave_exactly_one_state_every_time(server, monkeypatch) -> None:
    """A cancel, a finishing run, a failing run and a reaper, all having read ``running``."""
    targets = [TaskState.CANCELLED, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED] * (WRITERS // 4)
    for round_ in range(ROUNDS):
        collection = new_task(server, f"race-{round_}")
        writers = [
            (lambda to=to: machine_of(server).transition(collection, to, {names.A_ERROR: f"by {to.value}"}))
            for to in targets
        ]
        results = race(writers, monkeypatch)
        won = [r for r in results if not isinstance(r, Exception)]
        assert len(won) == 1, results
        [state] = states(server, collection)
        assert state == won[0].state.value  # type: ignore[attr-defined]
        refused = [r for r in results if isinstance(r, Exception)]
        assert all(f"is {state}" in str(r) for r in refused), refused  # each loser read again and was refused


def test_racing_resumes_queue_the_task_once(server, monkeypatch) -> None:
    from compute_to_data.service.tasks import TaskService

    for round_ in range(ROUNDS):
        collection = new_task(server, f"resume-{round_}", TaskState.FAILED)
        server.admin.as_user(ALICE).put_file(_config_file(server), f"{collection}/{names.TASK_CONFIG_FILE}", "lts_resc")
        writers = [(lambda: TaskService(RuleEngineGrid(*server.session(ALICE)), Settings()).resume(collection, "alice"))
                   for _ in range(WRITERS)]
        results = race(writers, monkeypatch)
        won = [r for r in results if not isinstance(r, Exception)]
        assert len(won) == 1, results
        assert states(server, collection) == [TaskState.QUEUED.value]
        values = {a.attribute: a.value for a in server.admin.get_avus(EntityType.COLLECTION, collection)}
        assert values[names.A_RESUMED] == "1"
        assert all("queued" in str(r) for r in results if isinstance(r, Exception)), results  # they say so truthfully


def test_cancel_and_finish_racing_many_times_never_leave_two_states(server, monkeypatch) -> None:
    for round_ in range(ROUNDS * 2):
        collection = new_task(server, f"mixed-{round_}")
        writers = []
        for i in range(WRITERS):
            to = TaskState.CANCELLED if i % 2 else TaskState.SUCCEEDED
            writers.append(lambda to=to: machine_of(server).transition(collection, to))
        race(writers, monkeypatch)
        assert len(states(server, collection)) == 1
        claims = [a for a in server.admin.get_avus(EntityType.COLLECTION, collection) if a.attribute == names.A_CLAIM]
        assert len(claims) == 1  # and a token for the next writer
        assert not [a for a in server.admin.get_avus(EntityType.COLLECTION, collection) if a.attribute == names.A_CLAIMING]


def test_one_summary_claim_wins(server, monkeypatch) -> None:
    """Runs ending the last shards at once each try to take the summary on: one does."""
    from compute_to_data.engine.summary import TaskSummary

    for round_ in range(ROUNDS):
        collection = new_task(server, f"summary-{round_}")
        server.admin.as_user(ALICE).apply_metadata([])
        machine_of(server).store.write(collection, {names.A_SUMMARY_RESOURCE: names.SUMMARY_PENDING})
        barrier = threading.Barrier(WRITERS, timeout=30)
        wins: list[bool] = []

        def take(i: int) -> None:
            machine = machine_of(server)
            record = machine.read(collection)
            resource = server.admin.get_resource("gpu_resc")
            summary = TaskSummary(machine, collection, None, resource, None, None)  # type: ignore[arg-type]
            barrier.wait()
            wins.append(summary._claim(record))

        threads = [threading.Thread(target=take, args=(i,)) for i in range(WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert wins.count(True) == 1, wins
        values = [a.value for a in server.admin.get_avus(EntityType.COLLECTION, collection)
                  if a.attribute == names.A_SUMMARY_RESOURCE]
        assert values == ["gpu_resc"]


def test_a_run_reading_between_anothers_summary_claim_and_its_record_does_not_claim(server) -> None:
    """The claim is two writes (remove ``pending``, add the resource): a run that reads the
    task between them sees no ``c2d::summary_resource`` at all. It used to take that for "no
    claim needed" and made a second summary (seen in the shared-shards test under load)."""
    from compute_to_data.engine.summary import TaskSummary

    collection = new_task(server, "summary-between")
    machine = machine_of(server)
    machine.store.write(collection, {names.A_SUMMARY_RESOURCE: names.SUMMARY_PENDING})
    server.admin.remove_avu(EntityType.COLLECTION, collection, AVU(names.A_SUMMARY_RESOURCE, names.SUMMARY_PENDING))
    between = machine.read(collection)  # the first run removed pending and has not added its resource yet
    late = TaskSummary(machine, collection, None, server.admin.get_resource("cpu_resc"), None, None)  # type: ignore[arg-type]
    assert late._claim(between) is False
    assert [a for a in server.admin.get_avus(EntityType.COLLECTION, collection) if a.attribute == names.A_SUMMARY_RESOURCE] == []


def test_one_series_step_takes_its_turn(server, monkeypatch) -> None:
    for round_ in range(ROUNDS):
        head = new_task(server, f"series-{round_}", TaskState.QUEUED)
        machine_of(server).store.write(head, {
            names.A_SERIES: f"series-{round_}", names.A_SERIES_STATE: SeriesState.ACTIVE.value,
            names.A_SERIES_NEXT_RUN: "2026-12-06T00:00:00Z",
        })
        writers = [
            (lambda i=i: Series(RuleEngineGrid(*server.session(ALICE)), Settings()).claim(
                head, "2026-12-06T00:00:00Z", f"2026-12-07T00:00:0{i}Z", "2026-12-06T00:00:00Z"))
            for i in range(WRITERS)
        ]
        results = race(writers, monkeypatch)
        assert results.count(True) == 1, results
        next_runs = [a.value for a in server.admin.get_avus(EntityType.COLLECTION, head)
                     if a.attribute == names.A_SERIES_NEXT_RUN]
        assert len(next_runs) == 1


def test_a_writer_that_died_between_claim_and_write_is_recovered_after_the_lease(server, monkeypatch) -> None:
    """Its claim removed the token; it announced itself; it wrote nothing. Within the lease the
    task keeps its (true) state and other writers wait; after it, the next writer goes on."""
    collection = new_task(server, "crashed")
    machine = machine_of(server)
    token = machine.read(collection).get(names.A_CLAIM)
    grid = machine.grid
    grid.apply_metadata([])
    grid.remove_avu(EntityType.COLLECTION, collection, AVU(names.A_CLAIM, token))  # claimed ...
    announced = f"{names.iso_utc()} dead"
    from compute_to_data.domain.catalog import MetadataOperation

    grid.apply_metadata([MetadataOperation("add", EntityType.COLLECTION, collection, AVU(names.A_CLAIMING, announced))])
    # ... and died. Within the lease: the state is still the truth, and a writer is told to retry.
    assert states(server, collection) == [TaskState.RUNNING.value]
    impatient = TaskStateMachine(RuleEngineGrid(*server.session(ALICE)), Settings(heartbeat_lease_seconds=60))
    impatient.writer.attempts = 2
    impatient.writer.sleep = lambda seconds: None
    with pytest.raises(ComputeToDataError, match="being changed by other processes"):
        impatient.transition(collection, TaskState.CANCELLED)
    # After the lease the announcement is stale: the next writer gives the task a token and wins.
    later = TaskStateMachine(RuleEngineGrid(*server.session(ALICE)), Settings(heartbeat_lease_seconds=0))
    later.transition(collection, TaskState.CANCELLED)
    assert states(server, collection) == [TaskState.CANCELLED.value]


def _config_file(server: FakeIrodsServer) -> Path:
    path = Path(server.admin.root) / "task_config.json"
    path.write_text('{"task_type": "image_classification"}')
    return path
