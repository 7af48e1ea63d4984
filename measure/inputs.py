"""The (src, bgr) pairs a file is measured on: generated (uniform noise, or pairs captured as
footage is), real frames or a video over one captured background, or PhotoMatte-layout
composites."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mattex.contract import SIZE_MULTIPLE

# What one generated pixel costs verify at least, in bytes: src, noise and bgr in float32 (36),
# the file's and the reference's pha and fgr (2 x 16). The models' activations come on top.
PAIR_BYTES_PER_PIXEL = 36 + 32


def require_pair_memory(batch: int, height: int, width: int) -> None:
    """ResourceError, before any pair is made, where pairs of this size cannot be held here."""
    from mattex.memory import require_memory

    require_memory(f"verify at {height}x{width}, batch {batch}", PAIR_BYTES_PER_PIXEL * batch * height * width)


def random_pairs(samples: int, batch: int, height: int, width: int, seed: int = 0):
    """Frames and backgrounds that differ like a capture: src uniform, bgr = src + noise."""
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        src = rng.random((batch, 3, height, width), dtype=np.float32)
        noise = rng.normal(0, 0.25, src.shape).astype(np.float32)
        yield src, np.clip(src + noise, 0, 1).astype(np.float32)


def gate_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The sizes generated pairs cycle through for a file traced at `height`x`width`: the trace
    size, three quarters of it, and another aspect ratio (three quarters of the height), none
    larger than the trace size (whose memory is checked)."""

    def smaller(n: int) -> int:
        return max(SIZE_MULTIPLE, int(n * 0.75) // SIZE_MULTIPLE * SIZE_MULTIPLE)

    return list(dict.fromkeys([(height, width), (smaller(height), smaller(width)), (smaller(height), width)]))


def footage_pairs(samples: int, batch: int, sizes: list[tuple[int, int]], seed: int = 0):
    """`samples` batches of pairs captured as footage is (calibration/footage.py: the plate
    misaligned by 1-2 px, re-exposed, noisy, a textured room, the subject near or far), sample i
    at `sizes[i % len(sizes)]` (height, width)."""
    from mattex.calibration.footage import footage_pair

    rng = np.random.default_rng(seed)
    for i in range(samples):
        height, width = sizes[i % len(sizes)]
        pairs = [footage_pair(rng, height, width) for _ in range(batch)]
        yield np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def synthetic_pairs(samples: int, batch: int, height: int, width: int, seed: int = 0):
    """Synthetic portraits composited over textured backgrounds with the paper's capture
    perturbations (the data pipeline's stand-in for PhotoMatte85), batched."""
    from mattex.calibration.composite import Perturbation, composite, perturb_background
    from mattex.calibration.synthetic import synth_background, synth_portrait

    rng = np.random.default_rng(seed)
    for _ in range(samples):
        pairs = []
        for _ in range(batch):
            fgr, pha = synth_portrait(rng, height, width)
            background = synth_background(rng, height, width)
            pairs.append((composite(fgr, pha, background), perturb_background(background, rng, Perturbation())))
        yield (np.stack([p[0] for p in pairs]).astype(np.float32), np.stack([p[1] for p in pairs]).astype(np.float32))


def frame_pairs(images: Path, background: Path):
    """(src, bgr) pairs, batch 1, from every image in `images` over one captured background,
    cropped to a multiple of 4 (the model's requirement)."""
    from mattex.calibration.images import DataError, image_files, open_image, to_float

    files = image_files(Path(images))
    if not files:
        raise DataError(f"no images in {images}")
    bgr = to_float(open_image(Path(background)), "RGB")
    for file in files:
        src = to_float(open_image(file), "RGB")
        if src.shape != bgr.shape:
            raise DataError(
                f"{file.name} is {src.shape[2]}x{src.shape[1]} but the background "
                f"is {bgr.shape[2]}x{bgr.shape[1]}: they must match"
            )
        h, w = src.shape[1] // SIZE_MULTIPLE * SIZE_MULTIPLE, src.shape[2] // SIZE_MULTIPLE * SIZE_MULTIPLE
        yield src[None, :, :h, :w].copy(), bgr[None, :, :h, :w].copy()


def video_pairs(video: Path, background: Path, samples: int):
    """(src, bgr) pairs, batch 1, from up to `samples` frames spread evenly over `video` (every
    frame where its length is unknown, the first `samples`) over the captured `background` (one
    image, or a video frame by frame), cropped to a multiple of 4."""
    from mattex.runtime.media import Background, VideoSource

    source = VideoSource(video)
    count = source.info.count
    stride = max(1, count // samples) if count else 1
    plates = Background(background, source.info.size, count, resize=False).frames()
    taken = 0
    for index, (frame, plate) in enumerate(zip(source.frames(), plates)):
        if index % stride or taken == samples:
            continue
        taken += 1
        src, bgr = (x.transpose(2, 0, 1)[None].astype(np.float32) / 255 for x in (frame, plate))
        h, w = src.shape[2] // SIZE_MULTIPLE * SIZE_MULTIPLE, src.shape[3] // SIZE_MULTIPLE * SIZE_MULTIPLE
        yield np.ascontiguousarray(src[..., :h, :w]), np.ascontiguousarray(bgr[..., :h, :w])


def composite_pairs(
    model: Path, data: Path, backgrounds: Path | None = None, height: int | None = None, width: int | None = None
):
    """(src, bgr) pairs from PhotoMatte-layout composites at `height`x`width` (default: the
    file's trace size)."""
    from mattex.calibration.composite import Composites

    from .reference import file_metadata

    trace = file_metadata(model).trace_size
    size = (height or trace[0], width or trace[1])
    return ((item["src"], item["bgr"]) for item in Composites(data, size, backgrounds))
