"""SIGTERM of a run's process at the moment its state changes: the state never lies.

A signal is turned into :class:`Terminated` between any two lines of the main thread. Arriving
just after ``queued -> running`` was written but before the run knew it (it had not returned
from the catalog write yet), the run tried to record its failure from ``queued``, was refused
("is running now, no longer queued") and left ``running`` with nothing behind it until the
lease ran out (seen in the fault suite: the dispatcher's signal test).
"""

from __future__ import annotations

import os
import signal

import pytest

from compute_to_data.domain.conventions import TaskState
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.termination import Terminated, deferred_termination, sigterm_as_exception
from compute_to_data.lifecycle.machine import TaskStateMachine
from compute_to_data.lifecycle.store import TaskStateStore
from tests.support.engine_support import ScriptedRunner, make_config, make_grid, make_settings


def test_sigterm_right_after_running_is_written_is_recorded_as_the_runs_end(tmp_path, monkeypatch) -> None:
    admin, alice = make_grid(tmp_path)
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=ScriptedRunner())
    submitted = create_task(make_config(), context).submit()
    real = TaskStateMachine.begin_run

    def begin_then_signalled(self, collection, values):  # noqa: ANN001, ANN202
        record = real(self, collection, values)  # written in the catalog...
        os.kill(os.getpid(), signal.SIGTERM)  # ...and the signal lands before the run hears back
        return record

    monkeypatch.setattr(TaskStateMachine, "begin_run", begin_then_signalled)
    with pytest.raises(Terminated), sigterm_as_exception():
        create_task(make_config(), context, task_id=submitted.task_id).run()
    record = TaskStateStore(alice).read(submitted.collection)
    assert record.state == TaskState.FAILED, record.values
    assert "terminated (SIGTERM)" in record.get("c2d::error")


def test_a_signal_inside_a_deferred_section_is_raised_when_it_ends() -> None:
    done: list[str] = []
    with pytest.raises(Terminated), sigterm_as_exception():
        with deferred_termination():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("the section went on")
        done.append("not reached")
    assert done == ["the section went on"]


def test_deferred_termination_outside_a_handler_changes_nothing() -> None:
    with deferred_termination():
        value = 1
    assert value == 1
