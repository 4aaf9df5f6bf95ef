"""A whole task over >= 2,000 images on LocalGrid with the in-process runner, against a bare loop.

Prints, from one run on this machine:
  - total task time (all ten steps);
  - notebook inference time (measured by the notebook around its DataLoader loop);
  - a bare torch loop over the same image files and the same TorchScript model (PIL + torch,
    same batch size, same thread count), the baseline; like the notebook's kernel it runs in a
    fresh process (first-call costs of torch included);
  - their ratio (target <= 1.2);
  - orchestration overhead = total - notebook execution (the runner's whole run, kernel start
    and report rendering included), against the target 3 s + 1 ms per image.

Usage: python benchmarks/bench_task.py [--images 2000] [--repeat 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compute_to_data.demo.run import INPUTS, run_demo
from compute_to_data.domain import conventions as names
from compute_to_data.grid.local import LocalGrid


def bare_loop(files: list[Path], model_path: Path, batch_size: int) -> float:
    """What the notebook's inference amounts to, written as plainly as possible."""
    extra = {"c2d_meta.json": ""}
    model = torch.jit.load(str(model_path), map_location="cpu", _extra_files=extra).eval()
    meta = json.loads(extra["c2d_meta.json"])
    size, mode = int(meta["image_size"]), meta.get("mode", "L")
    mean = torch.tensor(meta["mean"]).view(-1, 1, 1)
    std = torch.tensor(meta["std"]).view(-1, 1, 1)
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(files), batch_size):
            tensors = []
            for path in files[start : start + batch_size]:
                with Image.open(path) as image:
                    array = np.asarray(image.convert(mode).resize((size, size)), dtype=np.float32) / 255.0
                tensor = torch.from_numpy(array)
                tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
                tensors.append((tensor - mean) / std)
            scores = torch.softmax(model(torch.stack(tensors)), dim=1)
            torch.topk(scores, k=min(3, scores.shape[1]), dim=1)
    return time.perf_counter() - started


def bare_loop_fresh_process(image_dir: Path, model_path: Path, batch_size: int) -> float:
    """Seconds of :func:`bare_loop` in a new Python process, as the notebook runs in a new kernel."""
    output = subprocess.run(
        [sys.executable, __file__, "--bare", str(image_dir), str(model_path), str(batch_size)],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 5 and sys.argv[1] == "--bare":
        files = sorted(Path(sys.argv[2]).rglob("*.png"))
        print(bare_loop(files, Path(sys.argv[3]), int(sys.argv[4])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="task runs (and bare loops); medians are printed")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-"))

    # Alternate task runs and bare loops so both see the same machine; medians of --repeat each.
    outcomes, bares = [], []
    started = time.perf_counter()
    for round_number in range(args.repeat):
        result = run_demo(workdir, runner="inprocess", images=args.images, force=True)
        outcome = result.outcome
        if outcome is None or not outcome.succeeded:
            print(f"task did not succeed: {outcome.error if outcome else result.nothing_to_do}", file=sys.stderr)
            return 1
        if outcome.timings.get("run.inference") is None:
            print("the runner reported no inference time (timings.json missing)", file=sys.stderr)
            return 1
        outcomes.append(outcome)
        model_file = next((workdir / "source" / "model").glob("*.pt"))
        bares.append(bare_loop_fresh_process(workdir / "source" / "digits", model_file, 64))
        print(f"round {round_number + 1}: inference {outcome.timings['run.inference']:.2f} s, "
              f"bare {bares[-1]:.2f} s")
    demo_total = time.perf_counter() - started

    def total_of(o) -> float:
        return sum(v for k, v in o.timings.items() if not k.startswith("run."))

    outcome = sorted(outcomes, key=total_of)[len(outcomes) // 2]  # the median run, for the step list
    task_total = statistics.median(total_of(o) for o in outcomes)
    execute = statistics.median(o.timings["execute"] for o in outcomes)
    inference = statistics.median(o.timings["run.inference"] for o in outcomes)
    bare = statistics.median(bares)

    grid = LocalGrid(workdir / "grid", user="alice")
    overhead = task_total - execute
    budget = 3.0 + 0.001 * outcome.inputs
    tagged = sum(
        1 for o in grid.list_data_objects(INPUTS, recursive=True, avu_attributes=("predictedclass",))
        if o.avu_values("predictedclass")
    )

    print(f"images: {outcome.inputs} (tagged in the catalog: {tagged}); torch threads: {torch.get_num_threads()}")
    print(f"setup (zone, images, model training; not part of the tasks): {demo_total - sum(total_of(o) for o in outcomes):.2f} s")
    print(f"medians of {len(outcomes)} task runs and {len(bares)} fresh-process bare loops:")
    print(f"total task time:              {task_total:8.2f} s")
    print(f"  notebook execution (runner): {execute:8.2f} s")
    print(f"  notebook inference:          {inference:8.2f} s")
    print(f"bare torch loop (baseline):   {bare:8.2f} s")
    print(f"inference / bare ratio:       {inference / bare:8.2f}   (target <= 1.20)")
    print(f"orchestration overhead:       {overhead:8.2f} s  = {overhead / budget:.2f} x budget "
          f"(budget 3 s + 1 ms/image = {budget:.2f} s)")
    steps = ", ".join(f"{k} {v:.2f}" for k, v in outcome.timings.items() if not k.startswith("run.") and k != "execute")
    print(f"  steps (s): {steps}")
    if outcome.report_path:
        print(f"report: {names.REPORT_FILE} in {outcome.collection}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
