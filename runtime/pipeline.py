"""`mattex run`'s pipeline: decode, matte and encode in their own threads with bounded queues,
so decoding and encoding hide behind inference.

    decode thread --(src, bgr frames)--> matte thread --(mattes)--> encode thread --> sinks

A failure in any stage stops all three and every output is discarded (sinks closed with
keep=False); a stop request (Ctrl-C) stops decoding, drops frames not yet matted and keeps the
frames done, so an interrupted video is still playable.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mattex.contract import SIZE_MULTIPLE
from mattex.errors import ConfigError

from .media import GREEN, read_image

OUTPUT_KINDS = ("com", "pha", "fgr", "err", "ref")
# Outputs drawn from a file's debug outputs (exported with --debug-outputs).
NEEDS_DEBUG_OUTPUT = {"err": "err_sm", "ref": "ref_sm"}
_END = object()


def composite_background(spec: str, size: tuple[int, int]) -> np.ndarray:
    """The (H, W, 3) uint8 background `com` is composited on: green (the reference's), white,
    or an image file resized to the frames."""
    height, width = size
    if spec in ("green", "white"):
        colour = GREEN if spec == "green" else (255, 255, 255)
        return np.broadcast_to(np.asarray(colour, np.uint8), (height, width, 3))
    from PIL import Image

    image = read_image(Path(spec))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


@dataclass
class FrameImages:
    """Turns one frame's model outputs into the uint8 images each output kind writes."""

    kinds: tuple[str, ...]
    background: np.ndarray | None = None  # for com
    rgba_fgr: bool = False  # fgr as RGBA carrying the alpha (image outputs)

    def __post_init__(self) -> None:
        from PIL import Image

        self._background = (
            Image.fromarray(np.ascontiguousarray(self.background)) if self.background is not None else None
        )

    def __call__(self, out: dict[str, np.ndarray], size: tuple[int, int]) -> dict[str, np.ndarray]:
        from PIL import Image

        height, width = size
        pha = _to_uint8(out["pha"][0, :height, :width])  # (H, W)
        images = {"pha": pha} if "pha" in self.kinds else {}
        if "fgr" in self.kinds or "com" in self.kinds:
            # uint8 first (channels-first is contiguous), then the cheap uint8 transpose.
            fgr = np.ascontiguousarray(_to_uint8(out["fgr"][:, :height, :width]).transpose(1, 2, 0))
            if "fgr" in self.kinds:
                images["fgr"] = np.dstack([fgr, pha]) if self.rgba_fgr else fgr
            if "com" in self.kinds:  # fgr * pha + background * (1 - pha), in Pillow's C loop
                images["com"] = np.asarray(
                    Image.composite(Image.fromarray(fgr), self._background, Image.fromarray(pha, "L"))
                )
        if "err" in self.kinds:
            images["err"] = _to_uint8(_upsample_bilinear(out["err_sm"][0], (height, width)))
        if "ref" in self.kinds:
            ref = np.repeat(np.repeat(out["ref_sm"][0], 4, axis=0), 4, axis=1)
            images["ref"] = _to_uint8(ref[:height, :width])
        return images


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] -> 0..255, rounded. The graph clamps pha and fgr itself; the clip here costs a pass
    over the frame only where a value is out of range."""
    scaled = np.multiply(x, 255, dtype=np.float32)
    if scaled.min() < 0 or scaled.max() > 255:
        np.clip(scaled, 0, 255, out=scaled)
    scaled += 0.5
    return scaled.astype(np.uint8)


def _upsample_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(x.astype(np.float32), mode="F").resize((size[1], size[0]), Image.BILINEAR))


def _yield_to_inference() -> None:
    """Lower this thread's priority (Linux threads have their own; FFmpeg's threads started from
    it inherit it), so decoding and encoding run in the gaps inference leaves instead of
    preempting one of its worker threads, which stalls the whole parallel op."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except OSError:  # not permitted here: run at the normal priority
            pass


@dataclass
class RunStats:
    frames: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "matte": 0.0, "encode": 0.0})
    interrupted: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        per_frame = {k: round(1000 * v / max(self.frames, 1), 2) for k, v in self.stage_seconds.items()}
        return {
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "ms_per_frame": per_frame,
            "interrupted": self.interrupted,
        }


def check_outputs(kinds: list[str], output_names: list[str]) -> None:
    """Refuse output kinds the file cannot give, before anything runs."""
    unknown = [k for k in kinds if k not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"`outputs` {','.join(kinds)}: choose from {','.join(OUTPUT_KINDS)}")
    missing = [k for k in kinds if k in NEEDS_DEBUG_OUTPUT and NEEDS_DEBUG_OUTPUT[k] not in output_names]
    if missing:
        raise ConfigError(
            f"`outputs` {','.join(missing)} need the file's debug outputs "
            f"({', '.join(NEEDS_DEBUG_OUTPUT[k] for k in missing)}): export it with `debug_outputs`"
        )


class Pipeline:
    """One run: frames from `source` and `background` through `matter` into `sinks`."""

    def __init__(
        self,
        matter,
        frames,
        backgrounds,
        images: FrameImages,
        sinks: dict,
        names: Callable[[int], str],
        batch: int = 1,
        queue_frames: int = 8,
        progress: Callable[[int], None] = lambda n: None,
    ) -> None:
        if batch < 1:
            raise ConfigError(f"`batch` must be at least 1, got {batch}")
        self.matter, self.frames, self.backgrounds = matter, frames, backgrounds
        self.images, self.sinks, self.names, self.batch = images, sinks, names, batch
        self.progress = progress
        self.decoded: queue.Queue = queue.Queue(maxsize=max(queue_frames, batch))
        self.matted: queue.Queue = queue.Queue(maxsize=max(queue_frames, batch))
        self.stop = threading.Event()  # stop decoding: an interruption or a failure
        self.failed = threading.Event()
        self.errors: list[BaseException] = []
        self.stats = RunStats()

    def run(self) -> RunStats:
        """Run to the end, or until interrupted (KeyboardInterrupt in the calling thread). Sinks
        are closed: kept on success and on interruption, discarded on failure (re-raised)."""
        started = time.perf_counter()
        threads = [
            threading.Thread(target=self._guard, args=(stage,), name=f"mattex-{stage.__name__}", daemon=True)
            for stage in (self._decode, self._matte, self._encode)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.1)
        except KeyboardInterrupt:
            self.stats.interrupted = True
            self.stop.set()
            for thread in threads:
                thread.join()
        self.stats.seconds = time.perf_counter() - started
        keep = not self.errors
        for sink in self.sinks.values():
            sink.close(keep=keep)
        if self.errors:
            raise self.errors[0]
        return self.stats

    def _guard(self, stage) -> None:
        try:
            if stage != self._matte:
                _yield_to_inference()
            stage()
        except Exception as e:  # any stage's failure stops the run and is re-raised by run()
            self.errors.append(e)
            self.failed.set()
            self.stop.set()

    def _put(self, q: queue.Queue, item) -> bool:
        """Put unless the run failed meanwhile (then the consumer may be gone)."""
        while not self.failed.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue):
        while not self.failed.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def _decode(self) -> None:
        pairs = zip(self.frames, self.backgrounds)
        index = 0
        try:
            while not self.stop.is_set():
                t = time.perf_counter()
                pair = next(pairs, None)
                self.stats.stage_seconds["decode"] += time.perf_counter() - t
                if pair is None or not self._put(self.decoded, (index, *pair)):
                    break
                index += 1
        finally:
            self._put(self.decoded, _END)

    def _matte(self) -> None:
        try:
            done = False
            while not done:
                items = []
                while len(items) < self.batch:
                    item = self._get(self.decoded)
                    if item is _END:
                        done = True
                        break
                    if not self.stop.is_set():  # after a stop, frames not yet matted are dropped
                        items.append(item)
                if items:
                    t = time.perf_counter()
                    outputs = self._matte_batch(items)
                    self.stats.stage_seconds["matte"] += time.perf_counter() - t
                    for item, out in zip(items, outputs):
                        if not self._put(self.matted, (item[0], item[1].shape[:2], out)):
                            return
        finally:
            self._put(self.matted, _END)

    def _matte_batch(self, items) -> list[dict]:
        src = np.stack([item[1] for item in items])  # (B, H, W, 3)
        bgr = np.stack([item[2] for item in items])
        height, width = src.shape[1:3]
        # the model takes whole patches: pad the bottom and right edges, cropped off afterwards
        pad = ((0, 0), (0, -height % SIZE_MULTIPLE), (0, -width % SIZE_MULTIPLE), (0, 0))
        if any(p[1] for p in pad):
            src, bgr = np.pad(src, pad, mode="edge"), np.pad(bgr, pad, mode="edge")
        out = self.matter.matte_frames(src, bgr)
        return [{name: np.asarray(value[b]) for name, value in out.items()} for b in range(len(items))]

    def _encode(self) -> None:
        while True:
            item = self._get(self.matted)
            if item is _END:
                return
            index, size, out = item
            t = time.perf_counter()
            for kind, image in self.images(out, size).items():
                self.sinks[kind].write(image, self.names(index))
            self.stats.stage_seconds["encode"] += time.perf_counter() - t
            self.stats.frames += 1
            self.progress(1)


@dataclass
class RunResult:
    stats: RunStats
    source: dict
    outputs: dict[str, str]
    backend: str  # what ran the model: onnxruntime, openvino, tensorrt..., or "remote" (a server)

    def to_dict(self) -> dict:
        return {**self.stats.to_dict(), "backend": self.backend, "source": self.source, "outputs": self.outputs}


def matte_media(
    model: str | Path,
    src: str | Path,
    bgr: str | Path,
    out: str | Path,
    outputs: list[str] = ("com", "pha", "fgr"),
    composite: str = "green",
    png: bool = False,
    rgba_fgr: bool = False,
    batch: int = 1,
    resize_bgr: bool = False,
    crf: int = 18,
    preset: str = "ultrafast",
    progress: Callable[[int], None] = lambda n: None,
    on_start: Callable[[dict], None] = lambda info: None,
    matter=None,
    **open_options,
) -> RunResult:
    """Matte a video, an image or a folder of images against a captured background (an image,
    or a video with as many frames) with an exported model, writing each output kind to `out`:
    `<kind>.mp4` for a video (unless `png`), else `<kind>/<name>.png`. Options for Matter.open
    (backend, providers, runtime_cache, ...) pass through."""
    from mattex.files import output_folder

    from .matter import Matter
    from .media import Background, ImageSink, VideoSink, open_source

    outputs = list(outputs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"`out` {out} is a file; give a folder for the outputs")
    if matter is None:  # else an open matter-like object (a RemoteMatter on a Triton server)
        # Decoding and encoding share the cores: the backend takes its co-runner options (ONNX
        # Runtime's idle threads sleep: HD, 2 cores, 0.83 -> 0.92 of the model's own frames/s).
        matter = Matter.open(model, sharing_cores=True, **open_options)
    check_outputs(outputs, matter.output_names)
    source = open_source(src)
    info = source.info
    background = Background(bgr, info.size, info.count, resize_bgr)
    images = FrameImages(
        tuple(outputs), composite_background(composite, info.size) if "com" in outputs else None, rgba_fgr
    )
    video = info.kind == "video" and not png
    if rgba_fgr and video:
        raise ConfigError("`rgba_fgr` writes fgr as RGBA PNGs: add `png` for a video source")
    if video and info.fps is None:
        raise ConfigError(f"{src} does not say its frame rate; write image sequences instead (`png`)")
    source_facts = {
        "kind": info.kind,
        "frames": info.count,
        "size": list(info.size),
        "fps": float(info.fps) if info.fps else None,
        "audio": info.audio,
    }
    on_start(source_facts)
    sinks: dict = {}
    with output_folder(out):  # made here, and gone again if the run fails
        try:
            for kind in outputs:
                sinks[kind] = (
                    VideoSink(
                        out / f"{kind}.mp4",
                        info.fps,
                        info.size,
                        audio_from=Path(src) if kind == "com" and info.audio else None,
                        crf=crf,
                        preset=preset,
                    )
                    if video
                    else ImageSink(out / kind)
                )
        except BaseException:
            for sink in sinks.values():
                sink.close(keep=False)
            raise
        names = (lambda i: info.names[i]) if info.kind == "images" else (lambda i: f"{i:06d}")
        stats = Pipeline(
            matter, source.frames(), background.frames(), images, sinks, names, batch, progress=progress
        ).run()
    outputs_written = {kind: str(sink.path) for kind, sink in sinks.items()}
    return RunResult(stats, source_facts, outputs_written, getattr(matter, "kind", "remote"))
