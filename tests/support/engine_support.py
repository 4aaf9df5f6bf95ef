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

from compute_to_data.contract.inputs import (
    MANIFEST_PARAMETER,
    NOT_STAGED,
    STATUS_PARAMETER,
    StagedInputs,
    StagingFailedError,
)
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.grid.local import LocalGrid
from compute_to_data.runners.base import Runner, RunRequest, RunResult

ZONE = "tempZone"
HOME = f"/{ZONE}/home/alice"
IMAGES = f"{HOME}/images"
RESULTS = f"{HOME}/results"
#: lts_resc's host in the test zones: a name no host resolves, so never the compute host
STORAGE_HOST = "storage-host.invalid"


@dataclass
class ScriptedRunner(Runner):
    """Classifies an image as the digit its content starts with; ``fail`` makes the run fail.

    With ``part_size``, it writes its predictions in parts as the real notebook does and calls
    the task's poll hook after every image (the runner's poll loop), so the engine tags parts
    while the "notebook" goes on; ``fail_after`` makes it fail once that many images are done.
    """

    name = "scripted"
    fail: str | None = None
    requests: list[RunRequest] = field(default_factory=list)
    before_return: Callable[[RunRequest], None] | None = None
    part_size: int = 0
    fail_after: int | None = None
    after_image: Callable[[RunRequest, int], None] | None = None
    classified: list[str] = field(default_factory=list)

    def run(self, request: RunRequest) -> RunResult:
        from compute_to_data.contract.parts import PartWriter, merged_with_previous

        self.requests.append(request)
        params = request.parameters
        out = Path(params["output_dir"])
        if request.notebook_name == names.SUMMARY_NOTEBOOK:
            return self._summarize(request, out)
        # the container contract: the manifest's inputs, each waited for (they may still arrive)
        staged = StagedInputs.from_parameters(params["input_dir"], params.get(MANIFEST_PARAMETER),
                                              params.get(STATUS_PARAMETER))
        files = staged.files
        if request.on_started:
            request.on_started("localhost", f"scripted:{len(self.requests)}")
        writer = PartWriter(out, task_id=request.task_id, total=len(files), part_size=self.part_size,
                            part_seconds=3600) if self.part_size else None
        images = []
        fail = self.fail
        for i, path in enumerate(files, 1):
            if self.fail_after is not None and i > self.fail_after:
                fail = fail or f"RuntimeError: failed after {self.fail_after} images"
                break
            rel = path.relative_to(params["input_dir"]).as_posix()
            entry = {"file": rel, "path": posixpath.join(params["logical_root"], rel)}
            try:
                present = staged.wait(path, on_wait=request.on_poll)
            except StagingFailedError as exc:
                fail = str(exc)
                break
            content = path.read_bytes()[:1].decode(errors="replace") if present else ""
            if not present:
                entry["error"] = NOT_STAGED
            elif content.isdigit():
                entry["classifications"] = [{"class": content, "score": 0.9}, {"class": "other", "score": 0.1}]
            else:
                entry["error"] = "cannot identify image file"
            images.append(entry)
            self.classified.append(rel)
            if writer is not None:
                writer.add([entry])
            if request.progress:
                request.progress(i, len(files))
            if self.after_image:
                self.after_image(request, i)
            if request.on_poll:
                request.on_poll()
        if writer is not None and not fail:
            writer.close()
        (out / names.REPORT_FILE).write_text("<html>report</html>")
        status = "failed" if fail else "succeeded"
        if not fail:
            images = merged_with_previous(images, params.get("previous_predictions"))
            (out / names.PREDICTIONS_JSON).write_text(json.dumps({"task_id": request.task_id, "images": images}))
        if self.before_return:
            self.before_return(request)
        return RunResult(
            status=status, started="s", finished="f", duration_seconds=0.01,
            images_total=len(files), images_done=0 if fail else len(files),
            error=fail, log="scripted run\n", runner=self.name,
        )

    def _summarize(self, request: RunRequest, out: Path) -> RunResult:
        if request.on_started:
            request.on_started("localhost", f"scripted-summary:{len(self.requests)}")
        return summarize_as_the_notebook_does(request, out)


def summarize_as_the_notebook_does(request: RunRequest, out: Path) -> RunResult:
    """The summary notebook's work without its kernel: the real streaming summary, a plain report."""
    from compute_to_data.notebook import summarize as summary

    params = request.parameters
    result = summary.summarize(Path(params["input_dir"]), out, Path(params["shards_file"]), params["task_id"])
    (out / names.REPORT_FILE).write_text(summary.text_report(result))
    return RunResult(status="succeeded", started="s", finished="f", duration_seconds=0.01,
                     images_total=result.images, images_done=result.images, log="scripted summary\n", runner="scripted")


def make_grid(
    root: Path,
    images: dict[str, bytes] | None = None,
    *,
    compute_host: str = "localhost",
    users: tuple[str, ...] = ("alice",),
    storage_host: str = STORAGE_HOST,
) -> tuple[LocalGrid, LocalGrid]:
    """(admin, alice) on a grid with lts_resc (LONG_TERM_STORAGE) and gpu_resc (GPU_COMPUTE).

    lts_resc is on a host of its own, as on a zone whose storage is not the GPU host: its
    replicas must be replicated to gpu_resc. With ``storage_host=compute_host`` the images lie on
    the compute host and a ``when_needed`` task stages them in place.
    """
    admin = LocalGrid.create(root / "grid", zone=ZONE)
    admin.make_resource("lts_resc", host=storage_host)
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


def predictions_by_image(grid: LocalGrid, collection: str = IMAGES) -> dict[str, list[AVU]]:
    """Every image and the prediction AVUs it carries."""
    return {
        o.path: sorted(o.avus, key=lambda a: a.attribute)
        for o in grid.list_data_objects(collection, recursive=True, avu_attributes=("predictedclass", "predictedscore"))
    }


def assert_tagged_once_by(grid: LocalGrid, task_id: str, collection: str = IMAGES, expect: int | None = None) -> None:
    """Each image carries exactly one complete pair, made by ``task_id`` (``expect``: how many)."""
    found = predictions_by_image(grid, collection)
    tagged = {p: avus for p, avus in found.items() if avus}
    for path, avus in tagged.items():
        assert [a.attribute for a in avus] == ["predictedclass", "predictedscore"], (path, avus)
        assert {a.units for a in avus} == {names.task_units(task_id)}, (path, avus)
    if expect is not None:
        assert len(tagged) == expect, sorted(set(found) - set(tagged))


def assert_no_half_pair(grid: LocalGrid, collection: str = IMAGES) -> None:
    for path, avus in predictions_by_image(grid, collection).items():
        assert [a.attribute for a in avus] in ([], ["predictedclass", "predictedscore"]), (path, avus)
        assert len({a.units for a in avus}) <= 1, (path, avus)


def vault_files(root: Path) -> list[str]:
    vaults = root / "grid" / "vaults"
    return sorted(str(p.relative_to(vaults)) for p in vaults.rglob("*") if p.is_file())


def same_inode(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.stat(a).st_ino == os.stat(b).st_ino
