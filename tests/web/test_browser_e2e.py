"""The report browser in a real headless browser (Debian's chromium driven by Selenium).

1. Against a zone (python-irodsclient, PRC fake): sign-in (a wrong password first), the report
   in its sandboxed iframe (its script probes the app's cookies, the parent page and the app's
   pages, and must be refused), filtering by class and validating a prediction.
2. Against a LocalGrid task run for real (``c2d submit`` -> worker -> notebook): the rendered
   notebook report, images by class, a validation; the screenshot of that page is the README's
   (docs/screenshot.png, rewritten when missing or with C2D_UPDATE_SCREENSHOT=1).

Without a browser the tests are skipped on a developer machine and FAIL in CI (CI set).
"""

from __future__ import annotations

import os
import time

import pytest

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import EntityType
from compute_to_data.grid.client import IrodsConnectionOptions
from compute_to_data.grid.local import LocalGrid
from compute_to_data.web.app import WebConfig, create_app
from tests.support.browser_support import REPO, browser_paths, chrome, live_server, save_screenshot
from tests.support.client_support import PASSWORDS, make_fake_zone, make_grid, make_task, real_run


@pytest.fixture(scope="module")
def browser() -> tuple[str, str]:
    return browser_paths()


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def images_loaded(driver) -> bool:  # noqa: ANN001
    return driver.execute_script(
        "return Array.from(document.images).every(function (i) { return i.complete && i.naturalWidth > 0; });"
    )


def by_css(driver, selector: str):  # noqa: ANN001, ANN201
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def flashes_saying(driver, word: str) -> list[str]:  # noqa: ANN001
    """The page's messages that say ``word``; none while the page is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return [text for text in (e.text for e in by_css(driver, ".flash")) if word in text]
    except StaleElementReferenceException:
        return []


def submit_sign_in(driver, user: str, password: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.NAME, "username")
    field.clear()
    field.send_keys(user)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, ".signin button[type=submit]").click()


def choose(driver, select_name_or_id: str, value: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    try:
        element = driver.find_element(By.ID, select_name_or_id)
    except Exception:  # noqa: BLE001
        element = driver.find_element(By.NAME, select_name_or_id)
    Select(element).select_by_value(value)


def test_zone_sign_in_report_sandbox_filter_and_validate(browser, tmp_path):
    from selenium.webdriver.common.by import By

    catalog, made = make_fake_zone(n_images=12)
    options = IrodsConnectionOptions(env_file=None, host="irods.example.org", port=1247, zone="tempZone")
    app = create_app(WebConfig.for_irods(options, session_factory=catalog.session_factory, cache_dir=tmp_path / "cache"))
    with live_server(app) as url, chrome(*browser) as driver:
        driver.get(f"{url}/tasks")
        assert "/signin" in driver.current_url

        # A wrong password: one clear sentence, no traceback, still signed out.
        submit_sign_in(driver, "alice", "not-my-password")
        error = wait_for(lambda: by_css(driver, ".error"), what="the sign-in error")[0].text  # the form posts, then loads
        assert "wrong user name or password" in error
        assert "Traceback" not in driver.page_source and "/signin" in driver.current_url

        submit_sign_in(driver, "alice", PASSWORDS["alice"])
        wait_for(lambda: driver.current_url.endswith("/tasks"), what="the task list")
        driver.find_element(By.LINK_TEXT, made.task_id).click()
        wait_for(lambda: by_css(driver, "a.button"), what="the task page")

        # The session cookie is HttpOnly and SameSite=Strict: page scripts cannot read it.
        cookie = next(c for c in driver.get_cookies() if c["name"] == "c2d_session")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert driver.execute_script("return document.cookie;") == ""

        # The report: sandboxed iframe; its script runs but cannot reach cookies, parent or the app.
        driver.find_element(By.LINK_TEXT, "Read the report").click()
        frame = wait_for(lambda: by_css(driver, "iframe.report"), what="the report iframe")[0]
        assert frame.get_attribute("sandbox") == "allow-scripts"
        driver.switch_to.frame(frame)
        probe = wait_for(lambda: "fetch" in (t := driver.find_element(By.ID, "probe").text) and t, what="the probe")
        assert "cookie-blocked:SecurityError" in probe, probe
        assert "parent-blocked:SecurityError" in probe, probe
        assert "storage-blocked:SecurityError" in probe, probe
        assert "fetch-blocked" in probe and "fetch:" not in probe, probe
        assert cookie["value"] not in driver.page_source
        driver.switch_to.default_content()
        save_screenshot(driver, "browser-zone-report.png")

        # Images by class.
        driver.get(f"{url}/tasks/{made.task_id}/images")
        choose(driver, "cls", "dog")
        driver.find_element(By.CSS_SELECTOR, ".filters button").click()
        wait_for(lambda: "cls=dog" in driver.current_url, what="the filtered page")
        classes = [e.text for e in by_css(driver, ".card .cls")]
        assert classes == ["dog"] * sum(1 for c in made.classes.values() if c == "dog")
        wait_for(lambda: images_loaded(driver), what="thumbnails")

        # Validate: correct the first dog to an owl.
        first = sorted(p for p, c in made.classes.items() if c == "dog")[0]
        by_css(driver, ".card a")[0].click()
        wait_for(lambda: by_css(driver, "#correct"), what="the image page")
        assert driver.find_element(By.ID, "predicted").text == "dog"
        choose(driver, "correct-class", "owl")
        driver.find_element(By.ID, "correct").click()
        flash = wait_for(lambda: by_css(driver, ".flash"), what="the confirmation")[0].text
        assert "corrected to owl" in flash and "cls=dog" in driver.current_url
        avus = {a: v for a, v, _ in catalog.objects[first].avus}
        assert avus[names.VALIDATED] == "true" and avus[names.VALIDATED_CLASS] == "owl"
        assert avus[names.VALIDATED_BY] == "alice"
        assert len(by_css(driver, ".card.validated")) == 1
        wait_for(lambda: images_loaded(driver), what="thumbnails")
        save_screenshot(driver, "browser-zone-images.png")

        # Signing out ends the session.
        driver.find_element(By.CSS_SELECTOR, "header button.link").click()
        wait_for(lambda: "/signin" in driver.current_url, what="the sign-in page")
        driver.get(f"{url}/tasks/{made.task_id}")
        assert "/signin" in driver.current_url


def test_real_run_report_images_and_validation(browser, tmp_path):
    from selenium.webdriver.common.by import By

    run = real_run()
    assert run.wait.returncode == 0, run.wait.stdout + run.wait.stderr
    app = create_app(WebConfig.for_local(run.root, "alice", cache_dir=tmp_path / "cache"))
    with live_server(app) as url, chrome(*browser, width=1280, height=860) as driver:
        driver.get(f"{url}/tasks")
        driver.find_element(By.LINK_TEXT, run.task_id).click()
        wait_for(lambda: by_css(driver, "table.counts"), what="class counts")
        counts = {row.find_elements(By.TAG_NAME, "td")[0].text: int(row.find_elements(By.TAG_NAME, "td")[1].text)
                  for row in by_css(driver, "table.counts tbody tr")}
        assert sum(counts.values()) == len(run.truth)

        # The real notebook report renders inside the sandbox.
        driver.find_element(By.LINK_TEXT, "Read the report").click()
        frame = wait_for(lambda: by_css(driver, "iframe.report"), what="the report iframe")[0]
        driver.switch_to.frame(frame)
        heading = wait_for(lambda: by_css(driver, "h1"), what="the report's heading")[0].text
        assert heading.startswith("Results")  # results first (issue 21); the notebook's explanations follow
        assert by_css(driver, "img.c2d-thumbnail"), "the least certain images' thumbnails"
        driver.switch_to.default_content()

        # Images of the most frequent class; validate the first one.
        cls = max(counts, key=counts.get)
        driver.get(f"{url}/tasks/{run.task_id}/images")
        choose(driver, "cls", cls)
        driver.find_element(By.CSS_SELECTOR, ".filters button").click()
        wait_for(lambda: f"cls={cls}" in driver.current_url, what="the filtered page")
        assert [e.text for e in by_css(driver, ".card .cls")] == [cls] * counts[cls]
        path = by_css(driver, ".card .name")[0].get_attribute("title")
        by_css(driver, ".card a")[0].click()
        wait_for(lambda: by_css(driver, "#confirm"), what="the image page")
        driver.find_element(By.ID, "confirm").click()
        wait_for(lambda: by_css(driver, ".flash"), what="the confirmation")
        grid = LocalGrid(run.root, user="alice")
        avus = {a.attribute: a.value for a in grid.get_avus(EntityType.DATA_OBJECT, path)}
        assert avus[names.VALIDATED] == "true" and avus[names.VALIDATED_CLASS] == cls and avus[names.VALIDATED_BY] == "alice"
        wait_for(lambda: images_loaded(driver), what="thumbnails")
        driver.execute_script("window.scrollTo(0, 0);")
        # The README's picture: refreshed when missing or asked for (C2D_UPDATE_SCREENSHOT=1), so
        # a test run does not change a tracked file every time.
        docs = REPO / "docs" / "screenshot.png"
        refresh = not docs.exists() or os.environ.get("C2D_UPDATE_SCREENSHOT") == "1"
        shot = save_screenshot(driver, "browser-local-images.png", also=docs if refresh else None)
        assert shot.stat().st_size > 10_000


# --- the review features (issue 21) -------------------------------------------------------------------------
def type_key(driver, key: str) -> None:  # noqa: ANN001
    """Type into the review page's key field (it has the focus) and press Enter, as a person would."""
    from selenium.webdriver.common.keys import Keys

    old = driver.find_element("id", "review-key")
    active = driver.switch_to.active_element
    assert active.get_attribute("id") == "review-key", "the key field should have the focus"
    active.send_keys(key + Keys.ENTER)
    wait_for(lambda: staleness(old) and by_css(driver, "#progress"), what=f"the page after key {key!r}")


def staleness(element) -> bool:  # noqa: ANN001
    """The element belongs to a page that was replaced (the form posted and the next page loaded)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:  # asked while the old page is being replaced, Chromium may say this
        if "does not belong to the document" in str(exc):
            return True
        raise


def test_review_queue_keyboard_burst_export_cancel_and_resume(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from compute_to_data.domain.catalog import AVU, MetadataOperation
    from compute_to_data.domain.conventions import TaskState

    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=24)
    order = sorted(made.images, key=lambda p: (made.scores[p], p))
    top = sorted(p for p in made.images if "/sub/" not in p)
    # A camera's burst: the first three frames of the top collection within a minute (EXIF time).
    burst = [p for p in top if p in order[:1]] + [p for p in top if p not in order[:1]][:2]
    times = {burst[0]: "2026:11:22 10:00:00", burst[1]: "2026:11:22 10:00:20", burst[2]: "2026:11:22 10:00:45"}
    admin.as_user("alice").apply_metadata([
        MetadataOperation("add", EntityType.DATA_OBJECT, p, AVU(names.EXIF_DATETIME, t)) for p, t in times.items()
    ])
    # The task's predictions file with the top classes, as the notebook writes it.
    lines = ["path,class,score,top_k"]
    for p in made.images:
        best = made.scores[p]
        rest = [c for c in ("cat", "dog", "owl") if c != made.classes[p]]
        second = round(min(best - 0.02, (1 - best) * 0.6), 4)
        third = round(max(0.0, 1 - best - second), 4)
        lines.append(f"{p},{made.classes[p]},{best:.4f},{made.classes[p]}:{best:.4f};{rest[0]}:{second:.4f};{rest[1]}:{third:.4f}")
    (tmp_path / "predictions.csv").write_text("\n".join(lines) + "\n")
    grid = LocalGrid(tmp_path / "grid", user="alice")
    grid.put_file(tmp_path / "predictions.csv", f"{made.collection}/{names.PREDICTIONS_CSV}", "lts_resc", overwrite=True)

    def validated(path: str) -> str | None:
        avus = {a.attribute: a for a in grid.get_avus(EntityType.DATA_OBJECT, path)}
        found = avus.get(names.VALIDATED_CLASS)
        assert found is None or found.units == names.task_units(made.task_id)
        return found.value if found else None

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    app = create_app(WebConfig.for_local(tmp_path / "grid", "alice", cache_dir=tmp_path / "cache"))
    with live_server(app) as url, chrome(*browser, width=1280, height=1040, downloads=downloads) as driver:
        driver.get(f"{url}/tasks/{made.task_id}")
        driver.find_element(By.ID, "review").click()
        wait_for(lambda: by_css(driver, "#review-key"), what="the review queue")
        assert driver.find_element(By.ID, "review-path").text.startswith(order[0].rsplit("/", 1)[1])
        assert "0 of 24 decided" in driver.find_element(By.ID, "progress").text

        # The least certain image is the first of a burst: the page shows the burst, all ticked;
        # untick the third, and correct the two others to owl with one key.
        boxes = by_css(driver, "#burst input[type=checkbox]")
        assert [b.get_attribute("value") for b in boxes] == burst and all(b.is_selected() for b in boxes)
        wait_for(lambda: images_loaded(driver), what="the image and its burst")
        assert len(by_css(driver, "#top-classes tbody tr")) == 3
        # The README's picture of the queue: refreshed when missing or asked for (C2D_UPDATE_SCREENSHOT=1).
        picture = REPO / "docs" / "images" / "review-queue.png"
        refresh = not picture.exists() or os.environ.get("C2D_UPDATE_SCREENSHOT") == "1"
        save_screenshot(driver, "review-queue.png", also=picture if refresh else None)
        boxes[2].click()
        driver.find_element(By.ID, "review-key").click()
        type_key(driver, "3")  # owl
        assert [validated(p) for p in burst] == ["owl", "owl", None]
        assert "2 images: corrected to owl" in driver.find_element(By.CSS_SELECTOR, ".flash").text

        # Keyboard only: confirm, skip, undo the skip, a class by number.
        shown = lambda: by_css(driver, "input[name=path]")[0].get_attribute("value")  # noqa: E731
        first = shown()
        type_key(driver, "c")
        assert validated(first) == made.classes[first]
        second = shown()
        type_key(driver, "s")
        assert validated(second) is None and shown() != second
        type_key(driver, "u")
        assert shown() == second
        type_key(driver, "1")
        assert validated(second) == "cat"
        type_key(driver, "u")  # undo takes the "cat" back
        assert validated(second) is None
        assert "3 of 24 decided" in driver.find_element(By.ID, "progress").text

        # The task page's agreement figures and the export (a real download).
        driver.get(f"{url}/tasks/{made.task_id}")
        assert "3 of 24 images validated" in driver.find_element(By.ID, "agreement").text
        driver.find_element(By.ID, "export-csv").click()
        exported = downloads / f"{made.task_id}-validations.csv"
        wait_for(lambda: exported.exists() and exported.stat().st_size > 0, what="the CSV download")
        rows = exported.read_text().splitlines()
        assert len(rows) == 25 and rows[0].startswith("task_id,path,predicted_class,score,validated_class")
        assert sum(1 for r in rows if ",owl,alice," in r) == 2

    # Cancel and resume: a queued task of another grid, run for real by the worker after the resume.
    other = tmp_path / "other"
    admin2 = make_grid(other / "grid")
    queued = make_task(admin2, other / "files", n_images=3, task_id="20261123T020304Z-0a1b2c", state=TaskState.QUEUED)
    app2 = create_app(WebConfig.for_local(other / "grid", "alice", cache_dir=other / "cache"))
    grid2 = LocalGrid(other / "grid", user="alice")

    def state() -> str:
        return {a.attribute: a.value for a in grid2.get_avus(EntityType.COLLECTION, queued.collection)}[names.A_STATE]

    with live_server(app2) as url, chrome(*browser) as driver:
        driver.get(f"{url}/tasks/{queued.task_id}")
        driver.find_element(By.ID, "cancel").click()
        wait_for(lambda: flashes_saying(driver, "cancelled"), what="the cancellation")
        assert state() == "cancelled"
        driver.find_element(By.ID, "resume").click()
        # the page that said "cancelled" stays until the resume's answer replaces it: wait for
        # that answer, not for any message (the old one went stale under the reader once)
        wait_for(lambda: flashes_saying(driver, "resumed"), what="the resumption")
        # The worker the resume started runs it (and fails it: this task's model is not there).
        wait_for(lambda: state() in ("running", "failed", "succeeded"), timeout=120, what="the resumed run")


def test_series_review_queue_with_the_keyboard(browser, tmp_path):
    """The queue of a series (every task of it alice can read), from the series' page, driven by
    the keyboard: each decision lands on the image as its own task's prediction."""
    from selenium.webdriver.common.by import By

    from tests.support.client_support import queue_order, series_of_two

    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=8)
    second, owner = series_of_two(admin, made, tmp_path)
    order = queue_order(made)
    grid = LocalGrid(tmp_path / "grid", user="alice")

    def validated(path: str) -> tuple[str, str] | None:
        avus = {a.attribute: a for a in grid.get_avus(EntityType.DATA_OBJECT, path)}
        found = avus.get(names.VALIDATED_CLASS)
        return (found.value, found.units) if found else None

    app = create_app(WebConfig.for_local(tmp_path / "grid", "alice", cache_dir=tmp_path / "cache"))
    with live_server(app) as url, chrome(*browser, width=1280, height=1040) as driver:
        driver.get(f"{url}/series/{made.task_id}")
        driver.find_element(By.ID, "review-series").click()
        wait_for(lambda: by_css(driver, "#review-key"), what="the series' review queue")
        assert "2 tasks" in driver.find_element(By.ID, "series-scope").text
        assert "0 of 8 decided" in driver.find_element(By.ID, "progress").text
        shown = lambda: by_css(driver, "input[name=path]")[0].get_attribute("value")  # noqa: E731
        assert shown() == order[0] and made.task_id in driver.find_element(By.ID, "review-task").text
        wait_for(lambda: images_loaded(driver), what="the image")
        save_screenshot(driver, "review-queue-series.png")

        type_key(driver, "c")  # the first task's prediction, confirmed
        assert validated(order[0]) == (made.classes[order[0]], names.task_units(made.task_id))
        assert shown() == order[1] and second.task_id in driver.find_element(By.ID, "review-task").text
        type_key(driver, "3")  # the second task's, corrected to owl
        assert validated(order[1]) == ("owl", names.task_units(second.task_id)) and owner[order[1]] == second.task_id
        assert "2 of 8 decided" in driver.find_element(By.ID, "progress").text
        type_key(driver, "u")
        assert validated(order[1]) is None and shown() == order[1]
        assert "1 of 8 decided" in driver.find_element(By.ID, "progress").text
