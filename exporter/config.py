"""Export parameters as declared data: the presets, the tensors' dynamic axes, the layers each
precision keeps in float, and `ExportConfig`, validated names first, then shapes, then values."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from mattex.contract import (
    BACKBONES,
    DEBUG_OUTPUTS,
    INPUTS,
    IO_DTYPES,
    IO_FORMATS,
    ONNX_SUFFIXES,
    OUTPUTS,
    PATCH,
    PATCH_PIXELS,
    PRECISIONS,
    REFINE_MODES,
    SIZE_MULTIPLE,
    SIZES,
    TARGETS,
    TENSORRT,
    TENSORRT_RTX,
    TENSORRT_TARGETS,
    TOPK_METHODS,
)
from mattex.errors import ConfigError, ModelFileError
from mattex.metadata import ExportMetadata, config_value_problem

# Batch, height and width stay dynamic; H and W must be divisible by 4 at run time.
# uint8-frame inputs (io "uint8") are (B, H, W, 3).
FRAME_INPUT_AXES = {0: "batch", 1: "height", 2: "width"}
DYNAMIC_AXES = {
    **{name: {0: "batch", 2: "height", 3: "width"} for name in (*INPUTS, *OUTPUTS)},
    "pha_sm": {0: "batch", 2: "height_sm", 3: "width_sm"},
    "fgr_sm": {0: "batch", 2: "height_sm", 3: "width_sm"},
    "err_sm": {0: "batch", 2: "height_sm", 3: "width_sm"},
    "ref_sm": {0: "batch", 2: "height_patches", 3: "width_patches"},
}

DEFAULT_OPSET = 17
OPSETS = range(13, 21)  # 13: ReduceSum takes axes as an input; 20: the newest TensorRT 10 parses


@dataclass(frozen=True)
class Preset:
    backbone_scale: float
    sample_pixels: int
    height: int
    width: int


# The paper's settings: HD c=4, k=5,000; 4K c=8, k=20,000.
PRESETS = {
    "hd": Preset(0.25, 80_000, *SIZES["hd"]),
    "4k": Preset(0.125, 320_000, *SIZES["4k"]),
}


def preset_for_size(height: int, width: int) -> Preset:
    """The preset of the largest named size that `height` x `width` reaches (hd below it): a
    checkpoint scored at 4K runs with 4K's backbone scale, as its export would."""
    reached = [p for p in PRESETS.values() if height * width >= p.height * p.width]
    return max(reached, key=lambda p: p.height * p.width, default=PRESETS["hd"])


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
    target: str = TENSORRT  # the linter's rule set the file must pass
    precision: str = "fp32"  # fp16: mixed fp16/fp32 graph; int8: Q/DQ graph (needs calibration data)
    io_dtype: str = "float32"  # float16 only with precision fp16
    io: str = "float"  # "uint8": the inputs are uint8 frames (B, H, W, 3)
    topk: str = "onnx"  # "plugin": TensorRT 11's TopkLastDim plugin selects the patches

    @classmethod
    def from_preset(cls, resolution: str, **overrides) -> ExportConfig:
        if resolution not in PRESETS:
            raise ConfigError(f"unknown `resolution` {resolution!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[resolution]
        base = cls(
            backbone_scale=preset.backbone_scale,
            sample_pixels=preset.sample_pixels,
            height=preset.height,
            width=preset.width,
        )
        values = {**asdict(base), **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)

    @classmethod
    def from_metadata(cls, meta: ExportMetadata) -> ExportConfig:
        """The configuration a file was exported with (its `export_config` metadata)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(meta.export_config) - known)
        if unknown:
            raise ModelFileError(
                f"the file's export_config names options this mattex does not know: "
                f"{', '.join(unknown)} (exported by mattex {meta.mattex_version})"
            )
        return cls(**meta.export_config)

    @property
    def preset(self) -> str | None:
        """The named preset this configuration is exactly (its scale, k and trace size), if any."""
        here = Preset(self.backbone_scale, self.sample_pixels, self.height, self.width)
        return next((name for name, preset in PRESETS.items() if preset == here), None)

    def default_filename(self) -> str:
        """What export names the file unless told where: what it holds, so that exports of other
        models in one folder do not meet. `bgm_resnet50_hd_fp16.onnx`, `bgm_mobilenetv2_240x320_fp32.onnx`
        (a size that is no preset), then what else sets the file apart: a refine mode other than
        sampling, uint8 or float16 inputs, the TensorRT top-k plugin."""
        parts = ["bgm", self.backbone, self.preset or f"{self.height}x{self.width}", self.precision]
        if self.refine_mode != "sampling":
            parts.append(self.refine_mode)
        if self.io == "uint8":
            parts.append("uint8")
        elif self.io_dtype == "float16":
            parts.append("float16")
        if self.topk == "plugin":
            parts.append("topk_plugin")
        return "_".join(parts) + ONNX_SUFFIXES[0]

    @property
    def k(self) -> int:
        return self.sample_pixels // PATCH_PIXELS

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS + (DEBUG_OUTPUTS if self.debug_outputs else ())

    def validate(self) -> None:
        """Fail before any tracing, naming the option: names first, then shapes, then values."""
        for option, value, known in (
            ("backbone", self.backbone, BACKBONES),
            ("refine_mode", self.refine_mode, REFINE_MODES),
            ("target", self.target, TARGETS),
            ("precision", self.precision, PRECISIONS),
            ("io_dtype", self.io_dtype, IO_DTYPES),
            ("io", self.io, IO_FORMATS),
            ("topk", self.topk, TOPK_METHODS),
        ):
            if value not in known:
                raise ConfigError(f"unknown `{option}` {value!r}; choose one of {', '.join(known)}")
        if self.height % SIZE_MULTIPLE or self.width % SIZE_MULTIPLE or self.height <= 0 or self.width <= 0:
            raise ConfigError(
                f"the trace size (`height`, `width`) must be positive and divisible by {SIZE_MULTIPLE}, "
                f"got {self.height}x{self.width}"
            )
        patches = (self.height // PATCH) * (self.width // PATCH)
        if self.refine_mode == "sampling" and patches < self.k:
            raise ConfigError(
                f"trace size {self.height}x{self.width} has {patches} patches, fewer than "
                f"k = {self.k}: trace at a larger `height`/`width` (the file still runs at "
                "smaller sizes, refining every eligible patch there)"
            )
        if self.refine_mode == "thresholding" and self.target in TENSORRT_TARGETS:
            raise ConfigError(
                "thresholding refines a data-dependent number of patches (NonZero), which "
                "TensorRT cannot build into a static engine; use `refine_mode` sampling (a "
                "static k) or full, or export for ONNX Runtime with `target` onnxruntime"
            )
        if self.io_dtype == "float16" and self.precision != "fp16":
            raise ConfigError(
                "`io_dtype` float16 needs an fp16 file (`precision` fp16); int8 and fp32 files take float32"
            )
        if self.io == "uint8" and self.io_dtype != "float32":
            raise ConfigError("`io` uint8 takes uint8 frames and returns float32 mattes; drop `io_dtype`")
        if self.topk == "plugin" and self.target == TENSORRT_RTX:
            raise ConfigError(
                "`topk` plugin calls TensorRT 11's TopkLastDim plugin, and TensorRT for RTX "
                "ships no plugins: use `topk` onnx (the default) for `target` tensorrt-rtx"
            )
        if self.topk == "plugin" and (self.target != TENSORRT or self.refine_mode != "sampling"):
            raise ConfigError(
                "`topk` plugin hands the sampling refiner's top-k to a TensorRT plugin: it needs "
                f"`refine_mode` sampling and `target` tensorrt (got {self.refine_mode}, {self.target})"
            )
        if self.opset not in OPSETS:
            raise ConfigError(f"`opset` must be between {OPSETS[0]} and {OPSETS[-1]}, got {self.opset}")
        problem = config_value_problem(asdict(self))
        if problem is not None:  # NaN and out-of-range values, refused before any tracing
            raise ConfigError(f"`{problem[0]}` {problem[1]}")

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
