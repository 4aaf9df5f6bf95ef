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

try:
    from .browser_support import (
        REPO,
        browser_paths,
        chrome,
        live_server,
        save_screenshot,
    )
    from .client_support import PASSWORDS, make_fake_zone, real_run
except ImportError:  # pragma: no cover - depends on how pytest imports tests/
    from browser_support import (
        REPO,
        browser_paths,
        chrome,
        live_server,
        save_screenshot,
    )
    from client_support import PASSWORDS, make_fake_zone, real_run


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
        assert "Image classification" in heading
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
