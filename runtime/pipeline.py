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

from .frames import OUTPUT_KINDS, FrameImages, check_outputs, composite_background

_END = object()


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
        align: bool = False,
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
        # --align: the plate brought to each frame in the decode thread, beside inference; the
        # subject left out of the fit is the latest alpha the matte thread has published
        self.align = align
        self.aligner = None
        self.plate = None
        self.latest_alpha = None

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
        close_sinks(list(self.sinks.values()), keep=not self.errors)
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
                if pair is not None and self.align:
                    pair = (pair[0], self._align(*pair))
                if pair is None or not self._put(self.decoded, (index, *pair)):
                    break
                index += 1
        finally:
            self._put(self.decoded, _END)

    def _align(self, frame: np.ndarray, plate: np.ndarray) -> np.ndarray:
        from .align import PlateAligner

        t = time.perf_counter()
        if self.aligner is None:
            # one thread: alignment fills the gaps inference leaves instead of competing with it
            self.aligner = PlateAligner(plate, threads=1, in_order=True)
        elif plate is not self.plate:  # a background video: each frame its own plate
            self.aligner.set_plate(plate)
        self.plate = plate
        aligned, _ = self.aligner.align(frame, self.latest_alpha)
        self.stats.stage_seconds["align"] = self.stats.stage_seconds.get("align", 0.0) + time.perf_counter() - t
        return aligned

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
                    if self.align and "pha" in outputs[-1]:
                        height, width = items[-1][1].shape[:2]
                        self.latest_alpha = outputs[-1]["pha"][0, :height, :width]
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


def close_sinks(sinks: list, keep: bool) -> None:
    """Every output or none: each is completed first (a full disk often shows only when a video
    is flushed) and all are renamed into place only once every one is complete; a failure
    drops them all and is raised."""
    failure = None
    for sink in sinks:
        try:
            sink.finish(keep=keep and failure is None)
        except BaseException as e:
            failure = failure or e
    if failure is not None:
        for sink in sinks:
            sink.discard()
        raise failure
    if keep:
        for sink in sinks:
            sink.commit()


@dataclass
class RunResult:
    stats: RunStats
    source: dict
    outputs: dict[str, str]
    backend: str  # what ran the model: onnxruntime, openvino, tensorrt..., or "remote" (a server)
    alignment: dict | None = None  # with `align`: runtime/align.py's AlignStats.to_dict()

    def to_dict(self) -> dict:
        facts = {**self.stats.to_dict(), "backend": self.backend, "source": self.source, "outputs": self.outputs}
        return facts if self.alignment is None else {**facts, "alignment": self.alignment}


def _check_outputs_not_inputs(out: Path, outputs: list[str], model, src, bgr, composite: str) -> None:
    """A run never writes over what it reads: an output video or image folder that is (or holds)
    the model, the source, the background or the composite image is refused before it starts."""
    from mattex.files import check_not_input

    inputs = {"model file": model, "source": src, "background": bgr}
    if Path(composite).is_file():
        inputs["composite image"] = composite
    for kind in outputs:
        for written in (out / f"{kind}.mp4", out / kind):  # a video's, or an image sequence's
            check_not_input(written, inputs)


def matte_media(
    model: str | Path,
    src: str | Path,
    bgr: str | Path,
    out: str | Path,
    *,  # options by name: one inserted among them must not shift what callers meant
    outputs: list[str] = ("com", "pha", "fgr"),
    composite: str = "green",
    png: bool = False,
    rgba_fgr: bool = False,
    batch: int = 1,
    resize_bgr: bool = False,
    keep_partial: bool = False,
    crf: int = 18,
    preset: str = "ultrafast",
    progress: Callable[[int], None] = lambda n: None,
    on_start: Callable[[dict], None] = lambda info: None,
    matter=None,
    align: bool = False,
    **open_options,
) -> RunResult:
    """Matte a video, an image or a folder of images against a captured background (an image,
    or a video with as many frames) with an exported model, writing each output kind to `out`:
    `<kind>.mp4` for a video (unless `png`), else `<kind>/<name>.png`. A source video that
    decodes fewer frames than it declares, or stops on a decoding error, is a MediaError; with
    `keep_partial`, the frames that decode are matted and the result's `source["partial"]` says
    what stopped it. Options for Matter.open (backend, providers, runtime_cache, ...) pass through.
    With `align`, the background is brought to each frame first (camera motion and exposure:
    runtime/align.py, the align extra) and the result's `alignment` says what that did."""
    from mattex.files import check_output_folder, output_folder, remove_dead_partials

    from .matter import Matter
    from .media import Background, ImageSink, VideoSink, open_source

    if align:
        from mattex.extras import require

        require("align", "`align` (bringing the plate to each frame)")
    outputs = list(outputs)
    out = Path(out)
    check_output_folder(out)
    _check_outputs_not_inputs(out, outputs, model, src, bgr, composite)
    if matter is None:  # else an open matter-like object (a RemoteMatter on a Triton server)
        # Decoding and encoding share the cores: the backend takes its co-runner options (ONNX
        # Runtime's idle threads sleep: HD, 2 cores, 0.83 -> 0.92 of the model's own frames/s).
        matter = Matter.open(model, sharing_cores=True, **open_options)
    check_outputs(outputs, matter.output_names)
    source = open_source(src, keep_partial)
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
        "frames_from": info.count_from,  # header, duration (an estimate), unknown, or files
        "size": list(info.size),
        "fps": float(info.fps) if info.fps else None,
        "audio": info.audio,
    }
    on_start(source_facts)
    sinks: dict = {}
    with output_folder(out):  # made here, and gone again if the run fails
        for kind in OUTPUT_KINDS:  # what a run killed outright (kill -9) left, whichever outputs it wrote
            remove_dead_partials(out / f"{kind}.mp4")
            remove_dead_partials(out / kind)
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
            close_sinks(list(sinks.values()), keep=False)
            raise
        names = (lambda i: info.names[i]) if info.kind == "images" else (lambda i: f"{i:06d}")
        # aligning: a short queue, so that the alpha the aligner leaves out is at most a few frames old
        pipeline = Pipeline(
            matter,
            source.frames(),
            background.frames(),
            images,
            sinks,
            names,
            batch,
            queue_frames=2 if align else 8,
            progress=progress,
            align=align,
        )
        stats = pipeline.run()
    source_facts["partial"] = getattr(source, "partial", None)  # why a kept video stopped short
    outputs_written = {kind: str(sink.path) for kind, sink in sinks.items()}
    alignment = pipeline.aligner.stats.to_dict() if pipeline.aligner is not None else None
    return RunResult(stats, source_facts, outputs_written, getattr(matter, "kind", "remote"), alignment)
