"""A stand-in for the notebook entrypoint, for the fault suite: the real process shape, no papermill.

``python -m tests.faults.fake_entrypoint --params P --notebook NB --output-dir O`` starts a
"kernel" in a new session (as Jupyter does, so killing the child's group would miss it), which
"classifies" each input as the digit it starts with, slowly, writing ``.progress``, parts
(``compute_to_data.contract.parts``, the real notebook's writer) and at the end the contract
files, merged with a resumed task's earlier predictions. ``--interrupted MSG`` finalizes a killed
run as the real entrypoint does.

Knobs (environment, inherited from the engine's process): ``C2D_FAULT_IMAGE_SECONDS`` per image,
``C2D_FAULT_FAIL_AFTER`` raise after that many images, ``C2D_FAULT_LOG`` a file each classified
input is appended to (to count work done twice).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from compute_to_data.contract.inputs import (
    MANIFEST_PARAMETER,
    NOT_STAGED,
    STATUS_PARAMETER,
    StagedInputs,
    StagingFailedError,
)
from compute_to_data.contract.parts import PartWriter, merged_with_previous
from compute_to_data.domain import conventions as names


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def finish(out: Path, status: str, error: str | None, total: int, done: int) -> None:
    _write(out / names.REPORT_FILE, f"<html><p>{status}</p><p>{error or ''}</p></html>")
    _write(out / names.RESULT_FILE, json.dumps({
        "status": status, "started": None, "finished": names.iso_utc(), "images_total": total,
        "images_done": done, "error": error,
    }))


def kernel(params_path: Path, out: Path) -> int:
    params = json.loads(params_path.read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel.pid").write_text(str(os.getpid()))
    if params.get("notebook") == names.SUMMARY_NOTEBOOK:  # the real streaming summary, a plain report
        from compute_to_data.notebook import summarize as summary

        result = summary.summarize(Path(params["input_dir"]), out, Path(params["shards_file"]), params["task_id"])
        finish(out, "succeeded", None, result.images, result.images)
        _write(out / names.REPORT_FILE, summary.text_report(result))
        return 0
    inputs = Path(params["input_dir"])
    staged = StagedInputs.from_parameters(inputs, params.get(MANIFEST_PARAMETER), params.get(STATUS_PARAMETER))
    files = staged.files
    delay = float(os.environ.get("C2D_FAULT_IMAGE_SECONDS", "0.05"))
    fail_after = int(os.environ.get("C2D_FAULT_FAIL_AFTER", "-1"))
    log = os.environ.get("C2D_FAULT_LOG")
    writer = PartWriter(out, task_id=params.get("task_id", ""), total=len(files),
                        part_size=int(params.get("part_size") or names.DEFAULT_PART_SIZE),
                        part_seconds=float(params.get("part_seconds") or names.DEFAULT_PART_SECONDS))
    images = []
    _write(out / names.PROGRESS_FILE, f"0/{len(files)}")
    for i, path in enumerate(files, 1):
        if i - 1 == fail_after:
            finish(out, "failed", f"RuntimeError: asked to fail after {fail_after} images", len(files), i - 1)
            return 1
        time.sleep(delay)
        rel = path.relative_to(inputs).as_posix()
        entry = {"file": rel, "path": f"{params.get('logical_root', '')}/{rel}"}
        try:
            present = staged.wait(path)
        except StagingFailedError as exc:
            finish(out, "failed", str(exc), len(files), i - 1)
            return 1
        first = path.read_bytes()[:1].decode(errors="replace") if present else ""
        if not present:
            entry["error"] = NOT_STAGED
        elif first.isdigit():
            entry["classifications"] = [{"class": first, "score": 0.9}, {"class": "other", "score": 0.1}]
            entry["below_threshold"] = False
        else:
            entry["error"] = "cannot identify image file"
        images.append(entry)
        writer.add([entry])
        if log:
            with open(log, "a") as fh:
                fh.write(rel + "\n")
        _write(out / names.PROGRESS_FILE, f"{i}/{len(files)}")
    writer.close()
    images = merged_with_previous(images, params.get("previous_predictions"))
    _write(out / names.PREDICTIONS_JSON, json.dumps({"task_id": params.get("task_id"), "images": images}))
    finish(out, "succeeded", None, len(files), len(files))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", type=Path)
    parser.add_argument("--notebook", type=Path)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--interrupted", default=None)
    parser.add_argument("--input-dir", type=Path, default=None)
    parser.add_argument("--started", default=None)
    parser.add_argument("--kernel", action="store_true")
    args = parser.parse_args(argv)
    if args.interrupted is not None:
        finish(args.output_dir, "failed", args.interrupted, 0, 0)
        return 1
    if args.kernel:
        return kernel(args.params, args.output_dir)
    child = subprocess.Popen([sys.executable, "-m", __spec__.name if __spec__ else "tests.faults.fake_entrypoint",
                              "--params", str(args.params), "--output-dir", str(args.output_dir), "--kernel"],
                             start_new_session=True)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
