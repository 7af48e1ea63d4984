"""One image file as the uint8 RGB a camera saw, or a MediaError naming why not: every Pillow
mode read right or refused by name, EXIF orientations applied, transparency refused. The source,
the background and `--composite` of `mattex run` all read images here (`media`, `frames`)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from mattex.errors import MediaError


def pillow_read_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for an image file it cannot read: SyntaxError (a broken PNG chunk),
    ValueError, EOFError or struct.error for damaged files, DecompressionBombError for a huge
    claimed size, OSError and UnidentifiedImageError for the rest."""
    from PIL import Image, UnidentifiedImageError

    return (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        struct.error,
    )


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3): see `image_to_rgb`. A file of several images (an
    animation, a multi-page TIFF) is refused: only its first would be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            count = getattr(image, "n_frames", 1)
            if count > 1:
                raise MediaError(f"{path} holds {count} images (an animation or pages): give a video, or one image")
            return image_to_rgb(image, path)
    except pillow_read_errors() as e:
        raise MediaError(f"{path} is not a readable image: {e}") from None


# Pillow modes whose conversion to RGB is right as Pillow does it (held against references in
# tests/runtime/test_media_truth.py); transparency is checked apart, and 16-bit gray scaled here.
_PILLOW_RGB_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")
_SIXTEEN_BIT_GRAY = ("I;16", "I;16L", "I;16B", "I;16N")
# Pixels with no fixed white: Pillow clips them to 0-255 (a 0-1 float image turns black, a 16-bit
# one in a 32-bit mode white), so the right 8 bits cannot be known.
_NO_FIXED_WHITE = {"I": "32-bit integer", "F": "32-bit float"}


def image_to_rgb(image, name) -> np.ndarray:
    """A Pillow image as the uint8 RGB (H, W, 3) it shows: turned upright by its EXIF
    orientation, 16-bit gray scaled to 8 bits (v * 255 / 65535, rounded; Pillow would clip it),
    other modes as Pillow converts them. Refused by name (MediaError): 32-bit integer and float
    modes, modes Pillow cannot convert, and pixels that are not opaque (the RGB under them is
    not what a camera saw; dropping the alpha would matte arbitrary colours)."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image)  # a camera's rotation, which convert() ignores
    mode = image.mode
    if mode in _NO_FIXED_WHITE:
        raise MediaError(
            f"{name} has {_NO_FIXED_WHITE[mode]} pixels (Pillow mode {mode}), whose white is not fixed: "
            "save it as 8- or 16-bit"
        )
    if mode in _SIXTEEN_BIT_GRAY:
        values = np.asarray(image).astype(np.uint32)
        transparent = image.info.get("transparency")  # a 16-bit gray PNG's tRNS: one value
        _refuse_transparency(name, mode, values == transparent if isinstance(transparent, int) else None)
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if mode not in _PILLOW_RGB_MODES:
        raise MediaError(f"{name} is in Pillow mode {mode}, which mattex does not read: save it as RGB")
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:  # an alpha, or a tRNS colour
        rgba = np.asarray(image.convert("RGBA"))
        _refuse_transparency(name, mode, rgba[..., 3] < 255)
        return np.ascontiguousarray(rgba[..., :3])
    return np.asarray(image.convert("RGB"))


def _refuse_transparency(name, mode: str, hidden: np.ndarray | None) -> None:
    count = 0 if hidden is None else int(hidden.sum())
    if count:
        raise MediaError(
            f"{name} ({mode}) has {count} of {hidden.size} pixels not opaque: mattex reads what a camera "
            "saw, and the colour under a transparent pixel is not that; flatten it onto a background first"
        )
