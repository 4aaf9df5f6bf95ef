"""Shared by the notebook and in-process runner tests: a tiny trained model and small input sets.

The model is trained once per test process (a few seconds) and cached in a temporary directory,
so every module that needs it shares the same files.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from compute_to_data.domain import conventions as names

REPO = Path(__file__).resolve().parents[2]
CLASSIFY_NOTEBOOK = REPO / "notebooks" / "classify_images.ipynb"
SLEEP_NOTEBOOK = REPO / "tests" / "data" / "notebooks" / "sleep.ipynb"
LOGICAL_ROOT = "/tempZone/home/alice/digits"
CONTRACT_KEYS = {
    "task_id", "notebook", "input_dir", "output_dir", "model_path", "labels_path", "logical_root",
    "batch_size", "score_threshold", "top_k", "image_size", "num_workers", "device", "precision",
    "part_size", "part_seconds", "previous_predictions", "thumbnail_size", "inputs_manifest", "staging_status",
}


@lru_cache(maxsize=1)
def tiny_model() -> dict[str, Any]:
    """Train the demo CNN briefly (2 epochs: ~95 % on held-out digits) and export it once."""
    from compute_to_data.demo import model

    directory = Path(tempfile.mkdtemp(prefix="c2d-test-model-"))
    atexit.register(shutil.rmtree, directory, True)
    return model.build(directory, epochs=2, threads=2)


def make_inputs(directory: Path, count: int = 40) -> dict[str, str]:
    """``count`` test-split digits, one moved into ``sub/``, plus a corrupt ``broken.png``.

    Returns {relative path: true label} for the readable images.
    """
    from compute_to_data.demo import data

    truth = data.write_images(directory, count)
    first = sorted(truth)[0]
    (directory / "sub").mkdir()
    (directory / first).rename(directory / "sub" / first)
    truth[f"sub/{first}"] = truth.pop(first)
    (directory / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return truth


def parameters(workdir: Path, model: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """params.json for a task laid out under ``workdir`` (host paths: no container here)."""
    params = {
        "task_id": "20261122T020304Z-abcdef",
        "notebook": "classify_images",
        "input_dir": str(workdir / "inputs"),
        "output_dir": str(workdir / "outputs"),
        "model_path": model["model"],
        "labels_path": model["labels"],
        "logical_root": LOGICAL_ROOT,
        "batch_size": 16,
        "score_threshold": 0.9,
        "top_k": 3,
        "image_size": None,
        "num_workers": 0,
        "device": "auto",
        "precision": "fp32",
        "part_size": 1000,
        "part_seconds": 60.0,
    }
    params.update(overrides)
    return params


def write_params(workdir: Path, params: dict[str, Any]) -> Path:
    path = workdir / "task" / names.PARAMS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(params, indent=2))
    return path
