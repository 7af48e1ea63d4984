"""Property-based fuzzing of the media readers (the other file readers: test_fuzz.py, whose rules
hold here): the image readers of `mattex run` and of the PhotoMatte85 loader (PNG, JPEG, TIFF,
BMP, WebP) and the video reader give only typed errors on damaged bytes. Each reader bug fuzzing
found is also pinned below as a deterministic regression test.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from fuzzing import DAMAGE, damage, fuzz, only_typed_errors
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """One valid file of each kind read here: the images and a short video."""
    from mattex.calibration.synthetic import write_synthetic_video

    root = tmp_path_factory.mktemp("fuzz_media")
    write_synthetic_video(root / "clip.mp4", root / "bg.png", frames=3, height=64, width=64)
    images = {fmt.lower(): image_bytes(fmt) for fmt in ("PNG", "JPEG", "TIFF", "BMP", "WEBP")}
    return {"mp4": (root / "clip.mp4").read_bytes(), **images}


def image_bytes(fmt: str) -> bytes:
    rgba = np.random.default_rng(0).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    image = Image.fromarray(rgba, "RGBA")
    buffer = io.BytesIO()
    (image if fmt in ("PNG", "TIFF", "WEBP") else image.convert("RGB")).save(buffer, fmt)
    return buffer.getvalue()


# --- images --------------------------------------------------------------------------------------


@fuzz(80)
@given(how=DAMAGE, fmt=st.sampled_from(["png", "jpeg", "tiff", "bmp", "webp"]))
def test_image_reader_of_mattex_run(seeds, tmp_path, how, fmt):
    from mattex.runtime.images import read_image

    path = tmp_path / f"f.{fmt}"
    path.write_bytes(damage(seeds[fmt], how))
    only_typed_errors(lambda: read_image(path))


@fuzz(150)
@given(how=DAMAGE)
def test_image_and_photomatte_readers(seeds, tmp_path, how):
    from mattex.calibration.images import open_image
    from mattex.calibration.photomatte import PhotoMatteFolder

    folder = tmp_path / "pm"
    folder.mkdir(exist_ok=True)
    path = folder / "a.png"
    path.write_bytes(damage(seeds["png"], how))
    only_typed_errors(lambda: open_image(path))
    only_typed_errors(lambda: [item for item in PhotoMatteFolder(folder, (16, 16))])


def _png_with_a_broken_second_chunk() -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)  # several IDAT chunks
    Image.fromarray(noise, "RGBA").save(buffer, "PNG")
    data = buffer.getvalue()
    at = data.index(b"IDAT", data.index(b"IDAT") + 4)
    return data[:at] + b"\t\x997\xf9" + data[at + 4 :]  # SyntaxError("broken PNG file") in load()


def _png_with_a_short_header(seed: bytes) -> bytes:
    at = seed.index(b"IHDR")  # its length (4 bytes) comes first
    return seed[: at - 4] + struct.pack(">I", 5) + seed[at:]  # ValueError("Truncated IHDR chunk")


def _bmp_claiming_a_huge_size(seed: bytes) -> bytes:
    return seed[:18] + struct.pack("<ii", 200_000, 200_000) + seed[26:]  # DecompressionBombError


@pytest.mark.parametrize(
    "make, suffix",
    [
        (lambda seeds: _png_with_a_broken_second_chunk(), ".png"),
        (lambda seeds: _png_with_a_short_header(seeds["png"]), ".png"),
        (lambda seeds: _bmp_claiming_a_huge_size(seeds["bmp"]), ".bmp"),
    ],
)
def test_damaged_images_raise_typed_errors(seeds, tmp_path, make, suffix):
    """Fuzzing found SyntaxError, ValueError and DecompressionBombError escaping Pillow."""
    from mattex.calibration.images import DataError, open_image
    from mattex.errors import MediaError
    from mattex.runtime.images import read_image

    path = tmp_path / f"f{suffix}"
    path.write_bytes(make(seeds))
    with pytest.raises(MediaError, match=f"f{suffix} is not a readable image"):
        read_image(path)
    with pytest.raises(DataError, match=f"cannot read image .*f{suffix}"):
        open_image(path)


# --- video ---------------------------------------------------------------------------------------


@fuzz(100)
@given(how=DAMAGE)
def test_video_reader(seeds, tmp_path, how):
    from mattex.runtime.media import open_source

    path = tmp_path / "f.mp4"
    path.write_bytes(damage(seeds["mp4"], how))
    only_typed_errors(lambda: list(open_source(path).frames()))


def test_a_video_stream_without_a_decoder_raises_media_error(seeds, tmp_path):
    """Fuzzing found an unknown codec tag giving PyAV a stream without a codec context, whose
    height raised AttributeError."""
    from mattex.errors import MediaError
    from mattex.runtime.media import open_source

    path = tmp_path / "f.mp4"
    path.write_bytes(seeds["mp4"].replace(b"avc1", b"zzzz"))
    with pytest.raises(MediaError, match="f.mp4 is not a readable video: its video stream has no decoder"):
        open_source(path)
