"""Report browser pagination over a 20,000-image task on LocalGrid: every page under 1 s?

Builds a LocalGrid with N images (default 20,000) carrying a task's prediction AVUs (class
and score, units ``c2d:<task id>``), then times, for the first, a middle and the last page,
unfiltered, by class, by score range and by both:

  - the grid query alone (``LocalGrid.query_predictions``: one page + the total);
  - the whole HTTP page as the browser gets it (Starlette app in-process: session, task
    lookup, class counts, the page query, the access check, template rendering);

and one thumbnail, cold (made with Pillow) and warm (from the disk cache). Exits 1 when any
page takes 1 s or more.

Usage: python benchmarks/bench_web_pagination.py [--images 20000] [--page-size 48] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import io
import posixpath
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation, PredictionQuery
from compute_to_data.domain.conventions import TaskState
from compute_to_data.grid.local import LocalGrid

TASK_ID = "20261122T020304Z-3f9a1c"
CLASSES = [str(d) for d in range(10)]
LIMIT_SECONDS = 1.0


def tiny_png(i: int) -> bytes:
    from PIL import Image

    image = Image.new("L", (32, 32), 0)
    image.putpixel((i % 32, (i // 32) % 32), 255)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def build(root: Path, count: int) -> tuple[LocalGrid, str]:
    admin = LocalGrid.create(root / "grid")
    admin.make_resource("lts_resc")
    admin.add_user("alice")
    alice = admin.as_user("alice")
    home = "/tempZone/home/alice"
    inputs, collection = f"{home}/images", f"{home}/results/{TASK_ID}"
    source = root / "src"
    for i in range(count):
        folder = source / f"batch_{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{i:06d}.png").write_bytes(tiny_png(i))
    started = time.perf_counter()
    objects = alice.put_tree(source, inputs, "lts_resc")
    print(f"  put {len(objects)} images in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    units = names.task_units(TASK_ID)
    ops = []
    for i, obj in enumerate(objects):
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, obj.path, AVU("predictedclass", CLASSES[i % 10], units)))
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, obj.path, AVU("predictedscore", "%.4f" % ((i * 37 % 1000) / 1000), units)))
    alice.apply_metadata(ops)
    alice.create_collection(collection)
    report = root / "report.html"
    report.write_text("<html><body>report</body></html>")
    alice.put_file(report, posixpath.join(collection, names.REPORT_FILE), "lts_resc")
    # A finished task's bookkeeping, laid out straight into the catalog (the state included,
    # which only the task lifecycle writes in a real run).
    values = {
        names.A_TASK_ID: TASK_ID, names.A_STATE: TaskState.SUCCEEDED.value, names.A_SUBMITTED_BY: "alice",
        names.A_CREATED: "2026-11-22T02:03:04Z", names.A_INPUT_COLLECTION: inputs, names.A_INPUTS: str(count),
        names.A_PROGRESS: f"{count}/{count}",
    }
    alice.set_avus(EntityType.COLLECTION, collection, [AVU(k, v) for k, v in values.items()])
    return alice, inputs


def timed(fn) -> float:  # noqa: ANN001
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=48)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-web-"))
    print(f"building a LocalGrid with {args.images} predicted images in {workdir} ...", file=sys.stderr)
    alice, inputs = build(workdir, args.images)

    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

    from compute_to_data.web.app import WebConfig, create_app

    client = TestClient(create_app(WebConfig.for_local(workdir / "grid", "alice", cache_dir=workdir / "thumbs",
                                                       page_size=args.page_size)), base_url="http://127.0.0.1")
    client.get("/tasks")  # session
    size = args.page_size
    filters = {
        "all": ({}, ""),
        "class 7": ({"predicted_class": "7"}, "cls=7"),
        "score 0.5-0.9": ({"min_score": 0.5, "max_score": 0.9}, "min=0.5&max=0.9"),
        "class 3, score >= 0.8": ({"predicted_class": "3", "min_score": 0.8}, "cls=3&min=0.8"),
    }
    rows = []
    for label, (query_filters, query_string) in filters.items():
        query = PredictionQuery(TASK_ID, inputs, **query_filters)
        total = alice.query_predictions(query, 0, 1).total or 0
        last = max(1, -(-total // size))
        for page in sorted({1, max(1, last // 2), last}):
            grid_s = timed(lambda: alice.query_predictions(query, (page - 1) * size, size))
            url = f"/tasks/{TASK_ID}/images?{query_string}&page={page}"
            response = None

            def fetch() -> None:
                nonlocal response
                response = client.get(url)

            http_s = timed(fetch)
            assert response is not None and response.status_code == 200, url
            cards = response.text.count('class="card')
            rows.append((label, total, page, last, cards, grid_s, http_s))

    print(f"\npagination on LocalGrid, {args.images} images, {size} per page (seconds)")
    print(f"{'filter':<24}{'matches':>8}{'page':>12}{'shown':>7}{'grid query':>12}{'HTTP page':>11}")
    for label, total, page, last, cards, grid_s, http_s in rows:
        print(f"{label:<24}{total:>8}{f'{page}/{last}':>12}{cards:>7}{grid_s:>12.3f}{http_s:>11.3f}")
    worst = max(r[6] for r in rows)
    print(f"\nHTTP page: median {statistics.median(r[6] for r in rows):.3f} s, worst {worst:.3f} s "
          f"(limit {LIMIT_SECONDS:.1f} s)")

    first = alice.query_predictions(PredictionQuery(TASK_ID, inputs), 0, 1).items[0].path
    thumb = f"/tasks/{TASK_ID}/thumbnail?path={quote(first, safe='')}"
    cold = timed(lambda: client.get(thumb))
    warm = timed(lambda: client.get(thumb))
    print(f"thumbnail: cold {cold * 1000:.1f} ms, cached {warm * 1000:.1f} ms")
    if worst >= LIMIT_SECONDS:
        print(f"FAIL: a page took {worst:.3f} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
