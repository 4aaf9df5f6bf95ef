"""Factories for the grid contract suite (``tests/support/grid_contract.py``).

Each factory takes a fresh ``tmp_path`` and returns a :class:`GridSetup`: the Grid adapter under
test acting as ``alice`` plus an admin LocalGrid on the *same* catalog. Setup that an ordinary
user's port cannot do (resources, users, files owned by others, ACLs) goes through the admin
LocalGrid; everything under test goes through ``setup.grid`` (and ``setup.port_for(user)``)
only, so any adapter that can be backed by a LocalGrid catalog (the rule-engine adapter with a
fake callback, helper D) can join by adding a factory to :data:`FACTORIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.grid.base import Grid
from compute_to_data.grid.local import LocalGrid

ZONE = "tempZone"
STORAGE = "lts_resc"
COMPUTE = "gpu_resc"
CPU = "cpu_resc"
ALICE = "alice"
BOB = "bob"


@dataclass
class GridSetup:
    """What a contract test gets: the port as alice, and admin powers for arranging the world."""

    grid: Grid  # the adapter under test, acting as alice
    admin: LocalGrid  # rods on the same catalog; for setup and for checking the catalog directly
    port_for: Callable[[str], Grid]  # the adapter under test acting as another user
    tmp_path: Path
    name: str = "local"
    _files: count = field(default_factory=count)

    @property
    def zone(self) -> str:
        return self.admin.zone

    @property
    def home(self) -> str:
        return f"/{self.zone}/home/{ALICE}"

    def bob_home(self) -> str:
        return f"/{self.zone}/home/{BOB}"

    def put(self, logical: str, content: bytes, owner: str = ALICE, resource: str = STORAGE) -> None:
        """Create a data object as ``owner`` through LocalGrid (parents created as the owner)."""
        local = self.tmp_path / f"src-{next(self._files)}"
        local.write_bytes(content)
        handle = self.admin.as_user(owner)
        parent = logical.rsplit("/", 1)[0]
        handle.create_collection(parent)
        handle.put_file(local, logical, resource)

    def mkdir(self, logical: str, owner: str = ALICE) -> None:
        self.admin.as_user(owner).create_collection(logical)

    def chmod(self, level: str, user: str, path: str, recursive: bool = False) -> None:
        self.admin.set_acl(level, user, path, recursive=recursive)

    def tag(self, entity_type: EntityType, name: str, *avus: AVU) -> None:
        self.admin.apply_metadata([MetadataOperation("add", entity_type, name, a) for a in avus])


def populate(admin: LocalGrid) -> None:
    """Three resources with role AVUs and two users, as the demo sets them up."""
    for name in (STORAGE, COMPUTE, CPU):
        admin.make_resource(name)
    ops = [
        MetadataOperation("add", EntityType.RESOURCE, STORAGE, AVU("COMPUTE_RESOURCE_ROLE", "LONG_TERM_STORAGE")),
        MetadataOperation("add", EntityType.RESOURCE, COMPUTE, AVU("COMPUTE_RESOURCE_ROLE", "GPU_COMPUTE")),
        MetadataOperation("add", EntityType.RESOURCE, COMPUTE, AVU("COMPUTE_RESOURCE_GPUS", "1")),
        MetadataOperation("add", EntityType.RESOURCE, COMPUTE, AVU("COMPUTE_RESOURCE_MAX_TASKS", "2")),
        MetadataOperation("add", EntityType.RESOURCE, CPU, AVU("COMPUTE_RESOURCE_ROLE", "CPU_COMPUTE")),
    ]
    admin.apply_metadata(ops)
    admin.add_user(ALICE)
    admin.add_user(BOB)


def local_factory(tmp_path: Path) -> GridSetup:
    admin = LocalGrid.create(tmp_path / "grid", zone=ZONE)
    populate(admin)
    return GridSetup(
        grid=admin.as_user(ALICE),
        admin=admin,
        port_for=admin.as_user,
        tmp_path=tmp_path,
        name="local",
    )


def rule_engine_factory(tmp_path: Path) -> GridSetup:
    """RuleEngineGrid over a fake rule-engine callback (tests/fakes) backed by the same catalog."""
    from compute_to_data.grid.rule_engine import RuleEngineGrid
    from tests.fakes.irods_server import FakeIrodsServer

    admin = LocalGrid.create(tmp_path / "grid", zone=ZONE)
    populate(admin)
    server = FakeIrodsServer(admin.root)

    def port_for(user: str) -> Grid:
        return RuleEngineGrid(*server.session(user))

    setup = GridSetup(grid=port_for(ALICE), admin=admin, port_for=port_for, tmp_path=tmp_path, name="rule_engine")
    setup.server = server  # type: ignore[attr-defined]  # for tests that look at the calls made
    return setup


#: name -> factory(tmp_path) -> GridSetup.
FACTORIES: dict[str, Callable[[Path], GridSetup]] = {
    "local": local_factory,
    "rule_engine": rule_engine_factory,
}
