"""``c2d demo``: a whole compute-to-data task on the embedded LocalGrid, from nothing.

It builds what an iRODS zone would have — a long-term storage resource holding real images, a
GPU-tagged compute resource, a researcher, a trained model stored as data objects — then runs
the same Template Method the iRODS rules run, and checks the predictions against the known
labels. Running it again reuses the grid and skips images already tagged (unless forced).
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import threading
from dataclasses import dataclass, field
from pathlib import Path

from compute_to_data import __version__
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.errors import NoEligibleInputsError
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.grid.local import LocalGrid
from compute_to_data.runners import create_runner, docker_available
from compute_to_data.runners.base import Runner

log = logging.getLogger(__name__)

ZONE = "tempZone"
USER = "alice"
HOME = f"/{ZONE}/home/{USER}"
INPUTS = f"{HOME}/digits"
RESULTS = f"{HOME}/c2d_results"
MODEL = f"{HOME}/models/digits.pt"
LABELS = f"{HOME}/models/labels.txt"
IMAGE = f"compute-to-data/classifier:{__version__}"


@dataclass
class DemoResult:
    directory: Path
    outcome: TaskOutcome | None
    runner: str
    runner_reason: str
    accuracy: float | None = None
    scored: int = 0
    model_accuracy: float | None = None
    train_seconds: float | None = None
    report_file: Path | None = None
    nothing_to_do: str | None = None
    setup_notes: list[str] = field(default_factory=list)


def demo_settings(directory: Path) -> Settings:
    """Settings as an administrator would write them for this demo zone."""
    document = {
        "allowed_images": [IMAGE],
        "default_image": IMAGE,
        "allowed_runners": ["docker", "inprocess"],
        "staging_directory": str(directory / "staging"),
        "default_timeout_seconds": 1800,
    }
    if os.getuid() == 0:
        # Containers never run as root; as root here, hand them an unprivileged uid.
        document["container_user"] = "65534:65534"
    path = directory / "settings.json"
    # whole or not at all: a second demo run in the same directory reads it while this one writes
    partial = path.with_name(f".settings.json.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(partial, path)
    return Settings.load(path)


def choose_demo_runner(requested: str, settings: Settings) -> tuple[Runner, str]:
    """Docker when a daemon answers and the classifier image is built; else in-process."""
    if requested != "auto":
        return create_runner(requested, settings), f"{requested} (asked for)"
    if not docker_available():
        return create_runner("inprocess", settings), "in-process: no Docker daemon answers here"
    try:
        import docker

        client = docker.from_env()
        try:
            client.images.get(IMAGE)
        finally:
            client.close()
    except Exception:
        return create_runner("inprocess", settings), f"in-process: Docker answers but {IMAGE} is not built (c2d image build)"
    return create_runner("docker", settings), f"docker: daemon answers and {IMAGE} is built"


def build_zone(directory: Path, images: int | None) -> tuple[LocalGrid, dict]:
    """Resources, user, images and model; returns (alice's grid handle, facts for the summary)."""
    from compute_to_data.demo import data, model

    admin = LocalGrid.create(directory / "grid", zone=ZONE)
    # As on most zones, the storage resource is not on the GPU host: the demo task asks for its
    # images to be replicated to gpu_resc (compute.replicate: always; by default they would be read
    # through iRODS into the staging directory, and a resource on the compute host itself would be
    # read in place).
    admin.make_resource("lts_resc", host="storage.demo.invalid")
    admin.make_resource("gpu_resc")
    admin.apply_metadata([
        MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ])
    admin.add_user(USER)
    alice = admin.as_user(USER)

    source = directory / "source"
    truth = data.write_images(source / "digits", images, split="test")
    (directory / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True))
    alice.put_tree(source / "digits", INPUTS, "lts_resc")

    built = model.build(source / "model")
    alice.create_collection(posixpath.dirname(MODEL))
    alice.put_file(Path(built["model"]), MODEL, "lts_resc")
    alice.put_file(Path(built["labels"]), LABELS, "lts_resc")
    facts = {"test_accuracy": built["test_accuracy"], "train_seconds": built["train_seconds"], "images": len(truth)}
    (directory / "model_facts.json").write_text(json.dumps(facts))
    return alice, facts


def task_document(force: bool, batch_size: int = 64) -> dict:
    return {
        "$comment": "Written by c2d demo: classify the demo digits on the GPU_COMPUTE resource.",
        "task_type": "image_classification",
        "inputs": {"collection": INPUTS, "pattern": "*.png", "recursive": True, "skip_tagged": not force},
        "output": {"collection": RESULTS},
        "compute": {"role": names.ROLE_GPU_COMPUTE, "replicate": names.REPLICATE_ALWAYS},
        "notebook": "classify_images",
        "parameters": {"model": MODEL, "labels": LABELS, "batch_size": batch_size, "top_k": 3},
        "timeout_seconds": 1800,
    }


def run_demo(
    directory: Path,
    *,
    force: bool = False,
    runner: str = "auto",
    images: int | None = None,
    context_hook=None,
) -> DemoResult:
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(directory)
    notes: list[str] = []
    if (directory / "grid" / "catalog.sqlite").exists():
        alice = LocalGrid(directory / "grid", user=USER)
        facts = json.loads((directory / "model_facts.json").read_text())
        notes.append(f"reusing the demo zone in {directory / 'grid'} ({facts['images']} images, model already trained)")
    else:
        alice, facts = build_zone(directory, images)
        notes.append(
            f"created a LocalGrid zone in {directory / 'grid'}: {facts['images']} digit images on lts_resc, "
            f"model trained in {facts['train_seconds']} s (test accuracy {facts['test_accuracy']:.1%})"
        )
    document = task_document(force)
    config_file = directory / "task_config.json"
    config_file.write_text(json.dumps(document, indent=2) + "\n")
    config = TaskConfig.from_document(document, source=str(config_file))

    chosen, reason = choose_demo_runner(runner, settings)
    context = TaskContext(grid=alice, settings=settings, runner=chosen)
    if context_hook is not None:
        context_hook(context)
    result = DemoResult(directory, None, chosen.name, reason, setup_notes=notes,
                        model_accuracy=facts.get("test_accuracy"), train_seconds=facts.get("train_seconds"))
    try:
        outcome = create_task(config, context).run()
    except NoEligibleInputsError as exc:
        result.nothing_to_do = str(exc)
        return result
    result.outcome = outcome
    if outcome.report_path:
        replica = alice.get_data_object(outcome.report_path).good_replica_on(outcome.compute_resource or "gpu_resc")
        result.report_file = Path(replica.physical_path) if replica else None
    if outcome.succeeded:
        from compute_to_data.demo.data import accuracy

        predictions = json.loads(alice.read_data_object(posixpath.join(outcome.collection, names.PREDICTIONS_JSON)))
        truth = json.loads((directory / "truth.json").read_text())
        result.accuracy, result.scored = accuracy(predictions, truth)
    return result
