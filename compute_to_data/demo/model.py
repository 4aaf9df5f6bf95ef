"""A small digit classifier for the demo: trains in seconds on a CPU, exported as TorchScript.

The exported file carries its preprocessing in the extra file ``c2d_meta.json`` (image size,
colour mode, mean, std), which is what ``classify_images.ipynb`` reads; the labels file lists
"0".."9", one per line, in output order. Training uses the same pixels the notebook will see:
the PNG files are lossless and already 32x32, so there is no train/serve skew.

Imports torch and scikit-learn: demo and benchmarks only, never imported by server code.

Command line: ``python -m compute_to_data.demo.model OUT_DIR`` trains, exports and prints the
test accuracy and the training time as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compute_to_data.demo import data

log = logging.getLogger(__name__)

MODEL_FILE = "digits_cnn.pt"
#: the same model as a torch.export archive (TorchScript is deprecated since torch 2.13)
PROGRAM_FILE = "digits_cnn.pt2"
LABELS_FILE = "digits_labels.txt"
META_FILE = "c2d_meta.json"


class DigitNet(nn.Module):
    """Two conv blocks and a small head: ~35k parameters, >95 % on held-out digits."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 16x16
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),  # 4x4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class TrainedModel:
    module: nn.Module
    meta: dict
    test_accuracy: float
    train_seconds: float
    epochs: int


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads while training, then restore (tests share the process)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count or min(4, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _to_tensor(images: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """Exactly the notebook's preprocessing for mode "L": /255, then (x - mean) / std."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - mean) / std


def train(
    *, epochs: int = 6, seed: int = 0, threads: int | None = None, augment: int = 1, batch_size: int = 64
) -> TrainedModel:
    """Train on the train split (plus ``augment`` shifted/noisy copies of it) and test.

    Deterministic for a given seed and thread count.
    """
    split = data.load_split(seed=seed)
    images, labels = data.sample(
        split.train_images, split.train_labels, len(split.train_images) * (1 + augment), seed=seed + 100
    )
    mean = float(images.mean() / 255.0)
    std = float(images.std() / 255.0)
    x, y = _to_tensor(images, mean, std), torch.from_numpy(labels)
    test_x, test_y = _to_tensor(split.test_images, mean, std), torch.from_numpy(split.test_labels)

    with _threads(threads):
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = DigitNet(len(data.LABELS))
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        loss_fn = nn.CrossEntropyLoss()
        started = time.perf_counter()
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), batch_size):
                idx = order[start: start + batch_size]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
        train_seconds = time.perf_counter() - started
        model.eval()
        with torch.inference_mode():
            predicted = model(test_x).argmax(dim=1)
        test_accuracy = float((predicted == test_y).float().mean())

    meta = {"image_size": data.IMAGE_SIZE, "mode": "L", "mean": [mean], "std": [std], "output": "logits"}
    log.info("trained %d epochs in %.1f s, test accuracy %.3f", epochs, train_seconds, test_accuracy)
    return TrainedModel(model, meta, test_accuracy, train_seconds, epochs)


def export(trained: TrainedModel, directory: str | Path, *, model_file: str = MODEL_FILE,
           labels_file: str = LABELS_FILE) -> tuple[Path, Path]:
    """Write the TorchScript model (with ``c2d_meta.json``) and the labels file; return both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_path, labels_path = directory / model_file, directory / labels_file
    with warnings.catch_warnings():
        # torch 2.13 marks TorchScript deprecated; it is still the format the notebook contract names.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        scripted = torch.jit.script(trained.module.eval())
        torch.jit.save(scripted, str(model_path), _extra_files={META_FILE: json.dumps(trained.meta)})
    labels_path.write_text("\n".join(data.LABELS) + "\n", encoding="utf-8")
    return model_path, labels_path


def export_program(trained: TrainedModel, directory: str | Path, *, model_file: str = PROGRAM_FILE) -> Path:
    """Write the same model as a ``torch.export`` archive (``.pt2``), the format that replaces
    TorchScript: the graph is captured in eval mode with a dynamic batch dimension, and
    ``c2d_meta.json`` travels as the archive's extra file, as with TorchScript."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / model_file
    channels = 1 if trained.meta.get("mode", "L") == "L" else 3
    size = int(trained.meta["image_size"])
    example = (torch.zeros(2, channels, size, size),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(trained.module.eval(), example, dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path), extra_files={META_FILE: json.dumps(trained.meta)})
    return path


def build(directory: str | Path, **train_options: object) -> dict:
    """Train and export; return paths, accuracy and timing (what the demo and benchmarks print)."""
    trained = train(**train_options)  # type: ignore[arg-type]
    model_path, labels_path = export(trained, directory)
    program_path = export_program(trained, directory)
    return {
        "model": str(model_path),
        "program": str(program_path),
        "labels": str(labels_path),
        "test_accuracy": round(trained.test_accuracy, 4),
        "train_seconds": round(trained.train_seconds, 2),
        "epochs": trained.epochs,
        "meta": trained.meta,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and export the demo digit classifier.")
    parser.add_argument("directory", help="where to write the model and labels files")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(build(args.directory, epochs=args.epochs, seed=args.seed, threads=args.threads), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
