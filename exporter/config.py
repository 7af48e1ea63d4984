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
TARGETS = ("tensorrt", "onnxruntime")


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


@dataclass(frozen=True)
class Budget:
    """Largest accepted difference of one output against PyTorch fp32 on the same inputs."""

    max_abs: float
    mean_abs: float


@dataclass(frozen=True)
class PrecisionBudget:
    outputs: dict[str, Budget]
    # Share of (image, patch) cells whose selection or refined value differs from PyTorch.
    patch_mismatch: float


# fp32: the same network in the same precision. Differences come from float32 rounding in other
# kernels (ONNX Runtime vs PyTorch), measured at <= 2e-7 on mobilenetv2 and resnet50.
BUDGETS = {
    "fp32": PrecisionBudget(
        outputs={
            "pha": Budget(max_abs=1e-4, mean_abs=1e-5),
            "fgr": Budget(max_abs=1e-4, mean_abs=1e-5),
            "pha_sm": Budget(max_abs=1e-4, mean_abs=1e-5),
            "fgr_sm": Budget(max_abs=1e-4, mean_abs=1e-5),
            "err_sm": Budget(max_abs=1e-4, mean_abs=1e-5),
            "ref_sm": Budget(max_abs=0.0, mean_abs=0.0),
        },
        patch_mismatch=0.0,
    ),
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
        if self.refine_mode == "thresholding" and self.target == "tensorrt":
            raise ConfigError(
                "thresholding refines a data-dependent number of patches (NonZero), which "
                "TensorRT cannot build into a static engine; use --refine-mode sampling (a "
                "static k) or full, or export for ONNX Runtime with --target onnxruntime"
            )
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
