"""What plate alignment (`align.PlateAligner`) reports: each frame's step, and a run's figures
for `mattex run`'s summary and --json."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AlignStep:
    """What the aligner did for one frame."""

    homography: np.ndarray  # 3x3, plate pixels -> frame pixels (full resolution)
    inliers: int  # feature matches that agree with the estimate (0 on a fallback)
    fallback: bool  # this frame gave no estimate that passed the checks: the last good one is used
    shift_px: float  # mean displacement of the frame's corners under the homography
    gains: tuple[float, float, float]  # per channel (R, G, B): frame = gain * plate + offset
    offsets: tuple[float, float, float]
    large_motion: bool  # shift_px above the aligner's large-motion limit


@dataclass
class AlignStats:
    """A run's alignment figures, for the summary and --json."""

    frames: int = 0
    fallbacks: int = 0
    large_motion: int = 0
    shifts: list[float] = field(default_factory=list)
    gain_low: float = 1.0
    gain_high: float = 1.0

    def add(self, step: AlignStep) -> None:
        self.frames += 1
        self.fallbacks += step.fallback
        self.large_motion += step.large_motion
        self.shifts.append(step.shift_px)
        self.gain_low = min(self.gain_low, *step.gains)
        self.gain_high = max(self.gain_high, *step.gains)

    def to_dict(self) -> dict:
        return {
            "frames": self.frames,
            "aligned": self.frames - self.fallbacks,
            "fallbacks": self.fallbacks,
            "median_shift_px": round(float(np.median(self.shifts)), 2) if self.shifts else 0.0,
            "max_shift_px": round(float(np.max(self.shifts)), 2) if self.shifts else 0.0,
            "gain_range": [round(self.gain_low, 3), round(self.gain_high, 3)],
            "large_motion_frames": self.large_motion,
        }
