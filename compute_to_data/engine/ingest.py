"""Ingest enrichment: a photo's header (EXIF date taken, GPS position, camera, pixel size) as
AVUs on it, at upload (the ``acPostProcForPut`` hook, :mod:`compute_to_data.rules_ingest`) and
for what was uploaded before (``c2d enrich``, page by page).

Only the object's first bytes are read (``Grid.read_head``) and parsed by the standard-library
reader :mod:`compute_to_data.domain.exif`; the AVUs are written in one atomic batch that also
replaces earlier values of the same attributes, with ``c2d::enriched`` (when it was read), so a
photo is either enriched whole or not at all and the backfill skips what is done. A corrupt,
EXIF-less or unreadable photo gets ``c2d::enriched`` alone (or is left out and counted): it
never fails an upload or a backfill. Thumbnails are not made here: they are made on the compute
side by the classification run (``parameters.thumbnail_size``), never in the server's agent.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import (
    AVU,
    LISTING_PAGE_SIZE,
    DataObject,
    EntityType,
)
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.domain.exif import DEFAULT_HEAD_BYTES, ImageHeader, read_header
from compute_to_data.domain.settings import Settings
from compute_to_data.grid.base import Grid

log = logging.getLogger(__name__)

#: what the enrichment reads: JPEG, PNG and TIFF photos, by name (the header decides then)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


def is_photo_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def is_thumbnail_path(path: str) -> bool:
    """In a ``thumbnails`` sub-collection: a thumbnail the compute side made, never enriched."""
    return posixpath.basename(posixpath.dirname(path)) == names.THUMBNAILS_COLLECTION


def enrich(grid: Grid, path: str, head_bytes: int = DEFAULT_HEAD_BYTES) -> ImageHeader:
    """Read the header of one photo and write it as AVUs (one atomic batch, replacing earlier
    values); a header that says nothing still gets ``c2d::enriched``. Grid errors propagate."""
    header = read_header(grid.read_head(path, head_bytes))
    avus = [*header.avus(), AVU(names.A_ENRICHED, names.iso_utc())]
    grid.set_avus(EntityType.DATA_OBJECT, path, avus, clear=names.HEADER_ATTRIBUTES)
    return header


def on_upload(grid: Grid, settings: Settings, path: str) -> ImageHeader | None:
    """The upload hook's work for one object: None when it is not for enrichment (not a photo,
    not in a listed collection, a thumbnail) or could not be read; never raises a grid error."""
    if not settings.ingest.enabled or not is_photo_name(path) or is_thumbnail_path(path):
        return None
    if not settings.ingest.covers(path):
        return None
    try:
        header = enrich(grid, path, settings.ingest.head_bytes)
    except ComputeToDataError as exc:
        log.warning("ingest: %s was not enriched: %s", path, exc)
        return None
    log.info("ingest: %s enriched with %d AVU(s)", path, len(header.avus()))
    return header


@dataclass
class EnrichReport:
    """What a backfill did: photos enriched (of which with EXIF), skipped, and those it could not read."""

    enriched: int = 0
    with_exif: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pages: int = 0

    def summary(self) -> str:
        text = (f"{self.enriched} photo(s) enriched ({self.with_exif} with a date or position), "
                f"{self.skipped} skipped (done before, thumbnails, not photos)")
        if self.failed:
            text += f", {len(self.failed)} could not be read or tagged (first: {self.failed[0][0]}: {self.failed[0][1]})"
        return text


def enrich_collection(
    grid: Grid,
    collection: str,
    *,
    recursive: bool = True,
    again: bool = False,
    head_bytes: int = DEFAULT_HEAD_BYTES,
    page_size: int = LISTING_PAGE_SIZE,
    on_page: Callable[[EnrichReport], None] | None = None,
) -> EnrichReport:
    """Enrich the photos of a collection uploaded before the hook existed, page by page (memory
    bounded by a page); photos that carry ``c2d::enriched`` are skipped unless ``again``."""
    report = EnrichReport()
    wanted = (names.A_ENRICHED, names.A_THUMBNAIL_OF)
    for page in grid.iter_data_objects(collection, recursive=recursive, avu_attributes=wanted, page_size=page_size):
        for obj in page:
            if not _wants(obj, again):
                report.skipped += 1
                continue
            try:
                header = enrich(grid, obj.path, head_bytes)
            except ComputeToDataError as exc:
                report.failed.append((obj.path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
                continue
            report.enriched += 1
            report.with_exif += header.datetime is not None or header.latitude is not None
        report.pages += 1
        if on_page is not None:
            on_page(report)
    return report


def _wants(obj: DataObject, again: bool) -> bool:
    if not is_photo_name(obj.path) or is_thumbnail_path(obj.path):
        return False
    if any(a.attribute == names.A_THUMBNAIL_OF for a in obj.avus):
        return False
    return again or not any(a.attribute == names.A_ENRICHED for a in obj.avus)
