"""The camera-trap benchmark workload: a plain-torch ResNet-50 and varied 1920x1080 JPEGs."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from PIL import Image

from compute_to_data.demo import camera_traps


def test_resnet50_has_the_architecture_s_parameter_count():
    # torchvision's resnet50 at 1000 classes has 25,557,032 parameters; the same layers here.
    assert sum(p.numel() for p in camera_traps.ResNet50(classes=1000).parameters()) == 25_557_032
    blocks = [m for m in camera_traps.ResNet50().modules() if isinstance(m, camera_traps.Bottleneck)]
    assert len(blocks) == 16  # 3 + 4 + 6 + 3, i.e. 48 convolutions + stem + fc = 50 layers


def test_photos_are_camera_trap_sized_and_all_different(tmp_path):
    paths = camera_traps.write_photos(tmp_path, 6, seed=1, per_directory=4)
    assert [p.relative_to(tmp_path).as_posix() for p in paths][:1] == ["cam_000/trap_00000.jpg"]
    assert paths[-1].parent.name == "cam_001"
    digests, sizes = set(), set()
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", camera_traps.PHOTO_SIZE, "RGB")
        data = path.read_bytes()
        digests.add(hashlib.sha256(data).hexdigest())
        sizes.add(len(data))
    assert len(digests) == len(sizes) == 6  # noise, crops and qualities differ: no two compress alike
    assert all(100_000 < s < 3_000_000 for s in sizes)
    again = camera_traps.write_photos(tmp_path / "again", 2, seed=1)
    assert again[0].read_bytes() == paths[0].read_bytes()  # deterministic for a seed


@pytest.mark.slow
def test_exported_model_carries_its_preprocessing_and_classifies_photos(tmp_path):
    model_path, labels_path = camera_traps.export_model(tmp_path, threads=2)
    extra = {"c2d_meta.json": ""}
    model = torch.jit.load(str(model_path), _extra_files=extra).eval()
    meta = json.loads(extra["c2d_meta.json"])
    assert meta["image_size"] == 224 and meta["mode"] == "RGB" and len(meta["mean"]) == len(meta["std"]) == 3
    labels = labels_path.read_text().split("\n")[:-1]
    assert labels == camera_traps.LABELS
    with torch.inference_mode():
        out = model(camera_traps.calibration_batch(2, seed=5))
        with torch.autocast("cpu", dtype=torch.float16):
            half = model(camera_traps.calibration_batch(2, seed=5))
    assert out.shape == (2, len(labels)) and torch.isfinite(out).all()
    assert torch.isfinite(half).all()  # batch-norm statistics calibrated: no fp16 overflow
