"""The images page's metadata filters (issue 18 item 5): date taken and any AVU condition, on
LocalGrid's paged predictions; the filter helpers on their own."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from compute_to_data.domain.catalog import (
    AVU,
    AVUCondition,
    EntityType,
    MetadataOperation,
)
from compute_to_data.web.app import WebConfig, create_app
from compute_to_data.web.filters import parse_filters
from tests.support.client_support import make_grid, make_task

warnings.filterwarnings("ignore", message=".*httpx.*", category=DeprecationWarning)
from starlette.testclient import TestClient  # noqa: E402


def test_parse_filters() -> None:
    conditions, keep, error = parse_filters({"taken_from": "2026-06-01", "taken_to": "2026-06-30",
                                             "where": "detectedscore >= 0.8"})
    assert error is None and keep == {"taken_from": "2026-06-01", "taken_to": "2026-06-30", "where": "detectedscore >= 0.8"}
    assert conditions == [AVUCondition("exif::datetime", ">=", "2026-06-01"), AVUCondition("exif::datetime", "<", "2026-07-01"),
                          AVUCondition("detectedscore", ">=", 0.8)]
    assert parse_filters({"where": "site = 'l''Étang'"})[0] == [AVUCondition("site", "=", "l''Étang")]
    assert parse_filters({"where": "detectedclass=animal"})[0] == [AVUCondition("detectedclass", "=", "animal")]
    assert parse_filters({"taken_from": "June"})[2] == "taken from must be a date like 2026-06-01, not 'June'"
    assert "is not 'attribute op value'" in parse_filters({"where": "just words"})[2]


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    admin = make_grid(tmp_path / "grid")
    made = make_task(admin, tmp_path / "files", n_images=12)
    ops = []
    for i, path in enumerate(made.images):  # taken on June 1st to 12th; every third one holds a deer
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU("exif::datetime", f"2026-06-{i + 1:02d}T08:00:00+02:00")))
        ops.append(MetadataOperation("add", EntityType.DATA_OBJECT, path, AVU("site", "l'Étang" if i % 3 == 0 else "col")))
    admin.apply_metadata(ops)
    client = TestClient(create_app(WebConfig.for_local(tmp_path / "grid", "alice", cache_dir=tmp_path / "cache", page_size=2)), base_url="http://127.0.0.1")
    return made, client


def shown(html: str) -> list[str]:
    return re.findall(r'<div class="name path" title="([^"]+)"', html)


def test_images_by_date_taken_and_metadata(world) -> None:  # noqa: ANN001
    made, client = world
    page = client.get(f"/tasks/{made.task_id}/images", params={"taken_from": "2026-06-03", "taken_to": "2026-06-05",
                                                               "per_page": "10"})
    assert page.status_code == 200 and shown(page.text) == made.images[2:5]
    assert "3 images match" in page.text and 'value="2026-06-03"' in page.text
    page = client.get(f"/tasks/{made.task_id}/images", params={"where": "site = l'Étang", "per_page": "10"})
    assert shown(page.text) == [p for i, p in enumerate(made.images) if i % 3 == 0]
    # pages of a filtered view, and the filter kept in the pager's links
    first = client.get(f"/tasks/{made.task_id}/images", params={"where": "site = col"})
    assert shown(first.text) == [p for i, p in enumerate(made.images) if i % 3][:2] and "next &rarr;" in first.text
    link = re.search(r'href="([^"]+page=2[^"]*)"', first.text).group(1).replace("&amp;", "&")
    assert "where=site" in link
    second = client.get(link)
    assert shown(second.text) == [p for i, p in enumerate(made.images) if i % 3][2:4]
    bad = client.get(f"/tasks/{made.task_id}/images", params={"taken_to": "someday"})
    assert bad.status_code == 200 and "taken to must be a date like 2026-06-01" in bad.text
