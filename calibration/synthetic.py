"""A synthetic stand-in for PhotoMatte85: portrait-like RGBA foregrounds with soft edges and
thin hair-like strands, and textured backgrounds. Deterministic under a seed, written to disk
in PhotoMatte85's layout so every test and demo runs the real pipeline without the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from .images import save_rgb, save_rgba


def _ellipse_alpha(yy, xx, cy, cx, ry, rx, softness):
    """Anti-aliased filled ellipse: 1 inside, 0 outside, a ramp `softness` pixels wide."""
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    distance_px = (d - 1.0) * min(rx, ry)
    return np.clip(0.5 - distance_px / softness, 0.0, 1.0)


def _texture(rng, height, width, base, amplitude=0.12, scale=None):
    """A colour field: base colour modulated by random gratings and smooth noise. (3, H, W)"""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.zeros((3, height, width), np.float32) + np.asarray(base, np.float32)[:, None, None]
    for _ in range(rng.integers(2, 5)):
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.01, 0.15)
        wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * freq + rng.uniform(0, 6.3))
        field += amplitude * rng.uniform(0.2, 1.0) * wave[None] * rng.uniform(-1, 1, (3, 1, 1))
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (3, height, width)), (0, 2, 2)) * amplitude
    return np.clip(field + noise.astype(np.float32), 0, 1)


def _strands(rng, height, width, roots, count, length_range, sigma=0.7):
    """Alpha of thin curved strands (quadratic Bezier curves) grown from `roots`."""
    alpha = np.zeros((height, width), np.float32)
    for _ in range(count):
        y0, x0, direction = roots[rng.integers(len(roots))]
        length = rng.uniform(*length_range)
        bend = rng.uniform(-0.8, 0.8)
        p0 = np.array([y0, x0])
        p2 = p0 + length * np.array([np.sin(direction), np.cos(direction)])
        mid = (p0 + p2) / 2 + bend * length * 0.5 * np.array([np.cos(direction), -np.sin(direction)])
        t = np.linspace(0, 1, int(length * 3))[:, None]
        pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * mid + t**2 * p2
        opacity = rng.uniform(0.35, 0.9)
        iy, ix = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        keep = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
        np.maximum.at(alpha, (iy[keep], ix[keep]), opacity)
    # A 1-pixel line blurred to a sub-pixel profile: fractional alpha like real hair.
    return np.clip(ndimage.gaussian_filter(alpha, sigma) * 2.5, 0, 1)


def synth_portrait(rng: np.random.Generator, height: int = 640, width: int = 512):
    """One portrait-like foreground: (fgr (3, H, W), pha (1, H, W)) float32 in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx = width * (0.5 + rng.uniform(-0.12, 0.12))
    head_cy, head_ry, head_rx = (
        height * rng.uniform(0.27, 0.37),
        height * rng.uniform(0.13, 0.17),
        width * rng.uniform(0.13, 0.18),
    )
    soft = rng.uniform(1.0, 3.0)
    head = _ellipse_alpha(yy, xx, head_cy, cx, head_ry, head_rx, soft)
    torso = _ellipse_alpha(
        yy,
        xx,
        height * rng.uniform(1.0, 1.1),
        cx + width * rng.uniform(-0.05, 0.05),
        height * rng.uniform(0.42, 0.55),
        width * rng.uniform(0.36, 0.48),
        soft,
    )
    neck = np.clip(np.minimum(0.5 - (np.abs(xx - cx) - head_rx * 0.45) / soft, 0.5 - (head_cy - yy) / soft), 0, 1) * (
        yy < height
    )
    # Hair: a fuzzy cap over the top of the head, and strands growing out of it.
    cap = _ellipse_alpha(
        yy, xx, head_cy - head_ry * 0.15, cx, head_ry * 1.08, head_rx * 1.12, rng.uniform(4.0, 9.0)
    ) * (yy < head_cy + head_ry * 0.1)
    angles = rng.uniform(np.pi * 1.05, np.pi * 1.95, 64)
    roots = [(head_cy - head_ry * 0.15 + np.sin(a) * head_ry * 1.05, cx + np.cos(a) * head_rx * 1.1, a) for a in angles]
    shortest = min(15.0, height * 0.1)  # small images get shorter strands
    strands = _strands(rng, height, width, roots, rng.integers(40, 120), (shortest, max(height * 0.15, shortest + 1.0)))
    body = np.maximum(np.maximum(head, torso), neck)
    pha = np.maximum(np.maximum(body, cap), strands)

    clothes = _texture(rng, height, width, rng.uniform(0.05, 0.95, 3), amplitude=0.15)
    skin = _texture(rng, height, width, np.array([0.85, 0.65, 0.55]) * rng.uniform(0.5, 1.1), 0.04)
    hair = _texture(rng, height, width, np.array([0.35, 0.25, 0.15]) * rng.uniform(0.2, 2.2), 0.06)
    skin_weight = np.maximum(head, neck * (yy < head_cy + head_ry * 1.6))[None]
    fgr = clothes * (1 - skin_weight) + skin * skin_weight
    hair_weight = np.maximum(cap, strands)[None]
    fgr = fgr * (1 - hair_weight) + hair * hair_weight
    return np.clip(fgr, 0, 1).astype(np.float32), pha[None].astype(np.float32)


def synth_background(rng: np.random.Generator, height: int = 640, width: int = 512) -> np.ndarray:
    """A textured background: a colour gradient, gratings, soft blobs and fine noise. (3, H, W)"""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height)[None]
    a, b = rng.uniform(0, 1, (3, 1, 1)), rng.uniform(0, 1, (3, 1, 1))
    image = a + (b - a) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    image = image + _texture(rng, height, width, (0.5, 0.5, 0.5), amplitude=0.1) - 0.5
    for _ in range(rng.integers(4, 12)):  # objects in the room
        blob = _ellipse_alpha(
            yy,
            xx,
            rng.uniform(0, height),
            rng.uniform(0, width),
            rng.uniform(10, height / 4),
            rng.uniform(10, width / 4),
            rng.uniform(1, 20),
        )
        image = image * (1 - blob[None]) + rng.uniform(0, 1, (3, 1, 1)) * blob[None]
    image = image + rng.normal(0, 0.01, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def write_synthetic_photomatte(
    out: str | Path,
    count: int,
    seed: int = 0,
    height: int = 640,
    width: int = 512,
    backgrounds: str | Path | None = None,
    background_count: int | None = None,
    progress=lambda i: None,
) -> list[Path]:
    """Write `count` RGBA PNGs (PhotoMatte85's layout) to `out`, and optionally textured
    backgrounds to `backgrounds`. Returns the foreground files."""
    from contextlib import ExitStack

    from mattex.errors import ConfigError
    from mattex.files import output_folder

    if count < 1 or (background_count is not None and background_count < 1):
        raise ConfigError(f"the image count must be at least 1, got {count}")
    if height < 4 or width < 4:
        raise ConfigError(f"height and width must be at least 4, got {height}x{width}")
    rng = np.random.default_rng(seed)
    files = []
    with ExitStack() as folders:
        out = folders.enter_context(output_folder(out))
        for i in range(count):
            fgr, pha = synth_portrait(rng, height, width)
            path = out / f"synth_{seed:04d}_{i:05d}.png"
            save_rgba(path, fgr, pha)
            files.append(path)
            progress(i)
        if backgrounds is not None:
            folder = folders.enter_context(output_folder(backgrounds))
            for i in range(background_count or count):
                save_rgb(folder / f"background_{seed:04d}_{i:05d}.png", synth_background(rng, height, width))
    return files


def write_synthetic_video(
    out: str | Path,
    background: str | Path,
    frames: int = 48,
    height: int = 240,
    width: int = 320,
    fps: int = 24,
    seed: int = 0,
    progress=lambda i: None,
) -> Path:
    """A clip without downloads: one synthetic portrait sways and walks across a textured room,
    filmed with light capture noise, written to `out` (H.264 MP4); the room without the person,
    the captured background, goes to `background` (PNG). Both are written atomically."""
    from mattex.errors import ConfigError
    from mattex.files import atomic_path, check_distinct_outputs, output_file
    from mattex.runtime.media import VideoSink

    if frames < 1 or height < 16 or width < 16 or fps < 1:
        raise ConfigError(
            f"need at least 1 frame of 16x16 at 1 fps, got {frames} frames of {height}x{width} "
            f"(height x width) at {fps} fps"
        )
    out, background = output_file(out), output_file(background)  # before any frame is made
    check_distinct_outputs({"clip": out, "background": background})
    rng = np.random.default_rng(seed)
    room = synth_background(rng, height, width)  # (3, H, W)
    fgr, pha = synth_portrait(rng, height, width)
    with atomic_path(Path(background)) as tmp:
        save_rgb(tmp, room, format="PNG")
    from fractions import Fraction

    sink = VideoSink(Path(out), Fraction(fps), (height, width))
    try:
        for i in range(frames):
            phase = 2 * np.pi * i / max(frames, 2)
            dx, dy = int(width * 0.25 * np.sin(phase)), int(height * 0.03 * np.sin(3 * phase))
            shifted_fgr, shifted_pha = _shift(fgr, dy, dx), _shift(pha, dy, dx)
            noise = rng.normal(0, 0.008, room.shape).astype(np.float32)  # each frame's capture noise
            frame = shifted_pha * shifted_fgr + (1 - shifted_pha) * np.clip(room + noise, 0, 1)
            sink.write((np.clip(frame, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))
            progress(i)
    except BaseException:
        sink.close(keep=False)
        raise
    return sink.close(keep=True)


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """x (C, H, W) moved by (dy, dx) pixels, zeros where it leaves the frame."""
    out = np.zeros_like(x)
    h, w = x.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out
