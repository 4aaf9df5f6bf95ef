"""The report browser over HTTP (Starlette's test client): LocalGrid and a zone (PRC fake).

Security properties are checked on the wire: headers (CSP, sandbox), cookies (HttpOnly,
SameSite=Strict), CSRF on every POST, per-user sessions, and access control on every route that
takes an object path. Pagination is checked by what the page asks the grid for, not by time.
"""

from __future__ import annotations

import posixpath
import re
import warnings
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, AccessLevel, EntityType, MetadataOperation
from compute_to_data.domain.conventions import TaskState
from compute_to_data.domain.errors import SettingsError
from compute_to_data.domain.timings import timings_text
from compute_to_data.grid.client import IrodsConnectionOptions
from compute_to_data.lifecycle.store import TaskStateStore
from compute_to_data.web.app import WebConfig, create_app
from compute_to_data.web.security import REPORT_SANDBOX

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402

from tests.support.client_support import LABELS, PASSWORDS, make_fake_zone, make_grid, make_task, png, write_task_avus

#: the report browser answers only to the names it serves (loopback here), not "testserver"
LOCAL = "http://127.0.0.1"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_RE.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def session_token(client: TestClient) -> str:
    """The CSRF token of the client's (only) server-side session, for pages without a form."""
    client.get("/tasks")
    sessions = list(client.app.state.sessions._sessions.values())
    assert len(sessions) == 1
    return sessions[0].csrf


def q(path: str) -> str:
    return quote(path, safe="")


@pytest.fixture
def world(tmp_path: Path):
    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=12)
    return admin, made, tmp_path


def local_client(tmp_path: Path, user: str = "alice", **kwargs) -> TestClient:
    app = create_app(WebConfig.for_local(tmp_path / "grid", user, cache_dir=tmp_path / f"cache-{user}", **kwargs))
    return TestClient(app, base_url=LOCAL)


# --- pages and headers ---------------------------------------------------------------------------------
def test_pages_and_security_headers(world):
    admin, made, tmp = world
    client = local_client(tmp)
    tasks = client.get("/tasks")
    assert tasks.status_code == 200 and made.task_id in tasks.text
    csp = tasks.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert tasks.headers["x-frame-options"] == "DENY" and tasks.headers["x-content-type-options"] == "nosniff"
    cookie = tasks.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie

    page = client.get(f"/tasks/{made.task_id}")
    assert page.status_code == 200
    for label in LABELS:
        assert f"?cls={label}" in page.text
    assert "c2d::compute_resource" in page.text and "gpu_resc" in page.text
    assert "report.html" in page.text and "predictions.csv" in page.text


def test_report_is_sandboxed(world):
    admin, made, tmp = world
    client = local_client(tmp)
    wrapper = client.get(f"/tasks/{made.task_id}/report")
    iframe = re.search(r"<iframe[^>]*>", wrapper.text).group(0)
    assert f'sandbox="{REPORT_SANDBOX}"' in iframe and "allow-same-origin" not in iframe
    assert f'src="/tasks/{made.task_id}/report/content"' in iframe

    content = client.get(f"/tasks/{made.task_id}/report/content")
    assert content.status_code == 200 and "<script>" in content.text  # served as it is ...
    csp = content.headers["content-security-policy"]
    directives = [d.strip() for d in csp.split(";")]
    assert directives[0] == "sandbox allow-scripts"  # ... but in an opaque origin, even opened directly
    assert "allow-same-origin" not in csp
    assert "connect-src 'none'" in directives and "form-action 'none'" in directives
    assert "frame-ancestors 'self'" in directives
    assert content.headers["x-frame-options"] == "SAMEORIGIN"
    assert "set-cookie" not in content.headers


def test_images_by_class_and_score(world):
    admin, made, tmp = world
    client = local_client(tmp)
    dogs = client.get(f"/tasks/{made.task_id}/images?cls=dog")
    expected = sorted(p for p, c in made.classes.items() if c == "dog")
    shown = re.findall(r'thumbnail\?path=([^"]+)"', dogs.text)
    assert shown == [q(p) for p in expected]
    high = client.get(f"/tasks/{made.task_id}/images?min=0.8&max=1")
    shown = re.findall(r'thumbnail\?path=([^"]+)"', high.text)
    assert shown == [q(p) for p in sorted(made.images) if made.scores[p] >= 0.8]
    bad = client.get(f"/tasks/{made.task_id}/images?min=high")
    assert bad.status_code == 200 and "between 0 and 1" in bad.text


def test_thumbnails_are_cached_by_path_and_checksum(world, monkeypatch):
    admin, made, tmp = world
    client = local_client(tmp)
    path = made.images[0]
    reads: list[str] = []
    from compute_to_data.grid.local import LocalGrid

    original_local = LocalGrid.read_data_object

    def counting(self, p, max_bytes=16 * 1024 * 1024):  # noqa: ANN001
        if p.startswith(made.input_collection):
            reads.append(p)
        return original_local(self, p, max_bytes)

    monkeypatch.setattr(LocalGrid, "read_data_object", counting)
    first = client.get(f"/tasks/{made.task_id}/thumbnail?path={q(path)}")
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    assert first.content[:2] == b"\xff\xd8"
    second = client.get(f"/tasks/{made.task_id}/thumbnail?path={q(path)}")
    assert second.content == first.content and reads == [path]  # served from the cache
    # A new version of the image (new checksum) gets a new thumbnail.
    new = tmp / "new.png"
    new.write_bytes(png(99, size=40))
    admin.as_user("alice").put_file(new, path, "lts_resc", overwrite=True)
    third = client.get(f"/tasks/{made.task_id}/thumbnail?path={q(path)}")
    assert reads == [path, path] and third.content != first.content


def test_full_image_is_served_for_browsers(world):
    admin, made, tmp = world
    client = local_client(tmp)
    full = client.get(f"/tasks/{made.task_id}/file?path={q(made.images[1])}")
    assert full.status_code == 200 and full.headers["content-type"] == "image/png"
    assert full.content == png(1)
    assert full.headers["content-security-policy"].startswith("sandbox")
    # A TIFF input is converted to PNG for the browser.
    import io

    from PIL import Image

    tiff = tmp / "x.tif"
    Image.new("L", (10, 10), 200).save(tiff, "TIFF")
    alice = admin.as_user("alice")
    target = f"{made.input_collection}/scan.tif"
    alice.put_file(tiff, target, "lts_resc")
    units = names.task_units(made.task_id)
    alice.set_avus(EntityType.DATA_OBJECT, target, [AVU("predictedclass", "owl", units), AVU("predictedscore", "0.5000", units)])
    converted = client.get(f"/tasks/{made.task_id}/file?path={q(target)}")
    assert converted.headers["content-type"] == "image/png" and Image.open(io.BytesIO(converted.content)).size == (10, 10)


def test_paths_outside_the_task_are_refused(world):
    admin, made, tmp = world
    client = local_client(tmp)
    config = f"{made.collection}/task_config.json"  # readable, but not an image of the task
    for route in ("image", "thumbnail", "file"):
        assert client.get(f"/tasks/{made.task_id}/{route}?path={q(config)}").status_code == 404
        assert client.get(f"/tasks/{made.task_id}/{route}?path={q(made.input_collection + '/../x')}").status_code == 404
    assert client.get("/tasks/not-a-task-id").status_code == 404
    assert client.get("/tasks/20990101T000000Z-000000").status_code == 404


# --- validation ----------------------------------------------------------------------------------------
def validate(client: TestClient, made, path: str, decision: str, cls: str | None = None, token: str | None = None, **extra):
    if token is None:
        token = csrf_of(client.get(f"/tasks/{made.task_id}/image?path={q(path)}").text)
    data = {"csrf": token, "path": path, "decision": decision, **({"class": cls} if cls else {})}
    return client.post(f"/tasks/{made.task_id}/validate", data=data, follow_redirects=False, **extra)


def validation_avus(grid, path: str) -> dict[str, str]:
    return {a.attribute: a.value for a in grid.get_avus(EntityType.DATA_OBJECT, path) if a.attribute.startswith("validated")}


def validation_units(grid, path: str) -> set[str]:
    return {a.units for a in grid.get_avus(EntityType.DATA_OBJECT, path) if a.attribute.startswith("validated")}


def test_validation_writes_avus(world):
    admin, made, tmp = world
    client = local_client(tmp)
    path = made.images[2]
    response = validate(client, made, path, "confirm")
    assert response.status_code == 303
    avus = validation_avus(admin, path)
    assert avus[names.VALIDATED] == "true" and avus[names.VALIDATED_CLASS] == made.classes[path]
    assert avus[names.VALIDATED_BY] == "alice" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", avus[names.VALIDATED_AT])
    # Every validation AVU names the task whose prediction was confirmed (conventions).
    assert len(avus) == 4 and validation_units(admin, path) == {names.task_units(made.task_id)}
    # Correcting replaces the values (one value per attribute, as `imeta set` would leave it).
    assert validate(client, made, path, "correct", "owl").status_code == 303
    values = [a for a in admin.get_avus(EntityType.DATA_OBJECT, path) if a.attribute == names.VALIDATED_CLASS]
    assert values == [AVU(names.VALIDATED_CLASS, "owl", names.task_units(made.task_id))]
    page = client.get(response.headers["location"])
    assert "corrected to owl" in page.text or "owl" in page.text
    listing = client.get(f"/tasks/{made.task_id}/images")
    assert "card validated" in listing.text
    # Predictions are untouched by validation.
    prediction = [a for a in admin.get_avus(EntityType.DATA_OBJECT, path) if a.attribute == "predictedclass"]
    assert prediction == [AVU("predictedclass", made.classes[path], names.task_units(made.task_id))]
    assert validate(client, made, path, "correct", "unicorn").status_code == 400
    assert validate(client, made, path, "delete").status_code == 400


def test_every_post_needs_the_csrf_token(world):
    admin, made, tmp = world
    client = local_client(tmp)
    path = made.images[3]
    token = csrf_of(client.get(f"/tasks/{made.task_id}/image?path={q(path)}").text)
    assert validate(client, made, path, "confirm", token="forged").status_code == 403
    response = client.post(f"/tasks/{made.task_id}/validate", data={"path": path, "decision": "confirm"})
    assert response.status_code == 403
    other = local_client(tmp)  # another browser's token does not work here
    assert validate(other, made, path, "confirm", token=token).status_code == 403
    cross = validate(client, made, path, "confirm", token=token, headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    assert client.get(f"/tasks/{made.task_id}/validate").status_code == 405
    assert validation_avus(admin, path) == {}
    assert validate(client, made, path, "confirm", token=token).status_code == 303  # the real token works


def test_other_users_cannot_see_or_validate(world):
    admin, made, tmp = world
    bob = local_client(tmp, "bob")
    path = made.images[4]
    assert made.task_id not in bob.get("/tasks").text
    assert bob.get(f"/tasks/{made.task_id}").status_code == 404
    for route in ("images", f"image?path={q(path)}", f"thumbnail?path={q(path)}", f"file?path={q(path)}", "report/content"):
        assert bob.get(f"/tasks/{made.task_id}/{route}").status_code == 404, route
    token = session_token(bob)
    response = bob.post(f"/tasks/{made.task_id}/validate", data={"csrf": token, "path": path, "decision": "confirm"})
    assert response.status_code == 404 and validation_avus(admin, path) == {}

    # Read access to the task and one image: bob sees that image only, and still cannot validate it.
    admin.set_acl("read", "bob", made.collection, recursive=True)
    admin.set_acl("read", "bob", path)
    listing = bob.get(f"/tasks/{made.task_id}/images")
    assert re.findall(r'thumbnail\?path=([^"]+)"', listing.text) == [q(path)]
    detail = bob.get(f"/tasks/{made.task_id}/image?path={q(path)}")
    assert detail.status_code == 200 and "cannot validate it" in detail.text and 'id="confirm"' not in detail.text
    response = bob.post(f"/tasks/{made.task_id}/validate", data={"csrf": token, "path": path, "decision": "confirm"})
    assert response.status_code == 403 and "write access" in response.text
    assert validation_avus(admin, path) == {}
    assert bob.get(f"/tasks/{made.task_id}/thumbnail?path={q(made.images[5])}").status_code == 404


# --- pagination ----------------------------------------------------------------------------------------
def test_image_pages_are_bounded_queries(tmp_path, monkeypatch):
    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=130)
    from compute_to_data.grid.local import LocalGrid

    calls: list[tuple] = []
    original = LocalGrid.query_predictions

    def spy(self, query, offset=0, limit=50):  # noqa: ANN001
        calls.append((offset, limit))
        return original(self, query, offset, limit)

    def no_full_listing(self, collection, recursive=False, avu_attributes=()):  # noqa: ANN001
        if collection.startswith(made.input_collection):
            raise AssertionError("a page must not list the whole input collection")
        return original_list(self, collection, recursive, avu_attributes)

    original_list = LocalGrid.list_data_objects
    monkeypatch.setattr(LocalGrid, "query_predictions", spy)
    monkeypatch.setattr(LocalGrid, "list_data_objects", no_full_listing)
    client = local_client(tmp_path, page_size=48)
    first = client.get(f"/tasks/{made.task_id}/images")
    assert calls == [(0, 48)]
    assert len(re.findall(r'class="card', first.text)) == 48
    assert "130 images match; page 1 of 3" in first.text and "page=2" in first.text
    third = client.get(f"/tasks/{made.task_id}/images?page=3")
    assert calls[-1] == (96, 48) and len(re.findall(r'class="card', third.text)) == 34 and "next" not in third.text
    big = client.get(f"/tasks/{made.task_id}/images?per_page=100000")
    assert calls[-1][1] == 200  # capped
    assert len(re.findall(r'class="card', big.text)) == 130


def test_task_list_filters_and_pages(world):
    admin, made, tmp = world
    alice = admin.as_user("alice")
    for i in range(55):
        collection = f"/tempZone/home/alice/results/20261121T0000{i:02d}Z-00000{i % 10}"
        alice.create_collection(collection)
        write_task_avus(alice, collection, {names.A_TASK_ID: collection.rsplit("/", 1)[1], names.A_STATE: TaskState.FAILED,
                                 names.A_SUBMITTED_BY: "alice", names.A_CREATED: "2026-11-21T00:00:00Z"})
    client = local_client(tmp)
    page1 = client.get("/tasks")
    assert "56 tasks" in page1.text and made.task_id in page1.text and "page 1 of 2" in page1.text
    assert made.task_id not in client.get("/tasks?state=failed").text
    assert made.task_id in client.get("/tasks?state=succeeded").text
    assert "1 task" in client.get("/tasks?since=2026-11-22").text
    assert "1 task" in client.get(f"/tasks?q={made.task_id[-6:]}").text
    assert "page 2 of 2" in client.get("/tasks?page=2").text
    assert "unknown state" in client.get("/tasks?state=bogus").text


# --- a zone: sign-in with the user's own credentials -----------------------------------------------------
@pytest.fixture
def zone(tmp_path: Path):
    catalog, made = make_fake_zone(n_images=9)
    options = IrodsConnectionOptions(env_file=None, host="irods.example.org", port=1247, zone="tempZone")
    config = WebConfig.for_irods(options, session_factory=catalog.session_factory, cache_dir=tmp_path / "cache")
    return catalog, made, create_app(config)


def sign_in(client: TestClient, user: str, password: str):
    token = csrf_of(client.get("/signin").text)
    return client.post("/signin", data={"csrf": token, "username": user, "password": password, "next": "/tasks"},
                       follow_redirects=False)


def test_sign_in_is_required_and_per_user(zone):
    catalog, made, app = zone
    client = TestClient(app, base_url=LOCAL)
    response = client.get(f"/tasks/{made.task_id}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/signin?next=")
    wrong = sign_in(client, "alice", "guess")
    assert wrong.status_code == 401
    assert "wrong user name or password" in wrong.text and "Traceback" not in wrong.text
    assert client.get("/tasks", follow_redirects=False).status_code == 303  # still signed out

    before = client.cookies.get("c2d_session")
    ok = sign_in(client, "alice", PASSWORDS["alice"])
    assert ok.status_code == 303 and ok.headers["location"] == "/tasks"
    assert client.cookies.get("c2d_session") != before  # a new session after sign-in
    assert made.task_id in client.get("/tasks").text
    assert len(app.state.sessions) == 1
    grid = next(iter(app.state.sessions._sessions.values())).grid
    assert grid.kind == "irods" and grid.user == "alice"  # acting as alice, not as an admin

    bob = TestClient(app, base_url=LOCAL)
    assert sign_in(bob, "bob", PASSWORDS["bob"]).status_code == 303
    assert made.task_id not in bob.get("/tasks").text
    assert bob.get(f"/tasks/{made.task_id}").status_code == 404
    assert bob.get(f"/tasks/{made.task_id}/file?path={q(made.images[0])}").status_code == 404

    # Signing out needs the CSRF token, drops the server-side session and closes its iRODS session.
    assert client.post("/signout", data={"csrf": "forged"}).status_code == 403
    token = csrf_of(client.get("/tasks").text)
    assert client.post("/signout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert grid.session.cleaned_up
    assert client.get("/tasks", follow_redirects=False).status_code == 303
    assert len(app.state.sessions) == 1  # bob's


def test_sign_in_form_needs_its_token(zone):
    catalog, made, app = zone
    client = TestClient(app, base_url=LOCAL)
    client.get("/signin")
    response = client.post("/signin", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert response.status_code == 403
    assert client.get("/tasks", follow_redirects=False).status_code == 303


def test_zone_images_report_and_validation(zone):
    catalog, made, app = zone
    client = TestClient(app, base_url=LOCAL)
    sign_in(client, "alice", PASSWORDS["alice"])
    owls = client.get(f"/tasks/{made.task_id}/images?cls=owl")
    assert re.findall(r'thumbnail\?path=([^"]+)"', owls.text) == [q(p) for p in made.images if made.classes[p] == "owl"]
    assert client.get(f"/tasks/{made.task_id}/thumbnail?path={q(made.images[0])}").headers["content-type"] == "image/jpeg"
    assert client.get(f"/tasks/{made.task_id}/report/content").headers["content-security-policy"].startswith("sandbox allow-scripts;")
    path = made.images[0]
    assert validate(client, made, path, "correct", "dog").status_code == 303
    avus = {a: v for a, v, _ in catalog.objects[path].avus}
    assert avus[names.VALIDATED] == "true" and avus[names.VALIDATED_CLASS] == "dog" and avus[names.VALIDATED_BY] == "alice"
    assert {u for a, _, u in catalog.objects[path].avus if a.startswith("validated")} == {names.task_units(made.task_id)}

    # bob with read access only: sees the image, cannot validate it (the catalog would refuse too).
    catalog.grant("bob", 1050, made.collection)
    catalog.grant("bob", 1050, made.images[1])
    bob = TestClient(app, base_url=LOCAL)
    sign_in(bob, "bob", PASSWORDS["bob"])
    shown = re.findall(r'thumbnail\?path=([^"]+)"', bob.get(f"/tasks/{made.task_id}/images").text)
    assert shown == [q(made.images[1])]
    assert validate(bob, made, made.images[1], "confirm").status_code == 403
    assert not any(a == names.VALIDATED for a, _, _ in catalog.objects[made.images[1]].avus)


def test_local_mode_has_no_sign_in(world):
    admin, made, tmp = world
    client = local_client(tmp)
    assert client.get("/signin", follow_redirects=False).headers["location"] == "/tasks"
    page = client.get("/tasks")
    assert ">alice<" in page.text and "Sign out" not in page.text


def test_session_store_expires_idle_sessions():
    from compute_to_data.web.sessions import SessionStore

    class Dummy:
        user = "alice"

    store = SessionStore(idle_seconds=0.0)
    sid, _ = store.create(Dummy())  # type: ignore[arg-type]
    import time

    time.sleep(0.01)
    assert store.get(sid) is None and len(store) == 0


def test_access_level_checks_use_modify_for_validation(world):
    admin, made, tmp = world
    admin.set_acl("read", "bob", made.collection, recursive=True)
    admin.set_acl("write", "bob", made.images[6])
    bob = local_client(tmp, "bob")
    assert validate(bob, made, made.images[6], "confirm").status_code == 303
    assert validation_avus(admin, made.images[6])[names.VALIDATED_BY] == "bob"
    assert admin.as_user("bob").has_access(made.images[6], AccessLevel.MODIFY)


# --- timings, superseded predictions, validations that name their prediction ---------------------------
LATER = "20261123T000000Z-aaaaaa"


def supersede(admin, made, paths: list[str], later: str = LATER, cls: str = "owl") -> str:
    """A later task re-predicts ``paths``: its prediction replaces the earlier one (as the engine does)."""
    alice = admin.as_user("alice")
    old, new = names.task_units(made.task_id), names.task_units(later)
    ops = []
    for path in paths:
        ops += [MetadataOperation("remove", EntityType.DATA_OBJECT, path, a) for a in alice.get_avus(EntityType.DATA_OBJECT, path)
                if a.attribute in (names.DEFAULT_CLASS_ATTRIBUTE, names.DEFAULT_SCORE_ATTRIBUTE) and a.units == old]
        ops += [MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.DEFAULT_CLASS_ATTRIBUTE, cls, new)),
                MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU(names.DEFAULT_SCORE_ATTRIBUTE, "0.9900", new))]
    alice.apply_metadata(ops)
    collection = posixpath.join(posixpath.dirname(made.collection), later)
    alice.create_collection(collection)
    write_task_avus(alice, collection, {
        names.A_TASK_ID: later, names.A_STATE: TaskState.SUCCEEDED, names.A_SUBMITTED_BY: "alice",
        names.A_CREATED: "2026-11-23T00:00:00Z", names.A_INPUT_COLLECTION: made.input_collection,
    })
    return later


def test_task_page_shows_where_the_time_went(world):
    admin, made, tmp = world
    timings = {"validate": 0.0123, "stage_inputs": 156.21, "wait_for_slot": 0.002, "run.kernel_start": 1.5,
               "run.papermill": 11.2, "execute": 12.3, "tag_results": 0.8}
    TaskStateStore(admin.as_user("alice")).write(made.collection, {names.A_TIMINGS: timings_text(timings)})
    page = local_client(tmp).get(f"/tasks/{made.task_id}").text
    table = page[page.index('id="timings"'):page.index("</table>", page.index('id="timings"'))]
    rows = re.findall(r'<tr class="depth-(\d)"><td class="path">([^<]+)</td><td class="num">([^<]+)</td>', table)
    assert rows == [
        ("0", "validate", "0.012 s"), ("0", "stage_inputs", "156.2 s"), ("0", "wait_for_slot", "0.002 s"),
        ("0", "execute", "12.30 s"), ("1", "run.kernel_start", "1.50 s"), ("1", "run.papermill", "11.20 s"),
        ("0", "tag_results", "0.800 s"),
    ]
    assert 'max="156.21" value="156.21"' in table  # bars relative to the longest step


def test_a_superseded_task_says_so_and_keeps_browsing_its_own_predictions(world):
    admin, made, tmp = world
    replaced = made.images[:5]
    later = supersede(admin, made, replaced)
    client = local_client(tmp)
    page = client.get(f"/tasks/{made.task_id}").text
    notice = page[page.index('id="superseded"'):page.index("</div>", page.index('id="superseded"'))]
    assert "5 of the 12 predictions of this task are no longer on the images" in notice
    assert f'5 images now carry the prediction of task <a href="/tasks/{later}">{later}</a>' in notice
    assert f'href="/tasks/{made.task_id}/predictions"' in page and "Browse the 7 images" in page

    own = client.get(f"/tasks/{made.task_id}/predictions")
    assert own.status_code == 200
    shown = re.findall(r'thumbnail\?path=([^"]+)"', own.text)
    assert shown == [q(p) for p in sorted(made.images)]  # all 12, from predictions.csv
    classes = re.findall(r'<td class="cls">([^<]+)</td>', own.text)
    assert classes == [made.classes[p] for p in sorted(made.images)]
    assert own.text.count(f'replaced by task <a href="/tasks/{later}">') == 5 and own.text.count("still on the image") == 7
    dogs = client.get(f"/tasks/{made.task_id}/predictions?cls=dog").text
    assert re.findall(r'thumbnail\?path=([^"]+)"', dogs) == [q(p) for p in sorted(made.images) if made.classes[p] == "dog"]
    last = client.get(f"/tasks/{made.task_id}/predictions?per_page=5&page=3").text
    assert len(re.findall(r'class="prediction"', last)) == 2 and "page 3 of 3" in last and "next" not in last

    # A superseded image can still be looked at from the earlier task, not validated there.
    path = replaced[0]
    assert client.get(f"/tasks/{made.task_id}/thumbnail?path={q(path)}").status_code == 200
    detail = client.get(f"/tasks/{made.task_id}/image?path={q(path)}")
    assert detail.status_code == 200 and 'id="confirm"' not in detail.text
    assert f'replaced by the prediction <strong>owl</strong> of task <a href="/tasks/{later}">' in detail.text
    assert f'<strong id="predicted">{made.classes[path]}</strong>' in detail.text
    token = session_token(client)
    assert validate(client, made, path, "confirm", token=token).status_code == 404
    assert validation_avus(admin, path) == {}
    # ... and an object the predictions file does not list stays outside the task.
    config = f"{made.collection}/task_config.json"
    assert client.get(f"/tasks/{made.task_id}/thumbnail?path={q(config)}").status_code == 404


def test_a_task_whose_predictions_are_intact_shows_no_notice(world, monkeypatch):
    admin, made, tmp = world
    from compute_to_data.grid.local import LocalGrid

    def no_listing(self, query):  # noqa: ANN001
        raise AssertionError("an intact task must not list its input collection")

    monkeypatch.setattr(LocalGrid, "prediction_owners", no_listing)
    page = local_client(tmp).get(f"/tasks/{made.task_id}").text
    assert 'id="superseded"' not in page and 'id="own-predictions"' not in page


def test_a_validation_names_the_prediction_it_judged(world):
    admin, made, tmp = world
    client = local_client(tmp)
    path = made.images[0]
    assert validate(client, made, path, "correct", "owl").status_code == 303
    later = supersede(admin, made, [path], cls="dog")
    # On the later task's pages the verdict is shown as being about the earlier prediction.
    listing = client.get(f"/tasks/{later}/images").text
    assert "card validated" not in listing and f"(for {made.task_id})" in listing
    detail = client.get(f"/tasks/{later}/image?path={q(path)}").text
    assert f"for the prediction of task {made.task_id}" in detail and 'id="confirm"' in detail
    # Confirming the later prediction replaces the verdict, now naming the later task.
    later_task = type(made)(later, "", made.input_collection, [path], {path: "dog"}, {path: 0.99})
    assert validate(client, later_task, path, "confirm").status_code == 303
    assert validation_avus(admin, path)[names.VALIDATED_CLASS] == "dog"
    assert validation_units(admin, path) == {names.task_units(later)}
    assert "card validated" in client.get(f"/tasks/{later}/images").text


# --- the administrator's settings ----------------------------------------------------------------------
def _running_task_silent_for(admin, tmp: Path, seconds: float):  # noqa: ANN001, ANN202
    """A running task whose last heartbeat is ``seconds`` old."""
    made = make_task(admin, tmp / "files", n_images=3, state=TaskState.RUNNING)
    beat = names.iso_utc(names.utc_now() - timedelta(seconds=seconds))
    write_task_avus(admin.as_user("alice"), made.collection, {names.A_HEARTBEAT: beat})
    return made


def test_the_heartbeat_lease_is_the_administrators(tmp_path, monkeypatch):
    """A run silent for 30 s: stale under a 10 s lease (the administrator's settings, given or
    from $C2D_SETTINGS), running under the built-in 60 s."""
    admin = make_grid(tmp_path / "grid")
    made = _running_task_silent_for(admin, tmp_path, 30)
    settings = tmp_path / "settings.json"
    settings.write_text('{"heartbeat_interval_seconds": 2, "heartbeat_lease_seconds": 10}')

    def shown(client: TestClient) -> str:
        page = client.get(f"/tasks/{made.task_id}").text
        return re.search(r'<h1>Task [^<]*<span class="state state-(\w+)">', page).group(1)

    monkeypatch.delenv(names.SETTINGS_ENV, raising=False)
    assert shown(local_client(tmp_path, settings_file=settings)) == names.STALE
    monkeypatch.setenv(names.SETTINGS_ENV, str(settings))
    assert shown(local_client(tmp_path)) == names.STALE
    listed = local_client(tmp_path).get("/tasks").text
    assert f'state-{names.STALE}' in listed
    monkeypatch.setenv(names.SETTINGS_ENV, str(tmp_path / "absent.json"))
    with pytest.raises(SettingsError, match="does not exist"):
        local_client(tmp_path)
    monkeypatch.delenv(names.SETTINGS_ENV)
    assert shown(local_client(tmp_path)) == "running"


# --- DNS rebinding: the Host and Origin the browser accepts ---------------------------------------------
def test_a_foreign_host_is_refused_and_validates_nothing(world):
    """Issue 20 item 1, as curl showed it: ``Host: evil.example:P`` got the task list, and a POST
    with that Host, ``Origin: http://evil.example:P`` and the page's token wrote a validation."""
    admin, made, tmp = world
    app = create_app(WebConfig.for_local(tmp / "grid", "alice", cache_dir=tmp / "cache", bind="127.0.0.1", port=8750))
    evil = TestClient(app, base_url="http://evil.example:8750")
    listed = evil.get("/tasks")
    assert listed.status_code == 400 and made.task_id not in listed.text
    assert "evil.example" in listed.text and "web.allowed_hosts" in listed.text
    page = evil.get(f"/tasks/{made.task_id}/image?path={q(made.images[0])}")
    assert page.status_code == 400 and "csrf" not in page.text

    # The token from a legitimate page, posted through the rebound name: refused, nothing written.
    good = TestClient(app, base_url="http://127.0.0.1:8750")
    token = csrf_of(good.get(f"/tasks/{made.task_id}/image?path={q(made.images[0])}").text)
    evil.cookies = good.cookies
    form = {"csrf": token, "path": made.images[0], "decision": "confirm"}
    posted = evil.post(f"/tasks/{made.task_id}/validate", data=form, headers={"origin": "http://evil.example:8750"},
                       follow_redirects=False)
    assert posted.status_code == 400
    # ... and with the served Host but the foreign Origin (the check no longer follows the Host).
    posted = good.post(f"/tasks/{made.task_id}/validate", data=form, headers={"origin": "http://evil.example:8750"},
                       follow_redirects=False)
    assert posted.status_code == 403
    # ... or another port of this machine (another local web app).
    posted = good.post(f"/tasks/{made.task_id}/validate", data=form, headers={"origin": "http://127.0.0.1:3000"},
                       follow_redirects=False)
    assert posted.status_code == 403
    avus = {a.attribute for a in admin.get_avus(EntityType.DATA_OBJECT, made.images[0])}
    assert names.VALIDATED not in avus

    # The served address, and the loopback names for a loopback address, are answered.
    for base in ("http://127.0.0.1:8750", "http://localhost:8750", "http://[::1]:8750"):
        assert TestClient(app, base_url=base).get("/tasks").status_code == 200, base
    done = good.post(f"/tasks/{made.task_id}/validate", data=form, headers={"origin": "http://127.0.0.1:8750"},
                     follow_redirects=False)
    assert done.status_code == 303
    assert names.VALIDATED in {a.attribute for a in admin.get_avus(EntityType.DATA_OBJECT, made.images[0])}


def test_names_the_administrator_lists_are_answered_in_zone_mode(zone, tmp_path):
    """Zone mode, served on an external address behind a proxy: its address and the listed
    names are answered (any port for a listed name: the proxy's), nothing else."""
    catalog, made, _ = zone
    settings = tmp_path / "settings.json"
    settings.write_text('{"web": {"allowed_hosts": ["Reports.Example.org"]}}')
    options = IrodsConnectionOptions(env_file=None, host="irods.example.org", port=1247, zone="tempZone")
    app = create_app(WebConfig.for_irods(options, session_factory=catalog.session_factory, cache_dir=tmp_path / "c",
                                         settings_file=settings, bind="192.0.2.7", port=8750))
    assert TestClient(app, base_url="http://evil.example:8750").get("/signin").status_code == 400
    assert TestClient(app, base_url="http://localhost:8750").get("/signin").status_code == 400
    assert TestClient(app, base_url="http://192.0.2.7:8750").get("/signin").status_code == 200
    proxied = TestClient(app, base_url="https://reports.example.org")
    page = proxied.get("/signin")
    assert page.status_code == 200
    form = {"csrf": csrf_of(page.text), "username": "alice", "password": PASSWORDS["alice"], "next": "/tasks"}
    refused = proxied.post("/signin", data=form, headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert refused.status_code == 403
    signed = proxied.post("/signin", data=form, headers={"origin": "https://reports.example.org"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/tasks"


def test_allowed_hosts_must_be_host_names(tmp_path):
    from compute_to_data.domain.settings import Settings

    for bad in ("http://reports.example.org", "reports.example.org:443", "*", "a b", 7):
        with pytest.raises(SettingsError, match="web.allowed_hosts"):
            Settings.from_document({"web": {"allowed_hosts": [bad]}}, "settings.json")
    with pytest.raises(SettingsError, match="unknown web setting"):
        Settings.from_document({"web": {"allowed_host": []}}, "settings.json")
    assert Settings.from_document({"web": {"allowed_hosts": ["[2001:DB8::7]"]}}, "s").web.allowed_hosts == ("[2001:db8::7]",)


def test_a_nul_character_in_a_parameter_is_a_bad_request(world, zone):
    """Issue 20 item 8: ``?name=`` or ``?path=`` with a NUL answered 502 (the grid's own error)."""
    admin, made, tmp = world
    catalog, zmade, app = zone
    zclient = TestClient(app, base_url=LOCAL)
    assert sign_in(zclient, "ali\x00ce", PASSWORDS["alice"]).status_code == 400
    assert sign_in(zclient, "alice", PASSWORDS["alice"]).status_code == 303
    for client, task in ((local_client(tmp), made), (zclient, zmade)):
        root, first = task.input_collection, task.images[0]
        for url in (
            f"/tasks/{task.task_id}/download?name=report%00.html",
            f"/tasks/{task.task_id}/image?path={q(root)}%2Fimg%00.png",
            f"/tasks/{task.task_id}/thumbnail?path={q(first)}%00",
            f"/tasks/{task.task_id}/file?path={q(first)}%00",
            f"/tasks/{task.task_id}/images?cls=d%00og",
        ):
            response = client.get(url)
            assert response.status_code == 400, (url, response.status_code)
            assert "NUL character" in response.text
        token = session_token(client) if client is not zclient else csrf_of(client.get(f"/tasks/{task.task_id}/image?path={q(first)}").text)
        posted = client.post(f"/tasks/{task.task_id}/validate", data={"csrf": token, "path": first + "\x00", "decision": "confirm"},
                             follow_redirects=False)
        assert posted.status_code == 400


def test_served_hosts_parse_hosts_and_origins_strictly(monkeypatch):
    import socket

    from compute_to_data.web.hosts import ServedHosts

    monkeypatch.setattr(socket, "gethostname", lambda: "labhost")
    monkeypatch.setattr(socket, "getfqdn", lambda: "labhost.example.org")
    wildcard = ServedHosts.of("0.0.0.0", 8750)
    for host in ("127.0.0.1:8750", "localhost", "[::1]:8750", "LabHost.example.org:8750", "labhost"):
        assert wildcard.accepts_host(host), host
    for host in ("", "evil.example", "127.0.0.1.evil.example", "alice@127.0.0.1", "127.0.0.1:notaport", "127.0.0.1/x",
                 "[::1", "0.0.0.0"):
        assert not wildcard.accepts_host(host), host
    assert wildcard.accepts_origin("http://localhost:8750") and wildcard.accepts_origin("http://[::1]:8750")
    for origin in ("http://localhost:8751", "http://localhost", "https://127.0.0.1:8750/x", "file://localhost",
                   "http://evil.example:8750", "garbage"):
        assert not wildcard.accepts_origin(origin), origin
    external = ServedHosts.of("192.0.2.7", 8750, ["reports.example.org"])
    assert not external.accepts_host("localhost:8750") and external.accepts_host("192.0.2.7:8750")
    assert external.accepts_origin("https://reports.example.org") and not external.accepts_origin("http://192.0.2.7:80")
