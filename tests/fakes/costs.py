"""What catalog calls cost on a real iRODS server, charged by the fake server when asked.

The fake server answers in microseconds what a real zone answers in milliseconds, which hides
exactly what limits large tasks: replication and tagging are bound by catalog transactions
(docs/irods-behaviour.md, ``F:replication_is_bound_by_catalog_transactions``, ``F:tagging_speed``).
With ``FakeIrodsServer(..., costs=CatalogCosts.measured())`` every microservice call waits the
time it took on the measured zone (iRODS 5.0.2, PostgreSQL, 2 cores), so a benchmark on the fake
measures what the design costs there. Off by default: tests never wait.

The server is modelled as ``capacity`` catalog workers: a call holds one for its cost. With two,
one agent replicates 13 objects/s and four agents together 26/s, as measured (25/s); tagging
with four agents 500 objects/s (measured about 400/s).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: seconds per call; "measured" where the zone gave a rate for that call, else estimated from
#: the measured rates of the operations it is part of.
MEASURED_SECONDS: dict[str, float] = {
    "msiDataObjRepl": 1 / 13,  # measured: 13 objects/s, one call each, from one rule
    "msiCollRepl": 1 / 15,  # measured: 15 objects/s for a 300-object collection; charged per object
    "msiModAVUMetadata": 0.002,  # measured: ~250 objects/s with two adds each (~4 ms per AVU pair)
    "msi_atomic_apply_metadata_operations": 1 / 54,  # measured: ~54 objects/s with one 2-AVU batch each
    "msiExecGenQuery": 0.004,  # estimated: "a few ms" per GenQuery page
    "msiGetMoreRows": 0.004,  # estimated: per further page
    "msiMakeGenQuery": 0.0,  # builds the query in the agent: no catalog call
    "msiCheckAccess": 0.003,  # estimated: one catalog lookup
    "msiDataObjCreate": 0.03,  # estimated with msiDataObjClose from iput -r: 14 files/s, ~70 ms a file
    "msiDataObjClose": 0.03,
    "msiDataObjWrite": 0.002,  # estimated: a write to the vault, no catalog transaction
    "msiDataObjOpen": 0.01,  # estimated
    "msiDataObjRead": 0.002,  # estimated
    "msiDataObjChksum": 0.01,  # estimated
    "msiCollCreate": 0.01,  # estimated
    "delayExec": 0.005,  # estimated: one row in the rule queue
}
#: catalog calls the measured server served at once (2 cores)
MEASURED_CAPACITY = 2


@dataclass
class CatalogCosts:
    """Seconds charged per call name (``units`` of it, e.g. objects of a collection call)."""

    seconds: Mapping[str, float] = field(default_factory=dict)
    capacity: int = MEASURED_CAPACITY
    #: multiply every cost (a benchmark run at 0.1 is ten times faster with the same ratios)
    scale: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    #: what was charged: seconds and calls per name
    charged: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._workers = threading.BoundedSemaphore(max(1, self.capacity))
        self._lock = threading.Lock()

    @classmethod
    def measured(cls, scale: float = 1.0, sleep: Callable[[float], None] = time.sleep, **overrides: float) -> "CatalogCosts":
        """The costs measured on the real zone, with ``overrides`` (call name -> seconds)."""
        return cls({**MEASURED_SECONDS, **overrides}, scale=scale, sleep=sleep)

    def charge(self, name: str, units: int = 1) -> float:
        """Hold a catalog worker for the cost of ``units`` of call ``name``; returns the seconds."""
        cost = self.seconds.get(name, 0.0) * units * self.scale
        with self._lock:
            self.charged[name] += cost
            self.calls[name] += 1
        if cost > 0:
            with self._workers:
                self.sleep(cost)
        return cost
