"""Choosing the compute resource: the role a task asks for, then data locality, then load, then name.

Moving the computation is cheap and moving terabytes of images is not, so among the resources
tagged with the requested ``COMPUTE_RESOURCE_ROLE`` the one already holding most of the input
bytes wins. Among equally good ones, a resource with a free slot wins over a busy one (observed
on a real zone: a task waited minutes for ``gpu_resc`` while ``gpu_resc2``, same role, same
locality, stood idle), then the less loaded for its capacity; the last tie goes to the first
name, so the choice is reproducible. Shards are placed by :mod:`.sharding` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import DataObject, Resource
from compute_to_data.domain.errors import ObjectNotFoundError, ResourceSelectionError
from compute_to_data.engine.planning import capacity, tie_key
from compute_to_data.grid.base import Grid


def require_existing(grid: Grid, field: str, wanted: Sequence[str], tagged: Sequence[Resource], role: str) -> None:
    """A resource the task names (``field``) that does not exist is a typo, not a missing tag:
    say so, naming the field, before any hint to tag it (one lookup per name not tagged)."""
    known = {r.name for r in tagged}
    for name in wanted:
        if name in known:
            continue
        try:
            grid.get_resource(name)
        except ObjectNotFoundError:
            with_role = ", ".join(sorted(known)) or "none"
            raise ResourceSelectionError(
                f"{field}: no resource named {name!r} (resources with {names.ROLE_ATTRIBUTE}={role}: {with_role}); "
                "ilsresc lists the zone's resources"
            ) from None


def bytes_present(resource: Resource, inputs: Sequence[DataObject]) -> int:
    return sum(o.size for o in inputs if o.good_replica_on(resource.name) is not None)


def select_compute_resource(
    candidates: Sequence[Resource], inputs: Sequence[DataObject], role: str, requested: str | None = None,
    load: Mapping[str, int] | None = None, default_max_tasks: int = 1,
) -> Resource:
    """``requested`` if it carries the role; else most input bytes, a free slot, less load, name.

    ``load``: tasks and shards queued or running on each resource (None: not considered)."""
    if not candidates:
        raise ResourceSelectionError(
            f"no resource carries {names.ROLE_ATTRIBUTE}={role}; an iRODS administrator can tag one with: "
            f"imeta add -R <resource> {names.ROLE_ATTRIBUTE} {role}"
        )
    if requested is not None:
        for resource in candidates:
            if resource.name == requested:
                return resource
        tagged = ", ".join(r.name for r in candidates)
        raise ResourceSelectionError(
            f"resource {requested!r} does not carry {names.ROLE_ATTRIBUTE}={role} "
            f"(resources with that role: {tagged}); an administrator can tag it with: "
            f"imeta add -R {requested} {names.ROLE_ATTRIBUTE} {role}"
        )
    busy = load or {}
    return sorted(candidates, key=lambda r: (
        -bytes_present(r, inputs), *tie_key(r, busy, capacity(r, default_max_tasks)), r.name))[0]


def restrict_to(candidates: Sequence[Resource], wanted: Sequence[str], role: str) -> list[Resource]:
    """The resources a task names (``compute.resources``), each of which must carry the role."""
    by_name = {r.name: r for r in candidates}
    missing = [name for name in wanted if name not in by_name]
    if missing:
        tagged = ", ".join(sorted(by_name)) or "none"
        raise ResourceSelectionError(
            f"resource(s) {', '.join(repr(m) for m in missing)} do not carry {names.ROLE_ATTRIBUTE}={role} "
            f"(resources with that role: {tagged}); an administrator can tag one with: "
            f"imeta add -R {missing[0]} {names.ROLE_ATTRIBUTE} {role}"
        )
    return [by_name[name] for name in wanted]
