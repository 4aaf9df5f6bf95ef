"""A zone for rule tests: LocalGrid catalog + fake rule-engine server + the compute_to_data rulebase.

Rules are called exactly as the rule engine calls them (``server.irule("c2d_submit", path)``:
a list of unquoted strings, a callback, a rei), and what a user would see (stdout only on
success, the msiExit message and code otherwise) comes back in a :class:`RuleRun`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from compute_to_data import rules
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.registry import runners
from compute_to_data.domain.settings import Settings
from compute_to_data.grid import hosts
from compute_to_data.grid.local import LocalGrid
from compute_to_data.runners.base import RunRequest, RunResult
from tests.fakes.costs import CatalogCosts
from tests.fakes.irods_server import FakeIrodsServer, RuleRun
from tests.support.engine_support import STORAGE_HOST, ScriptedRunner, make_grid

ZONE = "tempZone"
HOME = f"/{ZONE}/home/alice"
IMAGES = f"{HOME}/images"
RESULTS = f"{HOME}/results"
CONFIG = f"{HOME}/task_config.json"
MODEL = f"{HOME}/models/model.pt"
LABELS = f"{HOME}/models/labels.txt"
PROVIDER = "irods-provider"


class TestRunner(ScriptedRunner):
    """The scripted runner under the registered name ``inprocess``; ``cancel`` stops a run."""

    __test__ = False  # not a pytest test class
    name = "inprocess"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.active: set[str] = set()
        self.stopped: set[str] = set()

    def run(self, request: RunRequest) -> RunResult:
        self.active.add(request.task_id)
        try:
            result = super().run(request)
        finally:
            self.active.discard(request.task_id)
        if request.task_id in self.stopped:
            result.status, result.error = "failed", "the container was stopped"
        return result

    def cancel(self, task_id: str) -> bool:
        if task_id not in self.active:
            return False
        self.stopped.add(task_id)
        return True


@dataclass
class Zone:
    root: Path
    admin: LocalGrid
    server: FakeIrodsServer
    runner: TestRunner
    settings_file: Path
    runner_hosts: list[str] = field(default_factory=list)

    @property
    def alice(self) -> LocalGrid:
        return self.admin.as_user("alice")

    def irule(self, rule: str, *args: str, user: str = "alice") -> RuleRun:
        return self.server.irule(rule, *args, user=user)

    def put_config(self, doc: dict[str, Any], path: str = CONFIG, user: str = "alice") -> str:
        local = self.root / f"config-{len(list(self.root.glob('config-*')))}.json"
        local.write_text(json.dumps(doc))
        grid = self.admin.as_user(user)
        grid.put_file(local, path, "lts_resc", overwrite=grid.data_object_exists(path))
        return path

    def record(self, collection: str) -> dict[str, str]:
        return {a.attribute: a.value for a in self.admin.get_avus(EntityType.COLLECTION, collection)}

    def task_collections(self, under: str = RESULTS) -> list[str]:
        return [c.path for c in self.admin.find_collections_with_avu(names.A_TASK_ID, under=under)]

    def predictions(self) -> dict[str, list[AVU]]:
        return {
            o.path: list(o.avus)
            for o in self.admin.list_data_objects(IMAGES, recursive=True, avu_attributes=["predictedclass", "predictedscore"])
        }


def config_doc(**sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png"},
        "output": {"collection": RESULTS},
        "parameters": {"model": MODEL, "labels": LABELS},
    }
    doc.update(sections)
    return doc


def build_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, compute_host: str = "localhost",
               images: dict[str, bytes] | None = None, settings: dict[str, Any] | None = None,
               storage_host: str = STORAGE_HOST, costs: CatalogCosts | None = None) -> Zone:
    admin, alice = make_grid(tmp_path, images, compute_host=compute_host, users=("alice", "bob"), storage_host=storage_host)

    doc = {
        "allowed_runners": ["inprocess"],
        "staging_directory": str(tmp_path / "staging"),
        "lock_directory": str(tmp_path / "locks"),
    }
    doc.update(settings or {})
    settings_file = tmp_path / "compute_to_data.json"
    settings_file.write_text(json.dumps(doc))
    monkeypatch.setenv(names.SETTINGS_ENV, str(settings_file))

    server = FakeIrodsServer(admin.root, host=PROVIDER, costs=costs)
    server.load_rulebase(rules)
    runner = TestRunner()
    zone = Zone(tmp_path, admin, server, runner, settings_file)

    def make_runner(settings: object = None) -> TestRunner:
        zone.runner_hosts.append(server.current_host())
        return runner

    make_runner.uses_container_paths = False  # type: ignore[attr-defined]
    monkeypatch.setitem(runners._items, "inprocess", make_runner)
    # "localhost" is loopback (local to every server); any other name is local only to itself.
    monkeypatch.setattr(hosts, "is_local_host", lambda host, extra=(): host == "localhost" or host == server.current_host())
    zone.put_config(config_doc())
    return zone


#: three GPU resources on three hosts (the multi-host zone); gpu_resc is the one build_zone makes
GPU_HOSTS = {"gpu_resc": "gpu-host-a", "gpu_resc2": "gpu-host-b", "gpu_resc3": "gpu-host-c"}


def build_multihost_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, images: dict[str, bytes],
                         settings: dict[str, Any] | None = None) -> Zone:
    """A zone whose three GPU resources live on three hosts, each a server of its own: its own
    settings (``local_host_names`` naming itself, its own staging and lock directories), and the
    rules ``remoteExec`` sends it (and the delay server's rules that land there) run as on it.
    Host identity is decided by the real code (grid/hosts.py: ``local_host_names``)."""
    real_is_local = hosts.is_local_host
    zone = build_zone(tmp_path, monkeypatch, compute_host=GPU_HOSTS["gpu_resc"], images=images, settings=settings)
    monkeypatch.setattr(hosts, "is_local_host", real_is_local)
    for name, host in GPU_HOSTS.items():
        if name != "gpu_resc":
            zone.admin.make_resource(name, host=host)
            zone.admin.apply_metadata([MetadataOperation("add", EntityType.RESOURCE, name,
                                                         AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE))])
    base = json.loads(zone.settings_file.read_text())
    per_host: dict[str, Settings] = {}
    for host in [PROVIDER, *GPU_HOSTS.values()]:
        doc = {**base, "local_host_names": [host], "staging_directory": str(tmp_path / f"staging-{host}"),
               "lock_directory": str(tmp_path / f"locks-{host}")}
        path = tmp_path / f"settings-{host}.json"
        path.write_text(json.dumps(doc))
        per_host[host] = Settings.from_document(doc, str(path))
    server = zone.server
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, path=None: per_host[server.current_host()]))
    return zone
