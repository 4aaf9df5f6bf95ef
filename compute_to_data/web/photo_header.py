"""What the ingest enrichment found in a photo's header, as the image page shows it.

Kept apart from the routes (``app.py``): one function of the image's AVUs, read with one
catalog call, so the page shows the date taken, the position (with a map link) and the camera
whenever the photo was enriched (``exif::*``, ``image::*`` AVUs), and nothing otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute_to_data.domain import conventions as names
from compute_to_data.domain.catalog import EntityType
from compute_to_data.domain.errors import ComputeToDataError
from compute_to_data.grid.base import Grid


@dataclass(frozen=True)
class PhotoHeader:
    taken: str = ""
    latitude: str = ""
    longitude: str = ""
    altitude: str = ""
    camera: str = ""
    size: str = ""

    @property
    def position(self) -> str:
        if not (self.latitude and self.longitude):
            return ""
        return f"{self.latitude}, {self.longitude}" + (f" ({self.altitude} m)" if self.altitude else "")

    @property
    def map_url(self) -> str:
        """An OpenStreetMap link to the position ('' without one); numbers only, checked."""
        try:
            lat, lon = float(self.latitude), float(self.longitude)
        except ValueError:
            return ""
        return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=14/{lat:.6f}/{lon:.6f}"

    def __bool__(self) -> bool:
        return any((self.taken, self.position, self.camera, self.size))


def photo_header(grid: Grid, path: str) -> PhotoHeader:
    """The header AVUs of ``path`` (an empty header when it has none or cannot be read)."""
    try:
        avus = grid.get_avus(EntityType.DATA_OBJECT, path)
    except ComputeToDataError:
        return PhotoHeader()
    values = {a.attribute: a.value for a in avus if a.attribute in names.HEADER_ATTRIBUTES}
    camera = " ".join(v for v in (values.get(names.A_EXIF_MAKE, ""), values.get(names.A_EXIF_MODEL, "")) if v)
    width, height = values.get(names.A_IMAGE_WIDTH, ""), values.get(names.A_IMAGE_HEIGHT, "")
    return PhotoHeader(
        taken=values.get(names.A_EXIF_DATETIME, ""),
        latitude=values.get(names.A_EXIF_LATITUDE, ""),
        longitude=values.get(names.A_EXIF_LONGITUDE, ""),
        altitude=values.get(names.A_EXIF_ALTITUDE, ""),
        camera=camera,
        size=f"{width} x {height} px" if width and height else "",
    )
