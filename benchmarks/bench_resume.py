"""A long task killed half-way and resumed; and what heartbeats and tagging in parts cost.

On LocalGrid with the in-process runner and the real notebook, in one run on this machine:

1. **Full run** (the baseline): a task over ``--images`` (default 20,000) small digit images.
2. **Killed run**: the same task over an identical copy of the images; when about half of them
   are classified, the run's whole process tree dies at once (``kill -9`` of the notebook's
   processes and of the engine, as when a compute node fails). Its compute host then records
   it ``failed`` (the reaper, after the heartbeat lease) and the task is **resumed**.
   Printed: the work redone (images classified twice) against the part size (target <= one
   part), and the resumed run's time against the full run's (target <= 0.6).
3. **Overhead**: a task over ``--overhead-images`` (default 2,000) with heartbeats and tagging
   in parts, and the same task with both off, alternating, medians of ``--repeat`` each
   (target: on / off <= 1.05).

Usage: python benchmarks/bench_resume.py [--images 20000] [--overhead-images 2000] [--repeat 3]
       [--part-size 1000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from compute_to_data.demo import data, model
from compute_to_data.demo.run import HOME, LABELS, MODEL, RESULTS
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.settings import Settings
from compute_to_data.domain.taskconfig import TaskConfig
from compute_to_data.engine.context import TaskContext
from compute_to_data.engine.predictions import stored_parts
from compute_to_data.grid.local import LocalGrid
from compute_to_data.runners.processes import ENV_TASK_ID, kill_tree, processes_with_env
from compute_to_data.service.tasks import TaskService

LEASE = 5.0


def build_zone(root: Path, images: int, overhead_images: int, repeat: int) -> tuple[LocalGrid, dict[str, str]]:
    """One zone, one model, identical image sets under separate collections (each task tags its own)."""
    admin = LocalGrid.create(root / "grid")
    admin.make_resource("lts_resc")
    admin.make_resource("gpu_resc")
    admin.apply_metadata([
        MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, "gpu_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ])
    admin.add_user("alice")
    alice = admin.as_user("alice")
    built = model.build(root / "model")
    alice.create_collection(f"{HOME}/models")
    alice.put_file(Path(built["model"]), MODEL, "lts_resc")
    alice.put_file(Path(built["labels"]), LABELS, "lts_resc")
    big, small = root / "big", root / "small"
    data.write_images(big, images, per_directory=1000)
    data.write_images(small, overhead_images, per_directory=1000)
    collections = {"full": f"{HOME}/full", "killed": f"{HOME}/killed"}
    for i in range(repeat):
        collections[f"on{i}"], collections[f"off{i}"] = f"{HOME}/on{i}", f"{HOME}/off{i}"
    for key, collection in collections.items():
        started = time.perf_counter()
        alice.put_tree(big if key in ("full", "killed") else small, collection, "lts_resc")
        print(f"  put {collection} in {time.perf_counter() - started:.1f} s", flush=True)
    return alice, collections


def config_for(collection: str) -> TaskConfig:
    return TaskConfig.from_document({
        "task_type": "image_classification",
        "inputs": {"collection": collection, "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS},
        "container": {"runner": "inprocess"},
        "parameters": {"model": MODEL, "labels": LABELS, "batch_size": 64},
        "timeout_seconds": 7200,
    })


def submit(grid: LocalGrid, settings: Settings, collection: str) -> str:
    context = TaskContext(grid=grid, settings=settings)
    return TaskService(grid, settings).submit(config_for(collection), context).outcome.collection


def run(grid: LocalGrid, settings: Settings, task: str, *, signs_of_life: bool = True) -> tuple[float, object]:
    context = TaskContext(grid=grid, settings=settings, heartbeat=signs_of_life, parts=signs_of_life)
    started = time.perf_counter()
    outcome = TaskService(grid, settings).start(task, context)
    seconds = time.perf_counter() - started
    if not outcome.succeeded:
        raise SystemExit(f"task {outcome.task_id} did not succeed: {outcome.error}")
    return seconds, outcome


def engine_dying_half_way(grid_dir: str, settings_file: str, task: str, kill_at: int) -> int:
    """The killed run, in its own process: at ``kill_at`` images its whole tree dies at once."""
    grid = LocalGrid(grid_dir, user="alice")
    settings = Settings.load(settings_file)
    context = TaskContext(grid=grid, settings=settings)
    task_id = os.path.basename(task)

    def die(done: int, total: int) -> None:
        if done >= kill_at:
            for pid in processes_with_env(ENV_TASK_ID, task_id):  # the notebook's processes ...
                kill_tree(pid)
            os.kill(os.getpid(), signal.SIGKILL)  # ... and the engine: the node is gone

    context.progress_listeners.append(die)
    TaskService(grid, settings).start(task, context)
    return 1


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 6 and sys.argv[1] == "--engine":
        return engine_dying_half_way(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--overhead-images", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part-size", type=int, default=names.DEFAULT_PART_SIZE)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-resume-"))
    root.mkdir(parents=True, exist_ok=True)
    common = {"allowed_runners": ["inprocess"], "staging_directory": str(root / "staging"),
              "lock_directory": str(root / "locks"), "part_size": args.part_size, "default_timeout_seconds": 7200}
    # The production defaults (heartbeat every 10 s, lease 60 s) for the full run and the overhead;
    # a short lease for the killed task, so its host records it failed without a long wait.
    settings_file, kill_settings_file = root / "settings.json", root / "settings-short-lease.json"
    settings_file.write_text(json.dumps(common))
    kill_settings_file.write_text(json.dumps({**common, "heartbeat_lease_seconds": LEASE,
                                              "heartbeat_interval_seconds": 1.0}))
    os.environ[names.SETTINGS_ENV] = str(settings_file)
    settings, kill_settings = Settings.load(settings_file), Settings.load(kill_settings_file)
    print(f"setting up {args.images:,} + {args.images:,} + {2 * args.repeat} x {args.overhead_images:,} images in {root}",
          flush=True)
    grid, collections = build_zone(root, args.images, args.overhead_images, args.repeat)
    lifecycle = TaskService(grid, kill_settings)

    # 1. the full run, the baseline
    full_seconds, full = run(grid, settings, submit(grid, settings, collections["full"]))
    print(f"full run: {full_seconds:.1f} s ({full.parts_tagged} parts tagged while the notebook ran)", flush=True)

    # 2. the killed run, reaped on its host, resumed
    task = submit(grid, settings, collections["killed"])
    task_id = os.path.basename(task)
    started = time.perf_counter()
    engine = subprocess.run([sys.executable, __file__, "--engine", str(root / "grid"), str(kill_settings_file), task,
                             str(args.images // 2)], capture_output=True, text=True)
    killed_seconds = time.perf_counter() - started
    if engine.returncode != -signal.SIGKILL:
        print(engine.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the killed run ended with {engine.returncode}, not SIGKILL")
    progress_file = settings.staging_directory_for("localhost") / task_id / "outputs" / names.PROGRESS_FILE
    classified_first = int(progress_file.read_text().split("/")[0])  # nothing runs any more: final
    waited = time.perf_counter()
    while lifecycle.status(task_id).record.state == TaskState.RUNNING:
        time.sleep(0.2)
    record = lifecycle.read(task)
    reaped_after = time.perf_counter() - waited
    kept = sum(len(entries) for _, entries in stored_parts(grid, task))
    lifecycle.resume(task_id, "alice")
    resume_seconds, resumed = run(grid, kill_settings, task)
    classified_again = resumed.inputs
    redone = classified_first + classified_again - args.images
    tagged = sum(1 for o in grid.list_data_objects(collections["killed"], recursive=True,
                                                     avu_attributes=("predictedclass",)) if o.avus)
    print(f"killed run: {killed_seconds:.1f} s until the kill, {classified_first:,} images classified, "
          f"{kept:,} kept in stored parts; recorded failed {reaped_after:.1f} s later (lease {LEASE:g} s): "
          f"{record.get(names.A_ERROR)}", flush=True)
    print(f"resumed run: {resume_seconds:.1f} s, {classified_again:,} images classified, {tagged:,} images tagged, "
          f"state {resumed.state.value if resumed.state else '?'}", flush=True)

    # 3. overhead of heartbeats and parts on a healthy task
    on, off = [], []
    for i in range(args.repeat):
        off.append(run(grid, settings, submit(grid, settings, collections[f"off{i}"]), signs_of_life=False)[0])
        on.append(run(grid, settings, submit(grid, settings, collections[f"on{i}"]))[0])
        print(f"  overhead round {i + 1}: on {on[-1]:.2f} s, off {off[-1]:.2f} s", flush=True)

    print()
    print(f"images: {args.images:,}; part size: {args.part_size:,}")
    print(f"work redone (images classified twice): {redone:,}  = {redone / args.part_size:.2f} parts   (target <= 1 part)")
    print(f"resumed run / full run:                {resume_seconds:.1f} / {full_seconds:.1f} s = "
          f"{resume_seconds / full_seconds:.2f}   (target <= 0.60)")
    ratio = statistics.median(on) / statistics.median(off)
    print(f"{args.overhead_images:,}-image task, heartbeats (every 10 s) and parts on / off: {statistics.median(on):.2f} / "
          f"{statistics.median(off):.2f} s = {ratio:.3f}   (target <= 1.05; medians of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
