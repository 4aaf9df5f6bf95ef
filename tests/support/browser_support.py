"""A live server and a headless Chromium for the browser tests (tests/web/test_browser_e2e.py).

The browser comes from Debian (``scripts/browser-env`` installs ``chromium`` and
``chromium-driver`` and the Selenium package if missing); Selenium is given the driver's path,
so it never downloads anything. Without a browser the tests are skipped on a developer machine
and FAIL when the environment variable CI is set.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


def browser_paths() -> tuple[str, str]:
    """(chromium, chromedriver) after running scripts/browser-env; fail in CI, else skip."""
    script = REPO / "scripts" / "browser-env"
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=900)
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        found = dict(re.findall(r"(\w+)=(\S+)", last))
        if done.returncode != 0 or "chromium" not in found or "chromedriver" not in found:
            raise RuntimeError(f"scripts/browser-env failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        import selenium  # noqa: F401
        return found["chromium"], found["chromedriver"]
    except Exception as exc:  # noqa: BLE001 - any failure means: no browser here
        message = f"no headless browser: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
        raise  # unreachable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app) -> Iterator[str]:  # noqa: ANN001
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def chrome(chromium: str, chromedriver: str, width: int = 1280, height: int = 900,
           downloads: Path | None = None) -> Iterator[object]:
    """A headless Chromium; with ``downloads``, files the pages download land there."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}",
        "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
    ):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run its sandbox as root
    if downloads is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(downloads), "download.prompt_for_download": False,
        })
    profile = ARTIFACTS / ".chrome-profile"
    shutil.rmtree(profile, ignore_errors=True)
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(60)
    if downloads is not None:  # headless Chromium downloads only where told to
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


def save_screenshot(driver, name: str, also: Path | None = None) -> Path:  # noqa: ANN001
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    driver.save_screenshot(str(target))
    if also is not None:
        also.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, also)
    return target
