"""What catalog calls cost on a real iRODS server, charged by the fake server when asked.

The fake server answers in microseconds what a real zone answers in milliseconds, which hides
exactly what limits large tasks: replication and tagging are bound by catalog transactions
(docs/irods-behaviour.md, ``F:replication_is_bound_by_catalog_transactions``, ``F:tagging_speed``).
With ``FakeIrodsServer(..., costs=CatalogCosts.measured())`` every microservice call waits the
time it took on the measured zone (iRODS 5.0.2, PostgreSQL, 2 cores), so a benchmark on the fake
measures what the design costs there. Off by default: tests never wait.

The server is modelled as ``capacity`` catalog workers: a call holds one for its cost. With two,
one agent replicates 12.6 objects/s and four agents together 25/s, as measured (25/s); tagging
with two adds per object, four agents together 390 objects/s (measured about 400/s).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

#: seconds per call; "measured" where the zone gave a rate for that call, else derived from the
#: measured rates of the operations it is part of, or estimated. A name with a word after it
#: (``msiModAVUMetadata add``) is charged for that operation of the call (:func:`charge_name`).
#: The second real-zone run (iRODS 5.0.2, PostgreSQL 15 with fsync on, 2 cores), per object from
#: one rule: open + read to end of file + close of a small object 13.5 ms; msiDataObjRepl 79 ms;
#: two msiModAVUMetadata add 5.1 ms, two set 13.9 ms; one atomic batch of two adds 24.7 ms; a
#: GenQuery for the earlier pair + an atomic batch replacing it 35 ms.
MEASURED_SECONDS: dict[str, float] = {
    "msiDataObjRepl": 0.079,  # measured: 12.6 objects/s, one call each, from one rule
    "msiCollRepl": 1 / 15,  # measured: 15 objects/s for a 300-object collection; charged per object
    "msiModAVUMetadata add": 0.0051 / 2,  # measured: two adds per object 5.1 ms (196 objects/s)
    "msiModAVUMetadata set": 0.0139 / 2,  # measured: two sets per object 13.9 ms (72 objects/s)
    # not timed; the server's source: an rm is one access check, one DELETE and a commit, an add the
    # check, a lookup and one or two INSERTs: charged as an add, an upper bound
    "msiModAVUMetadata rm": 0.0051 / 2,
    "msi_atomic_apply_metadata_operations": 0.0247,  # measured: one batch of two adds 24.7 ms (40/s)
    "msiExecGenQuery": 0.0103,  # derived: GenQuery + atomic replace 35 ms, minus the batch 24.7 ms
    "msiGetMoreRows": 0.004,  # estimated: per further page
    "msiMakeGenQuery": 0.0,  # builds the query in the agent: no catalog call
    "msiCheckAccess": 0.003,  # estimated: one catalog lookup
    "msiDataObjCreate": 0.03,  # estimated with msiDataObjClose from iput -r: 14 files/s, ~70 ms a file
    "msiDataObjClose write": 0.03,  # closing a written object registers its replica (as above)
    "msiDataObjWrite": 0.002,  # estimated: a write to the vault, no catalog transaction
    # measured together: open + read to end of file (a data read, then None) + close = 13.5 ms
    # (74 objects/s); split by estimate: the open does the catalog lookups
    "msiDataObjOpen": 0.0095,
    "msiDataObjRead": 0.001,
    "msiDataObjClose read": 0.002,
    "msiDataObjChksum": 0.01,  # estimated
    "msiCollCreate": 0.01,  # estimated
    "delayExec": 0.005,  # estimated: one row in the rule queue
}
#: what a small object's read path costs (open, two reads: the data and the end of file, close)
READ_PATH_SECONDS = (MEASURED_SECONDS["msiDataObjOpen"] + 2 * MEASURED_SECONDS["msiDataObjRead"]
                     + MEASURED_SECONDS["msiDataObjClose read"])
#: catalog calls the measured server served at once (2 cores)
MEASURED_CAPACITY = 2

#: The script a user writes instead of a task, as measured on the same zone (python-irodsclient,
#: 4 threads, 2,000 small PNGs, each fetched, classified locally and tagged with one atomic batch):
#: fetching took 28.4 s in all (70 objects/s) and tagging 38.9 s (51 objects/s), 68.0 s with the
#: 0.7 s of inference. A client's call spends time outside the catalog too (the network round
#: trip, the agent's handling of the request, the client library): per image and thread,
#: 4 x 28.4 s / 2,000 = 56.8 ms to fetch, of which the read path's catalog work is 13.5 ms, and
#: 4 x 38.9 s / 2,000 = 77.8 ms to tag, of which the batch is 24.7 ms. A model of the script waits
#: the difference outside the catalog's workers: with the same capacity the product meets, it then
#: fetches and tags at the measured rates (without it, four threads would fetch at twice the rate
#: the zone gave them).
SCRIPT_MEASURED = {"images": 2000, "threads": 4, "fetch_seconds": 28.4, "tag_seconds": 38.9, "total_seconds": 68.0}
#: seconds a client's call waits outside the catalog, per image and thread (see above). ``lookup``
#: (a GenQuery for an image's earlier pair) was not measured from the client: one request, costed
#: as one of the three requests (open, read, close) of a fetch.
CLIENT_OUTSIDE_CATALOG_SECONDS: dict[str, float] = {
    "fetch": 4 * 28.4 / 2000 - READ_PATH_SECONDS,
    "tag": 4 * 38.9 / 2000 - MEASURED_SECONDS["msi_atomic_apply_metadata_operations"],
    "lookup": (4 * 28.4 / 2000 - READ_PATH_SECONDS) / 3,
}


class FairWorkers:
    """``n`` catalog workers handed out in the order they were asked for.

    The measured zone shared its two cores among the agents about evenly (four rules tagging at
    once each finished 75 objects in 0.60-0.85 s). A plain semaphore does not: a thread that
    releases a worker and asks again at once takes it back before a woken waiter runs, so of
    four shards tagging at once one starved (at 20,000 images it ended 10-16 s after the others),
    which no server scheduler would do."""

    def __init__(self, n: int) -> None:
        self._free = n
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    def __enter__(self) -> "FairWorkers":
        me = object()
        with self._changed:
            self._queue.append(me)
            while self._queue[0] is not me or self._free == 0:
                self._changed.wait()
            self._queue.popleft()
            self._free -= 1
            self._changed.notify_all()  # the next in line may find a worker free too
        return self

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()


@dataclass
class CatalogCosts:
    """Seconds charged per call name (``units`` of it, e.g. objects of a collection call)."""

    seconds: Mapping[str, float] = field(default_factory=dict)
    capacity: int = MEASURED_CAPACITY
    #: multiply every cost (a benchmark run at 0.1 is ten times faster with the same ratios)
    scale: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    #: the clock a call's own time and the sleeps are measured by
    clock: Callable[[], float] = time.perf_counter
    #: what was charged: seconds and calls per name
    charged: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    #: seconds calls lasted beyond their cost, per name: the fake's own handling took longer than
    #: the call cost the zone (a benchmark's figure that much above what the zone would give)
    overrun: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._workers = FairWorkers(max(1, self.capacity))
        self._lock = threading.Lock()
        self._overslept = threading.local()

    @classmethod
    def measured(cls, scale: float = 1.0, sleep: Callable[[float], None] = time.sleep, **overrides: float) -> "CatalogCosts":
        """The costs measured on the real zone, with ``overrides`` (call name -> seconds)."""
        return cls({**MEASURED_SECONDS, **overrides}, scale=scale, sleep=sleep)

    def charge(self, name: str, units: int = 1) -> float:
        """Hold a catalog worker for the cost of ``units`` of call ``name``; returns the seconds.

        ``name`` may name an operation of a call (``msiModAVUMetadata add``); without a cost of
        its own it costs what the call's bare name costs."""
        cost = self.seconds.get(name, self.seconds.get(name.partition(" ")[0], 0.0)) * units * self.scale
        with self._lock:
            self.charged[name] += cost
            self.calls[name] += 1
        if cost > 0:
            with self._workers:
                self._hold(cost)
        return cost


    def serve(self, name: str, work: Callable[[], T], started: float | None = None) -> T:
        """Do a call's ``work`` (the fake's own doing of it) holding a catalog worker for the
        call's measured cost: the call lasts what it lasted on the zone, the fake's own time
        included rather than added on top (what the fake spends in SQLite and Python is part of
        what the measured server spent, not more of it). ``started``: when the call reached the
        fake (``clock``), so that the fake's own handling of it before it got here (argument
        checks, bookkeeping) is part of the call's time too; a call that waited for a worker
        counts from when it got one."""
        cost = self.seconds.get(name, self.seconds.get(name.partition(" ")[0], 0.0)) * self.scale
        with self._lock:
            self.charged[name] += cost
            self.calls[name] += 1
        if cost <= 0:
            return work()
        asked = self.clock()
        handled = asked - started if started is not None else 0.0  # the fake's own time before it asked
        with self._workers:
            began = self.clock() - handled  # waiting for a worker is not part of the call's cost
            try:
                return work()
            finally:
                left = cost - (self.clock() - began)
                if left > 0:
                    self._hold(left)
                else:
                    with self._lock:
                        self.overrun[name] -= left

    def _hold(self, seconds: float) -> None:
        """Sleep ``seconds`` as near as the clock allows. A sleep overshoots (by a tenth of a
        millisecond and more on a busy machine: about 6 % of a 2.5 ms ``add``); what one sleep
        overshot, the thread's next one leaves out, so that calls last their cost on average
        rather than cost plus the scheduler's slack, which the measured server did not add."""
        owed = getattr(self._overslept, "seconds", 0.0)
        target = seconds - owed
        if target <= 0:
            self._overslept.seconds = owed - seconds
            return
        before = self.clock()
        self.sleep(target)
        self._overslept.seconds = max(0.0, (self.clock() - before) - target)


def charge_name(name: str, args: tuple) -> str:
    """The name a call is charged under: ``msiModAVUMetadata`` by its operation (``add``, ``set``,
    ``rm`` cost differently), every other call by its own name."""
    if name == "msiModAVUMetadata" and len(args) > 2:
        return f"{name} {args[2]}"
    return name
