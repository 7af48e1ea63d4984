"""Clean plates from footage (`mattex plate`): build one from a clip recorded without the subject,
and check one against a clip before matting a day's footage.

A plate built as the per-pixel temporal median of the clip's frames keeps what most frames show:
sensor noise averages out and a passer-by, present at each pixel in fewer than half the frames,
drops out. A check brings the plate to each frame as `--align` does (runtime/align.py) and says
how far the camera moved, how far the exposure drifted, and where the scene itself changed (a
moved chair): what stays different once plate and frame are aligned, so that the plate is stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattex.errors import ConfigError, MediaError

MIN_FRAMES = 3  # a median of fewer cannot outvote a passer-by
CHANGE_LEVELS = 30  # an aligned plate further than this (0-255, any channel) from the frame: changed
CHANGE_BLUR_PX = 2.0  # noise and edges left by sub-pixel misalignment are not a change
STALE_FRACTION = 0.005  # a frame whose changed area exceeds this share of it says the plate is stale


def sampled_frames(path: str | Path, max_frames: int) -> list[np.ndarray]:
    """Up to `max_frames` frames spread evenly over the clip (all of them when it has fewer)."""
    from .media import open_source

    if max_frames < MIN_FRAMES:
        raise ConfigError(f"`frames` must be at least {MIN_FRAMES}, got {max_frames}")
    source = open_source(path)
    step = max(1, math.ceil(source.info.count / max_frames)) if source.info.count else 1
    frames = []
    for index, frame in enumerate(source.frames()):
        if index % step == 0:
            frames.append(frame)
            if len(frames) == max_frames:
                break
    return frames


def temporal_median(frames: list[np.ndarray], rows_at_once: int = 64) -> np.ndarray:
    """The per-pixel median of uint8 frames, a band of rows at a time (memory: one band of every
    frame, not a float copy of the whole clip)."""
    height = frames[0].shape[0]
    plate = np.empty_like(frames[0])
    for top in range(0, height, rows_at_once):
        band = np.stack([f[top : top + rows_at_once] for f in frames])
        plate[top : top + rows_at_once] = np.round(np.median(band, axis=0)).astype(np.uint8)
    return plate


def build_plate(clip: str | Path, out: str | Path, max_frames: int = 60) -> dict:
    """Write the temporal median of `clip` (a video, or a folder of images) to `out` (PNG)."""
    from PIL import Image

    from mattex.files import atomic_path, output_file

    out = output_file(out)
    frames = sampled_frames(clip, max_frames)
    if len(frames) < MIN_FRAMES:
        raise MediaError(f"{clip} has {len(frames)} frames: a plate needs at least {MIN_FRAMES} to take a median of")
    plate = temporal_median(frames)
    with atomic_path(out) as tmp:
        Image.fromarray(plate).save(tmp, format="PNG")
    return {"frames": len(frames), "size": list(plate.shape[:2]), "plate": str(out)}


@dataclass(frozen=True)
class PlateCheck:
    """How one frame of a clip stands against the plate."""

    frame: int
    shift_px: float  # how far the camera moved: the frame's corners under the homography
    fallback: bool  # no motion could be estimated on this frame (the last good one is used)
    gains: tuple[float, float, float]  # exposure and white balance: frame = gain * plate + offset
    changed: float  # share of the frame that still differs once the plate is aligned
    changed_box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 of the changed area

    def to_dict(self) -> dict:
        return {
            "frame": self.frame,
            "shift_px": round(self.shift_px, 2),
            "fallback": self.fallback,
            "gains": [round(g, 3) for g in self.gains],
            "changed": round(self.changed, 4),
            "changed_box": list(self.changed_box) if self.changed_box else None,
        }


def check_plate(plate: str | Path, clip: str | Path, max_frames: int = 60) -> dict:
    """Each sampled frame of `clip` against `plate`: its PlateCheck, and a verdict over all."""
    import cv2

    from .align import PlateAligner
    from .homography import covered_by_plate
    from .images import read_image

    if not Path(plate).is_file():
        raise MediaError(f"no such plate: {plate}")
    plate_image = read_image(Path(plate))
    frames = sampled_frames(clip, max_frames)
    if not frames:
        raise MediaError(f"{clip} has no frames to check the plate against")
    if frames[0].shape != plate_image.shape:
        size, got = frames[0].shape, plate_image.shape
        raise MediaError(f"the plate is {got[1]}x{got[0]} but the clip's frames are {size[1]}x{size[0]}")
    aligner = PlateAligner(plate_image)
    rows = []
    for index, frame in enumerate(frames):
        aligned, step = aligner.align(frame, None)  # no matte: what disagrees is left out of the fit
        difference = np.abs(aligned.astype(np.float32) - frame.astype(np.float32)).max(axis=2)
        changed = cv2.GaussianBlur(difference, (0, 0), CHANGE_BLUR_PX) > CHANGE_LEVELS
        changed &= covered_by_plate(step.homography, frame.shape[:2]) > 0  # what the plate never saw is no change
        changed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        ys, xs = np.nonzero(changed)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else None
        rows.append(PlateCheck(index, step.shift_px, step.fallback, step.gains, float(changed.mean()), box))
    stale = [r.frame for r in rows if r.changed > STALE_FRACTION]
    gains = np.array([r.gains for r in rows])
    return {
        "frames": len(rows),
        "max_shift_px": round(max(r.shift_px for r in rows), 2),
        "gain_range": [round(float(gains.min()), 3), round(float(gains.max()), 3)],
        "fallbacks": sum(r.fallback for r in rows),
        "stale_frames": len(stale),
        "max_changed": round(max(r.changed for r in rows), 4),
        "per_frame": [r.to_dict() for r in rows],
    }
