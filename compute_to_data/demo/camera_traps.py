"""A camera-trap-sized benchmark workload, made locally: a ResNet-50 and 1920x1080 JPEGs.

Real inputs are camera-trap photos (1920x1080 or larger JPEGs) classified by a ResNet- or
EfficientNet-class network, where decoding and resizing on the CPU, not the network, limits
throughput. This module makes such a workload without downloading anything:

* :class:`ResNet50` in plain torch (torchvision is not installable beside the pinned torch):
  the bottleneck architecture, 25.6 M parameters at 1000 classes, ~4.1 GFLOPs per 224x224
  image. Weights are random (seeded); the batch-norm statistics are calibrated on crops of the
  sample photos so activations have a realistic scale (and fp16 does not overflow). It is
  exported as TorchScript with the ``c2d_meta.json`` extra file ``classify_images.ipynb`` reads,
  like the demo's digit model.
* :func:`write_photos`: scikit-learn's two bundled sample photos, randomly cropped to 16:9,
  flipped, resized to 1920x1080, exposure- and colour-shifted (some as grey "night" shots),
  with sensor noise of random strength and saved at random JPEG qualities, so no two files
  decode or compress alike.

Predictions of a random network mean nothing: this is for throughput, never for accuracy.
Imports torch, numpy, Pillow and scikit-learn: benchmarks and tests only, never server code.

Command line: ``python -m compute_to_data.demo.camera_traps OUT_DIR --images 200`` writes
``OUT_DIR/photos/``, ``OUT_DIR/model/resnet50_camera_traps.pt`` and its labels file.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

log = logging.getLogger(__name__)

MODEL_FILE = "resnet50_camera_traps.pt"
LABELS_FILE = "camera_trap_labels.txt"
META_FILE = "c2d_meta.json"
PHOTO_SIZE = (1920, 1080)
IMAGE_SIZE = 224
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LABELS = [
    "empty", "human", "vehicle", "roe deer", "red deer", "fallow deer", "wild boar", "red fox", "badger",
    "pine marten", "stone marten", "brown hare", "rabbit", "red squirrel", "wolf", "lynx", "wildcat",
    "domestic cat", "dog", "bird", "small rodent", "hedgehog",
]


# --- the model ----------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand, plus the shortcut: ResNet-50's building block."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or inplanes != width:
            self.shortcut: nn.Module = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride=stride, bias=False),
                                                     nn.BatchNorm2d(width))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet50(nn.Module):
    """He et al. 2015, 50 layers: a 7x7 stem, then 3, 4, 6, 3 bottlenecks of 64..512 planes."""

    def __init__(self, classes: int = len(LABELS), layers: tuple[int, ...] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        inplanes = 64
        for index, (blocks, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            for block in range(blocks):
                stride = 2 if block == 0 and index > 0 else 1
                stages.append(Bottleneck(inplanes, planes, stride))
                inplanes = planes * Bottleneck.expansion
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def sample_photos() -> list[np.ndarray]:
    """scikit-learn's bundled photos (china.jpg, flower.jpg), 640x427 RGB uint8: no download."""
    from sklearn.datasets import load_sample_images

    return [np.asarray(image, dtype=np.uint8) for image in load_sample_images().images]


def calibration_batch(count: int = 16, seed: int = 0) -> torch.Tensor:
    """Normalized random 224x224 crops of the sample photos, for the batch-norm statistics."""
    rng = np.random.default_rng(seed)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    photos = sample_photos()
    crops = []
    for n in range(count):
        photo = photos[n % len(photos)]
        side = int(rng.integers(IMAGE_SIZE, min(photo.shape[:2]) + 1))
        y, x = (int(rng.integers(0, photo.shape[i] - side + 1)) for i in (0, 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
        crops.append((np.asarray(crop, dtype=np.float32) / 255.0 - mean) / std)
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())


def build_model(seed: int = 0, classes: int = len(LABELS), threads: int | None = None) -> ResNet50:
    """A ResNet-50 with seeded random weights and batch-norm statistics from the sample photos."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = ResNet50(classes)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = None  # cumulative average over the calibration batches
        model.train()
        with torch.no_grad():
            for part in calibration_batch(16, seed).split(8):
                model(part)
        return model.eval()
    finally:
        torch.set_num_threads(previous)


def model_meta() -> dict:
    return {"image_size": IMAGE_SIZE, "mode": "RGB", "mean": IMAGENET_MEAN, "std": IMAGENET_STD,
            "output": "logits", "architecture": "resnet50", "weights": "random (benchmark workload)"}


def export_model(directory: str | Path, *, seed: int = 0, threads: int | None = None) -> tuple[Path, Path]:
    """Write the TorchScript ResNet-50 (with ``c2d_meta.json``) and its labels; return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path, labels_path = directory / MODEL_FILE, directory / LABELS_FILE
    model = build_model(seed, threads=threads)
    with warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated; it is still the format the notebook contract names.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(model_path), _extra_files={META_FILE: json.dumps(model_meta())})
    labels_path.write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    return model_path, labels_path


# --- the photos ---------------------------------------------------------------------------------
def camera_trap_photo(source: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = PHOTO_SIZE) -> Image.Image:
    """One varied photo: 16:9 crop, flip, resize, exposure, colour cast or night grey, noise."""
    height, width = source.shape[:2]
    aspect = size[0] / size[1]
    crop_w = int(width * rng.uniform(0.45, 1.0))
    crop_h = min(height, int(crop_w / aspect))
    crop_w = int(crop_h * aspect)
    x = int(rng.integers(0, width - crop_w + 1))
    y = int(rng.integers(0, height - crop_h + 1))
    image = Image.fromarray(source[y:y + crop_h, x:x + crop_w])
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    if rng.random() < 0.3:  # an infrared night shot: grey, darker, noisier
        pixels = pixels.mean(axis=2, keepdims=True).repeat(3, axis=2) * rng.uniform(0.4, 0.8)
        sigma = rng.uniform(6.0, 14.0)
    else:
        pixels = pixels * rng.uniform(0.7, 1.25) * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
        sigma = rng.uniform(1.5, 7.0)
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(sigma)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_photos(directory: str | Path, count: int, *, seed: int = 0, size: tuple[int, int] = PHOTO_SIZE,
                 per_directory: int = 0) -> list[Path]:
    """Write ``count`` JPEGs ``trap_00000.jpg``... (in ``cam_000/``... of ``per_directory`` each if > 0)."""
    root = Path(directory)
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    written = []
    for n in range(count):
        image = camera_trap_photo(photos[int(rng.integers(0, len(photos)))], rng, size)
        name = f"trap_{n:05d}.jpg"
        target = root / (f"cam_{n // per_directory:03d}/{name}" if per_directory > 0 else name)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, format="JPEG", quality=int(rng.integers(80, 96)))
        written.append(target)
    return written


def build(directory: str | Path, images: int, *, seed: int = 0, threads: int | None = None) -> dict:
    """Photos and model under ``directory``; returns paths, counts and how long each took."""
    directory = Path(directory)
    started = time.perf_counter()
    photos = write_photos(directory / "photos", images, seed=seed)
    photo_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model_path, labels_path = export_model(directory / "model", seed=seed, threads=threads)
    return {
        "photos": str(directory / "photos"), "images": len(photos),
        "photo_bytes": sum(p.stat().st_size for p in photos),
        "model": str(model_path), "labels": str(labels_path), "model_bytes": model_path.stat().st_size,
        "photo_seconds": round(photo_seconds, 2), "model_seconds": round(time.perf_counter() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the camera-trap benchmark workload (no download).")
    parser.add_argument("directory")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(build(args.directory, args.images, seed=args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
