"""What Docker adds to a task: the same small classification run through both runners.

One run of this script trains a small demo model, stages the same images (hard links) into
fresh task workdirs, and runs the classify_images notebook alternately with the in-process
runner and the docker runner (``--repeat`` times each). It prints, as medians:
  - the in-process run's wall time;
  - the docker run's wall time;
  - the Docker overhead: container create + start + teardown (inspect, logs, remove), in
    seconds and as a ratio to the in-process run; target <= 2 s per task;
  - the wall-time difference between the two runs (overhead plus anything slower inside the
    container, e.g. the read-only root filesystem).

Needs a Docker daemon and the classifier image (bash scripts/docker-env makes both).

Usage: python benchmarks/bench_docker_overhead.py [--images 64] [--repeat 3] [--workdir DIR] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from compute_to_data import __version__
from compute_to_data.contract.workdir import TaskWorkdir
from compute_to_data.domain import conventions as names
from compute_to_data.domain.settings import AllowedImage, Settings
from compute_to_data.runners.base import RunRequest
from compute_to_data.runners.docker_runner import DockerRunner
from compute_to_data.runners.inprocess import InProcessRunner

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "classify_images.ipynb"
TARGET_SECONDS = 2.0
OVERHEAD_KEYS = ("docker_create_seconds", "docker_start_seconds", "docker_teardown_seconds")


def stage(root: Path, task_id: str, images: dict[str, str], source: Path, model: dict) -> TaskWorkdir:
    workdir = TaskWorkdir(root, task_id)
    workdir.create()
    for rel in images:
        workdir.stage_input(str(source / rel), rel)
    workdir.stage_model_file(model["model"], Path(model["model"]).name)
    workdir.stage_model_file(model["labels"], Path(model["labels"]).name)
    params = {
        "task_id": task_id, "notebook": "classify_images",
        "input_dir": names.CONTAINER_INPUT_DIR, "output_dir": names.CONTAINER_OUTPUT_DIR,
        "model_path": f"{names.CONTAINER_TASK_DIR}/model/{Path(model['model']).name}",
        "labels_path": f"{names.CONTAINER_TASK_DIR}/model/{Path(model['labels']).name}",
        "logical_root": "/tempZone/home/alice/bench", "batch_size": 32, "score_threshold": 0.0, "top_k": 3,
        "image_size": None, "num_workers": 0, "device": "auto",
    }
    params_file = workdir.task_dir / names.PARAMS_FILE
    params_file.write_text(json.dumps(params, indent=2))
    params_file.chmod(0o644)
    return workdir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--image", default=f"compute-to-data/classifier:{__version__}")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--check", action="store_true", help=f"exit 1 if the overhead exceeds {TARGET_SECONDS} s")
    args = parser.parse_args(argv)

    from compute_to_data.demo import data, model

    base = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-docker-"))
    base.mkdir(parents=True, exist_ok=True)
    print(f"workdir: {base}")
    source = base / "images"
    images = data.write_images(source, args.images, split="test")
    started = time.perf_counter()
    trained = model.build(base / "model", epochs=1, threads=2)
    print(f"{len(images)} images; model trained in {time.perf_counter() - started:.0f} s")

    settings = Settings(
        allowed_images=(AllowedImage(args.image),), default_image=args.image,
        container_user="65534:65534" if os.geteuid() == 0 else None,
        allowed_runners=("docker", "inprocess"), source="benchmark settings",
    )
    runners = {"inprocess": InProcessRunner(settings), "docker": DockerRunner(settings)}
    runners["docker"].check_image(args.image)  # fail early with a clear message if it is not built

    walls: dict[str, list[float]] = {"inprocess": [], "docker": []}
    overheads: list[float] = []
    parts: dict[str, list[float]] = {k: [] for k in OVERHEAD_KEYS}
    for round_ in range(args.repeat):
        for name, runner in runners.items():
            task_id = f"bench-{name}-{round_}"
            workdir = stage(base / "staging", task_id, images, source, trained)
            request = RunRequest(
                task_id=task_id, notebook_name="classify_images", notebook_path=NOTEBOOK, workdir=workdir.root,
                parameters=json.loads((workdir.task_dir / names.PARAMS_FILE).read_text()),
                timeout_seconds=600, image=args.image, resource_name="bench",
            )
            t0 = time.perf_counter()
            result = runner.run(request)
            wall = time.perf_counter() - t0
            if not result.succeeded:
                print(f"{name} run {round_} failed: {result.error}\n{result.log[-2000:]}", file=sys.stderr)
                return 1
            walls[name].append(wall)
            line = f"round {round_ + 1}: {name:<9} {wall:6.2f} s"
            if name == "docker":
                overhead = sum(result.timings[k] for k in OVERHEAD_KEYS)
                overheads.append(overhead)
                for key in OVERHEAD_KEYS:
                    parts[key].append(result.timings[key])
                line += f"   (create {result.timings['docker_create_seconds']:.2f} + start " \
                        f"{result.timings['docker_start_seconds']:.2f} + teardown " \
                        f"{result.timings['docker_teardown_seconds']:.2f} = {overhead:.2f} s)"
            print(line)
            workdir.remove()

    inprocess = statistics.median(walls["inprocess"])
    docker_wall = statistics.median(walls["docker"])
    overhead = statistics.median(overheads)
    print()
    print(f"in-process run (median of {args.repeat}):  {inprocess:.2f} s")
    print(f"docker run (median of {args.repeat}):      {docker_wall:.2f} s")
    print(f"docker overhead (create + start + teardown): {overhead:.2f} s = {overhead / inprocess:.1%} of the "
          f"in-process run  [create {statistics.median(parts['docker_create_seconds']):.2f}, start "
          f"{statistics.median(parts['docker_start_seconds']):.2f}, teardown "
          f"{statistics.median(parts['docker_teardown_seconds']):.2f}]")
    print(f"wall-time difference docker - in-process:    {docker_wall - inprocess:+.2f} s "
          f"({docker_wall / inprocess:.2f}x)")
    verdict = "OK" if overhead <= TARGET_SECONDS else "ABOVE TARGET"
    print(f"target: docker adds <= {TARGET_SECONDS:.0f} s per task -> {verdict}")
    return 1 if args.check and overhead > TARGET_SECONDS else 0


if __name__ == "__main__":
    raise SystemExit(main())
