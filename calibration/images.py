"""Reading and writing images as float arrays, and fitting them to a size without distortion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mattex.contract import IMAGE_SUFFIXES
from mattex.errors import DataError
from mattex.files import atomic_path
from mattex.runtime.images import pillow_read_errors


def image_files(folder: Path, suffixes=IMAGE_SUFFIXES) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def open_image(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
        return image
    except pillow_read_errors() as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def image_header(path: Path) -> Image.Image:
    """The image at `path` opened without decoding its pixels, its PNG checksums verified: a
    damaged file is found in milliseconds, before work that would need it."""
    try:
        image = Image.open(path)
        image.verify()  # consumes the file; mode and size stay readable
        return image
    except pillow_read_errors() as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def to_float(image: Image.Image, mode: str) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]."""
    array = np.asarray(image.convert(mode), dtype=np.float32) / 255.0
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def fit(image: Image.Image, size: tuple[int, int], resample=Image.BILINEAR) -> Image.Image:
    """Scale to cover `size` = (height, width), keeping the aspect ratio, then centre-crop."""
    height, width = size
    scale = max(height / image.height, width / image.width)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), resample)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def save_rgba(path: Path, rgb: np.ndarray, alpha: np.ndarray) -> None:
    """rgb (3, H, W), alpha (1, H, W) in [0, 1] -> an 8-bit RGBA PNG."""
    rgba = np.concatenate([rgb, alpha], axis=0).transpose(1, 2, 0)
    image = Image.fromarray(np.round(np.clip(rgba, 0, 1) * 255).astype(np.uint8), "RGBA")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_rgb(path: Path, rgb: np.ndarray, format: str | None = None) -> None:
    """rgb (3, H, W) in [0, 1] -> an 8-bit RGB image (`format` when the name does not say it)."""
    image = Image.fromarray(np.round(np.clip(rgb.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8), "RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, format=format or Image.registered_extensions().get(Path(path).suffix.lower(), "PNG"))
