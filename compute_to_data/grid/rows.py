"""The one place that turns catalog rows into data objects: one replica per row, one rule for
which replicas hold the object's current content, and one for its size and checksum.

iRODS replica statuses (``DATA_REPL_STATUS``): 0 stale, 1 good, 2 intermediate (being
written), 3 read-locked (good, being read), 4 write-locked (being replaced). A read-locked
replica holds the current content as much as a good one does; an intermediate or write-locked
one does not. An object's size and checksum are those of its first good replica (lowest
replica number; the first good one that has a checksum, for the checksum), else of its first
replica when none is good.
"""

from __future__ import annotations

from collections.abc import Iterable

from compute_to_data.domain.catalog import AVU, DataObject, Replica

#: replica statuses that hold the object's current content: 1 good, 3 good and read-locked
GOOD_REPLICA_STATUSES = frozenset({"1", "3"})


def is_good_status(status: object) -> bool:
    """Whether a ``DATA_REPL_STATUS`` value (a string from GenQuery, an int from a client) is good."""
    return str(status).strip() in GOOD_REPLICA_STATUSES


def replica(number: object, resource: object, physical_path: object, size: object, checksum: object,
            status: object) -> Replica:
    """One catalog row's replica (values as the catalog gives them: strings, ints or None)."""
    return Replica(int(str(number)), str(resource or ""), str(physical_path or ""), int(str(size or 0)),
                   str(checksum or ""), is_good_status(status))


def data_object(path: str, replicas: Iterable[Replica], avus: Iterable[AVU] = ()) -> DataObject:
    """An object from its replicas: sorted by number; size and checksum of the current content."""
    own = tuple(sorted(replicas, key=lambda r: r.number))
    current = [r for r in own if r.good] or list(own)
    size = current[0].size if current else 0
    checksum = next((r.checksum for r in current if r.checksum), "")
    return DataObject(path, size, checksum, own, tuple(avus))
