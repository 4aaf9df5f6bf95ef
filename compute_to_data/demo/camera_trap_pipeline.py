"""Camera traps end to end, on the embedded LocalGrid: what the observatory's zone does, in small.

1. Photos with EXIF (date taken, the site's GPS position, the camera) are uploaded into
   ``camera_traps/<site>/``; the ingest enrichment (the same code the ``acPostProcForPut`` hook
   runs on a zone) puts their header into AVUs (``exif::datetime``, ``exif::gps_latitude``...).
2. A **detector** task (a ``torch.export`` archive) tags every frame with ``detectedclass``
   (``animal`` or ``empty``) and makes the thumbnails (``<site>/thumbnails/<name>``).
3. A **classifier** task runs ``after`` it over the detected frames only
   (``inputs.where: detectedclass = animal``) and tags ``predictedclass`` (the species).
4. The report browser shows the chain, the predictions, and each photo's date and position.

The frames are made here: a sky-and-grass background with sensor noise, and in about half of
them an animal (an ellipse in the species' coat colour). Both models are small networks *built*
(not trained) here, so they are exact on such frames: the detector measures how much of the
frame has a coat colour, the classifier compares the mean colour of those pixels with each
species'. Both are exported with ``torch.export`` (``.pt2``) and their ``c2d_meta.json``.
Imports torch, numpy and Pillow: a demo, never server code.

Command line: ``python -m compute_to_data.demo.camera_trap_pipeline OUT_DIR [--frames 24]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import posixpath
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import ingest
from compute_to_data.engine.context import TaskContext, TaskOutcome
from compute_to_data.grid.base import Grid
from compute_to_data.grid.local import LocalGrid
from compute_to_data.runners import create_runner
from compute_to_data.service.tasks import TaskService

log = logging.getLogger(__name__)

ZONE = "tempZone"
USER = "alice"
HOME = f"/{ZONE}/home/{USER}"
TRAPS = f"{HOME}/camera_traps"
RESULTS = f"{HOME}/c2d_results"
MODELS = f"{HOME}/models"
DETECTOR, DETECTOR_LABELS = f"{MODELS}/detector.pt2", f"{MODELS}/detector_labels.txt"
SPECIES_MODEL, SPECIES_LABELS = f"{MODELS}/species.pt2", f"{MODELS}/species_labels.txt"
EMPTY, ANIMAL = "empty", "animal"
DETECTOR_CLASSES = [EMPTY, ANIMAL]
#: coat colours (RGB) of the species the demo's cameras see
SPECIES = {"red fox": (205, 95, 35), "wild boar": (120, 75, 55), "roe deer": (175, 125, 75)}
#: sites: (latitude, longitude, altitude in metres)
SITES = {"col-du-lautaret": (45.0353, 6.4047, 2058.0), "vallon-de-la-rochette": (45.1172, 6.3169, 1712.0)}
FRAME_SIZE = (320, 180)
MODEL_INPUT = 96


# --- frames with EXIF ----------------------------------------------------------------------------
def frame(rng: np.random.Generator, species: str | None, size: tuple[int, int] = FRAME_SIZE) -> Image.Image:
    """Sky over grass with sensor noise; with ``species``, an animal in its coat colour."""
    width, height = size
    horizon = int(height * rng.uniform(0.3, 0.5))
    pixels = np.empty((height, width, 3), dtype=np.float32)
    pixels[:horizon] = (120, 160, 215)
    pixels[horizon:] = (60, 125, 50)
    image = Image.fromarray(np.clip(pixels + rng.normal(0, 10, pixels.shape), 0, 255).astype(np.uint8))
    if species is not None:
        draw = ImageDraw.Draw(image)
        w, h = int(width * rng.uniform(0.22, 0.32)), int(height * rng.uniform(0.25, 0.35))
        x, y = int(rng.uniform(0, width - w)), int(rng.uniform(horizon - h / 2, height - h))
        draw.ellipse((x, y, x + w, y + h), fill=SPECIES[species])
    return image


def exif_of(site: str, taken: datetime, camera: tuple[str, str] = ("Reconyx", "HyperFire 2")) -> Image.Exif:
    """The EXIF a camera trap writes: when (local time and offset), where (GPS), which camera."""
    latitude, longitude, altitude = SITES[site]
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = camera
    exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    exif.get_ifd(0x8769)[0x9011] = "+02:00"

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        degrees, minutes = int(value), int(value * 60) % 60
        return float(degrees), float(minutes), round((value * 3600) % 60, 2)

    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = ("N" if latitude >= 0 else "S"), dms(latitude)
    gps[3], gps[4] = ("E" if longitude >= 0 else "W"), dms(longitude)
    gps[5], gps[6] = b"\x00", altitude
    return exif


def write_frames(directory: Path, count: int, *, seed: int = 18) -> dict[str, str]:
    """``count`` JPEG frames with EXIF under ``<site>/IMG_NNNN.JPG``; {relative path: truth}
    where truth is a species or ``empty`` (about half are empty, as on real cameras)."""
    rng = np.random.default_rng(seed)
    truth: dict[str, str] = {}
    start = datetime(2026, 6, 1, 5, 30)
    species = sorted(SPECIES)
    for i in range(count):
        site = sorted(SITES)[i % len(SITES)]
        what = species[int(rng.integers(len(species)))] if rng.random() < 0.5 else None
        relative = f"{site}/IMG_{i:04d}.JPG"
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        taken = start + timedelta(days=i // 6, hours=int(rng.integers(0, 14)), minutes=int(rng.integers(0, 60)))
        frame(rng, what).save(target, "JPEG", quality=90, exif=exif_of(site, taken))
        truth[relative] = what or EMPTY
    return truth


# --- the two models, built -----------------------------------------------------------------------
def _coat(x: torch.Tensor) -> torch.Tensor:
    """Per pixel, how much it looks like a coat (red above green: neither sky nor grass), 0..1."""
    red, green = x[:, 0], x[:, 1]
    return torch.sigmoid((red - green - 0.12) * 40.0)


class Detector(nn.Module):
    """``empty``/``animal`` logits from the share of the frame in coat colours."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        share = _coat(x).mean(dim=(1, 2))
        animal = (share - 0.015) * 400.0
        return torch.stack([torch.zeros_like(animal), animal], dim=1)


class SpeciesClassifier(nn.Module):
    """Species logits from the distance between the coat pixels' mean colour and each species'."""

    colours: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("colours", torch.tensor([SPECIES[s] for s in sorted(SPECIES)], dtype=torch.float32) / 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = _coat(x).unsqueeze(1)
        mean = (x * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1e-6)
        distance = ((mean.unsqueeze(1) - self.colours.unsqueeze(0)) ** 2).sum(dim=2)
        return -distance * 200.0


META = {"image_size": MODEL_INPUT, "mode": "RGB", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "output": "logits"}


def export_models(directory: Path) -> dict[str, Path]:
    """Both models as ``torch.export`` archives with ``c2d_meta.json``, and their labels files."""
    directory.mkdir(parents=True, exist_ok=True)
    example = (torch.rand(2, 3, MODEL_INPUT, MODEL_INPUT),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    paths = {}
    for name, module, labels in (("detector", Detector(), DETECTOR_CLASSES), ("species", SpeciesClassifier(), sorted(SPECIES))):
        program = torch.export.export(module.eval(), example, dynamic_shapes=({0: batch},))
        paths[name] = directory / f"{name}.pt2"
        torch.export.save(program, str(paths[name]), extra_files={"c2d_meta.json": json.dumps(META)})
        paths[f"{name}_labels"] = directory / f"{name}_labels.txt"
        paths[f"{name}_labels"].write_text("\n".join(labels) + "\n", encoding="utf-8")
    return paths


# --- the zone, the uploads, the two tasks --------------------------------------------------------
def settings_document(directory: Path) -> dict:
    return {
        "allowed_runners": ["inprocess"],
        "staging_directory": str(directory / "staging"),
        "default_timeout_seconds": 1800,
        "ingest": {"collections": [TRAPS]},
    }


def build_zone(directory: Path) -> tuple[LocalGrid, LocalGrid]:
    """(admin, alice): storage and compute resources, the user, and the two models."""
    admin = LocalGrid.create(directory / "grid", zone=ZONE)
    admin.make_resource("lts_resc", host="storage.demo.invalid")
    admin.make_resource("gpu_resc")
    admin.apply_metadata([
        MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ])
    admin.add_user(USER)
    alice = admin.as_user(USER)
    models = export_models(directory / "source" / "models")
    alice.create_collection(MODELS)
    for logical, local in ((DETECTOR, "detector"), (DETECTOR_LABELS, "detector_labels"),
                           (SPECIES_MODEL, "species"), (SPECIES_LABELS, "species_labels")):
        alice.put_file(models[local], logical, "lts_resc")
    alice.create_collection(TRAPS)
    return admin, alice


def upload_frames(grid: Grid, settings: Settings, source: Path, truth: dict[str, str]) -> int:
    """Put each frame, then enrich it as the upload hook does on a zone; how many got EXIF."""
    enriched = 0
    for relative in sorted(truth):
        logical = posixpath.join(TRAPS, relative)
        grid.create_collection(posixpath.dirname(logical))
        grid.put_file(source / relative, logical, "lts_resc")
        header = ingest.on_upload(grid, settings, logical)
        enriched += header is not None and header.datetime is not None
    return enriched


def detector_document() -> dict:
    return {
        "$comment": "Camera traps, step 1: which frames hold an animal (and thumbnails of every frame).",
        "task_type": "image_classification",
        "inputs": {"collection": TRAPS, "pattern": "*.JPG", "recursive": True},
        "output": {"collection": RESULTS},
        "compute": {"role": names.ROLE_GPU_COMPUTE},
        "container": {"runner": "inprocess"},
        "parameters": {"model": DETECTOR, "labels": DETECTOR_LABELS, "top_k": 2, "batch_size": 16,
                       "num_workers": 0, "thumbnail_size": 160},
        "tagging": {"class_attribute": "detectedclass", "score_attribute": "detectedscore"},
    }


def classifier_document(after: str) -> dict:
    return {
        "$comment": "Camera traps, step 2: the species, on the frames the detector found an animal in.",
        "task_type": "image_classification",
        "inputs": {"collection": TRAPS, "pattern": "*.JPG", "recursive": True,
                   "where": [{"attribute": "detectedclass", "op": "=", "value": ANIMAL}]},
        "output": {"collection": RESULTS},
        "compute": {"role": names.ROLE_GPU_COMPUTE},
        "container": {"runner": "inprocess"},
        "parameters": {"model": SPECIES_MODEL, "labels": SPECIES_LABELS, "top_k": 3, "batch_size": 16, "num_workers": 0},
        "after": after,
    }


@dataclass
class PipelineResult:
    directory: Path
    frames: int
    with_exif: int
    detector: TaskOutcome
    classifier: TaskOutcome | None
    detected_right: int = 0
    species_right: int = 0
    animals: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.frames} frames uploaded into {TRAPS}, {self.with_exif} with EXIF date and position as AVUs",
            f"detector task {self.detector.task_id}: {self.detector.state.value if self.detector.state else '?'}, "
            f"{self.detected_right}/{self.frames} frames right (animal or empty)",
        ]
        if self.classifier is not None:
            lines.append(
                f"classifier task {self.classifier.task_id} (after {self.detector.task_id}, where detectedclass = animal): "
                f"{self.classifier.state.value if self.classifier.state else '?'}, {self.classifier.inputs} frames, "
                f"species right on {self.species_right}/{self.animals} animals")
        lines.append(f"browse: c2d serve --local {self.directory / 'grid'} --user {USER}")
        return "\n".join(lines + self.notes)


def score(grid: Grid, truth: dict[str, str]) -> tuple[int, int, int]:
    """(frames the detector got right, animals whose species is right, animals)."""
    listed = grid.list_data_objects(TRAPS, recursive=True, avu_attributes=("detectedclass", "predictedclass"))
    by_path = {o.path: o for o in listed}
    detected = species = 0
    animals = [r for r, t in truth.items() if t != EMPTY]
    for relative, expected in truth.items():
        obj = by_path[posixpath.join(TRAPS, relative)]
        seen = obj.avu_values("detectedclass")
        detected += seen == [ANIMAL if expected != EMPTY else EMPTY]
        species += expected != EMPTY and obj.avu_values("predictedclass") == [expected]
    return detected, species, len(animals)


def run_pipeline(directory: Path, frames: int = 24) -> PipelineResult:
    """The whole scenario on a new LocalGrid zone in ``directory`` (which must not hold one)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "grid").exists():
        raise FileExistsError(f"{directory / 'grid'} exists: give an empty directory")
    settings_file = directory / "settings.json"
    settings_file.write_text(json.dumps(settings_document(directory), indent=2) + "\n")
    settings = Settings.load(settings_file)
    _, alice = build_zone(directory)
    truth = write_frames(directory / "source" / "frames", frames)
    (directory / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True))
    with_exif = upload_frames(alice, settings, directory / "source" / "frames", truth)
    context = TaskContext(grid=alice, settings=settings, runner=create_runner("inprocess", settings))
    service = TaskService(alice, settings)  # run now; a task larger than a shard runs its shards here
    detector = service.run_now(TaskConfig.from_document(detector_document()), context)
    result = PipelineResult(directory, len(truth), with_exif, detector, None)
    if detector.succeeded:
        result.classifier = service.run_now(TaskConfig.from_document(classifier_document(detector.task_id)), context)
    result.detected_right, result.species_right, result.animals = score(alice, truth)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run_pipeline(args.directory, args.frames)
    print(result.summary())
    return 0 if result.classifier is not None and result.classifier.succeeded else 1


if __name__ == "__main__":
    raise SystemExit(main())
