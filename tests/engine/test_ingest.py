"""Ingest enrichment: the header reader (hostile input included), bounded reads, the upload hook
through the fake rule-engine server, and the backfill in pages (issue 18 item 1)."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path

import pytest
from PIL import Image

from compute_to_data import rules
from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU, EntityType
from compute_to_data.domain.errors import SettingsError
from compute_to_data.domain.exif import ImageHeader, parse_header, read_header
from compute_to_data.domain.settings import Settings
from compute_to_data.engine.ingest import enrich_collection
from tests.support.grid_factories import FACTORIES, GridSetup
from tests.support.rules_support import HOME, IMAGES, Zone, build_zone

WHEN = "2026:05:01 06:30:00"


def photo(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), *, when: str | None = WHEN, offset: str | None = "+02:00",
          gps: bool = True, make: object = "Reconyx", extra: dict | None = None) -> bytes:
    """A small photo with the EXIF a camera trap writes (Pillow writes it)."""
    exif = Image.Exif()
    if make is not None:
        exif[0x010F] = make
    exif[0x0110] = "HyperFire 2"
    if when is not None:
        exif.get_ifd(0x8769)[0x9003] = when
    if offset is not None:
        exif.get_ifd(0x8769)[0x9011] = offset
    if gps:
        info = exif.get_ifd(0x8825)
        info[1], info[2], info[3], info[4] = "N", (45.0, 30.0, 15.5), "W", (6.0, 7.0, 8.25)
        info[5], info[6] = b"\x01", 12.5
    for tag, value in (extra or {}).items():
        exif[tag] = value
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 120, 40)).save(buffer, fmt, exif=exif)
    return buffer.getvalue()


EXPECTED = ImageHeader("2026-05-01T06:30:00+02:00", 45.5043056, -6.1189583, -12.5, "Reconyx", "HyperFire 2", 64, 48)


# --- the reader ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_reads_date_position_camera_and_size(fmt: str) -> None:
    assert read_header(photo(fmt)) == EXPECTED


def test_reads_a_tiff_and_a_bare_exif_block() -> None:
    tiff = read_header(photo("TIFF", (40, 30)))  # Pillow's TIFF writer keeps IFD0 only
    assert (tiff.make, tiff.model, tiff.width, tiff.height) == ("Reconyx", "HyperFire 2", 40, 30)
    exif = Image.open(io.BytesIO(photo())).getexif().tobytes()
    assert exif[:6] == b"Exif\x00\x00"
    block = read_header(exif[6:])
    assert (block.datetime, block.latitude, block.make) == (EXPECTED.datetime, EXPECTED.latitude, "Reconyx")


def test_the_avus_and_their_names() -> None:
    assert EXPECTED.avus() == [
        AVU("exif::datetime", "2026-05-01T06:30:00+02:00"),
        AVU("exif::gps_latitude", "45.5043056", "deg"), AVU("exif::gps_longitude", "-6.1189583", "deg"),
        AVU("exif::gps_altitude", "-12.5", "m"),
        AVU("exif::make", "Reconyx"), AVU("exif::model", "HyperFire 2"),
        AVU("image::width", "64", "px"), AVU("image::height", "48", "px"),
    ]
    plain = read_header(photo(when=None, gps=False, make=None, offset=None))
    assert plain.datetime is None and plain.latitude is None and plain.make is None and plain.width == 64
    assert [a.attribute for a in plain.avus()] == ["exif::model", "image::width", "image::height"]


# --- hostile headers: fewer fields, never an exception (parse_header has no safety net) --------
def test_every_truncation_of_a_photo_parses() -> None:
    for fmt in ("JPEG", "PNG"):
        data = photo(fmt)
        for end in range(len(data)):
            parse_header(data[:end])


def test_random_corruption_never_raises() -> None:
    rng = random.Random(18)
    for fmt in ("JPEG", "PNG"):
        data = photo(fmt)
        for _ in range(3000):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            parse_header(bytes(mutated))


def _tiff(entries: list[tuple[int, int, int, bytes]], count: int | None = None, order: str = "<") -> bytes:
    """A TIFF with one IFD at offset 8; each entry (tag, type, count, 4-byte value or offset)."""
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    ifd = struct.pack(order + "H", len(entries) if count is None else count)
    for tag, kind, n, value in entries:
        ifd += struct.pack(order + "HHI", tag, kind, n) + value.ljust(4, b"\x00")[:4]
    return head + ifd + b"\x00\x00\x00\x00"


def test_hostile_structures_yield_fewer_fields() -> None:
    le = "<"
    # an entry count of 65535 over a few bytes; an IFD pointing at itself (a loop)
    assert parse_header(_tiff([(0x010F, 2, 3, b"ab\x00")], count=65535)).make == "ab"
    loop = _tiff([(0x8769, 4, 1, struct.pack(le + "I", 8)), (0x8825, 13, 1, struct.pack(le + "I", 8))])
    assert parse_header(loop) == ImageHeader()
    # values past the end; a string tag typed as LONG; a date typed as SHORT; absurd sizes
    assert parse_header(_tiff([(0x010F, 2, 4000, struct.pack(le + "I", 10**9))])).make is None
    assert parse_header(_tiff([(0x010F, 4, 1, b"\x01\x02\x03\x04"), (0x0110, 2, 2**32 - 1, b"\xff\xff\xff\xff")])) == ImageHeader()
    assert parse_header(_tiff([(0x0100, 2, 4, b"wide"), (0x0101, 3, 1, b"\x10\x00")])).width is None
    # text that is not text: control characters dropped, length capped
    long_make = b"Re\x07con\x1byx" + b"x" * 10_000 + b"\x00"
    data = _tiff([(0x010F, 2, len(long_make), struct.pack(le + "I", 26))]) + long_make
    make = parse_header(data).make
    assert make is not None and make.startswith("Reconyx") and len(make) == 128
    # a zero denominator, a latitude of 95 degrees, an impossible date: each field alone is dropped
    assert read_header(photo(extra={})).latitude is not None
    bad_gps = photo()
    for broken in (bad_gps.replace(struct.pack(">II", 45, 1), struct.pack(">II", 45, 0)),
                   bad_gps.replace(struct.pack(">II", 45, 1), struct.pack(">II", 95, 1))):
        header = parse_header(broken)
        assert header.latitude is None and header.longitude is None and header.make == "Reconyx"
    assert parse_header(photo(when="2026:13:45 99:00:00")).datetime is None
    assert parse_header(photo(when="yesterday")).datetime is None
    assert parse_header(photo(offset="+99:99")).datetime == "2026-05-01T06:30:00"
    # a JPEG APP1 that claims 65535 bytes it does not have; a PNG chunk of 4 GB; junk
    jpeg = b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00II*\x00" + b"\x00" * 10
    assert parse_header(jpeg) == ImageHeader()
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I4s", 2**32 - 1, b"eXIf") + b"II*\x00"
    assert parse_header(png) == ImageHeader()
    assert parse_header(b"\xff\xd8\xff" + bytes(random.Random(1).randrange(256) for _ in range(200_000))) is not None
    assert parse_header(b"GIF89a") == ImageHeader() and parse_header(b"") == ImageHeader()


# --- bounded reads -------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_read_head_reads_only_the_beginning(tmp_path: Path, factory: str) -> None:
    setup: GridSetup = FACTORIES[factory](tmp_path)
    big = bytes(range(256)) * (3 * 4096 + 3)  # 3 MiB and a bit: more than one read chunk
    setup.put(f"{setup.home}/big.jpg", big)
    setup.put(f"{setup.home}/small.jpg", b"tiny")
    assert setup.grid.read_head(f"{setup.home}/big.jpg", 1000) == big[:1000]
    assert setup.grid.read_head(f"{setup.home}/big.jpg", 1024 * 1024 + 5) == big[: 1024 * 1024 + 5]
    assert setup.grid.read_head(f"{setup.home}/small.jpg", 1000) == b"tiny"


def retyped(data: bytes, tag: int, old: int, new: int) -> bytes:
    """``data`` with the IFD entry of ``tag`` given another TIFF type (a camera's wrong type)."""
    for order in ("<", ">"):
        entry = struct.pack(order + "HH", tag, old)
        if entry in data:
            return data.replace(entry, struct.pack(order + "HH", tag, new), 1)
    raise AssertionError(f"no entry for tag {tag:#x} of type {old}")


def test_a_wrongly_typed_tag_is_left_out_alone() -> None:
    header = parse_header(retyped(retyped(photo(), 0x9003, 2, 3), 0x0002, 5, 2))  # date as SHORT, latitude as ASCII
    assert header.datetime is None and header.latitude is None and header.make == "Reconyx" and header.width == 64


def test_read_head_with_python_irodsclient() -> None:
    from compute_to_data.grid.client import IrodsClientGrid
    from tests.fakes.prc_fake import FakeCatalog, FakeRule, FakeSession

    catalog = FakeCatalog()
    catalog.add_user("alice", "pw")
    big = photo() + bytes(2 * 1024 * 1024)
    catalog.mkobj("/tempZone/home/alice/traps/a.jpg", "alice", content=big)
    grid = IrodsClientGrid(FakeSession(catalog, "alice", "pw"), rule_class=FakeRule)
    head = grid.read_head("/tempZone/home/alice/traps/a.jpg", 4096)
    assert head == big[:4096] and read_header(head) == EXPECTED


# --- the upload hook, through the fake rule-engine server -------------------------------------------
@pytest.fixture
def ingest_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Zone:
    zone = build_zone(tmp_path, monkeypatch, settings={"ingest": {"collections": [f"{HOME}/traps"]}})
    zone.server.rules["acPostProcForPut"] = rules.acPostProcForPut
    return zone


def upload(zone: Zone, name: str, content: bytes, logical: str) -> None:
    local = zone.root / name
    local.write_bytes(content)
    zone.alice.create_collection(logical.rsplit("/", 1)[0])
    run = zone.server.put(local, logical)
    assert run is not None and run.ok, run  # an upload never fails because of the hook


def exif_avus(zone: Zone, path: str) -> dict[str, str]:
    return {a.attribute: a.value for a in zone.admin.get_avus(EntityType.DATA_OBJECT, path)}


def test_an_upload_into_a_listed_collection_is_enriched(ingest_zone: Zone) -> None:
    zone = ingest_zone
    upload(zone, "a.jpg", photo(), f"{HOME}/traps/site1/a.jpg")
    avus = exif_avus(zone, f"{HOME}/traps/site1/a.jpg")
    assert {k: v for k, v in avus.items() if k != names.A_ENRICHED} == {a.attribute: a.value for a in EXPECTED.avus()}
    assert names.parse_iso_utc(avus[names.A_ENRICHED]) is not None
    upload(zone, "b.png", photo("PNG", when="2026:06:02 23:59:59", offset=None), f"{HOME}/traps/b.png")
    assert exif_avus(zone, f"{HOME}/traps/b.png")["exif::datetime"] == "2026-06-02T23:59:59"


def test_hostile_and_unrelated_uploads_never_fail_and_cost_nothing(ingest_zone: Zone) -> None:
    zone = ingest_zone
    rng = random.Random(7)
    hostile = {
        "corrupt.jpg": b"\xff\xd8\xff\xe1" + bytes(rng.randrange(256) for _ in range(5000)),
        "empty.jpg": b"",
        "huge.jpg": photo()[:200] + bytes(3 * 1024 * 1024),
        "wrong-types.jpg": retyped(photo(), 0x010F, 2, 4),  # Make as a LONG
        "not-really.png": b"hello",
    }
    for name, content in hostile.items():
        upload(zone, name, content, f"{HOME}/traps/{name}")
        avus = exif_avus(zone, f"{HOME}/traps/{name}")
        assert names.A_ENRICHED in avus, name
    assert "exif::make" not in exif_avus(zone, f"{HOME}/traps/wrong-types.jpg")
    assert exif_avus(zone, f"{HOME}/traps/wrong-types.jpg")["exif::datetime"] == "2026-05-01T06:30:00+02:00"
    # outside the listed collections, not a photo, or a thumbnail: no catalog call at all
    zone.server.calls.clear()
    upload(zone, "elsewhere.jpg", photo(), f"{IMAGES}/elsewhere.jpg")
    upload(zone, "notes.txt", b"x", f"{HOME}/traps/notes.txt")
    upload(zone, "thumb.jpg", photo(), f"{HOME}/traps/thumbnails/thumb.jpg")
    assert sum(zone.server.calls.values()) == 0, zone.server.calls
    assert exif_avus(zone, f"{IMAGES}/elsewhere.jpg") == {}


def test_enrichment_is_off_unless_collections_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zone = build_zone(tmp_path, monkeypatch)
    zone.server.rules["acPostProcForPut"] = rules.acPostProcForPut
    upload(zone, "a.jpg", photo(), f"{HOME}/traps/a.jpg")
    assert exif_avus(zone, f"{HOME}/traps/a.jpg") == {}
    with pytest.raises(SettingsError, match="ingest.collections must be a list of absolute logical paths"):
        Settings.from_document({"ingest": {"collections": "traps"}}, "s.json")
    with pytest.raises(SettingsError, match="unknown ingest setting"):
        Settings.from_document({"ingest": {"collection": ["/z/a"]}}, "s.json")


# --- the backfill, in pages --------------------------------------------------------------------------
def test_backfill_enriches_what_was_there_before_in_pages(tmp_path: Path) -> None:
    setup: GridSetup = FACTORIES["rule_engine"](tmp_path)
    folder = f"{setup.home}/old"
    for i in range(5):
        setup.put(f"{folder}/cam{i % 2}/img{i}.jpg", photo(when=f"2025:0{i + 1}:01 12:00:00"))
    setup.put(f"{folder}/broken.jpg", b"\xff\xd8\xff")
    setup.put(f"{folder}/readme.txt", b"x")
    setup.put(f"{folder}/cam0/thumbnails/img0.jpg", photo())
    pages: list[int] = []
    report = enrich_collection(setup.grid, folder, page_size=2, on_page=lambda r: pages.append(r.enriched))
    assert report.enriched == 6 and report.with_exif == 5 and not report.failed
    assert report.skipped == 2 and report.pages >= 3 and pages == sorted(pages)
    dates = {o.path.removeprefix(folder + "/"): o.avu_values("exif::datetime") for o in setup.admin.list_data_objects(
        folder, recursive=True, avu_attributes=("exif::datetime",))}
    assert dates["cam1/img3.jpg"] == ["2025-04-01T12:00:00+02:00"] and dates["broken.jpg"] == []
    assert dates["cam0/img0.jpg"] == ["2025-01-01T12:00:00+02:00"] and dates["cam0/thumbnails/img0.jpg"] == []
    assert enrich_collection(setup.grid, folder).enriched == 0  # done before: skipped
    assert enrich_collection(setup.grid, folder, again=True).enriched == 6
    again = setup.admin.list_data_objects(folder, recursive=True, avu_attributes=("exif::datetime", names.A_ENRICHED))
    assert all(len(o.avu_values(names.A_ENRICHED)) == 1 and len(o.avu_values("exif::datetime")) <= 1
               for o in again if o.name.endswith(".jpg") and "/thumbnails/" not in o.path)


def test_c2d_enrich_on_localgrid(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    from tests.support.client_support import run_cli

    setup: GridSetup = FACTORIES["local"](tmp_path)
    for i in range(3):
        setup.put(f"{setup.home}/old/img{i}.jpg", photo())
    args = ("--local", str(tmp_path / "grid"), "--user", "alice")
    code, out, err = run_cli(capsys, monkeypatch, "enrich", f"{setup.home}/old", "--page-size", "2", *args)
    assert code == 0, err
    assert "3 photo(s) enriched (3 with a date or position), 0 skipped" in out
    assert "page 1:" in err and "page 2:" in err
    assert setup.admin.get_data_object(f"{setup.home}/old/img2.jpg", ("exif::make",)).avu_values("exif::make") == ["Reconyx"]
    code, out, err = run_cli(capsys, monkeypatch, "enrich", f"{setup.home}/old", *args)
    assert code == 0 and "0 photo(s) enriched" in out and "3 skipped" in out
