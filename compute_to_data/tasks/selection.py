"""Choosing the compute resource: the role a task asks for, then data locality, then name.

Moving the computation is cheap and moving terabytes of images is not, so among the resources
tagged with the requested ``COMPUTE_RESOURCE_ROLE`` the one already holding most of the input
bytes wins; ties go to the first name, so the choice is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import conventions as names
from ..errors import ResourceSelectionError
from ..grid.base import DataObject, Resource


def bytes_present(resource: Resource, inputs: Sequence[DataObject]) -> int:
    return sum(o.size for o in inputs if o.good_replica_on(resource.name) is not None)


def select_compute_resource(
    candidates: Sequence[Resource], inputs: Sequence[DataObject], role: str, requested: str | None = None
) -> Resource:
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
    return sorted(candidates, key=lambda r: (-bytes_present(r, inputs), r.name))[0]
