"""Compare-and-swap on a collection's bookkeeping AVUs that holds on a real iRODS server.

A real server has no conditional metadata write: an atomic metadata batch that removes a value
the collection does not carry *succeeds* and applies the rest of the batch, so two writers who
both read ``c2d::state=running`` and each send "remove running, add X" both succeed and the task
ends with two states (docs/irods-behaviour.md). What the server does refuse is removing one AVU
that is not there (``msiModAVUMetadata ... rm``: CAT_SUCCESS_BUT_WITH_NO_INFO), so of two writers
removing the same AVU exactly one succeeds. That is the claim this module builds on:

* every guarded collection carries one **token**, ``c2d::claim`` (a fresh random value each time);
* a writer reads the collection, decides what to write from what it read, and **claims** by
  removing the token it read (:meth:`GridPort.remove_avu`). The loser's removal fails: it reads
  again and decides again (the writer that won may have made its change pointless);
* the winner writes its change together with a **new token** in one atomic batch.

A process that dies between its claim and its write leaves the collection with its old values
(still the truth: nothing changed) but without a token. So before claiming, a writer announces
itself with a ``c2d::claiming`` value (its time and a random id); a collection with no token and
no announcement younger than the lease was left by a writer that died (or predates tokens): the
next writer gives it a token again (a value derived from what it read, so racing writers add the
same one, which the server keeps once) and claims as usual. A collection with no token and a
recent announcement is being changed right now: the writer waits a moment and reads again. As
for heartbeats, a writer is assumed never to take longer than a lease between claim and write.

Standard library only: this runs inside the iRODS server.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.errors import NothingToRemoveError, TaskBusyError
from compute_to_data.domain.records import TaskRecord
from compute_to_data.grid.base import Grid
from compute_to_data.lifecycle.store import TaskStateStore

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a decision: the operations to write (the token's are added), and what to return once written;
#: or None to write nothing and return None (there is nothing left to do).
Decision = tuple[Sequence[MetadataOperation], T] | None


def new_token() -> str:
    """A token value: unique, and says when it was written (for people reading ``imeta ls``)."""
    return f"{names.iso_utc()} {secrets.token_hex(6)}"


def token_operations(collection: str) -> list[MetadataOperation]:
    """The token a collection created now starts with (added in the same batch as its values)."""
    return [MetadataOperation("add", EntityType.COLLECTION, collection, AVU(names.A_CLAIM, new_token()))]


def _announced_at(value: str) -> datetime | None:
    return names.parse_iso_utc(value.partition(" ")[0])


class ClaimedWriter:
    """Writes decided from a fresh read, of which exactly one of several racing writers lands."""

    def __init__(self, grid: Grid, lease_seconds: float, *, attempts: int = 20, pause_seconds: float = 0.05,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.grid = grid
        self.store = TaskStateStore(grid)
        self.lease_seconds = lease_seconds
        self.attempts = attempts
        self.pause_seconds = pause_seconds
        self.sleep = sleep

    def write(self, collection: str, decide: Callable[[TaskRecord], Decision[T]]) -> T | None:
        """Read the collection, ``decide`` what to write, claim, write: again from a fresh read
        each time another writer was first. ``decide`` may raise to refuse (nothing is written)."""
        for attempt in range(self.attempts):
            record = self.store.read(collection)
            decision = decide(record)
            if decision is None:
                return None
            operations, result = decision
            token = record.get(names.A_CLAIM) or self._token_again(record)
            if token is None:  # someone is between their claim and their write: let them finish
                self.sleep(self.pause_seconds * (attempt + 1))
                continue
            announcement = AVU(names.A_CLAIMING, new_token())
            if not self._claim(collection, token, announcement):
                self.sleep(self.pause_seconds * min(attempt + 1, 4) * secrets.SystemRandom().random())
                continue
            finished = [MetadataOperation("remove", EntityType.COLLECTION, collection, a)
                        for a in self._announcements(record, stale_only=True)]
            finished.append(MetadataOperation("remove", EntityType.COLLECTION, collection, announcement))
            finished.append(MetadataOperation("add", EntityType.COLLECTION, collection, AVU(names.A_CLAIM, new_token())))
            self.grid.apply_metadata([*operations, *finished])
            return result
        raise TaskBusyError(
            f"{collection} is being changed by other processes right now (tried {self.attempts} times); "
            "try again in a moment"
        )

    def _claim(self, collection: str, token: str, announcement: AVU) -> bool:
        """Announce, then remove the token we read: True if ours was the removal that worked."""
        self.grid.apply_metadata([MetadataOperation("add", EntityType.COLLECTION, collection, announcement)])
        try:
            self.grid.remove_avu(EntityType.COLLECTION, collection, AVU(names.A_CLAIM, token))
        except NothingToRemoveError:
            log.debug("%s: another writer claimed it first; reading it again", collection)
            self.grid.apply_metadata([MetadataOperation("remove", EntityType.COLLECTION, collection, announcement)])
            return False
        return True

    def _announcements(self, record: TaskRecord, *, stale_only: bool) -> list[AVU]:
        now = names.utc_now()
        found = []
        for value in record.all_values(names.A_CLAIMING):
            moment = _announced_at(value)
            stale = moment is None or (now - moment).total_seconds() > self.lease_seconds
            if stale or not stale_only:
                found.append(AVU(names.A_CLAIMING, value))
        return found

    def _token_again(self, record: TaskRecord) -> str | None:
        """A collection without a token: None while a writer announced itself within the lease;
        else a token derived from what everybody reads now, added (racing writers add the same)."""
        announcements = self._announcements(record, stale_only=False)
        recent = [a for a in announcements if a not in self._announcements(record, stale_only=True)]
        if recent:
            return None
        seen = "\n".join(sorted(f"{k}={v}" for k, v in record.values.items()))
        token = "recovered " + hashlib.sha256(seen.encode()).hexdigest()[:16]
        log.info("%s has no claim token (its last writer died between claim and write, or it predates "
                 "tokens): giving it one", record.collection)
        self.grid.apply_metadata([MetadataOperation("add", EntityType.COLLECTION, record.collection, AVU(names.A_CLAIM, token))])
        return token
