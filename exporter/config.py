"""Export parameters as declared data: presets, the ONNX I/O contract, per-precision budgets."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mattex.errors import ConfigError
from mattex.model import BACKBONES, REFINE_MODES

INPUT_NAMES = ("src", "bgr")
OUTPUT_NAMES = ("pha", "fgr")
DEBUG_OUTPUT_NAMES = ("pha_sm", "fgr_sm", "err_sm", "ref_sm")
MODEL_OUTPUT_ORDER = ("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm")

# Batch, height and width stay dynamic; H and W must be divisible by 4 at run time.
# uint8-frame inputs (--io uint8) are (B, H, W, 3).
FRAME_INPUT_AXES = {0: "batch", 1: "height", 2: "width"}
DYNAMIC_AXES = {
    "src": {0: "batch", 2: "height", 3: "width"},
    "bgr": {0: "batch", 2: "height", 3: "width"},
    "pha": {0: "batch", 2: "height", 3: "width"},
    "fgr": {0: "batch", 2: "height", 3: "width"},
    "pha_sm": {0: "batch", 2: "height_sm", 3: "width_sm"},
    "fgr_sm": {0: "batch", 2: "height_sm", 3: "width_sm"},
    "err_sm": {0: "batch", 2: "height_sm", 3: "width_sm"},
    "ref_sm": {0: "batch", 2: "height_patches", 3: "width_patches"},
}

DEFAULT_OPSET = 17
TARGETS = ("tensorrt", "tensorrt-rtx", "onnxruntime")
TENSORRT_TARGETS = ("tensorrt", "tensorrt-rtx")


@dataclass(frozen=True)
class Preset:
    backbone_scale: float
    sample_pixels: int
    height: int
    width: int


# The paper's settings: HD c=4, k=5,000; 4K c=8, k=20,000.
PRESETS = {
    "hd": Preset(backbone_scale=0.25, sample_pixels=80_000, height=1080, width=1920),
    "4k": Preset(backbone_scale=0.125, sample_pixels=320_000, height=2160, width=3840),
}


PRECISIONS = ("fp32", "fp16", "int8")
# How the refiner's top-k patch selection is exported: "onnx", exact standard ops any runtime
# runs (mattex.exporter.topk_select); "plugin", TensorRT 11's TopkLastDim plugin (TensorRT only).
TOPK_METHODS = ("onnx", "plugin")
IO_DTYPES = ("float32", "float16")
# What the inputs are: "float", (B, 3, H, W) RGB in [0, 1]; "uint8", frames as decoders give them,
# (B, H, W, 3) uint8 RGB, converted to float inside the graph (a quarter of the bytes to move).
IO_FORMATS = ("float", "uint8")

# Which nodes keep float32 in a reduced-precision file (node-name substrings), decided by
# measurement: mobilenetv2 demo weights on 8 held-out synthetic composites at 512x512
# (benchmarks/precision.py measures the full table).
# fp16: the residual adds and clamps of the outputs (fgr = src + residual, clamp to [0, 1]);
# in fp16, src + residual rounds to 2**-11 and fgr's mean error was 1.4e-4 -> 9.2e-5 with them
# in fp32, for 7 of 190 nodes. Keeping the decoder or the refiner in fp32 did not change the
# patch selection (0.03% of patches either way), so they stay fp16.
FP16_KEEP_FP32 = ("/model/Add", "/model/Clip", "/model/refiner/Add", "/model/refiner/Clip")
# int8: the refiner's four small convolutions and the decoder's last convolution (which
# produces alpha, the foreground residual and the error map that selects patches). Quantizing
# everything: SAD 1.573 vs fp32 1.492, MSE 37.9 vs 34.4, 1.7% of patches selected differently;
# keeping the refiner only: SAD 1.552, MSE 37.3, 1.7%; keeping both: SAD 1.483, MSE 33.4, 0.9%.
INT8_KEEP_FLOAT = ("/refiner/", "/decoder/conv4")


@dataclass(frozen=True)
class Budget:
    """Largest accepted difference of one output against PyTorch fp32 on the same inputs."""

    max_abs: float
    mean_abs: float


@dataclass(frozen=True)
class MetricBudget:
    """Largest accepted ratio of the paper's metrics (file / PyTorch fp32) against ground truth,
    over a set of composites; a ratio within `floor` of zero error counts as met."""

    ratio: float
    floor: float = 1e-3


@dataclass(frozen=True)
class PrecisionBudget:
    outputs: dict[str, Budget]
    # Share of (image, 4x4 patch) cells selected differently, or whose alpha differs from
    # PyTorch by more than `patch_tolerance` anywhere in the patch.
    patch_mismatch: float
    patch_tolerance: float
    metrics: MetricBudget

    @property
    def tie_band(self) -> float:
        """How close to a selection boundary (the k-th largest error; 0 under
        prevent_oversampling; the threshold) a patch's error must lie for its selection to be
        interchangeable: the error map's own max budget. A file within that budget may order
        such patches either way, so `mattex verify` reports their flips without failing them."""
        return self.outputs["err_sm"].max_abs


def _outputs(pha, fgr, pha_sm, fgr_sm, err_sm, ref_sm) -> dict[str, Budget]:
    return {"pha": Budget(*pha), "fgr": Budget(*fgr), "pha_sm": Budget(*pha_sm),
            "fgr_sm": Budget(*fgr_sm), "err_sm": Budget(*err_sm), "ref_sm": Budget(*ref_sm)}


# Every budget is (max abs, mean abs) against PyTorch fp32 on the same inputs.
# fp32: the same network in the same precision. Differences come from float32 rounding in other
# kernels (ONNX Runtime vs PyTorch), measured at <= 2e-7 on mobilenetv2 and resnet50.
# fp16 and int8: a patch selected differently is refined in one file and not in the other, so a
# pixel may differ by up to 1 there: pha/fgr/ref_sm max is not bounded, the share of such patches
# is (ref_sm's mean is the share of cells selected differently). Measured with `mattex verify
# --data` (mobilenetv2 demo weights, 8 held-out synthetic composites; worst of 256x256 k=500,
# 384x384 k=500 and 512x512 k=5000, int8 calibrated on 4 or 8 other composites, 7-bit weights):
#   fp16: pha mean 7.0e-5, fgr mean 9.2e-5, pha_sm max 7.8e-3 mean 5.2e-5, fgr_sm max 1.9e-3
#         mean 7.9e-5, err_sm max 2.7e-3 mean 4.4e-5, selection 0.03%, patches 0.02%.
#   int8: pha mean 1.8e-3, fgr mean 4.9e-3, pha_sm max 0.31 mean 2.2e-3, fgr_sm max 0.066
#         mean 5.3e-3, err_sm max 0.105 mean 2.2e-3, selection 1.0%, patches 1.1%.
# resnet50 with seeded random weights (numerics only, 256x256): fp16 pha mean 2.8e-5, no patch
# differs; int8 pha mean 5.6e-4, patches 0.02%.
# Budgets sit 2-5x above those; the metric budgets (ratio of SAD/MSE/Grad/Conn to PyTorch fp32
# against ground truth) are the quality gate (measured: benchmarks/results_precision_hd_cpu.json).
BUDGETS = {
    "fp32": PrecisionBudget(
        outputs=_outputs(pha=(1e-4, 1e-5), fgr=(1e-4, 1e-5), pha_sm=(1e-4, 1e-5),
                         fgr_sm=(1e-4, 1e-5), err_sm=(1e-4, 1e-5), ref_sm=(0.0, 0.0)),
        patch_mismatch=0.0, patch_tolerance=1e-4, metrics=MetricBudget(ratio=1.001)),
    "fp16": PrecisionBudget(
        outputs=_outputs(pha=(1.0, 5e-4), fgr=(1.0, 5e-4), pha_sm=(3e-2, 2.5e-4),
                         fgr_sm=(1e-2, 4e-4), err_sm=(1.5e-2, 2.5e-4), ref_sm=(1.0, 2e-3)),
        patch_mismatch=5e-3, patch_tolerance=2e-2, metrics=MetricBudget(ratio=1.02)),
    # int8's coarse outputs, re-derived across sizes (tests/test_precision_sizes.py): mobilenetv2
    # demo, exported at 256x256 (k = 500), float and uint8 inputs, 3 held-out sets of 8 composites
    # at 256x256, 192x192, 512x512, 480x864 and 72x96 (fewer patches than k). Worst of all:
    # pha mean 2.9e-3, fgr mean 6.8e-3, pha_sm max 0.98 mean 8.5e-3 (at 72x96, where a 18x24 coarse
    # map is mostly edge), err_sm max 0.22 mean 6.5e-3, patches 1.1%. A coarse pixel on a hard edge
    # moves by up to 1 (as pha's does where a patch flips), so pha_sm's max is unbounded; its mean
    # and err_sm's take twice the worst. No layer kept float helps: the error is spread over the
    # backbone (first conv, ASPP or decoder float: pha_sm mean within 10% of the default).
    "int8": PrecisionBudget(
        outputs=_outputs(pha=(1.0, 6e-3), fgr=(1.0, 1.5e-2), pha_sm=(1.0, 1.5e-2),
                         fgr_sm=(0.2, 1.5e-2), err_sm=(0.3, 1.2e-2), ref_sm=(1.0, 3e-2)),
        patch_mismatch=0.04, patch_tolerance=0.1, metrics=MetricBudget(ratio=1.10)),
    # bf16: an fp32 file run with OpenVINO's bf16 arithmetic (inference_precision="bf16", CPUs
    # with AMX or AVX-512 BF16). Measured by proxy (benchmarks/bf16_proxy.py: PyTorch CPU autocast
    # to bfloat16, demo mobilenetv2, 8 held-out composites, worst of 256x256 k=500 and 512x512
    # k=5000): pha mean 5.5e-4, fgr mean 8.7e-4, pha_sm max 0.045 mean 4.7e-4, fgr_sm max 0.014
    # mean 9.1e-4, err_sm max 0.016 mean 4.3e-4, selection 0.07%, SAD/MSE/Grad/Conn within 0.5%
    # of fp32. The issue that asked for bf16 measured OpenVINO itself on an AMX Xeon: pha mean
    # 1-2e-3, alpha MSE within 3% of fp32 (OpenVINO also runs elementwise ops in bf16, which the
    # proxy does not). Budgets sit above the real measurement; the metric ratio allows 5%.
    "bf16": PrecisionBudget(
        outputs=_outputs(pha=(1.0, 5e-3), fgr=(1.0, 6e-3), pha_sm=(0.2, 4e-3),
                         fgr_sm=(0.08, 6e-3), err_sm=(0.08, 3e-3), ref_sm=(1.0, 1e-2)),
        patch_mismatch=0.02, patch_tolerance=0.05, metrics=MetricBudget(ratio=1.05)),
}


@dataclass
class ExportConfig:
    backbone: str = "mobilenetv2"
    backbone_scale: float = 0.25
    refine_mode: str = "sampling"
    sample_pixels: int = 80_000
    threshold: float = 0.1
    kernel_size: int = 3
    prevent_oversampling: bool = True
    height: int = 1080  # the trace size; the file runs at any H, W divisible by 4
    width: int = 1920
    opset: int = DEFAULT_OPSET
    debug_outputs: bool = False
    target: str = "tensorrt"  # the linter's rule set the file must pass
    precision: str = "fp32"  # fp16: mixed fp16/fp32 graph; int8: Q/DQ graph (needs calibration data)
    io_dtype: str = "float32"  # float16 only with precision fp16
    io: str = "float"  # "uint8": the inputs are uint8 frames (B, H, W, 3)
    topk: str = "onnx"  # "plugin": TensorRT 11's TopkLastDim plugin selects the patches

    @classmethod
    def from_preset(cls, resolution: str, **overrides) -> "ExportConfig":
        if resolution not in PRESETS:
            raise ConfigError(f"unknown resolution {resolution!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[resolution]
        base = cls(backbone_scale=preset.backbone_scale, sample_pixels=preset.sample_pixels,
                   height=preset.height, width=preset.width)
        values = {**asdict(base), **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)

    @property
    def k(self) -> int:
        return self.sample_pixels // 16

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES + (DEBUG_OUTPUT_NAMES if self.debug_outputs else ())

    def validate(self) -> None:
        """Fail before any tracing, in a fixed order, naming the bad option."""
        if self.backbone not in BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONES)}")
        if self.refine_mode not in REFINE_MODES:
            raise ConfigError(f"unknown refine mode {self.refine_mode!r}; choose one of {', '.join(REFINE_MODES)}")
        if self.height % 4 or self.width % 4 or self.height <= 0 or self.width <= 0:
            raise ConfigError(f"trace size must be positive and divisible by 4, got {self.height}x{self.width}")
        patches = (self.height // 4) * (self.width // 4)
        if self.refine_mode == "sampling" and patches < self.k:
            raise ConfigError(
                f"trace size {self.height}x{self.width} has {patches} patches, fewer than "
                f"k = {self.k}: trace at a larger --height/--width (the file still runs at "
                "smaller sizes, refining every eligible patch there)"
            )
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.refine_mode == "thresholding" and self.target in TENSORRT_TARGETS:
            raise ConfigError(
                "thresholding refines a data-dependent number of patches (NonZero), which "
                "TensorRT cannot build into a static engine; use --refine-mode sampling (a "
                "static k) or full, or export for ONNX Runtime with --target onnxruntime"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.io_dtype not in IO_DTYPES:
            raise ConfigError(f"unknown --io-dtype {self.io_dtype!r}; choose one of {', '.join(IO_DTYPES)}")
        if self.io_dtype == "float16" and self.precision != "fp16":
            raise ConfigError("--io-dtype float16 needs --fp16 (int8 and fp32 files take float32)")
        if self.io not in IO_FORMATS:
            raise ConfigError(f"unknown --io {self.io!r}; choose one of {', '.join(IO_FORMATS)}")
        if self.io == "uint8" and self.io_dtype != "float32":
            raise ConfigError("--io uint8 takes uint8 frames and returns float32 mattes; drop --io-dtype")
        if self.topk not in TOPK_METHODS:
            raise ConfigError(f"unknown --topk {self.topk!r}; choose one of {', '.join(TOPK_METHODS)}")
        if self.topk == "plugin" and self.target == "tensorrt-rtx":
            raise ConfigError("--topk plugin calls TensorRT 11's TopkLastDim plugin, and TensorRT for RTX "
                              "ships no plugins: use --topk onnx (the default) for --target tensorrt-rtx")
        if self.topk == "plugin" and (self.target != "tensorrt" or self.refine_mode != "sampling"):
            raise ConfigError(
                "--topk plugin hands the sampling refiner's top-k to a TensorRT plugin: it needs "
                f"--refine-mode sampling and --target tensorrt (got {self.refine_mode}, {self.target})")
        if not 13 <= self.opset <= 20:
            # 13: ReduceSum takes axes as an input; 20: the newest TensorRT 10 parses.
            raise ConfigError(f"opset must be between 13 and 20, got {self.opset}")

    def model_kwargs(self) -> dict:
        return dict(
            backbone=self.backbone,
            backbone_scale=self.backbone_scale,
            refine_mode=self.refine_mode,
            refine_sample_pixels=self.sample_pixels,
            refine_threshold=self.threshold,
            refine_kernel_size=self.kernel_size,
            refine_prevent_oversampling=self.prevent_oversampling,
        )
