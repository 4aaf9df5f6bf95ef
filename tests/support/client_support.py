"""Building blocks for the client and web tests: a LocalGrid with a finished task in it.

``make_task`` lays a task out exactly as the engine leaves it (compute_to_data/conventions.py):
the task collection with its ``c2d::`` AVUs, ``report.html``, ``task_config.json``, and prediction AVUs
(units ``c2d:<task id>``) on real PNG images, written through the Grid port only. Tests that
need a task run by the engine itself use ``tests/support/engine_support.py`` instead.
"""

from __future__ import annotations

import io
import json
import posixpath
import subprocess
from dataclasses import dataclass
from pathlib import Path

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.records import as_text
from compute_to_data.grid.local import LocalGrid

ZONE = "tempZone"
STORAGE = "lts_resc"
COMPUTE = "gpu_resc"
LABELS = ["cat", "dog", "owl"]

#: a report whose script tries to reach the app: it writes what it could do into the page.
HOSTILE_REPORT = """<!doctype html><html><head><title>report</title></head><body>
<h1>Classification report</h1>
<p>Images per class: cat, dog, owl.</p>
<pre id="probe">probing</pre>
<script>
var out = [];
try { out.push("cookie:" + JSON.stringify(document.cookie)); } catch (e) { out.push("cookie-blocked:" + e.name); }
try { out.push("parent:" + window.parent.document.title); } catch (e) { out.push("parent-blocked:" + e.name); }
try { out.push("storage:" + typeof window.localStorage.length); } catch (e) { out.push("storage-blocked:" + e.name); }
document.getElementById("probe").textContent = out.join("\\n");
try {
  fetch("/tasks", {credentials: "include"}).then(function (r) { return r.text(); })
    .then(function (t) { document.getElementById("probe").textContent += "\\nfetch:" + t.length; },
          function (e) { document.getElementById("probe").textContent += "\\nfetch-blocked:" + e.name; });
} catch (e) { document.getElementById("probe").textContent += "\\nfetch-blocked:" + e.name; }
</script>
</body></html>
"""


def png(value: int, size: int = 28) -> bytes:
    """A small grey-level PNG (a digit-like square with a bright block), unique per value."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    offset = value % (size - 10)
    draw.rectangle([offset, 4, offset + 8, size - 4], fill=255)
    draw.point((value % size, (value // size) % size), fill=128)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@dataclass
class MadeTask:
    task_id: str
    collection: str
    input_collection: str
    images: list[str]
    classes: dict[str, str]  # path -> predicted class
    scores: dict[str, float]


def make_grid(root: Path) -> LocalGrid:
    admin = LocalGrid.create(root, zone=ZONE)
    admin.make_resource(STORAGE)
    admin.make_resource(COMPUTE)
    admin.apply_metadata([
        MetadataOperation("add", EntityType.RESOURCE, STORAGE, AVU(names.ROLE_ATTRIBUTE, names.ROLE_LONG_TERM_STORAGE)),
        MetadataOperation("add", EntityType.RESOURCE, COMPUTE, AVU(names.ROLE_ATTRIBUTE, names.ROLE_GPU_COMPUTE)),
    ])
    for user in ("alice", "bob"):
        admin.add_user(user)
    return admin


def make_task(
    admin: LocalGrid,
    tmp: Path,
    owner: str = "alice",
    n_images: int = 12,
    task_id: str = "20261122T020304Z-3f9a1c",
    state: TaskState = TaskState.SUCCEEDED,
    report: str = HOSTILE_REPORT,
    with_files: bool = True,
) -> MadeTask:
    grid = admin.as_user(owner)
    home = f"/{ZONE}/home/{owner}"
    inputs = f"{home}/images"
    results = f"{home}/results"
    collection = posixpath.join(results, task_id)
    tmp.mkdir(parents=True, exist_ok=True)
    if with_files:
        grid.create_collection(inputs)
        for i in range(n_images):
            local = tmp / f"img_{i:03d}.png"
            local.write_bytes(png(i))
            sub = "sub/" if i % 4 == 3 else ""
            if sub:
                grid.create_collection(f"{inputs}/sub")
            grid.put_file(local, f"{inputs}/{sub}img_{i:03d}.png", STORAGE)
        labels = tmp / "labels.txt"
        labels.write_text("\n".join(LABELS) + "\n")
        grid.create_collection(f"{home}/models")
        grid.put_file(labels, f"{home}/models/labels.txt", STORAGE)
    grid.create_collection(collection)
    images = sorted(o.path for o in grid.list_data_objects(inputs, recursive=True))
    classes = {p: LABELS[i % 3] for i, p in enumerate(images)}
    scores = {p: round(0.35 + 0.6 * ((i * 7) % 10) / 10, 4) for i, p in enumerate(images)}
    units = names.task_units(task_id)
    ops = []
    for p in images:
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, p, AVU(names.DEFAULT_CLASS_ATTRIBUTE, classes[p], units)))
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, p, AVU(names.DEFAULT_SCORE_ATTRIBUTE, "%.4f" % scores[p], units)))
    grid.apply_metadata(ops)
    for name, content in (
        (names.REPORT_FILE, report),
        (names.TASK_CONFIG_FILE, json.dumps({
            "task_type": "image_classification",
            "inputs": {"collection": inputs, "recursive": True},
            "output": {"collection": results},
            "parameters": {"model": f"{home}/models/model.pt", "labels": f"{home}/models/labels.txt"},
        })),
        (names.PREDICTIONS_CSV, "path,class,score,top_k\n" + "".join(f"{p},{classes[p]},{scores[p]:.4f},\n" for p in images)),
    ):
        local = tmp / f"{task_id}-{name}"
        local.write_text(content)
        grid.put_file(local, posixpath.join(collection, name), STORAGE)
    values = {
        names.A_TASK_ID: task_id,
        names.A_TASK_TYPE: "image_classification",
        names.A_STATE: state,
        names.A_SUBMITTED_BY: owner,
        names.A_CREATED: "2026-11-22T02:03:04Z",
        names.A_STARTED: "2026-11-22T02:03:10Z",
        names.A_INPUT_COLLECTION: inputs,
        names.A_INPUTS: len(images),
        names.A_PROGRESS: f"{len(images)}/{len(images)}",
        names.A_COMPUTE_RESOURCE: COMPUTE,
        names.A_MODEL: f"{home}/models/model.pt",
        names.A_PARAMETERS: {"labels": f"{home}/models/labels.txt", "model": f"{home}/models/model.pt", "top_k": 3},
        names.A_REPORT: posixpath.join(collection, names.REPORT_FILE),
    }
    if state.is_final:
        values[names.A_FINISHED] = "2026-11-22T02:04:10Z"
    write_task_avus(grid, collection, values)
    return MadeTask(task_id, collection, inputs, images, classes, scores)


def queue_order(made: MadeTask) -> list[str]:
    """The task's images as its review queue shows them: least certain first, then by path."""
    return sorted(made.images, key=lambda p: (made.scores[p], p))


def series_of_two(admin: LocalGrid, made: MadeTask, tmp: Path) -> tuple[MadeTask, dict[str, str]]:
    """A second task in ``made``'s series (made its first task); the images split between them in
    queue order, every other one the second's, as two daily runs of a series would tag them.
    Returns the second task and {image: the task whose prediction it carries}."""
    second = make_task(admin, tmp / "files2", n_images=len(made.images), task_id="20261123T020304Z-4d5e6f",
                       with_files=False)
    alice = admin.as_user("alice")
    write_task_avus(alice, made.collection, {names.A_SERIES: made.task_id, names.A_SERIES_STATE: "active",
                                             names.A_SCHEDULE: "1d"})
    write_task_avus(alice, second.collection, {names.A_SERIES: made.task_id, names.A_CREATED: "2026-11-23T02:03:04Z"})
    owner = {}
    for n, path in enumerate(queue_order(made)):
        drop = made if n % 2 else second
        owner[path] = second.task_id if n % 2 else made.task_id
        for attribute, value in ((names.DEFAULT_CLASS_ATTRIBUTE, made.classes[path]),
                                 (names.DEFAULT_SCORE_ATTRIBUTE, "%.4f" % made.scores[path])):
            alice.remove_avu(EntityType.DATA_OBJECT, path, AVU(attribute, value, names.task_units(drop.task_id)))
    return second, owner


def write_task_avus(grid: LocalGrid, collection: str, values: dict) -> None:
    """Lay the bookkeeping out as the engine leaves it, state included, straight into the catalog
    (what a finished task looks like to readers; the lifecycle is not involved)."""
    grid.set_avus(EntityType.COLLECTION, collection, [AVU(k, as_text(v)) for k, v in values.items()])


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:  # noqa: ANN001
    """Run ``c2d ARGS`` through its real entry point; (exit code, stdout, stderr)."""
    from compute_to_data.cli import main as cli_main

    monkeypatch.setattr("sys.argv", ["c2d", *args])
    code = 0
    try:
        cli_main.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


# --- a zone for the python-irodsclient adapter (tests/fakes/prc_fake.py) ------------------------------
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}


def make_fake_zone(n_images: int = 12, task_id: str = "20261122T020304Z-3f9a1c", report: str = HOSTILE_REPORT):
    """A FakeCatalog holding alice's finished task, laid out as make_task lays it out."""
    from tests.fakes.prc_fake import FakeCatalog

    catalog = FakeCatalog(ZONE)
    for user, password in PASSWORDS.items():
        catalog.add_user(user, password)
    catalog.add_resource(COMPUTE, "gpu.example.org", "/gpu/vault", COMPUTE_RESOURCE_ROLE="GPU_COMPUTE")
    home = f"/{ZONE}/home/alice"
    inputs = f"{home}/images"
    results = f"{home}/results"
    collection = f"{results}/{task_id}"
    units = names.task_units(task_id)
    images, classes, scores = [], {}, {}
    for i in range(n_images):
        path = f"{inputs}/img_{i:03d}.png"
        classes[path] = LABELS[i % 3]
        scores[path] = round(0.35 + 0.6 * ((i * 7) % 10) / 10, 4)
        catalog.mkobj(path, "alice", png(i), "demoResc",
                      predictedclass=(classes[path], units), predictedscore=("%.4f" % scores[path], units))
        images.append(path)
    catalog.mkobj(f"{home}/models/labels.txt", "alice", ("\n".join(LABELS) + "\n").encode())
    catalog.mkobj(f"{collection}/{names.REPORT_FILE}", "alice", report.encode())
    catalog.mkobj(f"{collection}/{names.TASK_CONFIG_FILE}", "alice", json.dumps({
        "task_type": "image_classification", "inputs": {"collection": inputs}, "output": {"collection": results},
        "parameters": {"model": f"{home}/models/model.pt", "labels": f"{home}/models/labels.txt"},
    }).encode())
    avus = {
        names.A_TASK_ID: task_id, names.A_TASK_TYPE: "image_classification", names.A_STATE: "succeeded",
        names.A_SUBMITTED_BY: "alice", names.A_CREATED: "2026-11-22T02:03:04Z", names.A_STARTED: "2026-11-22T02:03:10Z",
        names.A_FINISHED: "2026-11-22T02:04:10Z", names.A_INPUT_COLLECTION: inputs, names.A_INPUTS: str(n_images),
        names.A_PROGRESS: f"{n_images}/{n_images}", names.A_COMPUTE_RESOURCE: COMPUTE,
        names.A_PARAMETERS: json.dumps({"labels": f"{home}/models/labels.txt", "model": f"{home}/models/model.pt"}),
        names.A_REPORT: f"{collection}/{names.REPORT_FILE}",
    }
    catalog.collections[collection].avus = [(k, v, "") for k, v in avus.items()]
    return catalog, MadeTask(task_id, collection, inputs, images, classes, scores)


# --- a task run for real: c2d submit -> detached worker -> notebook (in-process runner) ----------
@dataclass
class RealRun:
    root: Path  # the LocalGrid directory
    task_id: str
    collection: str
    inputs: str
    submit: subprocess.CompletedProcess[str]
    wait: subprocess.CompletedProcess[str]
    truth: dict[str, str]  # logical path -> true digit


def c2d(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process (as a researcher runs it)."""
    import os
    import sys

    env = {**os.environ, "COLUMNS": "200"}
    env.pop("C2D_LOCAL_GRID", None)
    return subprocess.run([sys.executable, "-m", "compute_to_data", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


_REAL_RUN: list[RealRun] = []


def real_run() -> RealRun:
    """Once per test process: a LocalGrid with 40 real digit images and a small trained model,
    a task submitted with ``c2d submit --local`` and followed with ``c2d wait``."""
    if _REAL_RUN:
        return _REAL_RUN[0]
    import atexit
    import shutil
    import tempfile

    from tests.support.notebook_support import make_inputs, tiny_model

    base = Path(tempfile.mkdtemp(prefix="c2d-real-run-"))
    atexit.register(shutil.rmtree, base, True)
    admin = make_grid(base / "grid")
    alice = admin.as_user("alice")
    home = f"/{ZONE}/home/alice"
    truth_rel = make_inputs(base / "digits", 40)
    (base / "digits" / "broken.png").unlink()
    alice.put_tree(base / "digits", f"{home}/digits", STORAGE)
    model = tiny_model()
    alice.create_collection(f"{home}/models")
    alice.put_file(Path(model["model"]), f"{home}/models/digits.pt", STORAGE)
    alice.put_file(Path(model["labels"]), f"{home}/models/labels.txt", STORAGE)
    settings = base / "settings.json"
    settings.write_text(json.dumps({"allowed_runners": ["inprocess"], "staging_directory": str(base / "staging")}))
    config = base / "classify.json"
    config.write_text(json.dumps({
        "task_type": "image_classification",
        "inputs": {"collection": f"{home}/digits", "pattern": "*.png", "recursive": True},
        "output": {"collection": f"{home}/results"},
        "container": {"runner": "inprocess"},
        "parameters": {"model": f"{home}/models/digits.pt", "labels": f"{home}/models/labels.txt", "batch_size": 8},
    }))
    local = ["--local", str(base / "grid"), "--user", "alice"]
    submitted = c2d("submit", str(config), *local, "--settings", str(settings))
    if submitted.returncode != 0:
        raise AssertionError(f"c2d submit failed: {submitted.stderr}")
    task_id = submitted.stdout.strip()
    waited = c2d("wait", task_id, *local, "--poll", "0.5", "--timeout", "600")
    run = RealRun(base / "grid", task_id, f"{home}/results/{task_id}", f"{home}/digits", submitted, waited,
                  {f"{home}/digits/{rel}": label for rel, label in truth_rel.items()})
    _REAL_RUN.append(run)
    return run
