"""Where a task's inputs come from, and the per-task working directory on the compute host.

Inputs appear at their paths relative to the input collection as hard links to the replicas'
physical files: no copy, no change of ownership or mode of vault files, and only this task's
inputs are visible to the container (never the whole vault). A copy is made only when the
staging area is on another filesystem than the vault, and the log says so.

Which replica an input is linked from is planned first (:func:`plan_staging`): its replica on
the compute resource when it has one; else, with ``compute.replicate: when_needed`` (the
default), a good replica this host can read where it lies — on a resource whose host is this
host, or in a vault the settings declare visible here (``shared_vaults``) — so the data that is
already there is never replicated. The rest is read through iRODS into the staging directory
(*streamed*, :mod:`.streaming`): on a real zone reading a small object costs a sixth of
replicating it (13.5 ms against 79 ms), and nothing is registered that would outlive the task.
``compute.replicate: always`` replicates it instead (:mod:`.replication`), for sites that want
the copy on the compute resource's disks; ``stream`` streams every input, in place or not, for
sites that want no hard links into their vaults.

Errors name the logical paths a researcher knows; vault and staging paths (the administrator's
business) go to the server log only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import DataObject, Replica, Resource
from compute_to_data.domain.errors import ComputeToDataError, StagingError
from compute_to_data.domain.settings import Settings
from compute_to_data.grid import hosts
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)

#: where a staged object comes from: its replica on the compute resource, or one read in place
FROM_RESOURCE = "resource"
IN_PLACE = "in_place"
#: what the summary calls objects read through iRODS into the staging directory
STREAMED = "streamed"


class Locality:
    """Which replicas the compute host can read where they lie.

    The run executes on the compute resource's host, so a replica is readable in place when its
    resource's host is this host (``hosts.is_local_host`` of its ``RESC_LOC``: names are resolved,
    never compared as strings), or when the settings declare that resource's vault visible on the
    compute host (``shared_vaults``: at its own vault path, or where the declaration mounts it).
    Either way the file must be there with the size the catalog records; a declaration that does
    not hold is said once (notes, server log) and the object is replicated instead.
    """

    def __init__(self, grid: Grid, settings: Settings, compute: Resource) -> None:
        self.grid = grid
        self.settings = settings
        self.compute = compute
        self._resources: dict[str, Resource | None] = {compute.name: compute}
        self._why: dict[str, str | None] = {}
        self.notes: list[str] = []
        self._noted: set[str] = set()

    def _is_this_host(self, host: str) -> bool:
        return hosts.is_local_host(host, self.settings.local_host_names)

    def _resource(self, name: str) -> Resource | None:
        if name not in self._resources:
            try:
                self._resources[name] = self.grid.get_resource(name)
            except ComputeToDataError as exc:  # a replica on a resource the caller cannot see: not ours to read
                log.info("resource %s of a replica is unknown here (%s); not staging from it", name, exc)
                self._resources[name] = None
        return self._resources[name]

    def why(self, resource_name: str) -> str | None:
        """``"this host"`` / ``"shared vault"`` when replicas on that resource are readable here."""
        if resource_name not in self._why:
            resource = self._resource(resource_name)
            why = None
            if resource is not None and resource.name != self.compute.name:
                shared = self.settings.shared_vaults.get(resource.name)
                if self._is_this_host(resource.host):
                    why = "this host"
                elif shared is not None and shared.visible_on(self.compute.host, self._is_this_host):
                    why = "shared vault"
            self._why[resource_name] = why
        return self._why[resource_name]

    def path_for(self, replica: Replica) -> str | None:
        """Where this host reads ``replica``, or None (another host, or a declaration that fails)."""
        why = self.why(replica.resource_name)
        if why is None:
            return None
        resource = self._resources[replica.resource_name]
        assert resource is not None
        path: str | None = replica.physical_path
        shared = self.settings.shared_vaults.get(resource.name)
        if why == "shared vault" and shared is not None:
            path = shared.local_path(resource.vault_path, replica.physical_path)
        try:
            found = os.stat(path) if path else None
        except OSError:
            found = None
        if found is None or not os.path.isfile(path or "") or found.st_size != replica.size:
            self._note(resource.name, why, path)
            return None
        return path

    def _note(self, resource: str, why: str, path: str | None) -> None:
        if resource in self._noted:
            return
        self._noted.add(resource)
        declared = "its host is this host" if why == "this host" else "the settings declare its vault visible here (shared_vaults)"
        note = (
            f"replicas on {resource} cannot be read in place although {declared}: a file is missing or has another "
            "size than the catalog says; reading those inputs through iRODS instead (or replicating them, with "
            "compute.replicate: always)"
        )
        log.warning("%s (first: %s)", note, path)
        self.notes.append(note)


@dataclass(frozen=True)
class Placement:
    """One object to stage: the physical file it is linked from, and which replica that is."""

    obj: DataObject
    path: str
    source: str  # FROM_RESOURCE | IN_PLACE
    resource: str


@dataclass
class StagingPlan:
    placements: dict[str, Placement] = field(default_factory=dict)
    to_replicate: list[DataObject] = field(default_factory=list)
    #: read through iRODS into the staging directory, nothing registered
    to_stream: list[DataObject] = field(default_factory=list)

    def count(self, source: str) -> tuple[int, int]:
        """(objects, bytes) staged from ``source``."""
        chosen = [p for p in self.placements.values() if p.source == source]
        return len(chosen), sum(p.obj.size for p in chosen)


def plan_staging(objects: Iterable[DataObject], compute: str, policy: str, locality: Locality) -> StagingPlan:
    """Where each object is staged from: its good replica on ``compute``; else (``when_needed``)
    a good replica this host reads in place (lowest replica number first), else it is streamed;
    with ``always`` what is not on ``compute`` is replicated; with ``stream`` everything is
    streamed."""
    if policy not in names.REPLICATE_POLICIES:
        raise StagingError(f"compute.replicate must be one of {', '.join(names.REPLICATE_POLICIES)}, not {policy!r}")
    plan = StagingPlan()
    seen: set[str] = set()
    for obj in objects:
        if obj.path in seen:
            continue
        seen.add(obj.path)
        if policy == names.REPLICATE_STREAM:
            plan.to_stream.append(obj)
            continue
        replica = obj.good_replica_on(compute)
        if replica is not None:
            plan.placements[obj.path] = Placement(obj, replica.physical_path, FROM_RESOURCE, compute)
            continue
        if policy == names.REPLICATE_WHEN_NEEDED:
            found = None
            for candidate in sorted((r for r in obj.replicas if r.good), key=lambda r: r.number):
                path = locality.path_for(candidate)
                if path is not None:
                    found = Placement(obj, path, IN_PLACE, candidate.resource_name)
                    break
            if found is not None:
                plan.placements[obj.path] = found
                continue
            plan.to_stream.append(obj)
            continue
        plan.to_replicate.append(obj)
    return plan


@dataclass
class StagingSummary:
    """What ``c2d::staging`` records about one run's staging (objects: the images, the model and
    the labels): the policy, where they came from, what was replicated and how."""

    replicate: str
    #: already on the compute resource before this run
    on_resource: int = 0
    #: read where they lie (this host, or a declared shared vault), no replication
    in_place: int = 0
    in_place_bytes: int = 0
    #: replicated to the compute resource by this run (and its agents)
    replicated: int = 0
    replicated_bytes: int = 0
    #: agents that replicated at once (1: the run alone), msiCollRepl calls, chunks the run
    #: took over (an agent failed, stalled or had not started), objects replicated again at the end
    agents: int = 0
    collections: int = 0
    taken_over: int = 0
    agent_failures: int = 0
    retried: int = 0
    #: how they reached the staging directory
    linked: int = 0
    copied: int = 0
    copied_bytes: int = 0
    #: read through iRODS into the staging directory (nothing registered), by how many readers
    #: at once, and how many of them were checked against the catalog's checksum
    streamed: int = 0
    streamed_bytes: int = 0
    readers: int = 0
    checksums_checked: int = 0
    #: the inputs were streamed while the notebook ran (it started on the first ones)
    pipelined: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
