"""The engines mattex runs on, one module each behind one small interface, and their registry.

A backend is a class taking the model's path and options, with `kind`, `io_dtype` and
`__call__(src, bgr) -> (pha, fgr)`; input checks, sidecar checks and error types are shared
(`io_spec`, `sidecar`, `mattex.errors`). `BACKENDS` names them; a backend's module is imported
only when a file is opened with it, so a process never loads an engine it does not use.
Adding an engine is one module and one `BACKENDS.register` line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from mattex.registry import Registry

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class Backend:
    """One engine: where its class lives, which files it opens and how to install it."""

    name: str
    module: str  # under mattex.runtime.backends
    cls: str
    suffixes: tuple[str, ...]
    install: str
    options: dict = field(default_factory=dict)  # fixed keyword arguments of the class

    def open(self, path: str | Path, **options):
        module = importlib.import_module(f"{__name__}.{self.module}")
        return getattr(module, self.cls)(path, **self.options, **options)


class BackendRegistry(Registry[Backend]):
    kind = "backend"

    def register(self, backend: Backend) -> Backend:
        return self.add(backend.name, backend)

    def for_suffix(self, suffix: str) -> list[Backend]:
        return [self[name] for name in self.names() if suffix in self[name].suffixes]


BACKENDS = BackendRegistry()
BACKENDS.register(Backend(
    "onnxruntime", "onnxruntime", "OnnxRuntimeBackend", ONNX_SUFFIXES,
    install="pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT EP)"))
BACKENDS.register(Backend(
    "openvino", "openvino", "OpenVinoBackend", ONNX_SUFFIXES,
    install='pip install "mattex[openvino]" (OpenVINO, for Intel and AMD CPUs)'))
BACKENDS.register(Backend(
    "tensorrt", "tensorrt", "TensorRTBackend", ENGINE_SUFFIXES,
    install="pip install tensorrt (TensorRT 11, CUDA 13) or tensorrt-cu12 (CUDA 12) on the machine "
            "with the NVIDIA GPU", options={"flavor": "tensorrt"}))
BACKENDS.register(Backend(
    "tensorrt-rtx", "tensorrt", "TensorRTBackend", ENGINE_SUFFIXES,
    install='pip install "mattex[rtx]" (tensorrt-rtx-cu13; tensorrt-rtx-cu12 for CUDA 12)',
    options={"flavor": "tensorrt-rtx"}))
