"""Camera-trap throughput: the whole task against a bare loop, images/s and their ratio.

The workload is made locally (compute_to_data/demo/camera_traps.py): N 1920x1080 JPEGs from
scikit-learn's sample photos and a ResNet-50 with random weights, exported as TorchScript.
For each precision (fp32, and bf16 where the device computes it natively), alternating
``--repeat`` times, it measures in one run:

  - the **bare loop**: the same model file, the same files, the same decoding
    (``pipeline.load_image``: draft-mode JPEG decoding and resize in DataLoader workers), the
    same batch size and worker count, written as plainly as a person would (pinned memory,
    non-blocking copies and channels_last on CUDA, autocast for bf16), in a fresh process as
    the notebook's kernel is; timed from the first batch requested to the last result on the
    host;
  - the **whole task** through the in-process runner on LocalGrid (validation, staging, the
    notebook with its report, ingest, tagging), timed around ``task.run()``, and the notebook's
    own inference loop (``timings.json``: its DataLoader loop with progress, parts and result
    entries), which is what feeds the device;

and prints images/s of each and the ratios notebook loop / bare loop (target >= 0.9) and
whole task / bare loop (which also pays the fixed cost of a task: kernel start, imports,
model load, report), as medians and as the best round of each (the one least disturbed by
other load on a shared machine). The inputs are replicated to the compute resource
before the first round, so no round pays for replication.

Usage: python benchmarks/bench_gpu_throughput.py [--images 96] [--batch-size 32] [--repeat 2]
       [--precision fp32,bf16] [--device auto] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import platform
import posixpath
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from compute_to_data.demo import camera_traps
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine import create_task
from compute_to_data.engine.context import TaskContext
from compute_to_data.grid.local import LocalGrid
from compute_to_data.notebook import pipeline
from compute_to_data.runners import create_runner

ZONE, USER = "tempZone", "alice"
HOME = f"/{ZONE}/home/{USER}"
PHOTOS = f"{HOME}/camera_traps"
RESULTS = f"{HOME}/c2d_results"
MODEL = f"{HOME}/models/{camera_traps.MODEL_FILE}"
LABELS = f"{HOME}/models/{camera_traps.LABELS_FILE}"


# --- the bare loop ------------------------------------------------------------------------------
class PhotoFiles(Dataset):
    """Only the decoding is shared with the notebook; the rest of this loop is its own."""

    def __init__(self, paths: list[Path], mode: str, size: int) -> None:
        self.paths, self.mode, self.size = paths, mode, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(pipeline.load_image(self.paths[index], self.mode, self.size))


def bare_loop(files: list[Path], model_path: Path, batch_size: int, precision: str, workers: int,
              device: str) -> dict[str, Any]:
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    extra = {camera_traps.META_FILE: ""}
    model = torch.jit.load(str(model_path), map_location=dev, _extra_files=extra).eval()
    meta = json.loads(extra[camera_traps.META_FILE])
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    mean = torch.tensor(meta["mean"], device=dev).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"], device=dev).view(1, -1, 1, 1)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    layout = torch.channels_last if cuda else torch.contiguous_format
    loader = DataLoader(PhotoFiles(files, meta["mode"], int(meta["image_size"])), batch_size=batch_size,
                        num_workers=workers, pin_memory=cuda,
                        multiprocessing_context="fork" if workers else None)
    done = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            x = batch.to(dev, non_blocking=cuda).permute(0, 3, 1, 2).contiguous(memory_format=layout).float()
            x = (x / 255.0 - mean) / std
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
                output = model(x)
            scores, classes = torch.softmax(output.float(), dim=1).topk(3, dim=1)
            scores.cpu(), classes.cpu()
            done += len(batch)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "images": done}


def bare_loop_fresh_process(options: dict[str, Any]) -> dict[str, Any]:
    output = subprocess.run([sys.executable, __file__, "--bare", json.dumps(options)],
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# --- the zone and the task ----------------------------------------------------------------------
def make_zone(workdir: Path, images: int) -> tuple[LocalGrid, Settings, dict[str, Any]]:
    """Workload, LocalGrid zone and settings; everything replicated to the compute resource."""
    facts = camera_traps.build(workdir / "source", images)
    admin = LocalGrid.create(workdir / "grid", zone=ZONE)
    admin.make_resource("lts_resc")
    admin.make_resource("gpu_resc")
    operations = [
        MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ]
    if torch.cuda.is_available():
        operations.append(MetadataOperation("add", EntityType.RESOURCE, "gpu_resc",
                                            AVU(names.GPUS_ATTRIBUTE, str(torch.cuda.device_count()))))
    admin.apply_metadata(operations)
    admin.add_user(USER)
    alice = admin.as_user(USER)
    alice.put_tree(Path(facts["photos"]), PHOTOS, "lts_resc")
    alice.create_collection(posixpath.dirname(MODEL))
    alice.put_file(Path(facts["model"]), MODEL, "lts_resc")
    alice.put_file(Path(facts["labels"]), LABELS, "lts_resc")
    for obj in alice.list_data_objects(PHOTOS, recursive=True) + [alice.get_data_object(MODEL), alice.get_data_object(LABELS)]:
        alice.replicate(obj.path, "gpu_resc")
    settings_file = workdir / "settings.json"
    settings_file.write_text(json.dumps({"allowed_runners": ["inprocess"], "staging_directory": str(workdir / "staging"),
                                         "default_timeout_seconds": 7200}))
    return alice, Settings.load(settings_file), facts


def task_config(precision: str, batch_size: int, num_workers: Any) -> TaskConfig:
    return TaskConfig.from_document({
        "task_type": "image_classification",
        "inputs": {"collection": PHOTOS, "pattern": "*.jpg", "recursive": True, "skip_tagged": False},
        "output": {"collection": RESULTS},
        "compute": {"role": names.ROLE_GPU_COMPUTE},
        "container": {"runner": "inprocess"},
        "parameters": {"model": MODEL, "labels": LABELS, "batch_size": batch_size, "num_workers": num_workers,
                       "precision": precision, "top_k": 3},
        "timeout_seconds": 7200,
    })


def run_task(alice: LocalGrid, settings: Settings, config: TaskConfig) -> dict[str, Any]:
    task = create_task(config, TaskContext(grid=alice, settings=settings, runner=create_runner("inprocess", settings)))
    started = time.perf_counter()
    outcome = task.run()
    seconds = time.perf_counter() - started
    if not outcome.succeeded:
        raise SystemExit(f"the task failed: {outcome.error}")
    result = json.loads(alice.read_data_object(posixpath.join(outcome.collection, names.RESULT_FILE)))
    return {"seconds": seconds, "images": outcome.inputs, "tagged": outcome.tagged,
            "inference_seconds": float(result["timings"]["inference_seconds"]), "pipeline": result["pipeline"]}


# --- report -------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    bf16, fp16 = pipeline.half_precision_support(torch.device("cpu"))
    return (f"{cpu}, {pipeline.usable_cpus()} usable CPU(s) (native bf16: {bf16}, fp16: {fp16}); {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--bare":
        options = json.loads(sys.argv[2])
        files = sorted(Path(options.pop("photos")).rglob("*.jpg"))
        print(json.dumps(bare_loop(files, Path(options.pop("model")), **options)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2, help="rounds per precision (bare loop, then task)")
    parser.add_argument("--precision", default=None, help="comma-separated; default fp32 and bf16 where native")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-gpu-"))

    plan = pipeline.make_plan(args.device, "fp32")
    device = str(plan.device)
    bf16, _ = pipeline.half_precision_support(plan.device)
    precisions = args.precision.split(",") if args.precision else ["fp32"] + (["bf16"] if bf16 else [])
    workers = pipeline.resolve_num_workers("auto", images=args.images, batch_size=args.batch_size)
    print(f"machine: {machine()}")
    started = time.perf_counter()
    alice, settings, facts = make_zone(workdir, args.images)
    print(f"workload: {facts['images']} JPEGs 1920x1080 ({facts['photo_bytes'] / facts['images'] / 1e3:.0f} kB each), "
          f"ResNet-50 TorchScript {facts['model_bytes'] / 1e6:.0f} MB; made and stored in "
          f"{time.perf_counter() - started:.0f} s")
    print(f"device {device}, batch size {args.batch_size}, {workers} decoding worker(s) (num_workers auto)\n")

    rows = []
    for precision in precisions:
        bare_rates, loop_rates, task_rates, overheads = [], [], [], []
        bare_options = {"photos": facts["photos"], "model": facts["model"], "batch_size": args.batch_size,
                        "precision": precision, "workers": workers, "device": device}
        for round_number in range(args.repeat):
            # Alternate which goes first, so that neither always meets a warmer machine.
            if round_number % 2:
                task = run_task(alice, settings, task_config(precision, args.batch_size, "auto"))
                bare = bare_loop_fresh_process(bare_options)
            else:
                bare = bare_loop_fresh_process(bare_options)
                task = run_task(alice, settings, task_config(precision, args.batch_size, "auto"))
            if task["pipeline"]["precision"] != precision or task["tagged"] != args.images:
                raise SystemExit(f"the task ran {task['pipeline']['precision']} and tagged {task['tagged']}")
            bare_rates.append(bare["images"] / bare["seconds"])
            loop_rates.append(task["images"] / task["inference_seconds"])
            task_rates.append(task["images"] / task["seconds"])
            overheads.append(task["seconds"] - task["inference_seconds"])
            print(f"{precision} round {round_number + 1}: bare {bare['seconds']:.2f} s, notebook loop "
                  f"{task['inference_seconds']:.2f} s, whole task {task['seconds']:.2f} s")
        for summary, pick in (("median", statistics.median), ("best", max)):
            rows.append((precision, summary, pick(bare_rates), pick(loop_rates), pick(task_rates),
                         min(overheads) if summary == "best" else statistics.median(overheads)))

    print(f"\n{args.repeat} round(s) each, {args.images} images, batch {args.batch_size}, device {device} "
          "(best: the fastest round of each, least disturbed by other load on the machine):")
    print(f"{'precision':<10}{'of rounds':<10}{'bare img/s':>11}{'notebook loop img/s':>21}{'ratio':>7}"
          f"{'whole task img/s':>18}{'ratio':>7}{'fixed s':>9}")
    for precision, summary, bare_rate, loop_rate, task_rate, overhead in rows:
        print(f"{precision:<10}{summary:<10}{bare_rate:>11.1f}{loop_rate:>21.1f}{loop_rate / bare_rate:>7.2f}"
              f"{task_rate:>18.1f}{task_rate / bare_rate:>7.2f}{overhead:>9.1f}")
    worst = min(loop / bare for _, summary, bare, loop, _, _ in rows if summary == "median")
    print(f"\nnotebook loop / bare loop, medians: worst {worst:.2f} (target >= 0.9): {'met' if worst >= 0.9 else 'NOT met'}")
    print(f"whole task includes a fixed cost per task (kernel start, imports, model load, report, ingest, tagging) "
          f"of the 'fixed s' column; it shrinks relative to the work as N grows. Workdir: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
