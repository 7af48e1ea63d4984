"""Media truth for images (issue 42): every image mode Pillow reads becomes the RGB it shows,
held against a reference conversion written here (numpy from the raw values, colorsys, the CIE
formulas), or is refused by name, for the source, the background and `--composite` alike; EXIF
orientations turn it upright. The videos' half of media truth: test_media_truth.py.
"""

import colorsys
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mattex.errors import MediaError
from mattex.runtime.frames import composite_background
from mattex.runtime.images import image_to_rgb, read_image
from mattex.runtime.media import Background, open_source

H, W = 48, 64  # tiny images: the conversions are per pixel


RNG = np.random.default_rng(42)
GRAY = RNG.integers(0, 256, (H, W), np.uint8)
RGB = RNG.integers(0, 256, (H, W, 3), np.uint8)
OPAQUE = np.full((H, W), 255, np.uint8)
SEETHROUGH = OPAQUE.copy()
SEETHROUGH[:3, :4] = 0  # 12 pixels
SIXTEEN = RNG.integers(0, 65536, (H, W), np.uint16)
SIXTEEN_RGBA = RNG.integers(0, 65536, (H, W, 4), np.uint16)
PALETTE = RNG.integers(0, 256, (256, 3), np.uint8)
INDICES = RNG.integers(1, 256, (H, W), np.uint8)  # index 0, the transparent one, unused


def gray_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def scaled16(values: np.ndarray) -> np.ndarray:
    """16 bits to 8, rounded: 65535 is white."""
    return np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


def write_png16(path, array: np.ndarray) -> None:
    """A 16-bit PNG (gray, RGB or RGBA), written by hand: Pillow cannot write 16-bit colour."""
    height, width, channels = array.shape
    rows = array.astype(">u2").reshape(height, width * channels)
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def palette_image(transparent_index=None) -> Image.Image:
    image = Image.fromarray(INDICES, "P")
    image.putpalette(PALETTE.tobytes())
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def lab_patches() -> tuple[np.ndarray, np.ndarray]:
    """Pillow's LAB bytes (L* x 255/100; a* and b* signed, as TIFF's CIELab) and their sRGB by
    the CIE formulas: neutral greys (L* to Y, Y to sRGB) and sRGB red, Lab (54.29, 80.80, 69.89)
    under D50. The greys tell a signed a*, b* from one offset by 128."""
    lightness = np.array([0, 25, 50, 75, 100.0])
    y = np.where(lightness > 8, ((lightness + 16) / 116) ** 3, lightness / 903.3)
    srgb = np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055) * 255
    lab = [(round(v * 255 / 100), 0, 0) for v in lightness] + [(round(54.29 * 2.55), 81, 70)]
    want = [(g, g, g) for g in srgb] + [(255, 0, 0)]
    return np.array([lab], np.uint8), np.array([want])


def hsv_reference(hsv: np.ndarray) -> np.ndarray:
    flat = [colorsys.hsv_to_rgb(*(pixel / 255)) for pixel in hsv.reshape(-1, 3)]
    return np.round(np.array(flat) * 255).reshape(hsv.shape)


def ycbcr_reference(ycc: np.ndarray) -> np.ndarray:
    """JFIF's full-range BT.601."""
    y, cb, cr = (ycc[..., i].astype(np.float64) for i in range(3))
    rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)])
    return np.clip(np.round(rgb.transpose(1, 2, 0)), 0, 255)


def cmyk_reference(cmyk: np.ndarray) -> np.ndarray:
    """Without a colour profile: each ink takes its share of what black leaves."""
    ink = cmyk.astype(np.float64)
    return np.round((255 - ink[..., :3]) * (255 - ink[..., 3:]) / 255)


CMYK = RNG.integers(0, 256, (H, W, 4), np.uint8)
LAB_IN, LAB_WANT = lab_patches()

# name -> (write the file into a folder and return its path, the RGB it shows, the tolerance in
# levels); the tolerance is 0 but where the reference is another rounding of the same formula
# (YCbCr, CMYK), Pillow reads a 16-bit colour PNG's high byte (floor(v / 256) against
# round(v / 257)), or LAB goes through 8-bit L* and a colour-managed transform (red 5 of 255).
READ_RIGHT = {
    "1": (lambda d: _save(Image.fromarray(GRAY > 127), d / "1.png"), gray_rgb(np.where(GRAY > 127, 255, 0)), 0),
    "L": (lambda d: _save(Image.fromarray(GRAY), d / "L.png"), gray_rgb(GRAY), 0),
    "LA opaque": (lambda d: _save(Image.fromarray(np.dstack([GRAY, OPAQUE]), "LA"), d / "LA.png"), gray_rgb(GRAY), 0),
    "P": (lambda d: _save(palette_image(), d / "P.png"), PALETTE[INDICES], 0),
    "P with an unused transparent index": (
        lambda d: _save(palette_image(0), d / "Ptrns.png", transparency=0),
        PALETTE[INDICES],
        0,
    ),
    "RGB": (lambda d: _save(Image.fromarray(RGB), d / "RGB.png"), RGB, 0),
    "RGBA opaque": (lambda d: _save(Image.fromarray(np.dstack([RGB, OPAQUE])), d / "RGBA.png"), RGB, 0),
    "I;16 PNG": (lambda d: _save(Image.fromarray(SIXTEEN), d / "I16.png"), gray_rgb(scaled16(SIXTEEN)), 0),
    "I;16 TIFF": (lambda d: _save(Image.fromarray(SIXTEEN), d / "I16.tiff"), gray_rgb(scaled16(SIXTEEN)), 0),
    "I;16B TIFF": (
        lambda d: _save(Image.frombytes("I;16B", (W, H), SIXTEEN.astype(">u2").tobytes()), d / "I16B.tiff"),
        gray_rgb(scaled16(SIXTEEN)),
        0,
    ),
    "I;16L TIFF": (
        lambda d: _save(Image.frombytes("I;16L", (W, H), SIXTEEN.astype("<u2").tobytes()), d / "I16L.tiff"),
        gray_rgb(scaled16(SIXTEEN)),
        0,
    ),
    "16-bit RGB PNG": (lambda d: _png16(SIXTEEN_RGBA[..., :3], d / "RGB16.png"), scaled16(SIXTEEN_RGBA[..., :3]), 1),
    "16-bit RGBA PNG, opaque": (
        lambda d: _png16(np.dstack([SIXTEEN_RGBA[..., :3], np.full((H, W), 65535, np.uint16)]), d / "RGBA16.png"),
        scaled16(SIXTEEN_RGBA[..., :3]),
        1,
    ),
    "CMYK TIFF": (lambda d: _save(Image.fromarray(CMYK, "CMYK"), d / "CMYK.tiff"), cmyk_reference(CMYK), 1),
    "YCbCr TIFF": (lambda d: _save(Image.fromarray(RGB, "YCbCr"), d / "YCbCr.tiff"), ycbcr_reference(RGB), 1),
    "LAB TIFF": (lambda d: _save(Image.fromarray(LAB_IN, "LAB"), d / "LAB.tiff"), LAB_WANT, 5),
}

# name -> (write the file, words the MediaError must hold)
REFUSED = {
    "LA with transparent pixels": (
        lambda d: _save(Image.fromarray(np.dstack([GRAY, SEETHROUGH]), "LA"), d / "LAt.png"),
        "(LA) has 12 of 3072 pixels not opaque",
    ),
    "RGBA with transparent pixels": (
        lambda d: _save(Image.fromarray(np.dstack([RGB, SEETHROUGH])), d / "RGBAt.png"),
        "(RGBA) has 12 of 3072 pixels not opaque",
    ),
    "P with transparent pixels": (
        lambda d: _save(_with_index_zero(palette_image(0)), d / "Pt.png", transparency=0),
        "(P) has 1 of 3072 pixels not opaque",
    ),
    "16-bit RGBA PNG with transparent pixels": (
        lambda d: _png16(SIXTEEN_RGBA, d / "RGBA16t.png"),
        "(RGBA) has",
    ),
    "I TIFF": (
        lambda d: _save(Image.frombytes("I", (W, H), SIXTEEN.astype(np.int32).tobytes()), d / "I.tiff"),
        "has 32-bit integer pixels (Pillow mode I), whose white is not fixed",
    ),
    "F TIFF": (
        lambda d: _save(Image.frombytes("F", (W, H), (SIXTEEN / 65535).astype(np.float32).tobytes()), d / "F.tiff"),
        "has 32-bit float pixels (Pillow mode F), whose white is not fixed",
    ),
    "an animated PNG": (
        lambda d: _save(Image.fromarray(RGB), d / "anim.png", save_all=True, append_images=[Image.fromarray(GRAY)]),
        "holds 2 images (an animation or pages): give a video, or one image",
    ),
}


def _save(image: Image.Image, path, **options):
    image.save(path, **options)
    return path


def _png16(array, path):
    write_png16(path, array)
    return path


def _with_index_zero(image: Image.Image) -> Image.Image:
    image.putpixel((0, 0), 0)
    return image


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("images")


@pytest.mark.parametrize("case", READ_RIGHT)
def test_each_image_mode_reads_as_the_rgb_it_shows(image_folder, case):
    write, want, tolerance = READ_RIGHT[case]
    got = read_image(write(image_folder))
    assert got.dtype == np.uint8 and got.shape == want.shape
    assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= tolerance


@pytest.mark.parametrize("case", REFUSED)
def test_images_without_a_right_rgb_are_refused_by_name(image_folder, case):
    write, words = REFUSED[case]
    path = write(image_folder)
    with pytest.raises(MediaError) as caught:
        read_image(path)
    assert str(caught.value).startswith(str(path)) and words in str(caught.value)


def test_modes_no_file_holds_convert_by_their_reference():
    """HSV and PA exist only in memory (Pillow writes neither): image_to_rgb, which read_image
    uses, is held to them directly."""
    hsv = RGB
    assert np.abs(image_to_rgb(Image.fromarray(hsv, "HSV"), "hsv").astype(int) - hsv_reference(hsv)).max() == 0
    pa = palette_image().convert("PA")
    assert np.array_equal(image_to_rgb(pa, "pa"), PALETTE[INDICES])
    see_through = Image.merge("PA", (palette_image(), Image.fromarray(SEETHROUGH)))
    with pytest.raises(MediaError, match=r"^pa \(PA\) has 12 of 3072 pixels not opaque"):
        image_to_rgb(see_through, "pa")


# EXIF orientation k: where the stored image's first row and first column show (EXIF 2.32,
# Orientation tag), as the numpy view of the stored array that shows upright.
ORIENTATIONS = {
    1: lambda s: s,  # row 0 at the top, column 0 on the left
    2: lambda s: s[:, ::-1],  # row 0 top, column 0 right
    3: lambda s: s[::-1, ::-1],  # row 0 bottom, column 0 right
    4: lambda s: s[::-1],  # row 0 bottom, column 0 left
    5: lambda s: s.transpose(1, 0, 2),  # row 0 left, column 0 top
    6: lambda s: s[::-1].transpose(1, 0, 2),  # row 0 right, column 0 top
    7: lambda s: s[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
    8: lambda s: s[:, ::-1].transpose(1, 0, 2),  # row 0 left, column 0 bottom
}


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_exif_orientation_turns_the_image_upright(tmp_path, orientation):
    stored = RGB
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    want = ORIENTATIONS[orientation](stored)
    assert np.array_equal(read_image(path), want)
    # orientations 5 to 8 turn the image a quarter: height and width swap
    assert want.shape[:2] == ((H, W) if orientation <= 4 else (W, H))


def test_the_source_the_background_and_the_composite_read_images_alike(image_folder, tmp_path):
    """All three go through read_image: a 16-bit gray PNG turned by EXIF reads right in each,
    and a transparent one is refused in each."""
    path = tmp_path / "gray16_turned.png"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(SIXTEEN).save(path, exif=exif)
    want = ORIENTATIONS[6](gray_rgb(scaled16(SIXTEEN)))
    size = want.shape[:2]
    assert np.array_equal(next(open_source(path).frames()), want)
    assert np.array_equal(next(Background(path, size, None, False).frames()), want)
    assert np.array_equal(composite_background(str(path), size), want)
    refused = REFUSED["RGBA with transparent pixels"][0](image_folder)
    for read in (
        lambda: open_source(refused),
        lambda: Background(refused, (H, W), None, False),
        lambda: composite_background(str(refused), (H, W)),
    ):
        with pytest.raises(MediaError, match="not opaque"):
            read()


def test_pillow_alone_clips_16_bit_gray_and_ignores_exif(tmp_path):
    """The two silent faults the reader had: Pillow's convert("RGB") turns 16-bit gray white and
    leaves an EXIF-turned photo on its side (what docs/commands/run.md says Pillow alone does)."""
    gray16 = tmp_path / "gray16.png"
    Image.fromarray(SIXTEEN).save(gray16)
    with Image.open(gray16) as image:
        assert image.mode == "I;16" and (np.asarray(image.convert("RGB")) == 255).mean() > 0.99
    assert np.array_equal(read_image(gray16), gray_rgb(scaled16(SIXTEEN)))
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = tmp_path / "turned.png"
    Image.fromarray(RGB).save(turned, exif=exif)
    with Image.open(turned) as image:
        assert np.asarray(image.convert("RGB")).shape == (H, W, 3)
    assert read_image(turned).shape == (W, H, 3)
