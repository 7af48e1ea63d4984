"""Media truth (issue 42): what `mattex run` reads is what the file holds, or a MediaError.

The corpus is generated here, tiny (64x48, 10 frames): each container and codec the docs name
(docs/commands/run.md: mp4, mov, mkv, webm) with its index at the end and at the start, cut at
several lengths and with a damaged packet; videos with no frames. Every image mode Pillow reads:
test_image_modes.py.
"""

import io
import json
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import MediaError
from mattex.runtime.media import VideoSource

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
