"""The fake server's cost model (tests/fakes/costs.py) holds a call for what it cost on the zone.

The benchmarks compare designs by the time calls take on the fake; a call that lasts longer than
its measured cost (a sleep's overshoot, the fake's own handling added on top) makes a design
with many cheap calls look slower than the measured server would run it. These tests use a
scripted clock, so they check the arithmetic, never the machine's speed.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from tests.fakes.costs import CatalogCosts


class ScriptedClock:
    """A clock that only moves when told: by the fake's own work, and by sleeps that overshoot."""

    def __init__(self, overshoot: float = 0.0) -> None:
        self.now = 100.0
        self.overshoot = overshoot
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + self.overshoot

    def work(self, seconds: float) -> None:
        self.now += seconds


def costs_on(clock: ScriptedClock, **seconds: float) -> CatalogCosts:
    return CatalogCosts(dict(seconds), sleep=clock.sleep, clock=clock)


def test_calls_last_their_cost_on_average_when_sleeps_overshoot() -> None:
    """Each sleep overshoots by 0.15 ms (as this machine's do for a 2.5 ms sleep); what one
    overshot, the next leaves out, so 100 calls of 2.55 ms last 255 ms and one overshoot, not
    100 of them (270 ms)."""
    clock = ScriptedClock(overshoot=0.00015)
    costs = costs_on(clock, add=0.00255)
    started = clock()
    for _ in range(100):
        costs.serve("add", lambda: None)
    assert clock() - started == pytest.approx(100 * 0.00255 + 0.00015)
    assert costs.charged["add"] == pytest.approx(0.255)


def test_the_fakes_own_handling_of_a_call_is_part_of_its_cost() -> None:
    """What the fake spends on a call (its checks before it asks for a worker, its SQLite work
    after) is part of the measured cost, not added on top of it."""
    clock = ScriptedClock()
    costs = costs_on(clock, add=0.00255)
    started = clock()
    arrived = clock()
    clock.work(0.0005)  # the fake's argument checks and bookkeeping
    costs.serve("add", lambda: clock.work(0.001), started=arrived)  # its SQLite work
    assert clock() - started == pytest.approx(0.00255)
    assert clock.sleeps == [pytest.approx(0.00105)]


def test_a_call_slower_on_the_fake_than_its_cost_is_not_slowed_further() -> None:
    """... and what it lasted beyond its cost is counted, for a benchmark to say how much of its
    figure is the fake's own slowness rather than the zone's costs."""
    clock = ScriptedClock()
    costs = costs_on(clock, query=0.001, add=0.00255)
    costs.serve("query", lambda: clock.work(0.004))
    costs.serve("add", lambda: clock.work(0.001))  # within its cost: no overrun
    assert clock.sleeps == [pytest.approx(0.00155)]
    assert costs.overrun == {"query": pytest.approx(0.003)}


def test_charge_holds_a_worker_for_the_cost_of_each_unit() -> None:
    clock = ScriptedClock(overshoot=0.001)
    costs = costs_on(clock, repl=0.05)
    started = clock()
    costs.charge("repl", units=3)
    costs.charge("repl", units=1)
    assert costs.charged["repl"] == pytest.approx(0.2)
    assert clock() - started == pytest.approx(0.2 + 0.001)


def test_catalog_workers_go_to_whoever_asked_first() -> None:
    """Three agents tagging at once on one catalog worker take turns (the measured zone shared its
    cores about evenly): none takes the worker back while another waits for it, as a thread
    releasing a plain semaphore and asking again at once did."""
    costs = CatalogCosts({"add": 0.002}, capacity=1)
    order: list[int] = []
    started = threading.Barrier(3)

    def agent(number: int) -> None:
        started.wait()
        for _ in range(30):
            with costs._workers:
                order.append(number)
                time.sleep(0.002)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(order) == sorted([0, 1, 2] * 30)
    middle = order[3:-6]  # all three are asking by now, and none has finished
    longest = max(len(list(run)) for _, run in itertools.groupby(middle))
    assert longest <= 2, order
