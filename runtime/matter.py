"""One small session API over every backend:

    matter = Matter.open("bgm_resnet50_hd.engine")   # TensorRT or TensorRT for RTX (sidecar says)
    matter = Matter.open("bgm_resnet50_hd.onnx")     # ONNX Runtime
    pha, fgr = matter(src, bgr)                       # (B, 3, H, W) float32 in [0, 1]
"""

from __future__ import annotations

from pathlib import Path

from mattex.errors import ConfigError

from .backends import BACKENDS, ENGINE_SUFFIXES, ONNX_SUFFIXES
from .sidecar import load_sidecar


class Matter:
    """Mattes frames against a captured background with an exported model."""

    def __init__(self, backend) -> None:
        self.backend = backend

    @classmethod
    def open(cls, path: str | Path, backend: str | None = None, providers: list[str] | None = None,
             **options) -> "Matter":
        """Open `path` with `backend` (a name in `mattex.runtime.backends.BACKENDS`). An engine
        (`.engine`/`.plan`) runs on the backend its sidecar names: TensorRT, or TensorRT for
        RTX (options: `runtime_cache=PATH`, `cuda_graph`, `device`). An `.onnx` file runs on
        ONNX Runtime by default, with `providers` (default: TensorRT EP, CUDA EP, CPU, whichever
        exist) and `threads`."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no such model file: {path}")
        suffix = path.suffix.lower()
        if suffix in ENGINE_SUFFIXES:
            built_with = load_sidecar(path).backend
            if backend is not None and backend != built_with:
                raise ConfigError(f"{path.name} was built for {built_with}; it cannot run on {backend}")
            if providers is not None:
                raise ConfigError("providers apply to .onnx files on ONNX Runtime; an engine runs on "
                                  f"the backend it was built for ({built_with})")
            backend = built_with
        elif suffix in ONNX_SUFFIXES:
            backend = backend or "onnxruntime"
            if providers is not None:
                if backend != "onnxruntime":
                    raise ConfigError(f"providers are ONNX Runtime's; backend {backend} takes none")
                options["providers"] = providers
        else:
            raise ConfigError(f"{path.name}: expected a .onnx model or a .engine/.plan engine")
        chosen = BACKENDS[backend]
        if suffix not in chosen.suffixes:
            raise ConfigError(f"backend {backend} opens {', '.join(chosen.suffixes)} files, not {path.name}")
        return cls(chosen.open(path, **options))

    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def io_dtype(self):
        """The dtype the model takes and returns (float32, or float16 for fp16-I/O files)."""
        return self.backend.io_dtype

    def __call__(self, src, bgr):
        """Returns (pha, fgr) for inputs src, bgr (B, 3, H, W)."""
        return self.backend(src, bgr)
