"""Staging a large task through the rules, on the fake iRODS server charging the real server's costs.

On a real iRODS 5.0.2 zone a 2,000-image task spent 156 of its 171 s replicating: replication is
bound by catalog transactions (13 objects/s with one ``msiDataObjRepl`` each from one rule, 25/s
with four rules at once on 2 cores). The fake server (``tests/fakes``) answers in microseconds,
so here every catalog call is charged what it cost there (``tests/fakes/costs.py``: 79 ms per
replication, 2.55 ms per AVU added, ~10 ms per GenQuery, two calls served at once) and the
delay server polls every 30 s as a real one does (``tests/fakes/delay_server.py``). The notebook
is a scripted stand-in (no inference): what is measured is staging and the catalog work around it.

In one run, each on a fresh zone with ``--images`` (default 10,000) images in ``--folders``
sub-collections of a survey, the model and labels elsewhere, a recursive task:

1. **step by step**: inputs on a storage resource of another host, ``compute.replicate: always``
   (by default they would be streamed, see ``bench_vs_client.py``), one agent (the run alone,
   one ``msiDataObjRepl`` per object: what every task did before) — the baseline;
2. **parallel**: the same with ``--agents`` agents (default 4: the run and rules queued with the
   delay server), whole sub-collections with one ``msiCollRepl`` where they hold nothing else;
3. **in place**: the inputs on a resource of the compute host, ``compute.replicate: when_needed``:
   hard links from where they lie (target: no replication at all).

Printed: stage_inputs, the replication within it and the whole task, the catalog calls, and the
ratios parallel / step by step (target <= 0.6) and in place / step by step.

``--scale 0.1`` runs every cost and the poll ten times faster (the ratios hold while the fake's
own work stays small against the costs).

Usage: python benchmarks/bench_staging.py [--images 10000] [--folders 10] [--agents 4] [--scale 1.0]
       [--scenarios serial,parallel,in_place] [--flat] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the fake server and the scripted runner live in tests/
    sys.path.insert(0, str(REPO))

from compute_to_data import rules  # noqa: E402
from compute_to_data.domain import conventions as names  # noqa: E402
from compute_to_data.domain.catalog import EntityType  # noqa: E402
from compute_to_data.domain.registry import runners  # noqa: E402
from compute_to_data.grid.rule_engine import RuleEngineGrid  # noqa: E402
from tests.fakes.costs import CatalogCosts  # noqa: E402
from tests.fakes.delay_server import FakeDelayServer  # noqa: E402
from tests.fakes.irods_server import FakeIrodsServer  # noqa: E402
from tests.support.engine_support import HOME, IMAGES, RESULTS, STORAGE_HOST, ScriptedRunner, make_grid  # noqa: E402

#: the delay server's default poll period on a real zone (observed: 25-30 s from submit to start)
DELAY_POLL_SECONDS = 30.0
CONFIG = f"{HOME}/task_config.json"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    agents: int
    storage_host: str
    replicate: str = names.REPLICATE_WHEN_NEEDED
    #: whole collections with one msiCollRepl (the baseline: one msiDataObjRepl per object, as before)
    collections: bool = True


SCENARIOS = {  # replication is asked for (always): by default inputs elsewhere are streamed (bench_vs_client)
    "serial": Scenario("serial", "step by step (1 agent)", 1, STORAGE_HOST, replicate=names.REPLICATE_ALWAYS,
                       collections=False),
    "parallel": Scenario("parallel", "parallel agents", 4, STORAGE_HOST, replicate=names.REPLICATE_ALWAYS),
    "in_place": Scenario("in_place", "in place (when_needed)", 4, "localhost"),
}


def survey(images: int, folders: int, flat: bool) -> dict[str, bytes]:
    """Tiny images in ``folders`` sub-collections (with ``flat``, a note in each, so that no
    sub-collection is replicated whole and every object goes one by one)."""
    per_folder = -(-images // folders)
    files = {f"site{i // per_folder:03d}/img_{i:06d}.png": str(i % 3).encode() for i in range(images)}
    if flat:
        files.update({f"site{f:03d}/notes.txt": b"field notes" for f in range(folders)})
    return files


def run_scenario(root: Path, scenario: Scenario, *, images: int, folders: int = 10, scale: float = 1.0,
                 agents: int | None = None, flat: bool = False) -> dict[str, Any]:
    """One task through ``c2d_run`` on a fresh zone under ``root``; what it took and did."""
    root.mkdir(parents=True, exist_ok=True)
    admin, alice = make_grid(root, survey(images, folders, flat), compute_host="localhost",
                             storage_host=scenario.storage_host)
    settings = {
        "allowed_runners": ["inprocess"],
        "staging_directory": str(root / "staging"),
        "lock_directory": str(root / "locks"),
        "default_timeout_seconds": 7200,
        "replication": {"agents": agents or scenario.agents},
    }
    settings_file = root / "compute_to_data.json"
    settings_file.write_text(json.dumps(settings))
    os.environ[names.SETTINGS_ENV] = str(settings_file)
    config = {
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png", "recursive": True},
        "output": {"collection": RESULTS},
        "compute": {"replicate": scenario.replicate},
        "container": {"runner": "inprocess"},
        "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
    }
    local_config = root / "task_config.json"
    local_config.write_text(json.dumps(config))
    alice.put_file(local_config, CONFIG, "lts_resc")

    runner = ScriptedRunner()

    def make_runner(settings: object = None) -> ScriptedRunner:
        return runner

    make_runner.uses_container_paths = False  # type: ignore[attr-defined]
    runners._items["inprocess"] = make_runner  # the scripted stand-in for the notebook

    costs = CatalogCosts.measured(scale=scale)
    server = FakeIrodsServer(admin.root, host="irods-provider", costs=costs)
    server.load_rulebase(rules)
    RuleEngineGrid.replicates_collections = scenario.collections
    try:
        with FakeDelayServer(server, poll_seconds=DELAY_POLL_SECONDS * scale, executors=4) as delay_server:
            started = time.perf_counter()
            run = server.irule("c2d_run", CONFIG, user="alice")
            total = time.perf_counter() - started
    finally:
        RuleEngineGrid.replicates_collections = True
    if not run.ok:
        raise SystemExit(f"{scenario.name}: c2d_run failed: {run.error}")
    [task] = admin.find_collections_with_avu(names.A_TASK_ID, under=RESULTS)
    record = {a.attribute: a.value for a in admin.get_avus(EntityType.COLLECTION, task.path)}
    timings = json.loads(record[names.A_TIMINGS])
    staging = json.loads(record[names.A_STAGING])
    replicas = sum(1 for o in admin.list_data_objects(IMAGES, recursive=True) if o.good_replica_on("gpu_resc"))
    return {
        "scenario": scenario.name,
        "title": scenario.title,
        "images": images,
        "state": record[names.A_STATE],
        "total_seconds": total,
        "stage_seconds": timings.get("stage_inputs", 0.0),
        "replicate_seconds": timings.get("stage.replicate", 0.0),
        "tag_seconds": timings.get("tag_results", 0.0),
        "msiDataObjRepl": server.calls["msiDataObjRepl"],
        "msiCollRepl": server.calls["msiCollRepl"],
        "agent_rules": sum(1 for entry, _ in delay_server.runs if "c2d_replicate_chunk" in entry.body),
        "replicas_on_gpu_resc": replicas,
        "staging": staging,
        "charged_seconds": dict(costs.charged.most_common(6)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--folders", type=int, default=10)
    parser.add_argument("--agents", type=int, default=None, help="agents of the parallel scenarios (default 4)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every cost and the delay server's poll")
    parser.add_argument("--scenarios", default="serial,parallel,in_place")
    parser.add_argument("--flat", action="store_true", help="a note in every sub-collection: no msiCollRepl")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-staging-"))
    chosen = [SCENARIOS[name] for name in args.scenarios.split(",")]
    print(f"{args.images:,} images in {args.folders} sub-collections{' (each with a note)' if args.flat else ''}, "
          f"costs x{args.scale:g}, delay server polling every {DELAY_POLL_SECONDS * args.scale:g} s; in {root}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for scenario in chosen:
        agents = 1 if scenario.agents == 1 else args.agents
        result = run_scenario(root / scenario.name, scenario, images=args.images, folders=args.folders,
                              scale=args.scale, agents=agents, flat=args.flat)
        results[scenario.name] = result
        staging = result["staging"]
        print(
            f"{result['title']:26s} total {result['total_seconds']:7.1f} s | stage_inputs {result['stage_seconds']:7.1f} s "
            f"(replication {result['replicate_seconds']:7.1f} s) | tagging {result['tag_seconds']:5.1f} s | "
            f"msiDataObjRepl {result['msiDataObjRepl']:6d}, msiCollRepl {result['msiCollRepl']:3d}, "
            f"agents {staging['agents']} ({result['agent_rules']} rules ran), taken over {staging['taken_over']}, "
            f"in place {staging['in_place']}, replicated {staging['replicated']}",
            flush=True,
        )
        print(f"{'':26s} charged: " + ", ".join(f"{k} {v:.1f} s" for k, v in result["charged_seconds"].items()), flush=True)
    baseline = results.get("serial")
    if baseline:
        for name in ("parallel", "in_place"):
            if name in results:
                other = results[name]
                print(f"{other['title']} / step by step: stage_inputs "
                      f"{other['stage_seconds'] / baseline['stage_seconds']:.2f}, whole task "
                      f"{other['total_seconds'] / baseline['total_seconds']:.2f}")
    if "in_place" in results:
        print(f"in place: replications {results['in_place']['msiDataObjRepl'] + results['in_place']['msiCollRepl']} "
              f"(target 0)")
    (root / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
