"""One home for the facts every part of mattex shares: the graph's input and output names, the
sizes it takes, the named sizes, the file kinds, and the limits of the engines it targets.

Standard library only: the slim runtime imports it.
"""

from __future__ import annotations

import re

from mattex.errors import ConfigError
from mattex.facts import FACTS

# --- the model ----------------------------------------------------------------------------------
BACKBONES = ("resnet50", "resnet101", "mobilenetv2")  # the published checkpoints' encoders
REFINE_MODES = ("sampling", "thresholding", "full")  # how the refiner chooses its patches

# --- the graph contract --------------------------------------------------------------------------
INPUTS = ("src", "bgr")  # the frame and its captured background
OUTPUTS = ("pha", "fgr")  # alpha (B, 1, H, W) and foreground (B, 3, H, W)
DEBUG_OUTPUTS = ("pha_sm", "fgr_sm", "err_sm", "ref_sm")  # files exported with debug outputs
MODEL_OUTPUTS = OUTPUTS + DEBUG_OUTPUTS  # MattingRefine's return order
PATCH = FACTS["io_contract"]["patch"]  # the refiner re-estimates PATCH x PATCH blocks of pixels
PATCH_PIXELS = PATCH * PATCH  # k = sample_pixels // PATCH_PIXELS patches
SIZE_MULTIPLE = PATCH  # H and W must be divisible by 4: whole patches
MAX_BACKBONE_SCALE = 1 / 2  # the backbone runs at half the frame size or less

# What the inputs are: "float", (B, 3, H, W) RGB in [0, 1]; "uint8", frames as decoders give them,
# (B, H, W, 3) uint8 RGB, converted to float inside the graph (a quarter of the bytes to move).
IO_FORMATS = ("float", "uint8")
IO_DTYPES = ("float32", "float16")  # of float inputs; float16 only in fp16 files
PRECISIONS = ("fp32", "fp16", "int8")

# --- named sizes ---------------------------------------------------------------------------------
SIZES = {"hd": (1080, 1920), "4k": (2160, 3840)}  # (height, width)


def parse_size(text: str, option: str = "size") -> tuple[int, int]:
    """`hd`, `4k` or `HxW` -> (height, width), both positive multiples of 4."""
    part = text.strip().lower()
    if part in SIZES:
        return SIZES[part]
    match = re.fullmatch(r"(\d+)x(\d+)", part)
    if not match:
        raise ConfigError(f"`{option}` {text!r}: expected {', '.join(SIZES)} or HxW (e.g. 720x1280)")
    height, width = int(match[1]), int(match[2])
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ConfigError(f"`{option}` {text}: height and width must be positive and divisible by {SIZE_MULTIPLE}")
    return height, width


def parse_sizes(text: str, option: str = "size") -> list[tuple[int, int]]:
    """A comma-separated list of sizes (`hd,4k`, `720x1280,hd`)."""
    sizes = [parse_size(part, option) for part in text.split(",") if part.strip()]
    if not sizes:
        raise ConfigError(f"`{option}` names no size")
    return sizes


# --- files ---------------------------------------------------------------------------------------
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")  # raw TensorRT plans, each with a JSON sidecar
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")

# --- engines -------------------------------------------------------------------------------------
TENSORRT, TENSORRT_RTX = "tensorrt", "tensorrt-rtx"  # the engine backends' names, and check targets
TENSORRT_TARGETS = (TENSORRT, TENSORRT_RTX)  # TensorRT for RTX has TensorRT's parser and builder
# TensorRT for RTX engines run by default on compute capability 8.0, 8.6, 8.9, 12.0 and later
# (NVIDIA's "CPU-Only AOT and TensorRT-RTX Engines" page); Turing (7.5) only when asked for.
RTX_DEFAULT_TARGETS = tuple(tuple(cc) for cc in FACTS["sidecar"]["rtx_default_targets"])
RTX_ANY_FROM_MAJOR = FACTS["sidecar"]["rtx_any_from_major"]  # and every compute capability from 12.0 on
RTX_DEFAULT_TARGETS_TEXT = FACTS["sidecar"]["rtx_default_targets_text"]  # the C++ runtime says it too
TARGETS = (*TENSORRT_TARGETS, "onnxruntime")  # the rule sets a file is checked against
TENSORRT_MAX_TOPK = 3840  # TensorRT's TopK: "K input must be less than 3840" (10.15 parser table)
# How the refiner's top-k patch selection is exported: "onnx", exact standard ops any runtime
# runs; "plugin", TensorRT 11's TopkLastDim plugin (TensorRT only).
TOPK_METHODS = ("onnx", "plugin")
