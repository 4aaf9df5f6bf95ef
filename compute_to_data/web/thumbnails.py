"""Thumbnails made on the fly with Pillow and cached on disk.

The cache key is the object's logical path, its checksum and size and the thumbnail size, so a
replaced image gets a new thumbnail. The cache only saves work: whoever asks is checked for read
access on the object before a cached thumbnail is served (see the app's routes).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path

from compute_to_data.domain.errors import GridError

log = logging.getLogger(__name__)

#: formats every browser shows; others (TIFF, ...) are converted to PNG for the full view.
BROWSER_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
MAX_PIXELS = 100_000_000


class ThumbnailCache:
    def __init__(self, directory: Path, size: int = 192) -> None:
        self.directory = Path(directory)
        self.size = size
        self.directory.mkdir(parents=True, exist_ok=True)

    def key(self, path: str, checksum: str, size_bytes: int) -> str:
        text = f"{path}\x00{checksum}\x00{size_bytes}\x00{self.size}"
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.jpg"

    def get(self, key: str) -> bytes | None:
        try:
            return self._file(key).read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        target = self._file(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, target)
        except OSError as exc:  # a cache that cannot write is only slower
            log.warning("cannot write thumbnail cache %s: %s", target, exc)
            Path(temp).unlink(missing_ok=True)

    def render(self, content: bytes) -> bytes:
        return make_thumbnail(content, self.size)


def _open(content: bytes):  # noqa: ANN202 - PIL image
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        image = Image.open(io.BytesIO(content))
        image.load()
    except Exception as exc:  # PIL raises many types for bad data
        raise GridError(f"not an image Pillow can read: {exc}") from None
    return image


def make_thumbnail(content: bytes, size: int) -> bytes:
    from PIL import Image, ImageOps

    image = _open(content)
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "L"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.split()[-1])
        image = background
    # Small images (28x28 digits) are scaled up with hard edges so they stay readable.
    scale = size / max(image.size)
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def browser_image(content: bytes) -> tuple[bytes, str]:
    """The image as browsers can show it: unchanged if PNG/JPEG/GIF/WebP, else converted to PNG."""
    image = _open(content)
    media = BROWSER_FORMATS.get(image.format or "")
    if media:
        return content, media
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue(), "image/png"
