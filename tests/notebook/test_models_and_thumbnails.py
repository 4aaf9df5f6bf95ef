"""torch.export archives (``.pt2``) beside TorchScript, and thumbnails made by the classification
run and stored beside their images (issue 18 items 1 and 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import EntityType
from compute_to_data.domain.conventions import TaskState
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.notebook import pipeline
from compute_to_data.runners.base import RunRequest, RunResult
from tests.support.engine_support import (
    IMAGES,
    ScriptedRunner,
    make_config,
    make_grid,
    make_settings,
)
from tests.support.notebook_support import (
    CLASSIFY_NOTEBOOK,
    make_inputs,
    parameters,
    tiny_model,
    write_params,
)


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return tiny_model()


def test_a_torch_export_archive_is_told_from_torchscript(model) -> None:  # noqa: ANN001
    assert pipeline.is_export_archive(model["program"]) and not pipeline.is_export_archive(model["model"])
    assert not pipeline.is_export_archive(__file__)
    import torch

    program, meta, kind = pipeline.load_model(model["program"], torch.device("cpu"))
    scripted, meta_ts, kind_ts = pipeline.load_model(model["model"], torch.device("cpu"))
    assert (kind, kind_ts) == ("export", "torchscript") and meta == meta_ts == model["meta"]
    batch = torch.rand(5, 1, meta["image_size"], meta["image_size"])  # any batch size: the dimension is dynamic
    plan = pipeline.make_plan("cpu", "fp32")
    with torch.inference_mode():
        assert torch.allclose(pipeline.prepare_model(program, plan)(batch), pipeline.prepare_model(scripted, plan)(batch),
                              atol=1e-5)


def test_the_notebook_classifies_with_a_pt2_model_and_writes_thumbnails(tmp_path: Path, model) -> None:  # noqa: ANN001
    truth = make_inputs(tmp_path / "inputs", 16)
    params = write_params(tmp_path, parameters(tmp_path, {**model, "model": model["program"]}, thumbnail_size=20))
    proc = subprocess.run([sys.executable, "-m", "compute_to_data.notebook.entrypoint", "--params", str(params),
                           "--notebook", str(CLASSIFY_NOTEBOOK), "--output-dir", str(tmp_path / "outputs")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "outputs"
    assert json.loads((out / "timings.json").read_text())["model_format"] == "export"
    images = json.loads((out / names.PREDICTIONS_JSON).read_text())["images"]
    right = sum(1 for e in images if "classifications" in e and e["classifications"][0]["class"] == truth.get(e["file"]))
    assert right >= 0.75 * len(truth)
    thumbs = out / names.THUMBNAILS_OUTPUT_DIR
    made = sorted(p.relative_to(thumbs).as_posix() for p in thumbs.rglob("*.png"))
    assert made == sorted(truth)  # every readable image, at its relative path; none for broken.png
    with Image.open(thumbs / made[0]) as small:
        assert max(small.size) <= 20
    assert not any(p.name.startswith(".") for p in thumbs.rglob("*"))  # no partial file left


def test_a_thumbnail_that_cannot_be_written_does_not_fail_the_image(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (64, 40), (1, 2, 3)).save(image)
    (tmp_path / "blocked").write_text("a file where the thumbnails directory should be")
    [thumbnail] = pipeline.thumbnail_plan([image], tmp_path, tmp_path / "blocked", 16)
    pixels = pipeline.load_image(image, "RGB", 8, thumbnail)
    assert pixels.shape == (8, 8, 3)


# --- the engine: thumbnails stored beside their images, linked, never inputs ----------------------------
class ThumbnailRunner(ScriptedRunner):
    """The scripted runner, also writing a thumbnail per readable image as the notebook does."""

    def run(self, request: RunRequest) -> RunResult:
        params = request.parameters
        size = params.get("thumbnail_size")
        if size and request.notebook_name != names.SUMMARY_NOTEBOOK:
            root = Path(params["input_dir"])
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if path.read_bytes()[:1].isdigit():
                    target = Path(params["output_dir"]) / names.THUMBNAILS_OUTPUT_DIR / path.relative_to(root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(b"thumb of " + path.read_bytes())
        return super().run(request)


FILES = {"a.png": b"1", "site/b.png": b"2", "site/c.png": b"x-unreadable"}


def test_thumbnails_are_stored_beside_their_images_and_never_become_inputs(tmp_path: Path) -> None:
    admin, alice = make_grid(tmp_path, FILES)
    runner = ThumbnailRunner()
    context = TaskContext(grid=alice, settings=make_settings(tmp_path), runner=runner)
    inputs = {"collection": IMAGES, "pattern": "*.png", "recursive": True}
    outcome = create_task(make_config(inputs=inputs, parameters={
        "model": f"{IMAGES.rsplit('/', 1)[0]}/models/model.pt", "labels": f"{IMAGES.rsplit('/', 1)[0]}/models/labels.txt",
        "thumbnail_size": 64}), context).run()
    assert outcome.state == TaskState.SUCCEEDED, outcome.error
    assert runner.requests[0].parameters["thumbnail_size"] == 64
    for image in (f"{IMAGES}/a.png", f"{IMAGES}/site/b.png"):
        thumb = names.thumbnail_path(image)
        assert alice.read_data_object(thumb).startswith(b"thumb of ")
        [link] = [a for a in alice.get_avus(EntityType.DATA_OBJECT, image) if a.attribute == names.A_THUMBNAIL]
        assert link.value == thumb and link.units == names.task_units(outcome.task_id)
        [back] = alice.get_avus(EntityType.DATA_OBJECT, thumb)
        assert (back.attribute, back.value) == (names.A_THUMBNAIL_OF, image)
    assert not alice.data_object_exists(names.thumbnail_path(f"{IMAGES}/site/c.png"))
    assert not alice.collection_exists(f"{outcome.collection}/{names.THUMBNAILS_COLLECTION}")
    # a later task over the same collection, recursively, classifies no thumbnail
    runner.classified = []
    again = create_task(make_config(inputs={**inputs, "skip_tagged": False}), context).run()
    assert again.succeeded and sorted(runner.classified) == sorted(FILES)
