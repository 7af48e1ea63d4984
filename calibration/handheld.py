"""Handheld clips with a known truth, for plate alignment (runtime/align.py): a camera drifting
over a photograph (a small translation, rotation and scale, as a handheld camera moves), its
exposure drifting per channel, and a soft synthetic subject with a known alpha in front.

The plate is the camera's first view at the first exposure; for each frame the truth is the
homography taking plate pixels to frame pixels, the per-channel gain and offset, the background
the frame shows and the subject's alpha. benchmarks/clean_plates.py and tests/runtime/
test_align.py share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthetic import synth_portrait


@dataclass
class HandheldClip:
    plate: np.ndarray  # (H, W, 3) uint8: the captured background
    frames: list[np.ndarray]  # (H, W, 3) uint8: subject over the moved, re-exposed background
    alphas: list[np.ndarray]  # (H, W) float32 in [0, 1]: the subject's true alpha
    backgrounds: list[np.ndarray]  # (H, W, 3) uint8: what the camera saw behind the subject
    homographies: list[np.ndarray]  # 3x3: plate pixels -> frame pixels
    gains: list[np.ndarray]  # (3,) per frame: background = gain * plate + offset
    offsets: list[np.ndarray]


def camera_path(
    frames: int, size: tuple[int, int], drift_px: float, rotation_deg: float, scale: float, seed: int
) -> list[np.ndarray]:
    """Smooth handheld motion about the frame's centre, from the identity: the translation
    reaches `drift_px`, the rotation `rotation_deg`, the scale 1 +- `scale`."""
    rng = np.random.default_rng(seed)
    height, width = size
    t = np.linspace(0.0, 1.0, frames)

    def wander(amplitude: float) -> np.ndarray:  # two slow waves, starting at 0, peak |amplitude|
        a, b = rng.uniform(0.6, 1.6, 2)
        phase = rng.uniform(0, 2 * np.pi, 2)
        curve = np.sin(2 * np.pi * a * t + phase[0]) - np.sin(phase[0])
        curve += 0.5 * (np.sin(2 * np.pi * b * t + phase[1]) - np.sin(phase[1]))
        return amplitude * curve / max(np.abs(curve).max(), 1e-9)

    direction = rng.uniform(0, 2 * np.pi)
    dx, dy = wander(drift_px * np.cos(direction)), wander(drift_px * np.sin(direction))
    angle, zoom = np.deg2rad(wander(rotation_deg)), 1.0 + wander(scale)
    centre = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1.0]])
    paths = []
    for i in range(frames):
        c, s = zoom[i] * np.cos(angle[i]), zoom[i] * np.sin(angle[i])
        motion = np.array([[c, -s, dx[i]], [s, c, dy[i]], [0, 0, 1.0]])
        paths.append(centre @ motion @ np.linalg.inv(centre))
    return paths


def exposure_path(frames: int, drift: tuple[float, float, float], seed: int) -> tuple[list, list]:
    """Per-channel gains ramping from 1 to 1 + drift (auto exposure and white balance settling),
    with a small offset (black level)."""
    rng = np.random.default_rng(seed)
    ramp = np.sin(np.linspace(0, np.pi / 2, frames))[:, None]
    gains = 1.0 + ramp * np.asarray(drift)[None]
    offsets = ramp * rng.uniform(-3, 3, 3)[None]
    return list(gains), list(offsets)


def camera_view(world: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """What a camera whose plate->frame motion is `homography` sees of `world` (the plate's
    view is the world's centre)."""
    import cv2

    height, width = size
    margin = np.array([[1, 0, (world.shape[1] - width) / 2], [0, 1, (world.shape[0] - height) / 2], [0, 0, 1.0]])
    # frame pixel x shows plate pixel H^-1 x, which is world pixel margin @ H^-1 x
    to_world = margin @ np.linalg.inv(homography)
    return cv2.warpPerspective(
        world, to_world, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
    )


def handheld_clip(
    world: np.ndarray,
    size: tuple[int, int] = (288, 512),
    frames: int = 24,
    drift_px: float = 12.0,
    rotation_deg: float = 0.5,
    scale: float = 0.01,
    exposure: tuple[float, float, float] = (0.13, -0.04, -0.12),
    subject: bool = True,
    noise: float = 1.5,
    seed: int = 0,
) -> HandheldClip:
    """`frames` frames of `size` (height, width) over `world` (uint8 RGB, larger than `size`
    by the drift on every side), with a subject walking slowly across unless `subject` is off."""
    height, width = size
    if world.shape[0] < height + 4 * drift_px or world.shape[1] < width + 4 * drift_px:
        raise ValueError(f"the world {world.shape[:2]} must exceed the frame {size} by twice the drift on each side")
    rng = np.random.default_rng(seed)
    homographies = camera_path(frames, size, drift_px, rotation_deg, scale, seed)
    gains, offsets = exposure_path(frames, exposure, seed + 1)
    plate = camera_view(world, np.eye(3), size)
    if subject:
        fgr, pha = synth_portrait(rng, height, width)
        fgr, pha = fgr.transpose(1, 2, 0), pha[0]
    clip = HandheldClip(plate, [], [], [], homographies, gains, offsets)
    for i in range(frames):
        background = camera_view(world, homographies[i], size).astype(np.float32) * gains[i] + offsets[i]
        background = np.clip(background, 0, 255)
        if subject:  # walks sideways a pixel and a half a frame
            step = int(round(1.5 * (i - frames / 2)))
            alpha, colour = np.roll(pha, step, axis=1), np.roll(fgr, step, axis=1) * 255
            if step > 0:
                alpha[:, :step] = 0
            elif step < 0:
                alpha[:, step:] = 0
        else:
            alpha, colour = np.zeros(size, np.float32), 0.0
        frame = alpha[..., None] * colour + (1 - alpha[..., None]) * background
        frame = frame + rng.normal(0, noise, frame.shape)
        clip.frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
        clip.alphas.append(alpha.astype(np.float32))
        clip.backgrounds.append((background + 0.5).astype(np.uint8))
    return clip
