"""Demo images from scikit-learn's bundled handwritten digits (no download needed).

The 8x8 digits are upscaled to 32x32 grayscale PNGs so they are visible in reports. File names
(``digit_00042.png``) say nothing about the label; the true labels are returned separately so a
demo or benchmark can measure accuracy. Everything is deterministic for a given seed.

Imports numpy, Pillow and scikit-learn: used by the demo and the benchmarks only, never by code
the iRODS server imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 32
LABELS = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitSplit:
    """Upscaled uint8 images (N, 32, 32) with their digit labels (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def upscale(digit: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """One 8x8 digit (values 0..16) as a ``size`` x ``size`` uint8 image (bilinear)."""
    small = Image.fromarray(np.clip(digit * (255.0 / 16.0), 0, 255).astype(np.uint8))
    return np.asarray(small.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def load_split(test_fraction: float = 0.3, seed: int = 0, size: int = IMAGE_SIZE) -> DigitSplit:
    """The 1797 digits, shuffled with ``seed`` and split, stratified by label."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.stack([upscale(d, size) for d in digits.images])
    train_x, test_x, train_y, test_y = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return DigitSplit(train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64))


def variant(image: np.ndarray, rng: np.random.Generator, max_shift: int = 2, noise: float = 8.0) -> np.ndarray:
    """A slightly shifted, noisy copy: more distinct images than the data set holds."""
    dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
    shifted = np.zeros_like(image)
    h, w = image.shape
    src = image[max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)]
    shifted[max(0, dy): max(0, dy) + src.shape[0], max(0, dx): max(0, dx) + src.shape[1]] = src
    noisy = shifted.astype(np.float32) + rng.normal(0.0, noise, size=image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def sample(images: np.ndarray, labels: np.ndarray, count: int | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images: the originals first, then deterministic variants of them, cycling."""
    if count is None or count <= len(images):
        n = len(images) if count is None else count
        return images[:n], labels[:n]
    rng = np.random.default_rng(seed)
    extra = count - len(images)
    sources = np.arange(extra) % len(images)
    variants = np.stack([variant(images[i], rng) for i in sources])
    return np.concatenate([images, variants]), np.concatenate([labels, labels[sources]])


def write_images(
    directory: str | Path,
    count: int | None = None,
    *,
    split: str = "test",
    seed: int = 0,
    per_directory: int = 0,
    start: int = 0,
) -> dict[str, str]:
    """Write digits as PNG files under ``directory``; return ``{relative path: true label}``.

    ``split`` is "test" (images the demo model never saw) or "train". ``count`` beyond the split's
    size adds shifted/noisy variants (use it for benchmarks of 2000+ images). ``per_directory`` > 0
    spreads the files over sub-directories ``part_000/``, ``part_001/``... of that many files each.
    """
    if split not in ("test", "train"):
        raise ValueError(f"split must be 'test' or 'train', not {split!r}")
    data = load_split(seed=seed)
    images, labels = (data.test_images, data.test_labels) if split == "test" else (data.train_images, data.train_labels)
    images, labels = sample(images, labels, count, seed=seed + 1)
    root = Path(directory)
    truth: dict[str, str] = {}
    for n, (image, label) in enumerate(zip(images, labels)):
        name = f"digit_{start + n:05d}.png"
        rel = f"part_{n // per_directory:03d}/{name}" if per_directory > 0 else name
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target, format="PNG")
        truth[rel] = LABELS[int(label)]
    return truth


def accuracy(predictions: dict, truth: dict[str, str]) -> tuple[float, int]:
    """Top-1 accuracy of a ``predictions.json`` document against ``truth`` (by ``file``).

    Returns (accuracy over the files that were classified and have a known label, that count).
    """
    hits = total = 0
    for entry in predictions.get("images", []):
        expected = truth.get(entry.get("file"))
        if expected is None or "classifications" not in entry:
            continue
        total += 1
        hits += entry["classifications"][0]["class"] == expected
    return (hits / total if total else 0.0), total
