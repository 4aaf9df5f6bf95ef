"""A task of 100,000 images in shards: what orchestration costs per image, and what memory it needs.

In one run on this machine:

1. **LocalGrid, in-process runner, the real notebooks**: a task over ``--sizes`` images (default
   10,000, 50,000 and 100,000 tiny digit PNGs, 500 per sub-collection), cut into ``--shards``
   shards (default 20) or, with ``--shard-size``, into shards of that many images (5,000, the
   default ``compute.shard_size``: 2, 10 and 20 shards), spread over two GPU resources, each size on a fresh copy of
   the images (its own collection). Each task runs in a fresh process that plans it, runs its
   shards one after the other (each staged, run, tagged in parts as on a zone) and makes the
   summary report: that process's peak memory (RSS) is the planning and tagging cost. Printed:
   the orchestration overhead (everything but the notebooks' inference) per image at each size
   (target <= 1.5 ms, growing linearly: the per-image slope of a line through the sizes), the
   fixed cost per shard, the process's peak RSS, and the time from the last shard's end to the
   task's end (target <= 30 s).
2. **The server agent's memory at 100,000 inputs**: ``c2d_submit`` through the fake rule-engine
   server (the agent's code and the fake server in one process, catalog rows loaded straight into
   the LocalGrid catalog), under tracemalloc: the peak of the planning call, sharded (pages,
   shards written as they close) against the same 100,000 inputs planned as one unsharded task
   (the whole listing in memory, as before shards) and against 10,000 inputs sharded. The peak
   includes the fake server's own rows (it answers a query on one collection with that
   collection's rows), so it bounds the agent's from above.
3. **The fake server with the real server's catalog costs** (replication 1/13 s per object,
   2 ms per AVU, ...: ``tests/fakes/costs.py``): a 10,000-image task whose inputs are not on the
   compute resource, pipelined shards with parallel replication against the same task step by
   step (target ratio <= 0.6), and ``when_needed`` staging from a replica on the compute host
   (target: no replication). Needs the fake server's catalog costs (the staging work).

Usage: python benchmarks/bench_large_task.py [--sizes 10000,50000,100000] [--shards 20 | --shard-size 5000]
       [--parts localgrid,agent,costs] [--agent-inputs 100000] [--scale 1.0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the fake server lives in tests/
    sys.path.insert(0, str(REPO))

from compute_to_data.domain import conventions as names  # noqa: E402
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation  # noqa: E402
from compute_to_data.grid.local import LocalGrid  # noqa: E402

HOME = "/tempZone/home/alice"
MODEL, LABELS = f"{HOME}/models/model.pt", f"{HOME}/models/labels.txt"
RESULTS = f"{HOME}/results"
PER_DIRECTORY = 500
GPUS = ("gpu_a", "gpu_b")


# --- 1. LocalGrid ---------------------------------------------------------------------------------------
def build_zone(root: Path, sizes: list[int]) -> None:
    """One zone, the demo model, a copy of the images per size (each task tags its own)."""
    from compute_to_data.demo import data, model

    admin = LocalGrid.create(root / "grid")
    admin.make_resource("lts_resc")
    ops = [MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE))]
    for name in GPUS:
        admin.make_resource(name)
        ops.append(MetadataOperation("add", EntityType.RESOURCE, name, AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)))
    admin.apply_metadata(ops)
    admin.add_user("alice")
    alice = admin.as_user("alice")
    built = model.build(root / "model")
    alice.create_collection(f"{HOME}/models")
    alice.put_file(Path(built["model"]), MODEL, "lts_resc")
    alice.put_file(Path(built["labels"]), LABELS, "lts_resc")
    images = root / "images"
    started = time.perf_counter()
    data.write_images(images, max(sizes), per_directory=PER_DIRECTORY)
    print(f"  wrote {max(sizes):,} images in {time.perf_counter() - started:.0f} s", flush=True)
    directories = sorted(p for p in images.iterdir() if p.is_dir())
    for size in sizes:
        started = time.perf_counter()
        for directory in directories[: size // PER_DIRECTORY]:
            alice.put_tree(directory, f"{HOME}/set{size}/{directory.name}", "lts_resc")
        print(f"  put {size:,} images in {time.perf_counter() - started:.0f} s", flush=True)


def run_one(root: Path, size: int, shard_size: int) -> dict[str, Any]:
    """In a fresh process: plan, run every shard here, summarize; what it cost."""
    from compute_to_data.domain.settings import Settings
    from compute_to_data.domain.taskconfig import TaskConfig
    from compute_to_data.engine.context import TaskContext
    from compute_to_data.lifecycle.shard_records import shard_records
    from compute_to_data.lifecycle.store import TaskStateStore
    from compute_to_data.service.tasks import TaskService

    alice = LocalGrid(root / "grid", user="alice")
    settings = Settings.from_document({
        "allowed_runners": ["inprocess"], "staging_directory": str(root / "staging"),
        "lock_directory": str(root / "locks"), "max_shard_size": 1_000_000, "default_timeout_seconds": 7200,
    }, "benchmark")
    config = TaskConfig.from_document({
        "task_type": "image_classification",
        "inputs": {"collection": f"{HOME}/set{size}", "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS},
        "compute": {"spread": True, "shard_size": shard_size},
        "container": {"runner": "inprocess"},
        "parameters": {"model": MODEL, "labels": LABELS, "batch_size": 256},
    })
    started = time.perf_counter()
    outcome = TaskService(alice, settings).run_now(config, TaskContext(grid=alice, settings=settings))
    wall = time.perf_counter() - started
    peak_rss = peak_rss_mb()
    task = TaskStateStore(alice).read(outcome.collection)
    records = shard_records(alice, outcome.collection)
    inference = sum(r.timings.get("run.inference", 0.0) for r in records)
    per_shard = {key: sum(r.timings.get(key, 0.0) for r in records) for key in (
        "stage_inputs", "execute", "run.kernel_start", "run.papermill", "run.render", "ingest_outputs", "tag_results")}
    ends = [names.parse_iso_utc(r.get(names.A_FINISHED)) for r in records]
    finished = names.parse_iso_utc(task.get(names.A_FINISHED))
    return {
        "size": size, "state": outcome.state.value if outcome.state else None, "error": outcome.error,
        "shards": len(records), "resources": sorted({r.get(names.A_COMPUTE_RESOURCE) for r in records}),
        "wall_seconds": wall, "inference_seconds": inference, "overhead_seconds": wall - inference,
        "planning_seconds": sum(v for k, v in task.timings.items() if k != "summary"),
        "summary_seconds": task.timings.get("summary", 0.0),
        "last_shard_to_task_end_seconds": (finished - max(ends)).total_seconds() if finished and all(ends) else None,
        "peak_rss_mb": peak_rss, "shard_totals": per_shard,
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would count the parent it was forked from)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def localgrid_part(root: Path, sizes: list[int], shards: int, shard_size: int | None = None) -> list[dict[str, Any]]:
    cut = f"shards of {shard_size:,} images" if shard_size else f"{shards} shards"
    print(f"1. LocalGrid: {', '.join(f'{s:,}' for s in sizes)} images in {cut} over {len(GPUS)} "
          f"resources, in-process runner, in {root}", flush=True)
    build_zone(root, sizes)
    results = []
    for size in sizes:
        size_of_shard = shard_size or size // shards
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--shard-size", str(size_of_shard),
                              "--workdir", str(root)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"the {size}-image task failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(result)
        per_image = 1000 * result["overhead_seconds"] / size
        totals = result["shard_totals"]
        print(f"  {size:>7,} images, {result['shards']} shards: {result['state']} in {result['wall_seconds']:.0f} s, inference "
              f"{result['inference_seconds']:.1f} s, overhead {result['overhead_seconds']:.0f} s = {per_image:.2f} ms/image "
              f"(planning {result['planning_seconds']:.1f} s; over all shards: stage {totals['stage_inputs']:.0f} s, "
              f"kernel start {totals['run.kernel_start']:.0f} s, render {totals['run.render']:.0f} s, tagging "
              f"{totals['tag_results']:.0f} s); peak RSS {result['peak_rss_mb']:.0f} MB; last shard end -> task end "
              f"{result['last_shard_to_task_end_seconds']} s (summary {result['summary_seconds']:.1f} s)", flush=True)
    if len(results) >= 2:
        xs = [r["size"] for r in results]
        ys = [r["overhead_seconds"] for r in results]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
        fixed = mean_y - slope * mean_x
        print(f"  overhead = {fixed:.0f} s + {1000 * slope:.2f} ms/image (least squares over the sizes; target "
              f"<= 1.5 ms/image)" + ("" if shard_size else f"; the fixed part is {fixed / shards:.1f} s per shard "
                                        "(kernel start, report)"), flush=True)
    return results


# --- 2. the server agent's memory ---------------------------------------------------------------------
def bulk_zone(root: Path, inputs: int) -> LocalGrid:
    """Catalog rows for ``inputs`` objects in sub-collections of 1,000, straight through SQL."""
    admin = LocalGrid.create(root / "grid")
    admin.make_resource("lts_resc")
    ops = [MetadataOperation("add", EntityType.RESOURCE, "lts_resc", AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE))]
    for name in GPUS:
        admin.make_resource(name, host="localhost")
        ops.append(MetadataOperation("add", EntityType.RESOURCE, name, AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)))
    admin.apply_metadata(ops)
    admin.add_user("alice")
    alice = admin.as_user("alice")
    local = root / "model.pt"
    local.write_bytes(b"model")
    alice.create_collection(f"{HOME}/models")
    alice.put_file(local, MODEL, "lts_resc")
    alice.put_file(local, LABELS, "lts_resc")
    for start in range(0, inputs, 1000):
        collection = f"{HOME}/survey/site{start // 1000:04d}"
        alice.create_collection(collection)
        conn = sqlite3.connect(alice.catalog_path)
        with conn:
            coll_id = conn.execute("SELECT id FROM collections WHERE path = ?", (collection,)).fetchone()[0]
            user_id = conn.execute("SELECT id FROM users WHERE name = 'alice'").fetchone()[0]
            resc_id = conn.execute("SELECT id FROM resources WHERE name = 'lts_resc'").fetchone()[0]
            first = conn.execute("SELECT COALESCE(MAX(id), 0) FROM data_objects").fetchone()[0] + 1
            ids = range(first, first + min(1000, inputs - start))
            now = time.time()
            conn.executemany("INSERT INTO data_objects (id, coll_id, name, path, owner_id, created, modified) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?)",
                             ((i, coll_id, f"IMG_{i:07d}.png", f"{collection}/IMG_{i:07d}.png", user_id, now, now) for i in ids))
            conn.executemany("INSERT INTO access VALUES ('d', ?, ?, 1200)", ((i, user_id) for i in ids))
            conn.executemany("INSERT INTO replicas VALUES (?, 0, ?, ?, 180000, 'sha2:x', 1, ?)",
                             ((i, resc_id, f"/vault/lts/{i}", now) for i in ids))
        conn.close()
    return alice


def agent_one(root: Path, inputs: int, shard_size: int) -> dict[str, Any]:
    """In a fresh process: c2d_submit of ``inputs`` images through the fake server, traced."""
    from compute_to_data import rules
    from tests.fakes.irods_server import FakeIrodsServer

    alice = bulk_zone(root, inputs)
    settings = root / "settings.json"
    settings.write_text(json.dumps({"allowed_runners": ["inprocess"], "staging_directory": str(root / "staging"),
                                    "max_shard_size": 1_000_000}))
    os.environ[names.SETTINGS_ENV] = str(settings)
    config = root / "task.json"
    config.write_text(json.dumps({
        "task_type": "image_classification",
        "inputs": {"collection": f"{HOME}/survey", "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS}, "compute": {"spread": True, "shard_size": shard_size},
        "container": {"runner": "inprocess"}, "parameters": {"model": MODEL, "labels": LABELS},
    }))
    alice.put_file(config, f"{HOME}/task.json", "lts_resc")
    server = FakeIrodsServer(alice.root, host="irods-provider")
    server.load_rulebase(rules)
    # The fake server runs in this process too: the peak counts its rows as well (it answers a
    # query for one collection with that collection's rows), so it bounds the agent's from above.
    tracemalloc.start()
    started = time.perf_counter()
    run = server.irule("c2d_submit", f"{HOME}/task.json")
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if not run.ok:
        raise SystemExit(f"c2d_submit failed: {run.error}")
    out = dict(line.split(": ", 1) for line in run.stdout.splitlines() if ": " in line and not line.startswith("follow"))
    return {"inputs": inputs, "shard_size": shard_size, "shards": int(out.get("shards") or 0), "seconds": seconds,
            "peak_mb": peak / 2**20, "queries": len(server.queries)}


def agent_part(root: Path, inputs: int) -> list[dict[str, Any]]:
    print(f"2. the server agent planning {inputs:,} inputs (c2d_submit through the fake rule-engine server, tracemalloc)",
          flush=True)
    cases = [(inputs, 5000, "sharded"), (inputs // 10, 5000 if inputs // 10 > 5000 else max(1, inputs // 100), "sharded"),
             (inputs, 10 * inputs, "one task (no shards)")]
    results = []
    for count, shard_size, label in cases:
        out = subprocess.run([sys.executable, __file__, "--agent-one", f"{count}:{shard_size}", "--workdir",
                              str(root / f"agent-{count}-{shard_size}")], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"agent case {count}:{shard_size} failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results.append({**result, "label": label})
        print(f"  {count:>7,} inputs, {label:22s}: {result['shards']:3d} shards of {min(shard_size, count):,}, peak "
              f"{result['peak_mb']:6.1f} MB, {result['seconds']:5.1f} s, {result['queries']} GenQuery calls", flush=True)
    sharded, small, whole = results
    print(f"  peak (the agent and the fake server in one process): {sharded['inputs']:,} sharded / {small['inputs']:,} "
          f"sharded = {sharded['peak_mb'] / small['peak_mb']:.2f}; {sharded['inputs']:,} sharded / unsharded = "
          f"{sharded['peak_mb'] / whole['peak_mb']:.2f}", flush=True)
    return results


# --- 3. the fake server with the real server's costs --------------------------------------------------
def costs_scenario(root: Path, name: str, *, images: int, folders: int, scale: float, shard_size: int | None,
                   agents: int, storage_host: str, collections: bool) -> dict[str, Any]:
    """One task on a fresh zone through the rules, the fake server charging the measured costs and
    its delay server polling as a real one: ``c2d_run`` step by step, or ``c2d_submit`` of shards."""
    from bench_staging import survey  # the staging benchmark's survey of sub-collections

    from compute_to_data import rules
    from compute_to_data.domain.registry import runners
    from compute_to_data.grid.rule_engine import RuleEngineGrid
    from tests.fakes.costs import CatalogCosts
    from tests.fakes.delay_server import FakeDelayServer
    from tests.fakes.irods_server import FakeIrodsServer
    from tests.support.engine_support import IMAGES, STORAGE_HOST, ScriptedRunner, make_grid

    root.mkdir(parents=True, exist_ok=True)
    admin, alice = make_grid(root, survey(images, folders, False), compute_host="localhost",
                             storage_host=STORAGE_HOST if storage_host == "elsewhere" else storage_host)
    settings_file = root / "compute_to_data.json"
    settings_file.write_text(json.dumps({
        "allowed_runners": ["inprocess"], "staging_directory": str(root / "staging"), "lock_directory": str(root / "locks"),
        "default_timeout_seconds": 7200, "replication": {"agents": agents}, "max_shard_size": 1_000_000,
    }))
    os.environ[names.SETTINGS_ENV] = str(settings_file)
    local_config = root / "task_config.json"
    local_config.write_text(json.dumps({
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS},
        # inputs elsewhere are replicated here (what this part measures); by default they are streamed
        "compute": {"replicate": "always" if storage_host == "elsewhere" else "when_needed",
                    "shard_size": shard_size or images},
        "container": {"runner": "inprocess"},
        "parameters": {"model": MODEL, "labels": LABELS},
    }))
    alice.put_file(local_config, f"{HOME}/task_config.json", "lts_resc")
    runner = ScriptedRunner()

    def make_runner(settings: object = None) -> ScriptedRunner:
        return runner

    make_runner.uses_container_paths = False  # type: ignore[attr-defined]
    runners._items["inprocess"] = make_runner  # the scripted stand-in for the notebook: no inference
    costs = CatalogCosts.measured(scale=scale)
    server = FakeIrodsServer(admin.root, host="irods-provider", costs=costs)
    server.load_rulebase(rules)
    RuleEngineGrid.replicates_collections = collections
    try:
        with FakeDelayServer(server, poll_seconds=30.0 * scale, executors=4):
            started = time.perf_counter()
            run = server.irule("c2d_run" if shard_size is None else "c2d_submit", f"{HOME}/task_config.json", user="alice")
            if not run.ok:
                raise SystemExit(f"{name}: {run.error}")
            while True:
                [task] = [c for c in admin.find_collections_with_avu(names.A_TASK_ID, under=RESULTS)
                          if not c.first(names.A_SHARD)]
                state = task.first(names.A_STATE)
                if state in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            total = time.perf_counter() - started
    finally:
        RuleEngineGrid.replicates_collections = True
    return {"scenario": name, "state": state, "total_seconds": total, "shards": task.first(names.A_SHARDS) or "",
            "msiDataObjRepl": server.calls["msiDataObjRepl"], "msiCollRepl": server.calls["msiCollRepl"],
            "charged_seconds": dict(costs.charged.most_common(6))}


def costs_part(root: Path, images: int, scale: float) -> dict[str, Any] | None:
    """Pipelined, parallel shards vs step by step, and in-place staging, with measured costs."""
    if importlib.util.find_spec("tests.fakes.costs") is None or importlib.util.find_spec("tests.fakes.delay_server") is None:
        print("3. fake server with the real server's catalog costs: skipped here (tests/fakes/costs.py and "
              "tests/fakes/delay_server.py, from the staging work, are not on this branch)", flush=True)
        return None
    print(f"3. fake server with the real server's catalog costs (x{scale:g}), {images:,} images in 10 sub-collections "
          "on a storage resource of another host", flush=True)
    scenarios = {
        "serial": dict(shard_size=None, agents=1, storage_host="elsewhere", collections=False),
        "pipelined": dict(shard_size=images // 4, agents=4, storage_host="elsewhere", collections=True),
        "in_place": dict(shard_size=images // 4, agents=4, storage_host="localhost", collections=True),
    }
    titles = {"serial": "step by step (one run, one agent)", "pipelined": "4 shards, pipelined, 4 agents",
              "in_place": "4 shards, replica on the compute host"}
    results = {}
    for name, options in scenarios.items():
        result = costs_scenario(root / name, name, images=images, folders=10, scale=scale, **options)
        results[name] = result
        print(f"  {titles[name]:40s}: {result['state']} in {result['total_seconds']:.0f} s, msiDataObjRepl "
              f"{result['msiDataObjRepl']}, msiCollRepl {result['msiCollRepl']}; charged "
              + ", ".join(f"{k} {v:.0f} s" for k, v in result["charged_seconds"].items()), flush=True)
    base = results["serial"]["total_seconds"]
    print(f"  pipelined / step by step: {results['pipelined']['total_seconds'] / base:.2f} (target <= 0.6); in place: "
          f"{results['in_place']['msiDataObjRepl'] + results['in_place']['msiCollRepl']} replications (target 0), "
          f"{results['in_place']['total_seconds'] / base:.2f} of step by step", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,100000")
    parser.add_argument("--shards", type=int, default=20, help="shards per task (each size cut into as many)")
    parser.add_argument("--shard-size", type=int, default=None,
                        help="images per shard instead (e.g. 5000, the default compute.shard_size)")
    parser.add_argument("--parts", default="localgrid,agent,costs")
    parser.add_argument("--agent-inputs", type=int, default=100_000)
    parser.add_argument("--cost-images", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the fake server's catalog costs")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--agent-one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-large-"))
    root.mkdir(parents=True, exist_ok=True)
    if args.one is not None:
        print(json.dumps(run_one(root, args.one, args.shard_size or args.one // args.shards)))
        return 0
    if args.agent_one is not None:
        count, shard_size = (int(v) for v in args.agent_one.split(":"))
        print(json.dumps(agent_one(root, count, shard_size)))
        return 0
    parts = args.parts.split(",")
    report: dict[str, Any] = {}
    if "localgrid" in parts:
        report["localgrid"] = localgrid_part(root / "localgrid", [int(s) for s in args.sizes.split(",")], args.shards,
                                             args.shard_size)
    if "agent" in parts:
        report["agent"] = agent_part(root, args.agent_inputs)
    if "costs" in parts:
        sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_staging's survey
        report["costs"] = costs_part(root / "costs", args.cost_images, args.scale)
    (root / "results.json").write_text(json.dumps(report, indent=1))
    print(f"results: {root / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
