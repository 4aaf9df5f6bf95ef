"""A small, bounded reader of what a camera-trap photo's header says: EXIF date taken, GPS
position, camera make and model, and the pixel size (JPEG, PNG, TIFF).

Why our own reader, in the standard library: it runs inside the iRODS server's agent (the upload
hook), whose Python need not have Pillow, and it reads only the first bytes of an object
streamed from the catalog (``Grid.read_head``), never a whole file. The few tags needed here
fit in ~200 lines that can be audited for the one property that matters in a server: hostile
input (huge counts, offsets past the end, loops between IFDs, wrong types, zero denominators,
text that is not text) yields *fewer* fields, never an exception, a hang or a large allocation.
General EXIF libraries (``exifread``, ``piexif``) read whole files, raise a variety of
exceptions on malformed data and do much more than this needs.

Every read is bounds-checked against the bytes given; IFDs are followed at most once each, with
at most :data:`MAX_ENTRIES` entries; strings are cut at :data:`MAX_TEXT`; JPEG segments are
walked at most :data:`MAX_SEGMENTS` times; nothing is allocated beyond slices of the input.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, fields

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import AVU

#: bytes of an object's beginning that are read (EXIF sits in the first 64 KiB of a JPEG by spec)
DEFAULT_HEAD_BYTES = 256 * 1024
MAX_ENTRIES = 512
MAX_TEXT = 128
MAX_SEGMENTS = 64
MAX_IFDS = 8

_TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8, 13: 4}  # type -> bytes per value (13: IFD)
_EXIF_DATETIME = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"[+-](0\d|1[0-4]):[0-5]\d")
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageHeader:
    """What the header says; a field the file does not hold (or holds malformed) is None."""

    datetime: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    make: str | None = None
    model: str | None = None
    width: int | None = None
    height: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def avus(self) -> list[AVU]:
        """The AVUs named in :mod:`conventions` for the fields present."""
        found: list[AVU] = []

        def number(value: float) -> str:
            return f"{value:.7f}".rstrip("0").rstrip(".")

        if self.datetime is not None:
            found.append(AVU(names.A_EXIF_DATETIME, self.datetime))
        if self.latitude is not None and self.longitude is not None:
            found.append(AVU(names.A_EXIF_LATITUDE, number(self.latitude), names.UNITS_DEGREES))
            found.append(AVU(names.A_EXIF_LONGITUDE, number(self.longitude), names.UNITS_DEGREES))
        if self.altitude is not None:
            found.append(AVU(names.A_EXIF_ALTITUDE, number(self.altitude), names.UNITS_METRES))
        if self.make is not None:
            found.append(AVU(names.A_EXIF_MAKE, self.make))
        if self.model is not None:
            found.append(AVU(names.A_EXIF_MODEL, self.model))
        if self.width is not None and self.height is not None:
            found.append(AVU(names.A_IMAGE_WIDTH, str(self.width), names.UNITS_PIXELS))
            found.append(AVU(names.A_IMAGE_HEIGHT, str(self.height), names.UNITS_PIXELS))
        return found


def read_header(data: bytes) -> ImageHeader:
    """The header of a JPEG, PNG or TIFF given its first bytes; empty for anything else.

    Never raises for any input: :func:`parse_header` is written not to (the tests hold it to
    that without this net), and a bug in it must still not fail an upload."""
    try:
        return parse_header(data)
    except Exception:  # noqa: BLE001 - see the docstring: hostile input yields nothing, never an error
        return ImageHeader()


def parse_header(data: bytes) -> ImageHeader:
    """:func:`read_header` without its safety net (what the tests feed hostile input to)."""
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(data, dimensions=True)
    return ImageHeader()


# --- containers ------------------------------------------------------------------------------------
def _jpeg(data: bytes) -> ImageHeader:
    exif = ImageHeader()
    size: tuple[int, int] | None = None
    pos = 2
    for _ in range(MAX_SEGMENTS):
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: the header is over
            break
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if length < 2:
            break
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body[:6] == b"Exif\x00\x00" and exif.is_empty():
            exif = _tiff(body[6:], dimensions=False)
        elif marker in _SOF and len(body) >= 5 and size is None:
            height, width = struct.unpack(">HH", body[1:5])
            if width and height:
                size = (width, height)
        pos += 2 + length
    if size is not None:
        return _with(exif, width=size[0], height=size[1])
    return exif


def _png(data: bytes) -> ImageHeader:
    exif = ImageHeader()
    size: tuple[int, int] | None = None
    pos = 8
    for _ in range(MAX_SEGMENTS):
        if pos + 8 > len(data):
            break
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and len(body) >= 8:
            width, height = struct.unpack(">II", body[:8])
            if 0 < width < 2**31 and 0 < height < 2**31:
                size = (width, height)
        elif kind == b"eXIf" and len(body) == length:
            exif = _tiff(body, dimensions=False)
        elif kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    if size is not None:
        return _with(exif, width=size[0], height=size[1])
    return exif


def _with(header: ImageHeader, **values: object) -> ImageHeader:
    return ImageHeader(**{**{f.name: getattr(header, f.name) for f in fields(header)}, **values})


# --- TIFF structure (EXIF is a TIFF inside a JPEG APP1 segment or a PNG eXIf chunk) -------------
class _Tiff:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.order = "<" if data[:2] == b"II" else ">"
        self.seen: set[int] = set()

    def u16(self, pos: int) -> int | None:
        if pos < 0 or pos + 2 > len(self.data):
            return None
        return int(struct.unpack(self.order + "H", self.data[pos : pos + 2])[0])

    def u32(self, pos: int) -> int | None:
        if pos < 0 or pos + 4 > len(self.data):
            return None
        return int(struct.unpack(self.order + "I", self.data[pos : pos + 4])[0])

    def ifd(self, offset: int | None) -> dict[int, tuple[int, int, int]]:
        """tag -> (type, count, position of its values), of one IFD (each IFD read once)."""
        if offset is None or offset in self.seen or len(self.seen) >= MAX_IFDS:
            return {}
        self.seen.add(offset)
        count = self.u16(offset)
        if count is None:
            return {}
        entries: dict[int, tuple[int, int, int]] = {}
        for i in range(min(count, MAX_ENTRIES)):
            at = offset + 2 + 12 * i
            tag, kind, n = self.u16(at), self.u16(at + 2), self.u32(at + 4)
            if tag is None or kind is None or n is None or kind not in _TIFF_TYPES:
                break
            size = _TIFF_TYPES[kind] * n
            where = at + 8 if size <= 4 else self.u32(at + 8)
            if where is None or where + size > len(self.data):
                continue  # values outside what was read: the tag is left out
            entries.setdefault(tag, (kind, n, where))
        return entries

    def text(self, entry: tuple[int, int, int] | None) -> str | None:
        if entry is None or entry[0] != 2:
            return None
        raw = self.data[entry[2] : entry[2] + min(entry[1], MAX_TEXT * 4)].split(b"\x00", 1)[0]
        text = raw.decode("utf-8", errors="replace")
        text = "".join(c for c in text if c.isprintable()).strip()[:MAX_TEXT]
        return text or None

    def integer(self, entry: tuple[int, int, int] | None) -> int | None:
        if entry is None or entry[1] < 1:
            return None
        if entry[0] == 3:
            return self.u16(entry[2])
        if entry[0] in (4, 13):
            return self.u32(entry[2])
        return None

    def rationals(self, entry: tuple[int, int, int] | None, count: int) -> list[float] | None:
        if entry is None or entry[0] != 5 or entry[1] < count:
            return None
        values = []
        for i in range(count):
            numerator, denominator = self.u32(entry[2] + 8 * i), self.u32(entry[2] + 8 * i + 4)
            if numerator is None or not denominator:
                return None
            values.append(numerator / denominator)
        return values

    def byte(self, entry: tuple[int, int, int] | None) -> int | None:
        if entry is None or entry[0] not in (1, 7) or entry[1] < 1:
            return None
        return self.data[entry[2]]


def _tiff(data: bytes, *, dimensions: bool) -> ImageHeader:
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return ImageHeader()
    tiff = _Tiff(data)
    if tiff.u16(2) != 42:
        return ImageHeader()
    zeroth = tiff.ifd(tiff.u32(4))
    exif = tiff.ifd(tiff.integer(zeroth.get(0x8769)))
    gps = tiff.ifd(tiff.integer(zeroth.get(0x8825)))
    width = tiff.integer(exif.get(0xA002)) or (tiff.integer(zeroth.get(0x0100)) if dimensions else None)
    height = tiff.integer(exif.get(0xA003)) or (tiff.integer(zeroth.get(0x0101)) if dimensions else None)
    latitude = _coordinate(tiff, gps.get(2), gps.get(1), b"NS", 90.0)
    longitude = _coordinate(tiff, gps.get(4), gps.get(3), b"EW", 180.0)
    if latitude is None or longitude is None:
        latitude = longitude = None
    return ImageHeader(
        datetime=_datetime(tiff.text(exif.get(0x9003)) or tiff.text(zeroth.get(0x0132)), tiff.text(exif.get(0x9011))),
        latitude=latitude,
        longitude=longitude,
        altitude=_altitude(tiff, gps.get(6), gps.get(5)),
        make=tiff.text(zeroth.get(0x010F)),
        model=tiff.text(zeroth.get(0x0110)),
        width=width if width and height else None,
        height=height if width and height else None,
    )


def _datetime(text: str | None, offset: str | None) -> str | None:
    """``2026:05:01 06:30:00`` (+ ``+02:00``) as ISO 8601; None unless it is a real date."""
    if text is None:
        return None
    match = _EXIF_DATETIME.match(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61 and year >= 1900):
        return None
    iso = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return iso + offset if offset is not None and _OFFSET.fullmatch(offset) else iso


def _coordinate(tiff: _Tiff, value: tuple[int, int, int] | None, ref: tuple[int, int, int] | None,
                hemispheres: bytes, limit: float) -> float | None:
    parts = tiff.rationals(value, 3)
    side = tiff.text(ref)
    if parts is None or side is None or side[:1].encode() not in (hemispheres[:1], hemispheres[1:]):
        return None
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    if degrees > limit:
        return None
    return round(-degrees if side[:1].encode() == hemispheres[1:] else degrees, 7)


def _altitude(tiff: _Tiff, value: tuple[int, int, int] | None, ref: tuple[int, int, int] | None) -> float | None:
    parts = tiff.rationals(value, 1)
    if parts is None or parts[0] > 100_000:
        return None
    below = tiff.byte(ref) == 1
    return round(-parts[0] if below else parts[0], 2)
