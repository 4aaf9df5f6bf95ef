"""classify_images.ipynb through the notebook entrypoint, as the container and the runners run it."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from PIL import Image

from compute_to_data.demo import data
from compute_to_data.domain import conventions as names
from tests.support.notebook_support import (
    CLASSIFY_NOTEBOOK,
    CONTRACT_KEYS,
    LOGICAL_ROOT,
    make_inputs,
    parameters,
    tiny_model,
    write_params,
)

ENTRYPOINT = [sys.executable, "-m", "compute_to_data.notebook.entrypoint"]


def run_entrypoint(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*ENTRYPOINT, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def thumbnails_in(report: str) -> list[tuple[str, str]]:
    """(src, alt) of the report's thumbnails, in order (nbconvert may reorder attributes)."""
    found = []
    for tag in re.findall(r'<img [^>]*class="c2d-thumbnail"[^>]*>', report):
        src, alt = re.search(r' src="([^"]*)"', tag), re.search(r' alt="([^"]*)"', tag)
        found.append((src.group(1) if src else "", alt.group(1) if alt else ""))
    return found


@pytest.fixture(scope="module")
def model():
    return tiny_model()


#: what the engine passes for the report (params.json key c2d_report), as the in-process runner gets it.
PROVENANCE = {
    "task_id": "20261122T020304Z-abcdef", "task_type": "image_classification", "model": "/tempZone/home/alice/models/digits.pt",
    "model_checksum": "sha2:bW9kZWwtY2hlY2tzdW0=", "image": "c2d-classifier:latest",
    "parameters": {"batch_size": 16, "top_k": 3, "score_threshold": 0.9}, "timings": {"validate": 0.012, "stage_inputs": 156.2},
}


@pytest.fixture(scope="module")
def classified(tmp_path_factory, model):
    """One successful run over 40 digits + a corrupt file (one digit in a sub-directory), decoded
    by as many workers as this machine has CPUs, predictions in parts of 7."""
    workdir = tmp_path_factory.mktemp("classify")
    truth = make_inputs(workdir / "inputs", 40)
    context = {"provenance": PROVENANCE, "paths": {str(workdir / "task"): "/task"}}
    params = parameters(workdir, model, num_workers="auto", part_size=7)
    params_path = write_params(workdir, {**params, names.REPORT_CONTEXT_PARAMETER: context})
    started = time.perf_counter()
    proc = run_entrypoint("--params", params_path, "--notebook", CLASSIFY_NOTEBOOK, "--output-dir", workdir / "outputs")
    return SimpleNamespace(workdir=workdir, out=workdir / "outputs", truth=truth, proc=proc,
                           seconds=time.perf_counter() - started)


def test_parameters_cell_has_a_default_for_every_contract_key():
    nb = nbformat.read(CLASSIFY_NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    defaults: dict = {}
    exec(tagged[0].source, {}, defaults)
    assert set(defaults) == CONTRACT_KEYS
    assert defaults["image_size"] is None and defaults["device"] == "auto"
    assert defaults["num_workers"] == "auto" and defaults["precision"] == "fp32"
    assert (defaults["part_size"], defaults["part_seconds"]) == (names.DEFAULT_PART_SIZE, names.DEFAULT_PART_SECONDS)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"


@pytest.mark.slow
def test_run_succeeds_and_writes_every_contract_file(classified):
    assert classified.proc.returncode == 0, classified.proc.stderr[-3000:]
    out = classified.out
    for name in (names.NOTEBOOK_FILE, names.REPORT_FILE, names.PREDICTIONS_JSON, names.PREDICTIONS_CSV,
                 names.RESULT_FILE, names.PROGRESS_FILE, "timings.json"):
        assert (out / name).is_file(), name
    result = json.loads((out / names.RESULT_FILE).read_text())
    assert result["status"] == "succeeded" and result["error"] is None
    assert result["images_total"] == result["images_done"] == 41
    assert result["started"] <= result["finished"] and result["finished"].endswith("Z")
    assert set(result["timings"]) >= {"papermill_seconds", "inference_seconds", "render_seconds",
                                      "kernel_start_seconds", "cells_seconds"}
    assert 0 < result["timings"]["inference_seconds"] < result["timings"]["papermill_seconds"]
    assert 0 < result["timings"]["kernel_start_seconds"] < result["timings"]["papermill_seconds"]
    assert result["timings"]["inference_seconds"] < result["timings"]["cells_seconds"] < result["timings"]["papermill_seconds"]
    assert (out / names.PROGRESS_FILE).read_text() == "41/41"
    assert json.loads((out / "timings.json").read_text())["inference_seconds"] > 0


@pytest.mark.slow
def test_predictions_json_lists_every_file_with_sorted_top_k_and_the_corrupt_one_as_error(classified):
    doc = json.loads((classified.out / names.PREDICTIONS_JSON).read_text())
    assert doc["task_id"] == "20261122T020304Z-abcdef"
    assert doc["model"] == Path(tiny_model()["model"]).name
    assert doc["labels"] == [str(d) for d in range(10)] and doc["top_k"] == 3
    files = [e["file"] for e in doc["images"]]
    assert files == sorted(files) and len(files) == 41
    assert set(files) == set(classified.truth) | {"broken.png"}
    assert any(f.startswith("sub/") for f in files)
    for entry in doc["images"]:
        assert entry["path"] == f"{LOGICAL_ROOT}/{entry['file']}"
        if entry["file"] == "broken.png":
            assert "classifications" not in entry
            assert "cannot identify image file" in entry["error"]
            continue
        scores = [c["score"] for c in entry["classifications"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
        assert len({c["class"] for c in entry["classifications"]}) == 3
        assert entry["below_threshold"] is (scores[0] < 0.9)
    accuracy, counted = data.accuracy(doc, classified.truth)
    assert counted == 40 and accuracy >= 0.85


@pytest.mark.slow
def test_predictions_csv_matches_the_json(classified):
    doc = json.loads((classified.out / names.PREDICTIONS_JSON).read_text())
    with open(classified.out / names.PREDICTIONS_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["path", "class", "score", "top_k"]
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(by_path) == 41
    for entry in doc["images"]:
        row = by_path[entry["path"]]
        if "error" in entry:
            assert row["class"] == row["score"] == ""
            continue
        best = entry["classifications"][0]
        assert row["class"] == best["class"] and row["score"] == f"{best['score']:.4f}"
        assert row["top_k"] == ";".join(f"{c['class']}:{c['score']:.4f}" for c in entry["classifications"])


@pytest.mark.slow
def test_report_shows_counts_errors_and_figures(classified):
    report = (classified.out / names.REPORT_FILE).read_text()
    assert "<table>" in report and "mean score" in report
    assert "Unreadable files (1)" in report and "broken.png" in report
    assert "runner-up" in report and "digit_" in report  # least certain predictions, by file
    assert report.count("data:image/png;base64") >= 2  # score histogram and sample grid
    assert "An Exception was encountered" not in report


@pytest.mark.slow
def test_a_resumed_run_covers_the_earlier_runs_predictions(tmp_path, model):
    """With previous_predictions (what the engine hands a resumed task's notebook), predictions.json,
    .csv and the report cover the earlier runs' images too; the parts hold only this run's."""
    make_inputs(tmp_path / "inputs", 20)
    earlier = {"file": "earlier/done.png", "path": f"{LOGICAL_ROOT}/earlier/done.png",
               "classifications": [{"class": "7", "score": 0.99}], "below_threshold": False}
    previous = tmp_path / "task" / "previous_predictions.json"
    previous.parent.mkdir(parents=True)
    previous.write_text(json.dumps({"images": [earlier]}))
    params = write_params(tmp_path, parameters(tmp_path, model, batch_size=4, part_size=8,
                                               previous_predictions=str(previous)))
    proc = run_entrypoint("--params", params, "--notebook", CLASSIFY_NOTEBOOK, "--output-dir", tmp_path / "outputs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "outputs"
    in_parts = [e for p in sorted((out / names.PARTS_DIR).iterdir()) for e in json.loads(p.read_text())["images"]]
    final = json.loads((out / names.PREDICTIONS_JSON).read_text())["images"]
    assert sorted(e["file"] for e in in_parts) == sorted(e["file"] for e in final if e["file"] != "earlier/done.png")
    assert earlier in final and len(final) == 22  # 20 digits, broken.png, the earlier one
    assert "earlier/done.png" in (out / names.PREDICTIONS_CSV).read_text().replace(LOGICAL_ROOT + "/", "")
    assert "<strong>21</strong> classified" in (out / names.REPORT_FILE).read_text()  # 20 + the earlier one


@pytest.mark.slow
def test_report_opens_with_the_results_then_provenance_timings_and_explanations(classified):
    """Results first (issue 21): counts per class, score distribution, the least certain images
    with their thumbnails; then the provenance, the timings and the notebook's explanations."""
    report = (classified.out / names.REPORT_FILE).read_text()
    order = ['id="Results"', 'id="Counts-per-class"', 'id="Score-distribution"', 'id="Least-certain-predictions"',
             'class="c2d-provenance"', 'class="c2d-timings"', 'id="Image-classification"', 'id="Batched-inference"']
    at = [report.index(marker) for marker in order]
    assert at == sorted(at), [m for m, _ in sorted(zip(order, at), key=lambda x: x[1])]
    assert report.index("<h1") == report.index('<h1 id="Results"')  # nothing titled before the results
    # The least certain images with thumbnails: the 15 lowest scores (all staged), each a base64
    # PNG of at most 96 pixels a side, in the table's first column, in score order.
    least = report[at[3]:at[4]]
    pictures = [(src.removeprefix("data:image/png;base64,"), alt) for src, alt in thumbnails_in(least)]
    predictions = json.loads((classified.out / names.PREDICTIONS_JSON).read_text())["images"]
    ranked = sorted((e for e in predictions if "classifications" in e), key=lambda e: (e["classifications"][0]["score"], e["file"]))
    assert [alt for _, alt in pictures] == [e["file"] for e in ranked[:15]]
    for encoded, _ in pictures:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as thumb:
            assert thumb.format == "PNG" and max(thumb.size) <= 96
    # ... kept for the summary of a task run as shards
    kept = json.loads((classified.out / "thumbnails.json").read_text())["images"]
    assert [t["file"] for t in kept] == [alt for _, alt in pictures]
    assert all(t["path"] == f"{LOGICAL_ROOT}/{t['file']}" for t in kept)


@pytest.mark.slow
def test_report_reads_as_results_with_no_code_and_no_host_paths(classified):
    report = (classified.out / names.REPORT_FILE).read_text()
    notebook = (classified.out / names.NOTEBOOK_FILE).read_text()
    # The code is hidden in the report, and only there: notebook.ipynb keeps it, with the
    # injected parameters (host paths included).
    for source in ("import torch", "pipeline.PartWriter(", "write_text_atomic(out"):
        assert source not in report and source in notebook, source
    assert '<div class="jp-InputPrompt' not in report and '<div class="highlight hl-ipython3">' not in report
    assert str(classified.workdir) not in report and str(classified.workdir / "inputs") in notebook
    assert "41 file(s) under <code>/inputs</code>" in report  # shown as the container sees it
    # After the results: task, model and checksum, image, parameters, timings so far and the run's own.
    top = report[report.index('class="c2d-provenance"'):report.index('id="Image-classification"')]
    for text in ("Provenance of task 20261122T020304Z-abcdef", "/tempZone/home/alice/models/digits.pt", "sha2:bW9kZWwtY2hlY2tzdW0=",
                 "c2d-classifier:latest", "parameter score_threshold", "stage_inputs", "156.2 s", "run.kernel_start",
                 "run.inference", "run.papermill"):
        assert text in top, text
    assert "<title>Report of task 20261122T020304Z-abcdef</title>" in report
    assert "c2d_report" not in notebook  # not a notebook parameter: taken out before papermill


@pytest.mark.slow
def test_failing_notebook_gives_exit_1_a_readable_error_and_still_a_report(tmp_path, model):
    (tmp_path / "inputs").mkdir()
    data.write_images(tmp_path / "inputs", 3)
    missing = tmp_path / "no_such_model.pt"
    params_path = write_params(tmp_path, parameters(tmp_path, model, model_path=str(missing)))
    proc = run_entrypoint("--params", params_path, "--notebook", CLASSIFY_NOTEBOOK, "--output-dir", tmp_path / "outputs")
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads((tmp_path / "outputs" / names.RESULT_FILE).read_text())
    assert result["status"] == "failed"
    assert result["error"] == f"FileNotFoundError: model file {missing} does not exist"
    assert result["images_total"] == 3 and result["images_done"] == 0
    report = (tmp_path / "outputs" / names.REPORT_FILE).read_text()
    assert "An Exception was encountered" in report and f"model file {missing} does not exist" in report
    assert (tmp_path / "outputs" / names.NOTEBOOK_FILE).is_file()
    assert not (tmp_path / "outputs" / names.PREDICTIONS_JSON).exists()


@pytest.mark.slow
def test_predictions_are_written_in_complete_parts_that_cover_every_image(classified):
    parts_dir = classified.out / names.PARTS_DIR
    files = sorted(p.name for p in parts_dir.iterdir())
    assert files == [names.part_file_name(i) for i in range(6)]  # 41 images in parts of 7: no temporary left
    parts = [json.loads((parts_dir / name).read_text()) for name in files]
    assert [(p["part"], p["first"], p["count"], p["last"]) for p in parts] == [
        (i, 7 * i, 7 if i < 5 else 6, i == 5) for i in range(6)]
    assert all(p["task_id"] == "20261122T020304Z-abcdef" for p in parts)
    doc = json.loads((classified.out / names.PREDICTIONS_JSON).read_text())
    assert [e for p in parts for e in p["images"]] == doc["images"]  # errors included, same entries, same order


@pytest.mark.slow
def test_fp32_results_are_those_of_the_previous_pipeline(classified, model):
    """The per-image numpy preprocessing the notebook had before its DataLoader pipeline, batch by
    batch through the same model: the scores must agree to the last digit written."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    extra = {"c2d_meta.json": ""}
    net = torch.jit.load(model["model"], map_location="cpu", _extra_files=extra).eval()
    meta = json.loads(extra["c2d_meta.json"])
    size = meta["image_size"]
    mean = np.asarray(meta["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(meta["std"], dtype=np.float32).reshape(-1, 1, 1)
    doc = json.loads((classified.out / names.PREDICTIONS_JSON).read_text())
    good = [e for e in doc["images"] if "classifications" in e]
    tensors = []
    for entry in good:
        with Image.open(classified.workdir / "inputs" / entry["file"]) as img:
            img = ImageOps.exif_transpose(img).convert(meta["mode"])
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
        array = (np.asarray(img, dtype=np.float32) / 255.0).reshape(size, size, 1).transpose(2, 0, 1)
        tensors.append(torch.from_numpy((array - mean) / std))
    with torch.inference_mode():
        scores = torch.cat([torch.softmax(net(torch.stack(tensors[i:i + 16])).float(), dim=1)
                            for i in range(0, len(tensors), 16)])
    best, classes = scores.topk(3, dim=1)
    for entry, best_row, class_row in zip(good, best.tolist(), classes.tolist()):
        assert [c["class"] for c in entry["classifications"]] == [str(c) for c in class_row], entry["file"]
        assert [c["score"] for c in entry["classifications"]] == pytest.approx(best_row, abs=2e-6)


@pytest.mark.slow
def test_the_pipeline_that_ran_is_recorded_in_result_json(classified):
    from compute_to_data.notebook.pipeline import usable_cpus

    pipeline = json.loads((classified.out / names.RESULT_FILE).read_text())["pipeline"]
    assert pipeline["device"] == "cpu" and pipeline["precision"] == pipeline["precision_requested"] == "fp32"
    assert pipeline["precision_note"] is None
    assert pipeline["num_workers_requested"] == "auto" and pipeline["num_workers"] == min(usable_cpus(), 3)
    assert (pipeline["pin_memory"], pipeline["non_blocking"], pipeline["channels_last"]) == (False, False, False)
    assert pipeline["parts"] == 6 and pipeline["part_size"] == 7 and pipeline["batch_size"] == 16


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four camera-trap-sized JPEGs (1920x1080): decoded in draft mode for the 32x32 digit model."""
    from compute_to_data.demo import camera_traps

    directory = tmp_path_factory.mktemp("photos")
    camera_traps.write_photos(directory / "inputs", 4, seed=3)
    return directory / "inputs"


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_runs_where_native_and_falls_back_to_fp32_elsewhere(tmp_path, model, photos, precision):
    import torch

    from compute_to_data.notebook.pipeline import half_precision_support

    native = dict(zip(("bf16", "fp16"), half_precision_support(torch.device("cpu"))))[precision]
    params_path = write_params(tmp_path, parameters(tmp_path, model, input_dir=str(photos), precision=precision,
                                                    num_workers=1, batch_size=2))
    proc = run_entrypoint("--params", params_path, "--notebook", CLASSIFY_NOTEBOOK, "--output-dir", tmp_path / "outputs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "outputs" / names.RESULT_FILE).read_text())
    assert result["images_done"] == 4 and result["pipeline"]["precision_requested"] == precision
    if native:
        assert result["pipeline"]["precision"] == precision and result["pipeline"]["precision_note"] is None
    else:
        assert result["pipeline"]["precision"] == "fp32"
        assert result["pipeline"]["precision_note"] == f"this CPU has no native {precision} support; ran in fp32"
        report = (tmp_path / "outputs" / names.REPORT_FILE).read_text()
        assert f"(this CPU has no native {precision} support; ran in fp32)" in report
    doc = json.loads((tmp_path / "outputs" / names.PREDICTIONS_JSON).read_text())
    assert all(len(e["classifications"]) == 3 for e in doc["images"])


@pytest.mark.slow
def test_bad_precision_and_num_workers_fail_the_run_with_a_clear_error(tmp_path, model):
    (tmp_path / "inputs").mkdir()
    data.write_images(tmp_path / "inputs", 2)
    for name, overrides, message in (
        ("precision", {"precision": "fp64"}, "ValueError: precision must be one of fp32, bf16, fp16, not 'fp64'"),
        ("workers", {"num_workers": "many"}, "ValueError: num_workers must be \"auto\" or a number >= 0, not 'many'"),
    ):
        out = tmp_path / name
        params_path = write_params(tmp_path / f"task-{name}", parameters(tmp_path, model, output_dir=str(out), **overrides))
        proc = run_entrypoint("--params", params_path, "--notebook", CLASSIFY_NOTEBOOK, "--output-dir", out)
        assert proc.returncode == 1
        result = json.loads((out / names.RESULT_FILE).read_text())
        assert result["status"] == "failed" and result["error"] == message


def test_missing_notebook_still_renders_an_error_report(tmp_path):
    params_path = write_params(tmp_path, {"input_dir": str(tmp_path / "inputs"), "output_dir": str(tmp_path / "out")})
    proc = run_entrypoint("--params", params_path, "--notebook", tmp_path / "nope.ipynb", "--output-dir", tmp_path / "out")
    assert proc.returncode == 1
    result = json.loads((tmp_path / "out" / names.RESULT_FILE).read_text())
    assert result["status"] == "failed"
    assert result["error"] == f"FileNotFoundError: notebook {tmp_path / 'nope.ipynb'} does not exist"
    assert "The task failed:" in (tmp_path / "out" / names.REPORT_FILE).read_text()


def test_interrupted_run_renders_what_was_saved_and_records_progress(tmp_path):
    from compute_to_data.notebook.execute import REPORT_CONTEXT_FILE

    out = tmp_path / "out"
    out.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# partial run, cell 1 saved"),
                                         nbformat.v4.new_code_cell("import time\ntime.sleep(3600)")])
    nbformat.write(nb, out / names.NOTEBOOK_FILE)
    # What the run kept of its report context: the report of a killed run still shows it.
    (out / REPORT_CONTEXT_FILE).write_text(json.dumps({"provenance": PROVENANCE, "paths": {str(out): "/outputs"}}))
    (out / names.PROGRESS_FILE).write_text("5/12")
    proc = run_entrypoint("--output-dir", out, "--interrupted", "timed out after 60 s", "--started", "2026-11-22T02:03:04Z")
    assert proc.returncode == 1, proc.stderr[-2000:]
    result = json.loads((out / names.RESULT_FILE).read_text())
    assert (result["status"], result["error"], result["started"]) == ("failed", "timed out after 60 s", "2026-11-22T02:03:04Z")
    assert (result["images_done"], result["images_total"]) == (5, 12)
    report = (out / names.REPORT_FILE).read_text()
    assert "timed out after 60 s" in report and "partial run, cell 1 saved" in report
    assert "Provenance of task 20261122T020304Z-abcdef" in report and "stage_inputs" in report and "time.sleep" not in report


def test_report_hides_code_parameters_and_host_paths_and_keeps_outputs(tmp_path):
    """The renderer alone, on an executed notebook as papermill leaves it (no kernel needed)."""
    from compute_to_data.notebook.execute import render_report, report_context

    out = tmp_path / "staging" / "T" / "outputs"
    out.mkdir(parents=True)
    host_inputs = tmp_path / "staging" / "T" / "inputs"
    injected = nbformat.v4.new_code_cell(f'input_dir = "{host_inputs}"\nmodel_path = "{tmp_path}/staging/T/task/model/m.pt"')
    injected.metadata["tags"] = ["injected-parameters"]
    defaults = nbformat.v4.new_code_cell('input_dir = "/inputs"')
    defaults.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell("print(sorted(os.listdir(input_dir)))\nraise_if_needed()", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text=f"reading {host_inputs}/a.png\n"),
        nbformat.v4.new_output("display_data", data={"text/markdown": f"12 file(s) under `{host_inputs}`",
                                                     "text/plain": "<Markdown>"}),
        nbformat.v4.new_output("error", ename="FileNotFoundError", evalue=f"{tmp_path}/staging/T/task/model/m.pt",
                               traceback=[f"FileNotFoundError: {tmp_path}/staging/T/task/model/m.pt"]),
    ])
    hidden = nbformat.v4.new_code_cell("secret_debugging()", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="debug output\n")])
    hidden.metadata["tags"] = ["remove-output"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Image classification"), defaults, injected, work, hidden])
    nbformat.write(nb, out / names.NOTEBOOK_FILE)
    before = (out / names.NOTEBOOK_FILE).read_text()

    params = {"input_dir": str(host_inputs), "output_dir": str(out)}
    context = report_context({"provenance": PROVENANCE, "paths": {f"{tmp_path}/staging/T/task": "/task"}}, params)
    render_report(out, banner=f"model {tmp_path}/staging/T/task/model/m.pt is broken", context=context,
                  run_timings={"papermill_seconds": 4.5})
    report = (out / names.REPORT_FILE).read_text()
    assert "os.listdir" not in report and "raise_if_needed" not in report and "secret_debugging" not in report
    assert "debug output" not in report  # remove-output
    assert str(tmp_path) not in report
    assert "reading /inputs/a.png" in report and "12 file(s) under <code>/inputs</code>" in report
    assert "FileNotFoundError" in report and "/task/model/m.pt" in report
    assert "model /task/model/m.pt is broken" in report  # the banner too
    assert report.index("The task failed:") < report.index("Provenance of task 20261122T020304Z-abcdef") < report.index("Image classification")
    assert "run.papermill" in report and "4.50 s" in report
    assert (out / names.NOTEBOOK_FILE).read_text() == before  # notebook.ipynb keeps everything


def _cell(kind: str, source: str, tags: tuple[str, ...] = (), outputs: list | None = None):  # noqa: ANN202
    cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source, outputs=outputs or [])
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _shown(html_text: str) -> "nbformat.NotebookNode":
    return nbformat.v4.new_output("display_data", data={"text/html": html_text, "text/plain": "<HTML>"})


def test_results_open_the_report_and_results_that_never_ran_are_left_out(tmp_path):
    """The renderer alone: the cells tagged ``results`` move to the top, in notebook order, a
    section a failed run never reached is left out, and without any result the report opens with
    papermill's error note and the provenance, never with headings over nothing."""
    from compute_to_data.notebook.execute import render_report

    def render(cells: list, banner: str | None = None) -> str:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        nbformat.write(nbformat.v4.new_notebook(cells=cells), out / names.NOTEBOOK_FILE)
        render_report(out, banner=banner, context={"provenance": PROVENANCE, "paths": {}}, run_timings={"papermill_seconds": 2.0})
        return (out / names.REPORT_FILE).read_text()

    intro = _cell("md", "# Image classification\n\nWhat this notebook does, at length.")
    work = _cell("code", "classify()", outputs=[nbformat.v4.new_output("stream", name="stdout", text="41 files classified\n")])
    results = [
        _cell("md", "# Results", ("results",)),
        _cell("md", "## Counts per class", ("results",)),
        _cell("code", "counts()", ("results",), [_shown("<table><tr><td>seven</td><td>12</td></tr></table>")]),
        _cell("md", "## Least certain predictions", ("results",)),
        _cell("code", "least()", ("results",)),  # the run failed before this cell
    ]
    report = render([intro, work, *results])
    order = ['id="Results"', 'id="Counts-per-class"', "<td>seven</td>", 'class="c2d-provenance"', 'class="c2d-timings"',
             'id="Image-classification"', "41 files classified"]
    at = [report.index(marker) for marker in order]
    assert at == sorted(at)
    assert "Least certain predictions" not in report and "least()" not in report

    # No result at all (the run failed early): papermill's note, the provenance, the notebook.
    note = _cell("md", "<span>An Exception was encountered at In [2]</span>", ("papermill-error-cell-tag",))
    failed = _cell("code", "classify()", outputs=[nbformat.v4.new_output("error", ename="ValueError", evalue="no model", traceback=["ValueError: no model"])])
    report = render([note, intro, failed, results[0], results[1], _cell("code", "counts()", ("results",))])
    assert 'id="Results"' not in report and "Counts per class" not in report
    assert report.index("An Exception was encountered") < report.index('class="c2d-provenance"') < report.index("no model")
    report = render([intro, failed, *results[:2]], banner="the container was killed")
    assert report.index("The task failed:") < report.index('class="c2d-provenance"') and 'id="Results"' not in report


def test_error_messages_are_one_readable_line():
    from papermill.exceptions import PapermillExecutionError

    from compute_to_data.notebook.execute import describe_exception, one_line

    exc = PapermillExecutionError(3, 3, "x", "ValueError", "\x1b[0;31mbad\nvalue\x1b[0m", ["Traceback ...", "long"])
    assert describe_exception(exc) == "ValueError: bad value"
    assert describe_exception(TimeoutError("Cell execution timed out"), timeout=30) == (
        "timed out: a notebook cell ran longer than 30 s"
    )
    assert describe_exception(KeyError("x")) == "KeyError: 'x'"
    assert len(one_line("word " * 1000)) == 500


def test_server_side_modules_do_not_import_notebook_machinery():
    code = (
        "import sys, compute_to_data.runners, compute_to_data.runners.inprocess, compute_to_data.notebook\n"
        "heavy = {'papermill', 'nbconvert', 'nbformat', 'torch', 'numpy', 'PIL', 'sklearn'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


SUMMARY_NOTEBOOK = CLASSIFY_NOTEBOOK.parent / "summarize_task.ipynb"


def test_the_summary_notebook_renders_one_report_from_every_shard(tmp_path):
    """summarize_task.ipynb through the real entrypoint (papermill, nbconvert): two shards' predictions."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for number, count in (("0001", 3), ("0002", 2)):
        images = [{"file": f"s{number}/{i}.png", "path": f"{LOGICAL_ROOT}/s{number}/{i}.png",
                   "classifications": [{"class": str(i % 2), "score": 0.5 + i / 10}, {"class": "x", "score": 0.1}],
                   "below_threshold": False} for i in range(count)]
        (inputs / f"{number}.json").write_text(json.dumps({"task_id": "T", "labels": ["0", "1"], "images": images}))
    task = tmp_path / "task"
    task.mkdir()
    (task / "shards.json").write_text(json.dumps({"shards": [
        {"shard": n, "resource": f"gpu_{n}", "host": f"host-{n}", "device": "cpu", "images": c, "images_per_second": 50.0,
         "seconds": 1.5, "state": "succeeded", "report": f"shards/{n}/report.html"} for n, c in (("0001", 3), ("0002", 2))]}))
    # The shards' thumbnails of their least certain images, as the summary stages them.
    from compute_to_data.notebook.thumbnails import thumbnail_uri

    picture = tmp_path / "0.png"
    Image.new("RGB", (300, 200), (200, 30, 30)).save(picture)
    (inputs / "thumbnails").mkdir()
    (inputs / "thumbnails" / "0001.json").write_text(json.dumps({"images": [
        {"file": "s0001/0.png", "path": f"{LOGICAL_ROOT}/s0001/0.png", "thumbnail": thumbnail_uri(picture)},
        {"file": "s0001/1.png", "path": f"{LOGICAL_ROOT}/s0001/1.png", "thumbnail": "javascript:alert(1)"}]}))
    params = {"task_id": "T", "notebook": "summarize_task", "input_dir": str(inputs), "output_dir": str(tmp_path / "outputs"),
              "shards_file": str(task / "shards.json"), "score_threshold": 0.0,
              names.REPORT_CONTEXT_PARAMETER: {"provenance": {
                  "task_id": "T", "shards": 2, "model_checksum": "sha2:MODELPIN=", "labels_checksum": "sha2:LABELSPIN=",
                  "shards_notebook": "classify_images", "shards_notebook_checksum": "sha2:NOTEBOOKPIN="}, "paths": {}}}
    params_path = task / names.PARAMS_FILE
    params_path.write_text(json.dumps(params))
    proc = run_entrypoint("--params", params_path, "--notebook", SUMMARY_NOTEBOOK, "--output-dir", tmp_path / "outputs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "outputs"
    result = json.loads((out / names.RESULT_FILE).read_text())
    assert result["status"] == "succeeded"
    whole = json.loads((out / names.PREDICTIONS_JSON).read_text())
    assert whole["task_id"] == "T" and len(whole["images"]) == 5
    report = (out / names.REPORT_FILE).read_text()
    assert 'href="shards/0002/report.html"' in report and "host-0001" in report
    assert "Least certain predictions" in report and "Score distribution" in report and "<img" in report
    # Results first, with the thumbnails; then provenance, timings, the explanations and the shards.
    order = ['id="Results"', 'id="Counts-per-class"', 'id="Score-distribution"', 'id="Least-certain-predictions"',
             'class="c2d-provenance"', 'class="c2d-timings"', 'id="Task-summary"', "host-0001"]
    at = [report.index(marker) for marker in order]
    assert at == sorted(at)
    pictures = thumbnails_in(report)
    assert [alt for _, alt in pictures] == ["s0001/0.png"]  # the one shard file with a (valid) thumbnail
    assert "javascript:" not in report
    # what every shard checked before it classified (issue 20 item 2): one model, labels, notebook
    for pinned in ("sha2:MODELPIN=", "sha2:LABELSPIN=", "sha2:NOTEBOOKPIN="):
        assert pinned in report


def test_a_labels_file_naming_a_class_twice_fails_the_run_before_classifying(tmp_path, model):
    (tmp_path / "inputs").mkdir()
    data.write_images(tmp_path / "inputs", 3)
    labels = tmp_path / "dup_labels.txt"
    labels.write_text("".join(f"{d}\n" for d in (0, 1, 2, 3, 4, 5, 6, 7, 8, 3)))
    params_path = write_params(tmp_path, parameters(tmp_path, model, labels_path=str(labels)))
    proc = run_entrypoint("--params", params_path, "--notebook", CLASSIFY_NOTEBOOK, "--output-dir", tmp_path / "outputs")
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads((tmp_path / "outputs" / names.RESULT_FILE).read_text())
    assert result["error"].startswith(f"ConfigError: labels file {labels}: class '3' is listed twice (lines 4 and 10)")
    assert not (tmp_path / "outputs" / names.PREDICTIONS_JSON).exists()
