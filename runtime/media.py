"""Frames in and out for `mattex run`: videos through PyAV (FFmpeg), images through Pillow.

Sources give uint8 RGB frames (H, W, 3); sinks write one output each under a temporary name
and rename it only when closed with `keep=True` (a failed run leaves no half-written file; an
interrupted one keeps a playable video of the frames done). Imported only by `mattex run`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from mattex.contract import IMAGE_SUFFIXES
from mattex.errors import MediaError
from mattex.files import commit, discard, output_error, temporary_beside, temporary_folder_beside

from .images import read_image

GREEN = (120, 255, 155)  # the reference's composite background (inference_video.py)


@dataclass
class SourceInfo:
    kind: str  # "video" or "images"
    # Frames the source declares: a video's header count, else its duration x frame rate;
    # None when the file says neither (count_from says which).
    count: int | None
    size: tuple[int, int]  # (height, width)
    fps: Fraction | None = None
    names: list[str] = field(default_factory=list)  # image stems, for images
    audio: bool = False
    count_from: str = "files"  # "files" (images), "header", "duration" or "unknown"


def _av():
    try:
        import av
    except ImportError:
        raise MediaError("video needs PyAV: pip install av") from None
    return av


class VideoSource:
    """The frames of a video file, decoded in order, and held to what the file declares: a
    decoding error, a frame FFmpeg flags corrupt, or a stream that ends before its declared
    frame count or duration (a truncated file) is a MediaError naming the frames decoded and
    declared. With `keep_partial`, decoding stops there instead and `partial` says why."""

    def __init__(self, path: str | Path, keep_partial: bool = False) -> None:
        self.path = Path(path)
        self.keep_partial = keep_partial
        self.partial: str | None = None  # set when frames() stopped short under keep_partial
        self.decoded = 0
        av = _av()
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise MediaError(f"{self.path} has no video stream")
                stream = container.streams.video[0]
                # A damaged or unknown codec: PyAV gives a stream without a decoder, whose
                # attributes (height, width) would raise AttributeError.
                if stream.codec_context is None:
                    raise MediaError(
                        f"{self.path} is not a readable video: its video stream has no "
                        "decoder (an unknown or damaged codec)"
                    )
                if not (stream.height > 0 and stream.width > 0):
                    raise MediaError(
                        f"{self.path} is not a readable video: its video stream is {stream.height}x{stream.width}"
                    )
                fps = Fraction(stream.average_rate) if stream.average_rate else None
                self.span = _declared_span(container, stream)
                count, count_from = stream.frames or None, "header"
                if count is None:
                    count_from = "duration" if self.span is not None and fps else "unknown"
                    count = round((self.span[1] - self.span[0]) * fps) if count_from == "duration" else None
                self.info = SourceInfo(
                    "video",
                    count,
                    (stream.height, stream.width),
                    fps,
                    audio=bool(container.streams.audio),
                    count_from=count_from,
                )
        except MediaError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise MediaError(f"{self.path} is not a readable video: {e}") from None

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame, then the check that they are all the file declares (see the class)."""
        av = _av()
        height, width = self.info.size
        self.decoded, self.partial = 0, None
        hidden = 0  # packets an edit list hides: the header's count includes their frames
        end = None  # seconds: where the last decoded frame ends (on the file's clock)
        stopped = None  # why decoding stopped early
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for packet in container.demux(stream):
                    hidden += packet.is_discard
                    for frame in packet.decode():
                        # FFmpeg conceals a damaged packet and flags the frame: its pixels are guesses.
                        if frame.is_corrupt:
                            stopped = "FFmpeg flagged it corrupt (damaged data)"
                            break
                        if (frame.height, frame.width) != (height, width):
                            raise MediaError(
                                f"{self.path}: frame {self.decoded} is {frame.height}x{frame.width}, the "
                                f"video started at {height}x{width} (height x width); frames must keep one size"
                            )
                        if frame.time is not None:
                            end = frame.time + _frame_seconds(frame, self.info.fps)
                        yield frame.to_ndarray(format="rgb24")
                        self.decoded += 1
                    if stopped:
                        break
        except av.error.FFmpegError as e:
            stopped = f"decoding failed: {e}"
        self._hold_to_declared(stopped, end, hidden)

    def _hold_to_declared(self, stopped: str | None, end: float | None, hidden: int) -> None:
        """Raise (or, under keep_partial, note) a stream that stopped on an error or gave less
        than the file declares: fewer frames than its header's count (less the `hidden` ones an
        edit list cuts), or frames that end short of its declared span."""
        info, decoded = self.info, self.decoded
        start, declared_end = (float(t) for t in self.span or (0, 0))
        length = declared_end - start  # seconds
        ended = (start if end is None else end) - start  # seconds the decoded frames cover
        if stopped is None:
            if info.count_from == "header" and decoded + hidden < info.count:
                stopped = "FFmpeg gave fewer frames than the file declares (a truncated or damaged file?)"
            elif info.count_from == "duration" and ended < length - 1 / (2 * info.fps):  # half a frame short
                stopped = f"the stream ended at {ended:.3f} s of its {length:.3f} s (a truncated file?)"
            elif decoded:
                return
        declared = {
            "header": f"the {info.count} it declares",
            "duration": f"about {info.count} (its {length:.3f} s at {float(info.fps):g} fps)",
            "unknown": "a number it does not declare",
        }[info.count_from]
        if decoded == 0:  # nothing to keep
            why = f": {stopped}" if stopped else ""
            raise MediaError(f"{self.path} has no frame that decodes, of {declared}{why}")
        problem = f"{self.path}: decoded {decoded} frames of {declared}; decoding stopped at frame {decoded}: {stopped}"
        if not self.keep_partial:
            raise MediaError(f"{problem}. Pass `keep_partial` to keep the frames that decode")
        self.partial = problem


def _declared_span(container, stream) -> tuple[Fraction, Fraction] | None:
    """Where the video stream's frames start and end, in seconds on the file's clock, as the file
    declares: from the stream's start time to the per-track DURATION tag Matroska and WebM
    writers set (HH:MM:SS.nnnnnnnnn, where the track ends; FFmpeg may fill the stream's own
    duration from the container's, which counts the audio too), else for the stream's own
    duration, else for the container's where the video is its only stream; None when the file
    says none of them."""
    start = Fraction(stream.start_time) * stream.time_base if stream.start_time is not None else Fraction(0)
    tag = stream.metadata.get("DURATION")
    if tag:
        try:
            hours, minutes, seconds = tag.split(":")
            return start, Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
        except ValueError:
            pass  # a malformed tag: the next source
    if stream.duration:
        return start, start + Fraction(stream.duration) * stream.time_base
    if container.duration and len(container.streams) == 1:
        return start, start + Fraction(container.duration, 1_000_000)  # AV_TIME_BASE
    return None


def _frame_seconds(frame, fps: Fraction | None) -> float:
    """How long a decoded frame shows: its own duration, else one frame at the stream's rate."""
    duration = getattr(frame, "duration", None)  # PyAV 13 and older have no Frame.duration
    if duration and frame.time_base:
        return float(duration * frame.time_base)
    return float(1 / fps) if fps else 0.0


class ImageSource:
    """One image, or every image of a folder in name order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise MediaError(f"{self.path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            self.files = [self.path]
        first = read_image(self.files[0])
        self.info = SourceInfo("images", len(self.files), first.shape[:2], names=[p.stem for p in self.files])

    def frames(self) -> Iterator[np.ndarray]:
        height, width = self.info.size
        for path in self.files:
            image = read_image(path)
            if image.shape[:2] != (height, width):
                raise MediaError(
                    f"{path.name} is {image.shape[0]}x{image.shape[1]}, the first image "
                    f"{height}x{width} (height x width): the images of a folder must share one size"
                )
            yield image


def open_source(path: str | Path, keep_partial: bool = False):
    """A VideoSource or an ImageSource for a video file, an image or a folder of images;
    `keep_partial`: a video that stops short keeps the frames that decode (VideoSource)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"no such file or folder: {path}")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoSource(path, keep_partial)


class Background:
    """The captured background for each frame: one image, or a video frame by frame."""

    def __init__(self, path: str | Path, size: tuple[int, int], frames: int | None, resize: bool) -> None:
        self.path, self.size, self.resize = Path(path), size, resize
        if not self.path.exists():
            raise MediaError(f"no such background: {self.path}")
        self.source = open_source(self.path)
        if isinstance(self.source, ImageSource) and len(self.source.files) > 1:
            raise MediaError(f"the background {self.path} is a folder: give one image or a video")
        got = self.source.info.size
        if got != size and not resize:
            raise MediaError(
                f"the background is {got[1]}x{got[0]} but the frames are {size[1]}x{size[0]}: "
                "capture it at the same size, or pass `resize_bgr`"
            )
        if self.source.info.kind == "video" and frames and self.source.info.count and self.source.info.count < frames:
            raise MediaError(
                f"the background video has {self.source.info.count} frames, the source "
                f"{frames}: it needs one background frame per frame"
            )
        self._still = self._fit(next(self.source.frames())) if self.source.info.kind == "images" else None

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] == self.size:
            return image
        from PIL import Image

        return np.asarray(Image.fromarray(image).resize((self.size[1], self.size[0]), Image.BILINEAR))

    def frames(self) -> Iterator[np.ndarray]:
        """One background frame per source frame (a still image repeats)."""
        if self._still is not None:
            while True:
                yield self._still
        count = 0
        for frame in self.source.frames():
            count += 1
            yield self._fit(frame)
        raise MediaError(f"the background video {self.path} ran out after {count} frames")


class VideoSink:
    """One output video (H.264 in MP4 and MOV, VP9 in WebM): written to a temporary file beside
    `path`, renamed when closed with keep=True. With `audio_from`, the source's audio is copied
    (stream copy, no re-encode) up to the last frame written. An OSError while writing (a full
    disk: FFmpeg meets it when it flushes, often only at close) is an OutputPathError naming
    `path`, and the temporary file is removed.

    Defaults favour speed, so that encoding hides behind inference: x264's ultrafast preset on
    one thread per output took 15 ms of CPU per HD frame where veryfast took 36 (crf 18 keeps
    the quality; a slower preset makes smaller files)."""

    def __init__(
        self,
        path: Path,
        fps: Fraction,
        size: tuple[int, int],
        audio_from: Path | None = None,
        crf: int = 18,
        preset: str = "ultrafast",
        threads: int = 1,
    ) -> None:
        av = _av()
        self.path = Path(path)
        self.tmp = temporary_beside(self.path)
        container_format = {".mov": "mov", ".mkv": "matroska", ".webm": "webm"}.get(self.path.suffix.lower(), "mp4")
        try:
            self.container = av.open(str(self.tmp), "w", format=container_format)
        except OSError as e:
            discard(self.tmp)
            raise output_error(self.path, e) from None
        height, width = size
        codec = "libvpx-vp9" if container_format == "webm" else "libx264"
        self.stream = self.container.add_stream(codec, rate=fps)
        self.stream.width, self.stream.height = width, height
        # 4:2:0 needs even sizes; 4:4:4 takes any.
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.stream.options = {
            "crf": str(crf),
            "threads": str(threads),
            **({"preset": preset} if codec == "libx264" else {}),
        }
        self.fps, self.frames = fps, 0
        self.audio_from, self.audio = None, None
        if audio_from is not None:
            self.audio_from = av.open(str(audio_from))
            if self.audio_from.streams.audio:
                self.audio = self.container.add_stream_from_template(self.audio_from.streams.audio[0])
            else:
                self.audio_from.close()
                self.audio_from = None

    def write(self, frame: np.ndarray, name: str | None = None) -> None:
        """A uint8 frame: (H, W, 3) RGB or (H, W) gray (`name` is for image sinks)."""
        av = _av()
        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24" if frame.ndim == 3 else "gray")
        try:
            for packet in self.stream.encode(video):
                self.container.mux(packet)
        except OSError as e:
            raise output_error(self.path, e) from None
        self.frames += 1

    def finish(self, keep: bool) -> None:
        """Complete the temporary file (keep) or drop it; OutputPathError where completing it
        fails, the temporary file removed. After a failure elsewhere (not keep), closing may
        fail again on the same full disk: the file is dropped all the same."""
        try:
            try:
                if keep:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
                    self._copy_audio()
            finally:
                try:
                    self.container.close()
                finally:
                    if self.audio_from is not None:
                        self.audio_from.close()
        except OSError as e:
            discard(self.tmp)
            if keep:
                raise output_error(self.path, e) from None
        except BaseException:
            discard(self.tmp)
            raise
        if not keep:
            discard(self.tmp)

    def commit(self) -> Path:
        return commit(self.tmp, self.path)

    def discard(self) -> None:
        discard(self.tmp)

    def close(self, keep: bool) -> Path | None:
        self.finish(keep)
        return self.commit() if keep else None

    def _copy_audio(self) -> None:
        if self.audio is None:
            return
        end = Fraction(self.frames) / self.fps  # seconds of video written
        source = self.audio_from.streams.audio[0]
        for packet in self.audio_from.demux(source):
            if packet.dts is None:
                continue
            if packet.pts is not None and packet.pts * source.time_base >= end:
                break
            packet.stream = self.audio
            self.container.mux(packet)


class ImageSink:
    """One output as PNGs in a folder: written into a temporary folder beside it, which replaces
    the folder when closed with keep=True."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder)
        self.tmp = temporary_folder_beside(self.path)
        self.frames = 0

    def write(self, image: np.ndarray, name: str) -> None:
        """A uint8 image: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, saved as <name>.png."""
        from PIL import Image

        try:
            Image.fromarray(np.ascontiguousarray(image)).save(self.tmp / f"{name}.png", compress_level=1)
        except OSError as e:  # a full disk: the temporary folder goes when the run closes its sinks
            raise output_error(self.path / f"{name}.png", e) from None
        self.frames += 1

    def finish(self, keep: bool) -> None:
        if not keep:
            discard(self.tmp)

    def commit(self) -> Path:
        return commit(self.tmp, self.path)

    def discard(self) -> None:
        discard(self.tmp)

    def close(self, keep: bool) -> Path | None:
        self.finish(keep)
        return self.commit() if keep else None
