"""The product against the script a user would write instead, on the same fake-server costs.

On a real iRODS 5.0.2 zone (2 cores, PostgreSQL 15 with fsync on) the script a user writes
instead of a compute-to-data task — python-irodsclient, 4 threads: get every image, classify it
locally, tag it with one atomic AVU operation — took 68 s for 2,000 small PNGs, against 21 s for
``c2d_run`` with the inputs in place and 113 s with ``compute.replicate: always``. Here both run
in one process against the fake iRODS server charging what each catalog call cost on that zone
(``tests/fakes/costs.py``: read path 13.5 ms per small object, msiDataObjRepl 79 ms, two
``msiModAVUMetadata add`` 5.1 ms, one atomic batch of two adds 24.7 ms, a GenQuery 10.3 ms; two
catalog calls served at once) and a delay server that polls every 30 s:

* **the product**: ``c2d_run`` through the rules (the rule-engine grid, as on the server), the
  notebook a scripted stand-in (no inference: on the real zone inference took 0.7 s of 68);
* **the script** (a model of it): 4 threads, each its own agent; per image ``msiDataObjOpen`` +
  ``msiDataObjRead`` to the end + ``msiDataObjClose`` (the measured read path), then one atomic
  batch adding the pair (24.7 ms); over images that already carry a prediction a careful script
  first looks the earlier pair up (one GenQuery) and replaces it in the batch (35 ms in all).
  Each of the script's calls also waits what a client's call spends outside the catalog (round
  trip, agent, client library; held by no catalog worker): the difference between what the
  script measured per image and thread (56.8 ms to fetch, 77.8 ms to tag) and the calls' catalog
  cost. Without it four threads sharing two catalog workers would fetch and tag twice as fast as
  the real script did (38 s where it took 68 s); with it the model gives the measured time, which
  is printed beside it as a check.

Scenarios: inputs **in place** (a resource of the compute host), **elsewhere** (another host:
the product streams them, ``when_needed``), **already tagged** (in place, every image carrying an
earlier prediction: a re-run with a new model), for ``--images`` (default 2,000 and 20,000).

Printed per scenario: both times, the ratio script / product (above 1: the product is faster),
images tagged per second per tagger, and the catalog-bound lower limit: tagging alone at the
cheapest measured rate (two adds, 5.1 ms an image) divided by the product's taggers (one: a rule
never calls the rule engine from two threads). Targets (issue 19): elsewhere 1.5x faster at
2,000 and 2x at 20,000; in place 5x; already tagged 100 images/s per tagger; 20,000 in place
within 1.3x of the lower limit.

``--scale 0.1`` runs every cost and the delay server's poll ten times faster; the ratios hold
while the fake's own work (SQLite, the scripted notebook) stays small against the costs, which
on a busy machine it does less and less below 0.1.

Also printed for a task run as several shards: the lower limit with one tagger until the delay
server's first poll (``--delay-poll``, the server's ``delay_server_sleep_time_in_seconds``, 30 s by
default; the fake delay server polls first a whole period after the rule starts, the worst case
and what the zone showed: 25-30 s): a c2d_run's rule tags alone until then, so at 20,000 images
and the default poll no product comes nearer the plain lower limit than about 1.3x.

Usage: python benchmarks/bench_vs_client.py [--images 2000,20000] [--scenarios in_place,elsewhere,tagged]
       [--scale 1.0] [--capacity 2] [--shard-size 5000] [--rule c2d_run|c2d_submit] [--delay-poll 30]
       [--skip-script] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the fake server and the scripted runner live in tests/
    sys.path.insert(0, str(REPO))

from compute_to_data import rules  # noqa: E402
from compute_to_data.domain import conventions as names  # noqa: E402
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation  # noqa: E402
from compute_to_data.domain.registry import runners  # noqa: E402
from compute_to_data.grid.rule_engine import RuleEngineGrid  # noqa: E402
from tests.fakes import irods_modules  # noqa: E402
from tests.fakes.costs import (  # noqa: E402
    CLIENT_OUTSIDE_CATALOG_SECONDS,
    MEASURED_CAPACITY,
    MEASURED_SECONDS,
    SCRIPT_MEASURED,
    CatalogCosts,
)
from tests.fakes.delay_server import FakeDelayServer  # noqa: E402
from tests.fakes.irods_server import FakeIrodsServer  # noqa: E402
from tests.support.engine_support import HOME, IMAGES, RESULTS, STORAGE_HOST, ScriptedRunner, make_grid  # noqa: E402

DELAY_POLL_SECONDS = 30.0
CONFIG = f"{HOME}/task_config.json"
SCRIPT_THREADS = 4
#: tagging a fresh pair with two msiModAVUMetadata add: the cheapest measured way (seconds an image)
CHEAPEST_TAG_SECONDS = 2 * MEASURED_SECONDS["msiModAVUMetadata add"]
EARLIER = [AVU("predictedclass", "7", "c2d:20260101T000000Z-000000"),
           AVU("predictedscore", "0.5000", "c2d:20260101T000000Z-000000")]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    storage_host: str
    tagged: bool = False


SCENARIOS = {
    "in_place": Scenario("in_place", "inputs in place", "localhost"),
    "elsewhere": Scenario("elsewhere", "inputs elsewhere", STORAGE_HOST),
    "tagged": Scenario("tagged", "already tagged (in place)", "localhost", tagged=True),
}


def build(root: Path, scenario: Scenario, images: int) -> tuple[Any, Any]:
    files = {f"site{i // 1000:03d}/img_{i:06d}.png": str(i % 3).encode() for i in range(images)}
    admin, alice = make_grid(root, files, compute_host="localhost", storage_host=scenario.storage_host)
    if scenario.tagged:  # an earlier task's prediction on every image (written directly: not charged)
        operations = [MetadataOperation("add", EntityType.DATA_OBJECT, o.path, avu)
                      for o in alice.list_data_objects(IMAGES, recursive=True) for avu in EARLIER]
        alice.apply_metadata(operations)
    return admin, alice


def run_product(root: Path, scenario: Scenario, images: int, scale: float, capacity: int,
                shard_size: int, rule: str = "c2d_run", delay_poll: float = DELAY_POLL_SECONDS) -> dict[str, Any]:
    """One task on a fresh zone through ``rule``, and what it took and did: ``c2d_run`` (the user
    waits, as for the script; a task larger than one shard runs its shards in the rule and, once
    the delay server polls, in delayed rules at once) or ``c2d_submit`` (every shard waits for the
    delay server's poll)."""
    admin, alice = build(root, scenario, images)
    settings = {
        "allowed_runners": ["inprocess"],
        "staging_directory": str(root / "staging"),
        "lock_directory": str(root / "locks"),
        "default_timeout_seconds": 7200,
        "max_shard_size": max(shard_size, 5000),
    }
    settings_file = root / "compute_to_data.json"
    settings_file.write_text(json.dumps(settings))
    os.environ[names.SETTINGS_ENV] = str(settings_file)
    config = {
        "task_type": "image_classification",
        "inputs": {"collection": IMAGES, "pattern": "*.png", "recursive": True, "skip_tagged": not scenario.tagged},
        "output": {"collection": RESULTS},
        "compute": {"shard_size": shard_size},
        "container": {"runner": "inprocess"},
        "parameters": {"model": f"{HOME}/models/model.pt", "labels": f"{HOME}/models/labels.txt"},
    }
    local_config = root / "task_config.json"
    local_config.write_text(json.dumps(config))
    alice.put_file(local_config, CONFIG, "lts_resc")
    # the notebook's stand-in classifies at once (the real one spent 0.7 s on 2,000 images): its
    # predictions are tagged after the run, a shard's after it gave its resource's slot back
    runner = ScriptedRunner()

    def make_runner(settings: object = None) -> ScriptedRunner:
        return runner

    make_runner.uses_container_paths = False  # type: ignore[attr-defined]
    runners._items["inprocess"] = make_runner  # the scripted stand-in for the notebook
    costs = CatalogCosts.measured(scale=scale)
    costs.capacity = capacity
    costs.__post_init__()
    server = FakeIrodsServer(admin.root, host="irods-provider", costs=costs)
    server.load_rulebase(rules)
    with FakeDelayServer(server, poll_seconds=delay_poll * scale, executors=4):
        started = time.perf_counter()
        wall_start = time.time()
        run = server.irule(rule, CONFIG, user="alice")
        if not run.ok:
            raise SystemExit(f"{scenario.name}: {rule} failed: {run.error}")
        while True:
            [task] = [c for c in admin.find_collections_with_avu(names.A_TASK_ID, under=RESULTS) if not c.first(names.A_SHARD)]
            if task.first(names.A_STATE) in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        total = time.perf_counter() - started
    record = {a.attribute: a.value for a in admin.get_avus(EntityType.COLLECTION, task.path)}
    if record[names.A_STATE] != "succeeded":
        raise SystemExit(f"{scenario.name}: the task {record[names.A_STATE]}: {record.get(names.A_ERROR)}")
    runs = [c for c in admin.find_collections_with_avu(names.A_TASK_ID, under=RESULTS) if c.first(names.A_SHARD)] or [task]
    timings: dict[str, float] = {}
    staging: dict[str, Any] = {}
    for one in runs:  # a sharded task: its shards' timings and staging, added up
        for key, value in json.loads(one.first(names.A_TIMINGS) or "{}").items():
            timings[key] = timings.get(key, 0.0) + value
        for key, value in json.loads(one.first(names.A_STAGING) or "{}").items():
            staging[key] = staging.get(key, 0) + value if isinstance(value, int) else value
    tagged = sum(1 for o in admin.list_data_objects(IMAGES, recursive=True, avu_attributes=("predictedclass",))
                 if [a.units for a in o.avus] == [names.task_units(record[names.A_TASK_ID])])
    if tagged != images:
        raise SystemExit(f"{scenario.name}: {tagged} of {images} images carry the task's prediction")
    # when each run started and ended (seconds after the rule was called; the AVUs hold whole seconds)
    timeline = sorted(
        (round(_epoch(one.first(names.A_STARTED)) - wall_start), round(_epoch(one.first(names.A_FINISHED)) - wall_start))
        for one in runs if one.first(names.A_STARTED) and one.first(names.A_FINISHED)
    )
    return {"seconds": total, "timings": timings, "staging": staging, "runs": len(runs), "timeline": timeline,
            "calls": dict(costs.calls.most_common(30)), "charged": {k: round(v, 2) for k, v in costs.charged.most_common(6)},
            "charged_all": dict(costs.charged), "overrun": {k: round(v, 2) for k, v in costs.overrun.most_common(4)},
            "overrun_seconds": sum(costs.overrun.values())}


def _epoch(iso: str | None) -> float:
    return datetime.strptime(iso or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def run_script(root: Path, scenario: Scenario, images: int, scale: float, capacity: int) -> dict[str, Any]:
    """The model of the user's script on a fresh zone: 4 threads, read path + atomic tag per image."""
    admin, _ = build(root, scenario, images)
    costs = CatalogCosts.measured(scale=scale)
    costs.capacity = capacity
    costs.__post_init__()
    server = FakeIrodsServer(admin.root, host="client", costs=costs)
    irods_modules.install()
    import genquery  # the fake plugin module, as a rule sees it

    scratch = root / "fetched"
    scratch.mkdir()
    started = time.perf_counter()
    lister = RuleEngineGrid(*server.session("alice"))
    paths = [o.path for o in lister.list_data_objects(IMAGES, recursive=True)]  # one listing, as the script does
    local = threading.local()
    counter = iter(range(10**9))
    lock = threading.Lock()

    def agent() -> tuple[Any, RuleEngineGrid]:
        if not hasattr(local, "grid"):  # each thread its own connection (agent), as with python-irodsclient
            callback, rei = server.session("alice")
            local.callback, local.grid = callback, RuleEngineGrid(callback, rei)
        return local.callback, local.grid

    def outside(call: str) -> None:
        """What a client's call spends outside the catalog (round trip, agent, client library): the
        thread waits, no catalog worker is held (tests/fakes/costs.py, from the measured script)."""
        time.sleep(CLIENT_OUTSIDE_CATALOG_SECONDS[call] * scale)

    def one(path: str) -> None:
        callback, grid = agent()
        with lock:
            n = next(counter)
        target = scratch / f"{n}.png"
        grid.read_to_file(path, target)  # fetch: open, read to the end, close
        outside("fetch")
        label = target.read_bytes()[:1].decode()  # "classify locally"
        target.unlink()
        units = "c2d:script"
        operations = [{"operation": "add", "attribute": "predictedclass", "value": label, "units": units},
                      {"operation": "add", "attribute": "predictedscore", "value": "0.9000", "units": units}]
        if scenario.tagged:  # a careful script looks the earlier pair up and replaces it
            parent, name = path.rsplit("/", 1)
            rows = genquery.Query(callback, ["META_DATA_ATTR_NAME", "META_DATA_ATTR_VALUE", "META_DATA_ATTR_UNITS"],
                                  f"COLL_NAME = '{parent}' and DATA_NAME = '{name}' and META_DATA_ATTR_NAME like 'predicted%'",
                                  output=genquery.AS_LIST)
            outside("lookup")
            operations = [{"operation": "remove", "attribute": r[0], "value": r[1], "units": r[2]} for r in rows] + operations
        callback.msi_atomic_apply_metadata_operations(
            json.dumps({"entity_name": path, "entity_type": "data_object", "operations": operations}), "")
        outside("tag")

    with ThreadPoolExecutor(max_workers=SCRIPT_THREADS) as pool:
        list(pool.map(one, paths))
    total = time.perf_counter() - started
    found = admin.list_data_objects(IMAGES, recursive=True, avu_attributes=("predictedclass", "predictedscore"))
    wrong = [o.path for o in found if sorted(a.units for a in o.avus) != ["c2d:script", "c2d:script"]]
    if wrong:
        raise SystemExit(f"the script model left {len(wrong)} image(s) without exactly its pair, e.g. {wrong[0]}")
    return {"seconds": total, "calls": dict(costs.calls.most_common(6)),
            "charged": {k: round(v, 2) for k, v in costs.charged.most_common(4)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="2000,20000")
    parser.add_argument("--scenarios", default="in_place,elsewhere,tagged")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every cost and the delay server's poll")
    parser.add_argument("--capacity", type=int, default=MEASURED_CAPACITY,
                        help="catalog calls served at once (2: as replication and adds scaled on the zone; 1: as "
                             "the real script's fetch did, 70/s with 4 threads against 74/s from one rule)")
    parser.add_argument("--shard-size", type=int, default=5000, help="compute.shard_size of the product's task")
    parser.add_argument("--rule", choices=("c2d_run", "c2d_submit"), default="c2d_run",
                        help="how the product's task is started (c2d_submit: it waits for the delay server's poll)")
    parser.add_argument("--delay-poll", type=float, default=DELAY_POLL_SECONDS,
                        help="the delay server's poll in seconds (the server's delay_server_sleep_time_in_seconds; "
                             "30 by default): until its first poll a c2d_run's shards are tagged by the rule alone")
    parser.add_argument("--skip-script", action="store_true",
                        help="run the product only (the lower limits need no script; the ratios to the script are not printed)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-vs-client-"))
    sizes = [int(n) for n in args.images.split(",")]
    chosen = [SCENARIOS[name] for name in args.scenarios.split(",")]
    print(f"costs x{args.scale:g} (catalog capacity {args.capacity}), delay server polling every "
          f"{args.delay_poll * args.scale:g} s; in {root}", flush=True)
    results: list[dict[str, Any]] = []
    for images in sizes:
        for scenario in chosen:
            where = root / f"{scenario.name}-{images}"
            product = run_product(where / "product", scenario, images, args.scale, args.capacity, args.shard_size,
                                  args.rule, args.delay_poll)
            script = (None if args.skip_script else run_script(where / "script", scenario, images, args.scale, args.capacity))
            timings = product["timings"]
            # the tagging calls' own time (one tagger: its calls never overlap), at x1 costs
            tag_seconds = sum(v for k, v in product["charged_all"].items() if k.startswith("msiModAVUMetadata"))
            # taggers: one per run at once (a rule tags alone; shards run as up to 4 delayed rules),
            # and never more than the catalog serves at once
            taggers = min(product["runs"], 4, args.capacity)
            alone = images * CHEAPEST_TAG_SECONDS * args.scale  # tagging everything with one tagger
            limit = alone / taggers
            # the same with the delay server as it is: no delayed rule tags before its first poll
            # (c2d_run: the rule tags alone until then; c2d_submit: nobody does)
            poll = args.delay_poll * args.scale
            if taggers == 1:
                poll_limit = limit
            elif args.rule == "c2d_submit":
                poll_limit = poll + limit
            else:
                poll_limit = alone if alone <= poll else poll + (alone - poll) / taggers
            result = {
                "images": images, "scenario": scenario.name, "product_seconds": product["seconds"],
                "script_seconds": script["seconds"] if script else None,
                "script_over_product": script["seconds"] / product["seconds"] if script else None,
                "lower_limit_seconds": limit, "product_over_limit": product["seconds"] / limit,
                "poll_bound_limit_seconds": poll_limit, "product_over_poll_bound_limit": product["seconds"] / poll_limit,
                "tagged_per_second_per_tagger": images * args.scale / tag_seconds if tag_seconds else None,
                "product": product, "script": script,
            }
            results.append(result)
            staging = product["staging"]
            versus = (f"script {script['seconds']:7.1f} s | script/product {result['script_over_product']:5.2f}x"
                      if script else "script skipped")
            print(
                f"{images:6,d} {scenario.title:26s} product {product['seconds']:7.1f} s | {versus} | "
                f"lower limit ({taggers} tagger(s)) {limit:6.1f} s (product {result['product_over_limit']:4.2f}x) | "
                f"tagging calls {result['tagged_per_second_per_tagger'] or 0:4.0f} images/s per tagger",
                flush=True,
            )
            if taggers > 1:
                print(f"{'':33s} lower limit with one tagger until the delay server's first poll ({poll:g} s): "
                      f"{poll_limit:.1f} s (product {result['product_over_poll_bound_limit']:4.2f}x)", flush=True)
            print(f"{'':33s} product ({product['runs']} run(s)): stage_inputs {timings.get('stage_inputs', 0):.1f} s (streamed {staging['streamed']}, "
                  f"in place {staging['in_place']}, replicated {staging['replicated']}), execute "
                  f"{timings.get('execute', 0):.1f} s, tag_results {timings.get('tag_results', 0):.1f} s; "
                  + (f"runs (start, end) s: {product['timeline']}; " if product["runs"] > 1 else "") + "charged "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in product["charged"].items()), flush=True)
            # calls the fake took longer to handle than they cost the zone: that much of the
            # product's time is this machine's, not the zone's (summed over calls, run at once or not)
            print(f"{'':33s} calls beyond their cost on the fake: {product['overrun_seconds']:.1f} s in all ("
                  + ", ".join(f"{k} {v:.1f} s" for k, v in product["overrun"].items()) + ")", flush=True)
            if script is None:
                continue
            print(f"{'':33s} script:  charged " + ", ".join(f"{k} {v:.1f} s" for k, v in script["charged"].items()), flush=True)
            if not scenario.tagged:  # the model against what the script took on the zone, at the same scale
                measured = SCRIPT_MEASURED["fetch_seconds"] + SCRIPT_MEASURED["tag_seconds"]
                expected = measured * images / SCRIPT_MEASURED["images"] * args.scale
                print(f"{'':33s} script model {script['seconds']:.1f} s; the script measured on the zone, scaled: "
                      f"{expected:.1f} s (fetch and tag; its 0.7 s of inference left out)", flush=True)
    (root / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
