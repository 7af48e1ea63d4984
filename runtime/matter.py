"""One small session API over both backends:

    matter = Matter.open("bgm_resnet50_hd.engine")   # TensorRT
    matter = Matter.open("bgm_resnet50_hd.onnx")     # ONNX Runtime
    pha, fgr = matter(src, bgr)                       # (B, 3, H, W) float32 in [0, 1]
"""

from __future__ import annotations

from pathlib import Path

from mattex.errors import ConfigError


class Matter:
    """Mattes frames against a captured background with an exported model."""

    def __init__(self, backend) -> None:
        self.backend = backend

    @classmethod
    def open(cls, path: str | Path, providers: list[str] | None = None, **options) -> "Matter":
        """`.engine`/`.plan` files run on TensorRT (with their `.json` sidecar); `.onnx` files
        on ONNX Runtime with `providers` (default: TensorRT EP, CUDA EP, CPU, whichever exist)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no such model file: {path}")
        suffix = path.suffix.lower()
        if suffix in (".engine", ".plan"):
            if providers is not None:
                raise ConfigError("providers apply to .onnx files; an engine always runs on TensorRT")
            from .tensorrt_backend import TensorRTBackend

            return cls(TensorRTBackend(path, **options))
        if suffix == ".onnx":
            from .onnxruntime_backend import OnnxRuntimeBackend

            return cls(OnnxRuntimeBackend(path, providers, **options))
        raise ConfigError(f"{path.name}: expected a .onnx model or a .engine/.plan TensorRT engine")

    @property
    def kind(self) -> str:
        return self.backend.kind

    def __call__(self, src, bgr):
        """Returns (pha, fgr) for inputs src, bgr (B, 3, H, W)."""
        return self.backend(src, bgr)
