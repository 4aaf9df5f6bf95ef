"""The report browser's review features over HTTP (Starlette's test client, LocalGrid):
the review queue (order, keys, skip, undo), bursts and bulk decisions, filters, agreement
figures, the CSV/JSON export, and cancel/resume from the task page.

Every decision is checked where it lands: the AVUs on the images (the task's units), never the
page alone.
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from pathlib import Path
from urllib.parse import quote

import pytest

from compute_to_data.client.review import ReviewItem, agreement, bursts, parse_exif_time, review_order
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType, MetadataOperation, Validation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.web.app import WebConfig, create_app

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

from tests.support.client_support import (
    PASSWORDS,
    STORAGE,
    make_fake_zone,
    make_grid,
    make_task,
    queue_order,
    series_of_two,
    write_task_avus,
)

LOCAL = "http://127.0.0.1"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def q(path: str) -> str:
    return quote(path, safe="")


def client_for(tmp: Path, user: str = "alice") -> TestClient:
    return TestClient(create_app(WebConfig.for_local(tmp / "grid", user, cache_dir=tmp / f"cache-{user}")), base_url=LOCAL)


@pytest.fixture
def world(tmp_path: Path):
    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=12)
    return admin, made, tmp_path


def verdict(admin, path: str) -> dict[str, str]:  # noqa: ANN001
    return {a.attribute: a.value for a in admin.get_avus(EntityType.DATA_OBJECT, path)
            if a.attribute in (names.VALIDATED, names.VALIDATED_CLASS, names.VALIDATED_BY)}


def units(admin, path: str) -> set[str]:  # noqa: ANN001
    return {a.units for a in admin.get_avus(EntityType.DATA_OBJECT, path) if a.attribute.startswith("validated")}


def shown(page: str) -> str:
    found = re.search(r'name="path" value="([^"]+)"', page)
    return found.group(1) if found else ""


def press(client: TestClient, made, page: str, key: str | None = None, action: str | None = None,  # noqa: ANN001
          paths: list[str] | None = None, next_url: str | None = None, url: str | None = None):  # noqa: ANN201
    """Submit the review form as the browser would (the key field, or a button); ``url``: the
    queue's address (default: the task's)."""
    token = CSRF_RE.search(page).group(1)
    current = shown(page)
    form: dict[str, object] = {"csrf": token, "path": current, "action": action or "key", "key": key or "",
                               "next": next_url or re.search(r'name="next" value="([^"]+)"', page).group(1).replace("&amp;", "&"),
                               "paths": paths if paths is not None else [current]}
    response = client.post(url or f"/tasks/{made.task_id}/review", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text[:500]
    return client.get(response.headers["location"]).text


def test_the_queue_goes_least_certain_first_and_keys_decide_skip_and_undo(world):
    admin, made, tmp = world
    client = client_for(tmp)
    order = queue_order(made)
    page = client.get(f"/tasks/{made.task_id}/review").text
    assert shown(page) == order[0] and "0</strong> of 12 decided" in page
    assert 'accesskey="c"' in page and 'autofocus' in page  # the keyboard, without script

    page = press(client, made, page, "c")  # confirm
    assert verdict(admin, order[0]) == {names.VALIDATED: "true", names.VALIDATED_CLASS: made.classes[order[0]],
                                        names.VALIDATED_BY: "alice"}
    assert units(admin, order[0]) == {names.task_units(made.task_id)}
    assert shown(page) == order[1] and "1</strong> of 12 decided" in page and "confirmed" in page

    page = press(client, made, page, "3")  # the third class of the labels file: owl
    assert verdict(admin, order[1])[names.VALIDATED_CLASS] == "owl" and shown(page) == order[2]
    page = press(client, made, page, "dog")  # a class by its name
    assert verdict(admin, order[2])[names.VALIDATED_CLASS] == "dog"

    page = press(client, made, page, "s")  # skip: nothing written, the next one
    assert verdict(admin, order[3]) == {} and shown(page) == order[4] and "1 skipped" in page
    page = press(client, made, page, "x")  # a key that means nothing: said, nothing written
    assert "means nothing here" in page and shown(page) == order[4] and verdict(admin, order[4]) == {}

    page = press(client, made, page, "u")  # undo the skip: back to it
    assert shown(page) == order[3] and "0 skipped" in page
    page = press(client, made, page, "u")  # undo the "dog": its AVUs are gone again
    assert verdict(admin, order[2]) == {} and shown(page) == order[2] and "2</strong> of 12 decided" in page
    page = press(client, made, page, action="class:cat")  # a button
    assert verdict(admin, order[2])[names.VALIDATED_CLASS] == "cat"

    # Undo puts back what the image carried before, not nothing: validate, re-decide, undo.
    page = press(client, made, client.get(f"/tasks/{made.task_id}/review?at={q(order[0])}").text, "2")
    assert verdict(admin, order[0])[names.VALIDATED_CLASS] == "dog"
    press(client, made, page, "u")
    assert verdict(admin, order[0])[names.VALIDATED_CLASS] == made.classes[order[0]]


def test_the_queue_by_margin_shows_the_top_classes(world):
    """A predictions file with the top classes: ordered by the margin between the best two."""
    admin, made, tmp = world
    alice = admin.as_user("alice")
    margins = {p: round(0.01 + 0.02 * ((i * 5 + 3) % 12), 4) for i, p in enumerate(made.images)}
    lines = ["path,class,score,top_k"]
    for p in made.images:
        best, runner = made.scores[p], round(made.scores[p] - margins[p], 4)
        other = "owl" if made.classes[p] != "owl" else "cat"
        lines.append(f"{p},{made.classes[p]},{best:.4f},{made.classes[p]}:{best:.4f};{other}:{runner:.4f}")
    local = tmp / "predictions.csv"
    local.write_text("\n".join(lines) + "\n")
    alice.put_file(local, f"{made.collection}/{names.PREDICTIONS_CSV}", STORAGE, overwrite=True)
    client = client_for(tmp)
    page = client.get(f"/tasks/{made.task_id}/review?order=margin").text
    first = min(made.images, key=lambda p: (margins[p], p))
    assert shown(page) == first and 'id="top-classes"' in page
    assert f"{made.classes[first]}</td>" in page and "margin " in page
    # The score order is another one.
    assert shown(client.get(f"/tasks/{made.task_id}/review?order=score").text) == queue_order(made)[0] != first
    assert "order must be one of" in client.get(f"/tasks/{made.task_id}/review?order=random").text


def exif(admin, times: dict[str, str]) -> None:  # noqa: ANN001
    admin.as_user("alice").apply_metadata([
        MetadataOperation("add", EntityType.DATA_OBJECT, p, AVU(names.EXIF_DATETIME, t)) for p, t in times.items()
    ])


def test_a_burst_is_decided_at_once_each_image_with_its_own_avus(world):
    admin, made, tmp = world
    top = sorted(p for p in made.images if "/sub/" not in p)
    least = queue_order(made)[0]  # img_000, in the top collection
    assert least == top[0]
    burst = [top[0], top[1], top[2]]  # within 60 s of each other; top[3] 5 min later
    exif(admin, {top[0]: "2026:11:22 10:00:00", top[1]: "2026:11:22 10:00:30", top[2]: "2026-11-22T10:01:20",
                 top[3]: "2026:11:22 10:06:20"})
    client = client_for(tmp)
    page = client.get(f"/tasks/{made.task_id}/review").text
    listed = re.findall(r'name="paths" value="([^"]+)" checked', page)
    assert listed == burst and "Its burst: 3 images" in page
    # A shorter gap splits it.
    assert "Its burst" not in client.get(f"/tasks/{made.task_id}/review?gap=20").text

    # Correct the whole burst to owl: each image gets its own four AVUs with the task's units.
    page = press(client, made, page, action="class:owl", paths=burst)
    for p in burst:
        assert verdict(admin, p)[names.VALIDATED_CLASS] == "owl" and units(admin, p) == {names.task_units(made.task_id)}
    assert "3 images: corrected to owl" in page and "3</strong> of 12 decided" in page
    page = press(client, made, page, "u")  # one undo takes the whole decision back
    assert all(verdict(admin, p) == {} for p in burst)

    # A selection: confirm two of the three, each its own predicted class.
    page = client.get(f"/tasks/{made.task_id}/review").text
    press(client, made, page, "c", paths=burst[:2])
    assert [verdict(admin, p).get(names.VALIDATED_CLASS) for p in burst] == [made.classes[burst[0]], made.classes[burst[1]], None]

    # Filters: a camera (sub-collection) and a date range (EXIF dates only).
    sub = client.get(f"/tasks/{made.task_id}/review?camera={q(made.input_collection + '/sub')}").text
    assert "/sub/" in shown(sub) and "of 3 decided" in sub
    dated = client.get(f"/tasks/{made.task_id}/review?since=2026-11-22&until=2026-11-22").text
    assert "2</strong> of 4 decided" in dated
    assert "of 0 decided" in client.get(f"/tasks/{made.task_id}/review?since=2026-11-23").text
    assert "must be a date" in client.get(f"/tasks/{made.task_id}/review?since=yesterday").text


def test_decisions_need_the_token_write_access_and_an_image_of_the_task(world):
    admin, made, tmp = world
    client = client_for(tmp)
    page = client.get(f"/tasks/{made.task_id}/review").text
    current = shown(page)
    forged = client.post(f"/tasks/{made.task_id}/review", data={"csrf": "forged", "path": current, "action": "confirm",
                                                                 "paths": [current]})
    assert forged.status_code == 403 and verdict(admin, current) == {}
    token = CSRF_RE.search(page).group(1)
    config = f"{made.collection}/{names.TASK_CONFIG_FILE}"
    outside = client.post(f"/tasks/{made.task_id}/review", data={"csrf": token, "path": current, "action": "confirm",
                                                                  "paths": [current, config]})
    assert outside.status_code == 404 and verdict(admin, current) == {}  # nothing half-written

    # bob can read the task and its images, not write them: he sees the queue, his decisions are refused.
    admin.set_acl("read", "bob", made.collection, recursive=True)
    admin.set_acl("read", "bob", made.input_collection, recursive=True)
    bob = client_for(tmp, "bob")
    page = bob.get(f"/tasks/{made.task_id}/review").text
    assert shown(page) == current
    token = CSRF_RE.search(page).group(1)
    refused = bob.post(f"/tasks/{made.task_id}/review", data={"csrf": token, "path": current, "action": "confirm",
                                                               "paths": [current]})
    assert refused.status_code == 403 and "write access" in refused.text and verdict(admin, current) == {}


def test_agreement_figures_on_the_task_page(world):
    admin, made, tmp = world
    order = queue_order(made)  # the least certain decile of 12 images: 2
    alice = admin.as_user("alice")
    for path, cls in ((order[0], "owl" if made.classes[order[0]] != "owl" else "cat"), (order[5], made.classes[order[5]]),
                      (order[6], made.classes[order[6]])):
        alice.set_avus(EntityType.DATA_OBJECT, path, Validation(cls, "alice", names.iso_utc(), made.task_id).avus())
    page = client_for(tmp).get(f"/tasks/{made.task_id}").text
    figures = re.search(r'id="agreement">([^<]+)', page).group(1)
    assert "3 of 12 images validated, 2 confirmed (67%)" in figures
    assert "of the 2 least certain, 1 validated and 1 of those wrong" in figures
    table = re.search(r'<table class="confusion".*?</table>', page, re.S).group(0)
    assert table.count('class="num diag"') >= 1 and 'href="/tasks/' not in table


def test_export_csv_and_json(world):
    admin, made, tmp = world
    alice = admin.as_user("alice")
    path = made.images[1]
    alice.set_avus(EntityType.DATA_OBJECT, path, Validation("owl", "alice", "2026-11-23T08:00:00Z", made.task_id).avus())
    exif(admin, {path: "2026:11:22 10:00:00"})
    alice.apply_metadata([MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.EXIF_LATITUDE, "45.1885")),
                          MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.EXIF_LONGITUDE, "5.7245"))])
    client = client_for(tmp)
    response = client.get(f"/tasks/{made.task_id}/export?format=csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert f'filename="{made.task_id}-validations.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["path"] for r in rows] == sorted(made.images)
    row = next(r for r in rows if r["path"] == path)
    assert row == {"task_id": made.task_id, "path": path, "predicted_class": made.classes[path],
                   "score": f"{made.scores[path]:.4f}", "validated_class": "owl", "validated_by": "alice",
                   "validated_at": "2026-11-23T08:00:00Z", "validated_for_task": made.task_id,
                   "exif_datetime": "2026-11-22T10:00:00", "latitude": "45.1885", "longitude": "5.7245"}
    assert all(r["validated_class"] == "" for r in rows if r["path"] != path)
    doc = client.get(f"/tasks/{made.task_id}/export?format=json").json()
    assert doc["tasks"] == [made.task_id] and len(doc["images"]) == 12
    assert next(i for i in doc["images"] if i["path"] == path)["validated_class"] == "owl"
    assert client.get(f"/tasks/{made.task_id}/export?format=xml").status_code == 400
    assert client_for(tmp, "bob").get(f"/tasks/{made.task_id}/export").status_code == 404  # bob cannot read it


def test_cancel_and_resume_from_the_task_page_as_its_owner(tmp_path, monkeypatch):
    """The same refusals as c2d cancel/resume (the same code): state and owner."""
    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=3, state=TaskState.QUEUED)
    launched: list[str] = []
    monkeypatch.setattr("compute_to_data.client.submitters.worker_launcher",
                        lambda *a, **k: (lambda grid, collection: launched.append(collection)))
    client = client_for(tmp_path)
    page = client.get(f"/tasks/{made.task_id}").text
    assert 'id="cancel"' in page and 'id="resume"' not in page
    token = CSRF_RE.search(page).group(1)

    bob = client_for(tmp_path, "bob")
    admin.set_acl("read", "bob", made.collection, recursive=True)
    bob_page = bob.get(f"/tasks/{made.task_id}").text
    assert 'id="cancel"' not in bob_page  # not his task: no button ...
    bob_token = next(iter(bob.app.state.sessions._sessions.values())).csrf  # his page has no form
    refused = bob.post(f"/tasks/{made.task_id}/cancel", data={"csrf": bob_token})
    assert "bob may not change task" in refused.text  # ... and the lifecycle refuses anyway
    assert admin.get_avus(EntityType.COLLECTION, made.collection) and _state(admin, made) == "queued"

    assert client.post(f"/tasks/{made.task_id}/cancel", data={"csrf": "forged"}).status_code == 403
    page = client.post(f"/tasks/{made.task_id}/cancel", data={"csrf": token}).text
    assert _state(admin, made) == "cancelled" and "cancelled" in page and 'id="resume"' in page
    again = client.post(f"/tasks/{made.task_id}/cancel", data={"csrf": token}).text
    assert "already cancelled; nothing to cancel" in again

    page = client.post(f"/tasks/{made.task_id}/resume", data={"csrf": token}).text
    assert _state(admin, made) == "queued" and "resumed" in page and launched == [made.collection]
    assert "only a failed or cancelled task can be resumed" in client.post(f"/tasks/{made.task_id}/resume", data={"csrf": token}).text


def _state(admin, made) -> str:  # noqa: ANN001
    return {a.attribute: a.value for a in admin.get_avus(EntityType.COLLECTION, made.collection)}[names.A_STATE]


# --- the pure parts ----------------------------------------------------------------------------------------
def item(path: str, score: float, taken: str = "", top: tuple = ()) -> ReviewItem:
    return ReviewItem(path, "cat", score, top, None, parse_exif_time(taken) if taken else None)


def test_bursts_follow_camera_time_and_gap():
    items = [item("/z/a/1.jpg", 0.5, "2026:11:22 10:00:00"), item("/z/a/2.jpg", 0.5, "2026:11:22 10:00:59"),
             item("/z/a/3.jpg", 0.5, "2026:11:22 10:02:00"), item("/z/b/4.jpg", 0.5, "2026:11:22 10:00:30"),
             item("/z/a/5.jpg", 0.5), item("/z/a/6.jpg", 0.5)]
    groups = [[i.name for i in g] for g in bursts(items, 60)]
    assert groups == [["1.jpg", "2.jpg"], ["3.jpg"], ["5.jpg"], ["6.jpg"], ["4.jpg"]]
    assert [[i.name for i in g] for g in bursts(items, 61)][0] == ["1.jpg", "2.jpg", "3.jpg"]
    assert parse_exif_time("garbage") is None and parse_exif_time("2026-11-22T10:00:00+01:00").hour == 9


def test_review_order_and_agreement():
    a = item("/z/a.jpg", 0.9, top=(("cat", 0.9), ("dog", 0.05)))
    b = item("/z/b.jpg", 0.6, top=(("cat", 0.6), ("dog", 0.39)))
    c = item("/z/c.jpg", 0.5)
    assert [i.name for i in review_order([a, b, c], "score")] == ["c.jpg", "b.jpg", "a.jpg"]
    assert [i.name for i in review_order([a, b, c], "margin")] == ["b.jpg", "c.jpg", "a.jpg"]
    judged = [c.__class__(**{**c.__dict__, "validation": Validation("dog", "x", "t", "T1")}), a]
    figures = agreement(judged, "T1")
    assert (figures.validated, figures.confirmed, figures.decile_wrong) == (1, 0, 1)
    assert figures.confusion == {("cat", "dog"): 1}
    assert figures.describe() == "1 of 2 images validated, 0 confirmed (0%); of the 1 least certain, 1 validated and 1 of those wrong"


# --- c2d export ---------------------------------------------------------------------------------------------
def test_c2d_export_a_task_and_a_series(world, capsys, monkeypatch):
    from tests.support.client_support import run_cli

    admin, made, tmp = world
    alice = admin.as_user("alice")
    second = make_task(admin, tmp / "files2", n_images=12, task_id="20261123T020304Z-4d5e6f", with_files=False)
    write_task_avus(alice, made.collection, {names.A_SERIES: made.task_id, names.A_SERIES_STATE: "active",
                                             names.A_SCHEDULE: "1d"})
    write_task_avus(alice, second.collection, {names.A_SERIES: made.task_id, names.A_CREATED: "2026-11-23T02:03:04Z"})
    alice.set_avus(EntityType.DATA_OBJECT, made.images[0], Validation("owl", "alice", "2026-11-24T00:00:00Z", second.task_id).avus())
    grid = ["--local", str(tmp / "grid"), "--user", "alice"]

    code, out, err = run_cli(capsys, monkeypatch, "export", made.task_id, *grid)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 24 and {r["task_id"] for r in rows} == {made.task_id, second.task_id}
    assert "24 images of 2 tasks, 2 validated" in err  # the verdict is on the image, named for the second task
    judged = [r for r in rows if r["validated_class"]]
    assert {r["validated_for_task"] for r in judged} == {second.task_id}

    target = tmp / "one.json"
    code, out, err = run_cli(capsys, monkeypatch, "export", made.task_id, "--task-only", "-f", "json", "-o", str(target), *grid)
    assert code == 0, err
    doc = json.loads(target.read_text())
    assert doc["tasks"] == [made.task_id] and len(doc["images"]) == 12 and "one.json: 12 images of 1 task" in err

    code, out, err = run_cli(capsys, monkeypatch, "export", made.task_id, "-f", "xml", *grid)
    assert code == 1 and "--format must be one of csv, json" in err
    code, out, err = run_cli(capsys, monkeypatch, "export", made.task_id, *grid[:2], "--user", "bob")
    assert code == 1 and "is visible to bob" in err and not out


def test_c2d_status_shows_the_agreement_figures_of_the_task_page(world, capsys, monkeypatch):
    """One function computes the figures for both: images validated, share confirmed, the
    confusion table, how many of the least certain tenth were wrong."""
    from tests.support.client_support import run_cli

    admin, made, tmp = world
    alice = admin.as_user("alice")
    order = queue_order(made)
    wrong = next(c for c in ("cat", "dog", "owl") if c != made.classes[order[0]])
    verdicts = {order[0]: wrong, order[5]: made.classes[order[5]], order[7]: made.classes[order[7]]}
    for path, cls in verdicts.items():
        alice.set_avus(EntityType.DATA_OBJECT, path, Validation(cls, "alice", "2026-11-24T00:00:00Z", made.task_id).avus())
    # A verdict for another task's prediction does not count for this one.
    alice.set_avus(EntityType.DATA_OBJECT, order[1], Validation("owl", "bob", "2026-11-24T00:00:00Z", "20261101T000000Z-000000").avus())
    grid = ["--local", str(tmp / "grid"), "--user", "alice"]
    expected = "3 of 12 images validated, 2 confirmed (67%); of the 2 least certain, 1 validated and 1 of those wrong"

    code, out, err = run_cli(capsys, monkeypatch, "status", made.task_id, *grid)
    assert code == 0, err
    assert f"agreement {expected}" in " ".join(out.split())
    table = out[out.index("predicted \\ validated"):].splitlines()  # rows: predicted; columns: validated
    header = table[0].split()
    assert header[:3] == ["predicted", "\\", "validated"]
    cells = {line.split()[0]: line.split()[1:] for line in table[1:] if line.strip()}
    confusion = {}
    for (p, v) in [(made.classes[p], c) for p, c in verdicts.items()]:
        confusion[(p, v)] = confusion.get((p, v), 0) + 1
    columns = header[3:]
    for predicted, row in cells.items():
        assert sum(int(n) for n in row) == sum(n for (p, _), n in confusion.items() if p == predicted)
    assert set(columns) == {v for _, v in confusion}

    code, out, err = run_cli(capsys, monkeypatch, "status", made.task_id, "--json", *grid)
    doc = json.loads(out)["agreement"]
    assert (doc["images"], doc["validated"], doc["confirmed"], doc["share_confirmed"]) == (12, 3, 2, 0.6667)
    assert doc["least_certain_decile"] == {"images": 2, "validated": 1, "wrong": 1}
    assert {(c["predicted"], c["validated"]): c["images"] for c in doc["confusion"]} == confusion

    # The task page says the same.
    page = client_for(tmp).get(f"/tasks/{made.task_id}").text
    assert f'<p id="agreement">{expected}.</p>' in page

    # A running task has no figures yet: its list of images changes at every part.
    write_task_avus(alice, made.collection, {names.A_STATE: "running", names.A_HEARTBEAT: names.iso_utc()})
    code, out, err = run_cli(capsys, monkeypatch, "status", made.task_id, *grid)
    assert code == 0 and "agreement" not in out, out
    code, out, err = run_cli(capsys, monkeypatch, "status", made.task_id, "--json", *grid)
    assert "agreement" not in json.loads(out)


def test_the_review_queue_of_a_series_spans_its_tasks(world):
    """/series/<id>/review: every task of the series the user can read, least certain first
    across them; each decision written as the image's own task's prediction (its units), the
    task's own queue kept up to date; an image of no task of the series is refused."""
    admin, made, tmp = world
    second, owner = series_of_two(admin, made, tmp)
    bobs = make_task(admin, tmp / "bob", owner="bob", n_images=4, task_id="20261124T020304Z-0b0b0b")
    write_task_avus(admin.as_user("bob"), bobs.collection, {names.A_SERIES: made.task_id})  # alice cannot read it
    client = client_for(tmp)
    series_url = f"/series/{made.task_id}/review"
    assert f'href="{series_url}"' in client.get(f"/series/{made.task_id}").text

    order = queue_order(made)
    page = client.get(series_url).text
    assert shown(page) == order[0] and "0</strong> of 12 decided" in page and "2 tasks" in page
    assert f'href="/tasks/{made.task_id}">{made.task_id}</a>' in page  # predicted by the first task
    assert f'action="{series_url}"' in page

    page = press(client, made, page, "c", url=series_url)
    assert verdict(admin, order[0])[names.VALIDATED_CLASS] == made.classes[order[0]]
    assert units(admin, order[0]) == {names.task_units(made.task_id)}
    assert shown(page) == order[1] and owner[order[1]] == second.task_id
    page = press(client, made, page, "3", url=series_url)  # owl, as the second task's prediction
    assert verdict(admin, order[1])[names.VALIDATED_CLASS] == "owl"
    assert units(admin, order[1]) == {names.task_units(second.task_id)}
    assert "2</strong> of 12 decided" in page

    # The tasks' own queues know what was decided through the series' queue.
    assert "1</strong> of 6 decided" in client.get(f"/tasks/{second.task_id}/review").text
    page = press(client, made, client.get(series_url).text, "u", url=series_url)  # undo the owl
    assert verdict(admin, order[1]) == {} and shown(page) == order[1]
    assert "0</strong> of 6 decided" in client.get(f"/tasks/{second.task_id}/review").text

    # A burst decision may span the series' tasks: each image its own task's units.
    page = press(client, made, page, "2", paths=[order[1], order[2]], url=series_url)
    assert units(admin, order[1]) == {names.task_units(second.task_id)}
    assert units(admin, order[2]) == {names.task_units(made.task_id)}
    assert verdict(admin, order[2])[names.VALIDATED_CLASS] == "dog"

    # Bob's image is not in alice's series queue: refused, nothing written.
    token = CSRF_RE.search(page).group(1)
    refused = client.post(series_url, data={"csrf": token, "path": bobs.images[0], "action": "confirm",
                                            "paths": [bobs.images[0]], "next": series_url}, follow_redirects=False)
    assert refused.status_code == 404 and verdict(admin, bobs.images[0]) == {}
    assert client.post(series_url, data={"path": order[3], "action": "confirm", "paths": [order[3]]},
                       follow_redirects=False).status_code == 403  # no CSRF token
    assert verdict(admin, order[3]) == {}
    assert client.get("/series/not-a-series/review").status_code == 404
    # Bob cannot read the series' first task (alice's): its queue is refused as its page is.
    bob = client_for(tmp, "bob")
    assert bob.get(series_url).status_code == bob.get(f"/series/{made.task_id}").status_code == 404


def test_the_queue_and_the_export_on_a_zone(tmp_path):
    """The same through python-irodsclient (PRC fake): a decision, its undo, the export."""
    from compute_to_data.grid.client import IrodsConnectionOptions

    catalog, made = make_fake_zone(n_images=6)
    options = IrodsConnectionOptions(env_file=None, host="irods.example.org", port=1247, zone="tempZone")
    client = TestClient(create_app(WebConfig.for_irods(options, session_factory=catalog.session_factory,
                                                       cache_dir=tmp_path / "cache")), base_url=LOCAL)
    token = CSRF_RE.search(client.get("/signin").text).group(1)
    client.post("/signin", data={"csrf": token, "username": "alice", "password": PASSWORDS["alice"], "next": "/tasks"})
    page = client.get(f"/tasks/{made.task_id}/review").text
    first = shown(page)
    assert first == min(made.images, key=lambda p: (made.scores[p], p))
    page = press(client, made, page, "2")
    avus = {a: (v, u) for a, v, u in catalog.objects[first].avus}
    assert avus[names.VALIDATED_CLASS] == ("dog", names.task_units(made.task_id)) and avus[names.VALIDATED_BY][0] == "alice"
    assert "1</strong> of 6 decided" in page
    press(client, made, page, "u")
    assert not any(a.startswith("validated") for a, _, _ in catalog.objects[first].avus)
    rows = list(csv.DictReader(io.StringIO(client.get(f"/tasks/{made.task_id}/export").text)))
    assert sorted(r["path"] for r in rows) == sorted(made.images)
