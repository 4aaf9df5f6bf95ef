"""What Slurm adds to a task: the same 64-image task through the docker and the Slurm runner.

One run of this script trains a small demo model, stages the same images (hard links) into
fresh task workdirs, and runs the classify_images notebook alternately with the docker runner
and the Slurm runner in container mode -- the same image, the same confinement, started by the
job on the node instead of by the runner -- ``--repeat`` times each (``--direct`` adds the
Slurm runner's direct mode, which maps the same container-style parameters to host paths). It prints, as medians:
  - each runner's wall time for the whole run;
  - its scheduling overhead: submit to start (runner called -> the run starts: container
    started / the job's script started on the node) and end to result (the notebook's
    process ended -> the runner returned its result), in seconds;
  - what Slurm adds per task: the wall-time difference against the docker runner, and the
    ratios of wall times and of overheads. Target: <= 3 s added per task on an idle one-node
    cluster.

Needs Docker with the classifier image (bash scripts/docker-env) and a Slurm cluster whose
nodes see this machine's filesystem (bash scripts/slurm-env makes a one-node one here).

Usage: python benchmarks/bench_slurm_overhead.py [--images 64] [--repeat 3] [--workdir DIR] [--direct] [--check]
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
from compute_to_data.domain import conventions as names
from compute_to_data.domain.settings import AllowedImage, Settings, SlurmResource, SlurmSettings
from compute_to_data.runners.base import RunRequest, SupervisedRunner
from compute_to_data.runners.docker_runner import DockerRunner
from compute_to_data.runners.slurm_runner import SlurmRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_docker_overhead import stage  # noqa: E402  (the same staged task for both benchmarks)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "classify_images.ipynb"
TARGET_SECONDS = 3.0
RESOURCE = "bench_cluster"
PARTS = ("submit_to_start_seconds", "end_to_result_seconds")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--image", default=f"compute-to-data/classifier:{__version__}")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--direct", action="store_true", help="also the Slurm runner's direct mode (this Python)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if Slurm adds more than {TARGET_SECONDS} s")
    args = parser.parse_args(argv)

    from compute_to_data.demo import data, model

    base = (args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-slurm-"))).resolve()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    print(f"workdir: {base}")
    source = base / "images"
    images = data.write_images(source, args.images, split="test")
    started = time.perf_counter()
    trained = model.build(base / "model", epochs=1, threads=2)
    print(f"{len(images)} images; model trained in {time.perf_counter() - started:.0f} s")

    staging = base / "staging"
    common = dict(
        allowed_images=(AllowedImage(args.image),), default_image=args.image,
        container_user="65534:65534" if os.geteuid() == 0 else None,
        allowed_runners=("docker", "slurm"), staging_directory=str(staging), source="benchmark settings",
    )
    resources = {RESOURCE: SlurmResource(str(staging))}
    runners: dict[str, SupervisedRunner] = {
        "docker": DockerRunner(Settings(**common)),
        "slurm": SlurmRunner(Settings(**common, slurm=SlurmSettings(mode="container", resources=resources,
                                                                    poll_interval_seconds=1.0))),
    }
    if args.direct:
        runners["slurm-direct"] = SlurmRunner(Settings(**common, slurm=SlurmSettings(
            mode="direct", python=sys.executable, resources=resources, poll_interval_seconds=1.0)))
    runners["docker"].check_image(args.image)  # type: ignore[attr-defined]  # fail early if it is not built
    runners["slurm"].preflight(args.image)

    walls: dict[str, list[float]] = {name: [] for name in runners}
    parts: dict[str, dict[str, list[float]]] = {name: {p: [] for p in PARTS} for name in runners}
    for round_ in range(args.repeat):
        for name, runner in runners.items():
            task_id = f"bench-{name}-{round_}"
            workdir = stage(staging, task_id, images, source, trained)  # direct mode maps the container paths
            request = RunRequest(
                task_id=task_id, notebook_name="classify_images", notebook_path=NOTEBOOK, workdir=workdir.root,
                parameters=json.loads((workdir.task_dir / names.PARAMS_FILE).read_text()),
                timeout_seconds=600, image=args.image, resource_name=RESOURCE,
            )
            t0 = time.perf_counter()
            result = runner.run(request)
            wall = time.perf_counter() - t0
            workdir.remove()
            if not result.succeeded:
                print(f"{name} run {round_} failed: {result.error}\n{result.log[-2000:]}", file=sys.stderr)
                return 1
            walls[name].append(wall)
            for part in PARTS:
                parts[name][part].append(result.timings.get(part, float("nan")))
            extra = f", in the queue {result.timings['slurm_queue_seconds']:.2f}" if "slurm_queue_seconds" in result.timings else ""
            print(f"round {round_ + 1}: {name:<12} {wall:6.2f} s   (submit->start "
                  f"{result.timings.get(PARTS[0], float('nan')):.2f} s{extra}, end->result "
                  f"{result.timings.get(PARTS[1], float('nan')):.2f} s)")

    print(f"\nmedians of {args.repeat} run(s), {len(images)} images:")
    overhead = {name: median(parts[name][PARTS[0]]) + median(parts[name][PARTS[1]]) for name in runners}
    for name in runners:
        print(f"  {name:<12} wall {median(walls[name]):6.2f} s   submit->start {median(parts[name][PARTS[0]]):5.2f} s"
              f"   end->result {median(parts[name][PARTS[1]]):5.2f} s   overhead {overhead[name]:5.2f} s")
    added = median(walls["slurm"]) - median(walls["docker"])
    print(f"Slurm adds {added:+.2f} s per task over the docker runner (wall; ratio "
          f"{median(walls['slurm']) / median(walls['docker']):.2f}); scheduling overhead {overhead['slurm']:.2f} s vs "
          f"{overhead['docker']:.2f} s (ratio {overhead['slurm'] / overhead['docker']:.1f}); target <= "
          f"{TARGET_SECONDS:.0f} s added")
    if args.check and added > TARGET_SECONDS:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
