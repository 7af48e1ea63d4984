"""What `mattex run` draws from one frame's model outputs: the output kinds it writes, the
background `com` is composited on, and each kind's uint8 image. No threads here: the pipeline
(`pipeline.py`) calls `FrameImages` from its encode stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattex.contract import PATCH
from mattex.errors import ConfigError

from .images import read_image
from .media import GREEN

OUTPUT_KINDS = ("com", "pha", "fgr", "err", "ref")
# Outputs drawn from a file's debug outputs (exported with --debug-outputs).
NEEDS_DEBUG_OUTPUT = {"err": "err_sm", "ref": "ref_sm"}


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
            ref = np.repeat(np.repeat(out["ref_sm"][0], PATCH, axis=0), PATCH, axis=1)
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
