"""Media truth (issue 42): what `mattex run` reads is what the file holds, or a MediaError.

The corpus is generated here, tiny (64x48, 10 frames): each container and codec the docs name
(docs/commands/run.md: mp4, mov, mkv, webm) with its index at the end and at the start, cut at
several lengths and with a damaged packet; videos with no frames; every image mode Pillow reads,
held against a reference conversion written here (numpy from the raw values, colorsys, the CIE
formulas) or refused by name.
"""

import colorsys
import io
import json
import struct
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import MediaError
from mattex.runtime.frames import composite_background
from mattex.runtime.images import image_to_rgb, read_image
from mattex.runtime.media import Background, VideoSource, open_source

H, W, FRAMES, FPS = 48, 64, 10, 12
CONTAINERS = {"mp4": ("mp4", "libx264"), "mov": ("mov", "libx264"), "mkv": ("matroska", "libx264")}
CONTAINERS["webm"] = ("webm", "libvpx-vp9")
# The index where the muxer puts it by default (mp4/mov: moov after the frames; Matroska: Cues
# after the clusters), and at the start (faststart; space reserved for the Cues before them).
INDEX_AT_START = {"mp4": {"movflags": "+faststart"}, "mov": {"movflags": "+faststart"}}
INDEX_AT_START |= {"mkv": {"reserve_index_space": "1024"}, "webm": {"reserve_index_space": "1024"}}
CUTS = {
    "10%": lambda n: n // 10,
    "50%": lambda n: n // 2,
    "90%": lambda n: n * 9 // 10,
    "4 bytes short": lambda n: n - 4,
    "1 byte short": lambda n: n - 1,
}
runner = CliRunner()


def frame(index: int) -> np.ndarray:
    """A frame that differs from its neighbours: a block moving over a gradient."""
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)
    image[..., 1] = 20 * index
    image[8:24, 4 * index : 4 * index + 16] = 255
    return image


def write_video(target, fmt: str, codec: str, muxer_options=None, frames: int = FRAMES, audio: bool = False, start=0):
    """`frames` frames into `target` (a path or a file object), the first `start` frames late;
    with `audio`, an audio stream carries packets, so that a video stream with no frames still
    makes a file."""
    with av.open(target, "w", format=fmt, options=muxer_options or {}) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.options = {"preset": "ultrafast"} if codec == "libx264" else {"deadline": "realtime", "cpu-used": "8"}
        if audio:
            sound = container.add_stream("libopus" if fmt == "webm" else "aac", rate=48000)
            samples = 960 if fmt == "webm" else 1024
            for index in range(10):
                chunk = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, index * samples
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
        for index in range(frames):
            picture = av.VideoFrame.from_ndarray(frame(index), format="rgb24")
            picture.pts, picture.time_base = start + index, Fraction(1, FPS)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def decode_all(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """(suffix, index) -> (bytes, the frames FFmpeg decodes from the whole file)."""
    folder = tmp_path_factory.mktemp("videos")
    made = {}
    for suffix, (fmt, codec) in CONTAINERS.items():
        for index in ("end", "start"):
            path = folder / f"{index}.{suffix}"
            write_video(str(path), fmt, codec, INDEX_AT_START[suffix] if index == "start" else None)
            made[suffix, index] = (path.read_bytes(), decode_all(path))
            assert len(made[suffix, index][1]) == FRAMES
    return made


def read_through(path, keep_partial=False):
    """(frames given, the MediaError or None, the source)."""
    got, source = [], None
    try:
        source = VideoSource(path, keep_partial=keep_partial)
        for image in source.frames():
            got.append(image)
    except MediaError as e:
        return got, e, source
    return got, None, source


# --- videos cut short -----------------------------------------------------------------------


@pytest.mark.parametrize("cut", CUTS)
@pytest.mark.parametrize("index", ["end", "start"])
@pytest.mark.parametrize("suffix", CONTAINERS)
def test_a_cut_video_is_whole_or_an_error_naming_frames_decoded_and_declared(videos, tmp_path, suffix, index, cut):
    data, whole = videos[suffix, index]
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(data[: CUTS[cut](len(data))])
    got, error, _ = read_through(path)
    assert all(np.array_equal(a, b) for a, b in zip(got, whole))  # what decodes is the file's frames
    if error is None:  # only bytes no frame needs were cut (the end of an index): every frame is there
        assert len(got) == FRAMES
        return
    message = str(error)
    if got:  # stopped midway: the frames decoded and declared, and where it stopped, are named
        assert f"decoded {len(got)} frames of " in message and f"stopped at frame {len(got)}" in message
        assert "the 10 it declares" in message or "about 10 (its 0.833 s at 12 fps)" in message, message
        assert "Pass `keep_partial`" in message
        kept, kept_error, source = read_through(path, keep_partial=True)  # the option keeps them, and says so
        assert kept_error is None and len(kept) == len(got)
        assert source.partial == message.split(". Pass")[0]
    else:  # nothing decodes: unreadable, or no frame to keep
        assert any(words in message for words in ("not a readable video", "no video stream", "no frame that decodes"))
        assert read_through(path, keep_partial=True)[1] is not None


def test_the_cuts_that_passed_silently_before_are_errors(videos, tmp_path):
    """Matroska and WebM declare no frame count: before, a cut file gave its first frames and
    exit 0. Their duration now declares about 10 frames."""
    for suffix in ("mkv", "webm"):
        data, _ = videos[suffix, "start"]
        path = tmp_path / f"cut.{suffix}"
        path.write_bytes(data[:-4])  # the last frame's packet loses its end
        got, error, _ = read_through(path)
        assert len(got) == FRAMES - 1
        assert str(error) == (
            f"{path}: decoded 9 frames of about 10 (its 0.833 s at 12 fps); decoding stopped at frame 9: "
            "the stream ended at 0.750 s of its 0.833 s (a truncated file?). Pass `keep_partial` to keep the "
            "frames that decode"
        )


def damage(data: bytes, frame: int, part: tuple[float, float]) -> bytes:
    """`data` with part of frame `frame`'s packet (as fractions of it, from the packet's start,
    which in Matroska is its block's header) zeroed."""
    with av.open(io.BytesIO(data)) as container:
        position, size = [(p.pos, p.size) for p in container.demux(video=0) if p.size][frame]
    first, last = position + int(size * part[0]), position + int(size * part[1])
    return data[:first] + bytes(last - first) + data[last:]


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_a_zeroed_packet_stops_decoding_with_an_error(videos, tmp_path, suffix):
    """Frame 5's packet zeroed: H.264 refuses it, and Matroska loses its blocks from there on;
    either way frames 0-4 are given and the error names them."""
    data, whole = videos[suffix, "end"]
    path = tmp_path / f"damaged.{suffix}"
    path.write_bytes(damage(data, 5, (0, 1)))
    got, error, _ = read_through(path)
    assert len(got) == 5 and all(np.array_equal(a, b) for a, b in zip(got, whole))
    assert str(error).startswith(f"{path}: decoded 5 frames of ") and "stopped at frame 5: " in str(error)
    kept, kept_error, source = read_through(path, keep_partial=True)
    assert kept_error is None and len(kept) == 5 and source.partial.startswith(f"{path}: decoded 5 frames of ")


def test_a_frame_ffmpeg_conceals_is_not_matted(videos, tmp_path):
    """The middle of an H.264 packet zeroed: FFmpeg decodes a picture with the damage guessed
    over (exit 0 before) and flags it corrupt. (VP9 decodes zeroed data as a picture without a
    flag: damage the codec cannot see is not caught.)"""
    data, whole = videos["mp4", "end"]
    path = tmp_path / "concealed.mp4"
    path.write_bytes(damage(data, 5, (0.25, 0.75)))
    got, error, _ = read_through(path)
    assert len(got) == 5 and str(error) == (
        f"{path}: decoded 5 frames of the 10 it declares; decoding stopped at frame 5: FFmpeg flagged it "
        "corrupt (damaged data). Pass `keep_partial` to keep the frames that decode"
    )


def test_the_declared_count_comes_from_the_header_the_duration_or_is_unknown(videos, tmp_path):
    for suffix, (data, _) in ((s, videos[s, "end"]) for s in CONTAINERS):
        (tmp_path / f"v.{suffix}").write_bytes(data)
        info = VideoSource(tmp_path / f"v.{suffix}").info
        assert (info.count, info.count_from) == (10, "header" if suffix in ("mp4", "mov") else "duration")
    # Written to a pipe, a Matroska file has neither a duration nor an index: the count is
    # unknown, only decoding errors can be caught, and every frame is read.
    pipe = _Pipe()
    write_video(pipe, "matroska", "libx264")
    path = tmp_path / "streamed.mkv"
    path.write_bytes(pipe.data)
    got, error, source = read_through(path)
    assert (source.info.count, source.info.count_from, error, len(got)) == (None, "unknown", None, FRAMES)


@pytest.mark.parametrize("suffix", CONTAINERS)
def test_a_video_that_starts_late_is_read_whole(tmp_path, suffix):
    """Frames from 0.5 s on: Matroska's DURATION tag says where the track ends (1.333 s), not how
    long it is; the frames cover the span from the stream's start, and nothing is missing."""
    path = tmp_path / f"late.{suffix}"
    write_video(str(path), *CONTAINERS[suffix], start=6)
    got, error, source = read_through(path)
    assert (len(got), error, source.info.count) == (FRAMES, None, FRAMES)


class _Pipe(io.RawIOBase):
    """A file object that cannot seek back, as a pipe."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)


@pytest.mark.parametrize("suffix", ["mkv", "webm"])
def test_a_video_stream_with_no_frames_is_an_error_even_when_keeping_partial(tmp_path, suffix):
    path = tmp_path / f"zero.{suffix}"
    write_video(str(path), *CONTAINERS[suffix], frames=0, audio=True)
    for keep_partial in (False, True):
        got, error, _ = read_through(path, keep_partial)
        assert got == [] and str(error).startswith(f"{path} has no frame that decodes, of about 0 ")


# --- mattex run end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    path = tmp_path_factory.mktemp("still") / "bg.png"
    Image.fromarray(frame(0)).save(path)
    return path


def test_run_on_a_zero_frame_video_with_png_is_an_error_that_leaves_nothing(small_file, still, tmp_path):
    video = tmp_path / "zero.mkv"
    write_video(str(video), *CONTAINERS["mkv"], frames=0, audio=True)
    out = tmp_path / "out"
    args = ["run", str(small_file), str(video), str(still), "--out", str(out), "--png", "--backend", "onnxruntime"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert f"error: MediaError: {video} has no frame that decodes" in " ".join(result.output.split())
    assert not out.exists()


def test_run_on_a_cut_video_errs_or_keeps_what_decodes_and_says_so(small_file, still, videos, tmp_path):
    data, _ = videos["webm", "start"]
    video = tmp_path / "cut.webm"
    video.write_bytes(data[:-4])
    out = tmp_path / "out"
    args = ["run", str(small_file), str(video), str(still), "--out", str(out), "--backend", "onnxruntime"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and not out.exists()
    assert "decoded 9 frames of about 10" in refused.output and "Pass --keep-partial" in refused.output
    kept = runner.invoke(app, [*args, "--keep-partial", "--json"])
    assert kept.exit_code == 0, kept.output
    summary = json.loads(kept.output)
    assert summary["frames"] == 9 and summary["source"]["frames"] == 10
    assert summary["source"]["frames_from"] == "duration"
    assert summary["source"]["partial"].startswith(f"{video}: decoded 9 frames of about 10 ")
    assert len(decode_all(out / "pha.mp4")) == 9
    table = runner.invoke(app, [*args, "--keep-partial", "--out", str(tmp_path / "again")])
    assert table.exit_code == 0 and "partial" in table.output and "decoded 9 frames" in table.output


def test_run_says_when_a_video_declares_no_frame_count(small_file, still, tmp_path):
    pipe = _Pipe()
    write_video(pipe, "matroska", "libx264")
    video = tmp_path / "streamed.mkv"
    video.write_bytes(pipe.data)
    args = ["run", str(small_file), str(video), str(still), "--out", str(tmp_path / "out"), "--backend", "onnxruntime"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = " ".join(result.output.replace("│", " ").split())
    assert "declared frames unknown (the file does not declare them): only decoding errors are caught" in table
    assert len(decode_all(tmp_path / "out" / "com.mp4")) == FRAMES


# --- images ---------------------------------------------------------------------------------

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
