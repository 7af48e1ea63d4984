"""What the runtime accepts: input names, dtypes, ranks, sizes divisible by 4, profile ranges.
Checked before anything runs, with messages that name the tensor and the mismatch.

Two input formats exist: float files take (B, 3, H, W) RGB in [0, 1] (float32, or float16 for
fp16-I/O files); uint8 files (`mattex export --io uint8`) take frames as decoders give them,
(B, H, W, 3) uint8 RGB, and convert them inside the graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mattex.contract import INPUTS, SIZE_MULTIPLE
from mattex.errors import InputShapeError, InputValueError


@dataclass(frozen=True)
class Profile:
    """Inclusive min/max of (batch, height, width) one engine profile accepts."""

    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    def accepts(self, bhw: tuple[int, int, int]) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, bhw, self.max))

    def describe(self) -> str:
        (b0, h0, w0), (b1, h1, w1) = self.min, self.max
        return f"batch {b0}..{b1}, height {h0}..{h1}, width {w0}..{w1}"

    def to_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        return cls(tuple(d["min"]), tuple(d["opt"]), tuple(d["max"]))


def array_shape_dtype(value) -> tuple[tuple[int, ...], np.dtype, str]:
    """Shape, dtype and memory kind ('host' or 'device') of a numpy array or a CUDA array
    (anything with __cuda_array_interface__, e.g. CuPy or a CUDA tensor)."""
    if isinstance(value, np.ndarray):
        return value.shape, value.dtype, "host"
    interface = getattr(value, "__cuda_array_interface__", None)
    if interface is not None:
        return tuple(interface["shape"]), np.dtype(interface["typestr"]), "device"
    raise InputShapeError(
        f"inputs must be numpy arrays or CUDA arrays (__cuda_array_interface__), got {type(value).__name__}"
    )


def is_frame_dtype(dtype) -> bool:
    """uint8 inputs are frames (B, H, W, 3); float inputs are (B, 3, H, W)."""
    return np.dtype(dtype) == np.uint8


def frames_to_input(frames: np.ndarray, dtype) -> np.ndarray:
    """uint8 frames (B, H, W, 3) RGB -> what a model whose inputs are `dtype` takes: the frames
    themselves (uint8 files), or (B, 3, H, W) in [0, 1] (float files, u / 255 as the graph of a
    uint8 file computes it)."""
    if is_frame_dtype(dtype):
        return np.ascontiguousarray(frames)
    floats = np.ascontiguousarray(frames.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)
    return floats.astype(dtype, copy=False)  # fp16-I/O files: rounded from the float32 quotient


def float_to_input(x: np.ndarray, dtype) -> np.ndarray:
    """(B, 3, H, W) RGB in [0, 1] -> a model's input: cast for float files; for uint8 files the
    frames that image would be stored as (rounded to the nearest of 256 levels)."""
    if is_frame_dtype(dtype):
        return np.ascontiguousarray(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1))
    return x.astype(dtype)


def dtype_name(dtype) -> str:
    """A dtype's name with its byte order where that is not the machine's: a big-endian float32
    array is not the float32 a model takes, and "float32, got float32" would not say why."""
    dtype = np.dtype(dtype)
    if dtype.byteorder in ("=", "|"):  # numpy writes the machine's own order as "="
        return dtype.name
    order = "big" if dtype.byteorder == ">" else "little"
    return f"{dtype.name} ({order}-endian, {dtype.str!r}: convert with .astype({dtype.name!r}))"


def check_inputs(feeds: dict, dtype=np.float32, profiles: list[Profile] | None = None) -> tuple[int, int, int]:
    """Validate {'src', 'bgr'} for a model whose inputs are `dtype` (uint8: frames (B, H, W, 3);
    float: (B, 3, H, W)); return (batch, height, width). Raises InputShapeError."""
    missing = [n for n in INPUTS if n not in feeds]
    extra = [n for n in feeds if n not in INPUTS]
    if missing or extra:
        raise InputShapeError(f"inputs must be exactly {list(INPUTS)}; missing {missing}, unexpected {extra}")
    shapes = {}
    for name in INPUTS:
        shape, got_dtype, _ = array_shape_dtype(feeds[name])
        if got_dtype != np.dtype(dtype):
            raise InputShapeError(f"{name} must be {dtype_name(dtype)}, got {dtype_name(got_dtype)}")
        frames = is_frame_dtype(dtype)
        if len(shape) != 4 or (shape[3] if frames else shape[1]) != 3:
            layout = "(B, H, W, 3) uint8 RGB frames" if frames else "(B, 3, H, W) RGB"
            raise InputShapeError(f"{name} must be {layout}, got shape {tuple(shape)}")
        shapes[name] = tuple(shape)
    if shapes["src"] != shapes["bgr"]:
        raise InputShapeError(f"src {shapes['src']} and bgr {shapes['bgr']} must have the same shape")
    b, h, w = (shapes["src"][i] for i in ((0, 1, 2) if is_frame_dtype(dtype) else (0, 2, 3)))
    if b < 1 or h < SIZE_MULTIPLE or w < SIZE_MULTIPLE:
        raise InputShapeError(
            f"src and bgr need a batch of at least 1 and at least {SIZE_MULTIPLE}x{SIZE_MULTIPLE} pixels, "
            f"got batch {b}, {h}x{w}"
        )
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        raise InputShapeError(f"src and bgr height and width must be divisible by {SIZE_MULTIPLE}, got {h}x{w}")
    if profiles and not any(p.accepts((b, h, w)) for p in profiles):
        raise InputShapeError(
            f"src/bgr shape (batch {b}, height {h}, width {w}) is outside the engine's profiles: "
            + "; ".join(p.describe() for p in profiles)
        )
    return b, h, w


# A float in [+0, 1], read as an unsigned integer of its width, is at most the bits of 1.0; a
# negative value (sign bit set), +-Inf and NaN (all exponent bits set) all read larger.
_BITS_OF_ONE = {np.dtype(np.float32): (np.uint32, 0x3F800000), np.dtype(np.float16): (np.uint16, 0x3C00)}


def in_unit_range(x: np.ndarray) -> bool:
    """Whether every value of the float array `x` is finite and in [0, 1]: for float32 and
    float16, one integer max pass over the bits (vectorised for both, where numpy's float16
    min/max is not); other floats, or -0.0 in a frame, take a float min and max pass."""
    bits = _BITS_OF_ONE.get(x.dtype)
    if bits is not None:
        uint, one = bits
        if int(np.maximum.reduce(x.view(uint), axis=None, initial=0)) <= one:
            return True
    lo, hi = np.min(x), np.max(x)
    return bool(lo >= 0 and hi <= 1)  # False for NaN


def check_values(feeds: dict) -> None:
    """Float frames must be finite and in [0, 1]: a NaN or Inf, or 0-255 values not scaled,
    would give a matte without a word. Device (CUDA) arrays (`__cuda_array_interface__`) are
    not checked (that would need a copy to the host), nor uint8 frames (always valid).

    One pass per tensor (`in_unit_range`: the integer max of the float bits); the counts and
    extremes of the message are computed only once a check has failed. Measured with
    benchmarks/frame_checks.py on an AMD EPYC (AVX2, FMA), 2 cores: 2.1 ms per HD frame (src and
    bgr, each (1, 3, 1080, 1920) float32) against 4.8-5.4 ms for a float min and max pass, and
    0.8 ms against 67 ms in float16; well under 1% of the ~280 ms mobilenetv2 HD takes there."""
    for name in INPUTS:
        x = feeds[name]
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f" or x.size == 0 or in_unit_range(x):
            continue
        nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        if nan or inf:
            raise InputValueError(
                f"{name} has {nan} NaN and {inf} Inf values: frames must be finite "
                "(Matter(..., check_values=False) skips this check)"
            )
        lo, hi = np.min(x), np.max(x)
        raise InputValueError(
            f"{name} has values outside [0, 1] (min {float(lo)!r}, max {float(hi)!r}): "
            "pass frames scaled to [0, 1], e.g. uint8 / 255 (Matter(..., "
            "check_values=False) skips this check)"
        )
