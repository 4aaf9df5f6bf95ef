"""The review queue over a 20,000-image task on LocalGrid: what one decision costs.

A decision in the review queue is a full-page form POST answered by a redirect to the next
image (the app's pages run no script). This times, on the same grid and in the same run:

  - baseline: one validation as the image page has always made it (POST ``/validate``, then
    the image page it redirects to);
  - the queue's first page (cold: the task's image list is read once per session);
  - one decision in the queue (POST ``/review`` with a key, then the next image's page), warm.

Prints milliseconds and the ratio decision / baseline; exits 1 when a decision takes more than
``--max-ratio`` times the baseline (default 5: the queue page also counts the whole queue) or,
on the 20,000-image grid, more than 150 ms (the issue's bound; a ratio is what compares across
machines).

Usage: python benchmarks/bench_review.py [--images 20000] [--decisions 30] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import quote

from bench_web_pagination import TASK_ID, build  # the same 20,000-image task

from compute_to_data.domain.catalog import PredictionQuery

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
LIMIT_MS = 150.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--max-ratio", type=float, default=5.0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="c2d-bench-review-"))
    print(f"building a LocalGrid with {args.images} predicted images in {workdir} ...", file=sys.stderr)
    alice, inputs = build(workdir, args.images)

    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

    from compute_to_data.web.app import WebConfig, create_app

    client = TestClient(create_app(WebConfig.for_local(workdir / "grid", "alice", cache_dir=workdir / "thumbs")),
                        base_url="http://127.0.0.1")
    client.get("/tasks")
    paths = [i.path for i in alice.query_predictions(PredictionQuery(TASK_ID, inputs), 0, 2 * args.decisions).items]

    # Baseline: the image page's validation, as many times, on other images.
    baseline = []
    for path in paths[args.decisions:]:
        page = client.get(f"/tasks/{TASK_ID}/image?path={quote(path, safe='')}").text
        form = {"csrf": CSRF_RE.search(page).group(1), "path": path, "decision": "confirm",
                "next": f"/tasks/{TASK_ID}/image?path={quote(path, safe='')}"}
        started = time.perf_counter()
        response = client.post(f"/tasks/{TASK_ID}/validate", data=form)
        baseline.append(time.perf_counter() - started)
        assert response.status_code == 200 and "confirmed" in response.text, response.text[:300]

    started = time.perf_counter()
    page = client.get(f"/tasks/{TASK_ID}/review").text
    cold = time.perf_counter() - started
    decisions = []
    for _ in range(args.decisions):
        current = re.search(r'name="path" value="([^"]+)"', page).group(1)
        form = {"csrf": CSRF_RE.search(page).group(1), "path": current, "paths": [current], "action": "key", "key": "c",
                "next": f"/tasks/{TASK_ID}/review?order=score"}
        started = time.perf_counter()
        response = client.post(f"/tasks/{TASK_ID}/review", data=form)
        decisions.append(time.perf_counter() - started)
        page = response.text
        assert response.status_code == 200 and "confirmed" in page, page[:300]

    base_ms, decide_ms = 1000 * statistics.median(baseline), 1000 * statistics.median(decisions)
    ratio = decide_ms / base_ms
    print(f"images: {args.images}")
    print(f"baseline (image page: POST /validate + the page it redirects to), median: {base_ms:.1f} ms")
    print(f"review queue, first page (reads the task's image list): {1000 * cold:.1f} ms")
    print(f"review queue, one decision (POST + the next image's page), median: {decide_ms:.1f} ms "
          f"(max {1000 * max(decisions):.1f} ms)")
    print(f"ratio decision / baseline: {ratio:.2f} (limit {args.max_ratio:g})")
    failed = ratio > args.max_ratio or (args.images >= 20_000 and decide_ms > LIMIT_MS)
    if failed:
        print("FAIL: a decision in the review queue is too slow", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
