"""Shared fixtures' building blocks for engine tests: a small grid and a scripted runner.

The scripted runner stands in for the notebook where a test is about the engine's order,
bookkeeping and failure handling rather than about inference: it reads the staged inputs and
writes outputs that follow the container contract, so the engine cannot tell the difference.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from compute_to_data import conventions as names
from compute_to_data.grid.base import AVU, EntityType, MetadataOperation
from compute_to_data.grid.local import LocalGrid
from compute_to_data.runners.base import Runner, RunRequest, RunResult
from compute_to_data.settings import Settings
from compute_to_data.taskconfig import TaskConfig

ZONE = "tempZone"
HOME = f"/{ZONE}/home/alice"
IMAGES = f"{HOME}/images"
RESULTS = f"{HOME}/results"


@dataclass
class ScriptedRunner(Runner):
    """Classifies an image as the digit its content starts with; ``fail`` makes the run fail."""

    name = "scripted"
    fail: str | None = None
    requests: list[RunRequest] = field(default_factory=list)
    before_return: Callable[[RunRequest], None] | None = None

    def run(self, request: RunRequest) -> RunResult:
        self.requests.append(request)
        params = request.parameters
        out = Path(params["output_dir"])
        images = []
        files = sorted(p for p in Path(params["input_dir"]).rglob("*") if p.is_file())
        for i, path in enumerate(files, 1):
            rel = path.relative_to(params["input_dir"]).as_posix()
            entry = {"file": rel, "path": posixpath.join(params["logical_root"], rel)}
            content = path.read_bytes()[:1].decode(errors="replace")
            if content.isdigit():
                entry["classifications"] = [{"class": content, "score": 0.9}, {"class": "other", "score": 0.1}]
            else:
                entry["error"] = "cannot identify image file"
            images.append(entry)
            if request.progress:
                request.progress(i, len(files))
        (out / names.REPORT_FILE).write_text("<html>report</html>")
        status = "failed" if self.fail else "succeeded"
        if not self.fail:
            (out / names.PREDICTIONS_JSON).write_text(json.dumps({"task_id": request.task_id, "images": images}))
        if self.before_return:
            self.before_return(request)
        return RunResult(
            status=status, started="s", finished="f", duration_seconds=0.01,
            images_total=len(files), images_done=0 if self.fail else len(files),
            error=self.fail, log="scripted run\n", runner=self.name,
        )


def make_grid(
    root: Path,
    images: dict[str, bytes] | None = None,
    *,
    compute_host: str = "localhost",
    users: tuple[str, ...] = ("alice",),
) -> tuple[LocalGrid, LocalGrid]:
    """(admin, alice) on a grid with lts_resc (LONG_TERM_STORAGE) and gpu_resc (GPU_COMPUTE)."""
    admin = LocalGrid.create(root / "grid", zone=ZONE)
    admin.make_resource("lts_resc")
    admin.make_resource("gpu_resc", host=compute_host)
    admin.apply_metadata([
        MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ])
    for user in users:
        admin.add_user(user)
    alice = admin.as_user("alice")
    source = root / "src"
    source.mkdir()
    files = images if images is not None else {f"img_{i:02d}.png": str(i % 3).encode() for i in range(6)}
    for name, content in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(content)
    alice.put_tree(source, IMAGES, "lts_resc")
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "model.pt").write_bytes(b"torchscript")
    (model_dir / "labels.txt").write_text("0\n1\n2\n")
    alice.create_collection(f"{HOME}/models")
    alice.put_file(model_dir / "model.pt", f"{HOME}/models/model.pt", "lts_resc")
    alice.put_file(model_dir / "labels.txt", f"{HOME}/models/labels.txt", "lts_resc")
    return admin, alice


def make_config(**overrides: object) -> TaskConfig:
    doc: dict = {
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png"},
        "output": {"collection": RESULTS},
        "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
    }
    for key, value in overrides.items():
        section, _, field_name = key.partition("__")
        if field_name:
            doc.setdefault(section, {})[field_name] = value
        else:
            doc[section] = value
    return TaskConfig.from_document(doc)


def make_settings(root: Path, **overrides: object) -> Settings:
    values: dict = {
        "allowed_runners": ("scripted", "inprocess"),
        "staging_directory": str(root / "staging"),
    }
    values.update(overrides)
    return Settings(**values)


def vault_files(root: Path) -> list[str]:
    vaults = root / "grid" / "vaults"
    return sorted(str(p.relative_to(vaults)) for p in vaults.rglob("*") if p.is_file())


def same_inode(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.stat(a).st_ino == os.stat(b).st_ino
