"""Small inline pictures of the least certain images, for the report (runs in the container).

A person deciding whether to trust a prediction wants to see the image, not its file name. The
report is one self-contained HTML file (the report browser serves it sandboxed, with images only
from ``data:`` URIs), so each thumbnail is a base64 PNG inside it: at most
:data:`THUMBNAIL_PIXELS` on a side and at most :data:`MAX_SHOWN` of them, a few KB each.

Pillow is imported here, so nothing the iRODS server imports may import this module.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compute_to_data.contract.results import is_thumbnail_uri

#: the longer side of a thumbnail, in pixels
THUMBNAIL_PIXELS = 96
#: the least certain images a report shows (each with its thumbnail)
MAX_SHOWN = 15


def thumbnail_uri(path: Path, size: int = THUMBNAIL_PIXELS) -> str | None:
    """``data:image/png;base64,...`` of the image at ``path`` scaled to fit ``size`` pixels, turned
    upright by its EXIF orientation; None when it cannot be read (the report then shows none)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img.draft("RGB", (2 * size, 2 * size))  # a large JPEG is decoded at reduced scale
            upright = ImageOps.exif_transpose(img)
            picture = upright.convert("L" if upright.mode in ("1", "L", "I", "I;16", "F") else "RGB")
        picture.thumbnail((size, size))
        out = io.BytesIO()
        picture.save(out, "PNG", optimize=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    uri = "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return uri if is_thumbnail_uri(uri) else None


def img_html(uri: str | None, alt: str, size: int = THUMBNAIL_PIXELS) -> str:
    """An ``<img>`` for a thumbnail (empty when there is none); the alt text is escaped, and only a
    checked base64 PNG data URI is ever put in ``src``."""
    if not is_thumbnail_uri(uri):
        return ""
    return (f'<img class="c2d-thumbnail" src="{uri}" alt="{html.escape(alt)}" '
            f'style="max-width:{size}px;max-height:{size}px">')


def least_certain_thumbnails(entries: Sequence[dict[str, Any]], input_root: Path,
                             limit: int = MAX_SHOWN) -> list[dict[str, str]]:
    """Thumbnails of the ``limit`` least certain of ``entries`` (``predictions.json`` entries with
    classifications), for the images staged under ``input_root`` (an earlier run's are not)."""
    ranked = sorted(entries, key=lambda e: (e["classifications"][0]["score"], e["file"]))
    made = []
    for entry in ranked[:limit]:
        source = input_root / entry["file"]
        uri = thumbnail_uri(source) if source.is_file() else None
        if uri is not None:
            made.append({"file": entry["file"], "path": entry.get("path", ""), "thumbnail": uri})
    return made
