"""classify_images.ipynb starting on the first staged files while the rest arrive (the container
contract's ``task/inputs.json`` and ``task/staging.json``, :mod:`compute_to_data.contract.inputs`).

A feeder thread plays the engine: it moves the late inputs into place only once the notebook has
started on the inputs (its ``.progress`` exists), so the run cannot have seen them at its start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from compute_to_data.contract import inputs as contract
from compute_to_data.contract.inputs import StagedInputs, StagingFailedError, StagingStatus
from compute_to_data.domain import conventions as names
from tests.support.notebook_support import CLASSIFY_NOTEBOOK, make_inputs, parameters, tiny_model, write_params

ENTRYPOINT = [sys.executable, "-m", "compute_to_data.notebook.entrypoint"]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def staged_run(tmp_path: Path, model, *, status: StagingStatus, never: int | None = None, workers: int = 2):
    """Inputs in ``source/``; half of them in ``inputs/`` at the start, the rest moved in by a
    feeder once the notebook has started on them (but ``late[never]``), then ``status``."""
    source, inputs, task = tmp_path / "source", tmp_path / "inputs", tmp_path / "task"
    truth = make_inputs(source, 12)
    relatives = contract.listed_inputs(source)
    early, late = relatives[: len(relatives) // 2], relatives[len(relatives) // 2:]
    missing = late[never] if never is not None else None
    for relative in early:
        (inputs / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / relative, inputs / relative)
    task.mkdir(parents=True, exist_ok=True)
    contract.write_manifest(task / names.INPUTS_MANIFEST_FILE, relatives)
    status_file = task / names.STAGING_STATUS_FILE
    params = parameters(tmp_path, model, num_workers=workers, batch_size=4,
                        inputs_manifest=str(task / names.INPUTS_MANIFEST_FILE), staging_status=str(status_file))
    params_path = write_params(tmp_path, params)
    progress = tmp_path / "outputs" / names.PROGRESS_FILE
    seen: dict[str, object] = {}

    def feed() -> None:
        deadline = time.monotonic() + 240  # a safety net for a broken run, not an assertion
        while not progress.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["progress_at_start"] = progress.read_text() if progress.exists() else None
        seen["present_at_start"] = contract.listed_inputs(inputs)
        for relative in late:
            if relative == missing:
                continue
            target = inputs / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = tmp_path / "partial"
            shutil.copy(source / relative, partial)
            os.replace(partial, target)  # whole or absent, as the engine places it
        contract.write_status(status_file, status)

    feeder = threading.Thread(target=feed)
    feeder.start()
    proc = subprocess.run([*ENTRYPOINT, "--params", str(params_path), "--notebook", str(CLASSIFY_NOTEBOOK),
                           "--output-dir", str(tmp_path / "outputs")], capture_output=True, text=True, timeout=300)
    feeder.join()
    assert seen["progress_at_start"] is not None, proc.stderr[-3000:]
    assert not set(late) & set(seen["present_at_start"])  # the run started without them
    return proc, truth, missing


def predictions(tmp_path: Path) -> dict[str, dict]:
    return {e["file"]: e for e in json.loads((tmp_path / "outputs" / names.PREDICTIONS_JSON).read_text())["images"]}


@pytest.mark.slow
def test_the_notebook_starts_on_the_first_files_and_waits_for_the_rest(tmp_path, model):
    """DataLoader workers (and their prefetch) wait for the files that arrive after the start."""
    proc, truth, _ = staged_run(tmp_path, model, status=StagingStatus(contract.DONE))
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = predictions(tmp_path)
    assert list(images) == contract.listed_inputs(tmp_path / "source")  # the manifest's order
    assert all("classifications" in images[r] for r in truth) and "error" in images["broken.png"]
    result = json.loads((tmp_path / "outputs" / names.RESULT_FILE).read_text())
    assert result["status"] == "succeeded" and result["images_done"] == len(truth) + 1


@pytest.mark.slow
def test_a_file_staging_ended_without_is_an_error_entry_never_a_hang(tmp_path, model):
    proc, truth, missing = staged_run(tmp_path, model, status=StagingStatus(contract.DONE), never=-1, workers=0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = predictions(tmp_path)
    assert images[missing]["error"] == contract.NOT_STAGED
    assert all("classifications" in images[r] for r in truth if r != missing)


@pytest.mark.slow
def test_staging_that_failed_fails_the_run_with_the_engines_reason(tmp_path, model):
    reason = "could not read 1 input(s) through iRODS: /tempZone/home/alice/digits/x.png: the connection dropped"
    proc, _, _ = staged_run(tmp_path, model, status=StagingStatus(contract.FAILED, reason), never=0)
    assert proc.returncode == 1
    result = json.loads((tmp_path / "outputs" / names.RESULT_FILE).read_text())
    assert result["status"] == "failed"
    assert result["error"] == f"StagingFailedError: staging the inputs failed: {reason}"
    assert not (tmp_path / "outputs" / names.PREDICTIONS_JSON).exists()


def test_staged_inputs_wait_for_a_file_and_say_how_staging_ended(tmp_path):
    """The contract's reader on its own: present at once; waited for; missing once done; failed."""
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.png").write_bytes(b"a")
    status = tmp_path / names.STAGING_STATUS_FILE
    staged = StagedInputs(tmp_path / "inputs", ["a.png", "b.png", "c.png"], status)
    assert staged.wait(staged.files[0]) is True
    arrived = threading.Event()

    def place_b() -> bool:  # the waiting reader's hook: the engine places b while it waits
        (tmp_path / "inputs" / "b.png").write_bytes(b"b")
        arrived.set()
        return False

    assert staged.wait(staged.files[1], on_wait=place_b) is True and arrived.is_set()
    contract.write_status(status, StagingStatus(contract.DONE))
    assert staged.wait(staged.files[2]) is False
    contract.write_status(status, StagingStatus(contract.FAILED, "the disk\nis full"))
    with pytest.raises(StagingFailedError, match="^staging the inputs failed: the disk is full$"):
        staged.wait(staged.files[2])
    assert StagedInputs.from_parameters(tmp_path / "inputs").relatives == ["a.png", "b.png"]  # no manifest: the listing
