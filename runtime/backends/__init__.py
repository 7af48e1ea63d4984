"""The engines mattex runs on, one module each behind one base class (`base.Backend`), and their
registry.

`BACKENDS` names them; a backend's module is imported only when a file is opened with it, so a
process never loads an engine it does not use. `Matter.open`, `mattex verify`, `mattex evaluate`,
`mattex bench` and `mattex run` all reach engines through it: adding an engine is one module
and one `BACKENDS.register` line (tests/runtime/test_backend_registry.py adds one).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path

from mattex.contract import ENGINE_SUFFIXES, ONNX_SUFFIXES
from mattex.errors import ConfigError
from mattex.registry import Registry


@dataclass(frozen=True)
class Variant:
    """One way `mattex bench` runs a backend: a label, where it runs, the options it opens with."""

    label: str
    device: str = "cpu"  # cpu | gpu
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BackendEntry:
    """One engine: where its class lives, which files it opens and how to install it."""

    name: str
    module: str  # a module path, e.g. mattex.runtime.backends.onnxruntime
    cls: str
    suffixes: tuple[str, ...]
    install: str
    options: dict = field(default_factory=dict)  # fixed keyword arguments of the class
    # What `mattex bench` times (the backend's own row when empty) and what `mattex verify`
    # adds when it measures a file (OpenVINO: run int8 files, whose refusal verify measures).
    variants: tuple[Variant, ...] = ()
    measure_options: dict = field(default_factory=dict)

    def load(self):
        return getattr(importlib.import_module(self.module), self.cls)

    def open(self, path: str | Path, **options):
        """The backend's class opened on `path`; ConfigError for an option it does not take."""
        cls = self.load()
        accepted = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            unknown = sorted(set(options) - set(accepted))
            if unknown:
                known = [n for n in accepted if n not in ("self", "path", *self.options)]
                raise ConfigError(
                    f"backend {self.name} takes no option {', '.join(f'`{u}`' for u in unknown)}"
                    f" (it takes {', '.join(f'`{k}`' for k in known) or 'none'})"
                )
        return cls(path, **self.options, **options)

    @property
    def bench_variants(self) -> tuple[Variant, ...]:
        return self.variants or (Variant(""),)


class BackendRegistry(Registry[BackendEntry]):
    kind = "backend"

    def register(self, entry: BackendEntry) -> BackendEntry:
        return self.add(entry.name, entry)

    def for_suffix(self, suffix: str) -> list[BackendEntry]:
        return [self[name] for name in self.names() if suffix.lower() in self[name].suffixes]


BACKENDS = BackendRegistry()
_HERE = __name__
BACKENDS.register(
    BackendEntry(
        "onnxruntime",
        f"{_HERE}.onnxruntime",
        "OnnxRuntimeBackend",
        ONNX_SUFFIXES,
        install="pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT EP)",
        variants=(
            # Timed beside other runners: idle threads sleep rather than spin into the next one.
            Variant("cpu", "cpu", {"providers": ["CPUExecutionProvider"], "spinning": False}),
            Variant("cuda", "gpu", {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}),
            Variant("tensorrt ep", "gpu", {"providers": ["TensorrtExecutionProvider", "CPUExecutionProvider"]}),
        ),
    )
)
BACKENDS.register(
    BackendEntry(
        "openvino",
        f"{_HERE}.openvino",
        "OpenVinoBackend",
        ONNX_SUFFIXES,
        install='pip install "mattex[openvino]" (OpenVINO, for Intel and AMD CPUs)',
        variants=(Variant("cpu", "cpu"),),
        measure_options={"allow_int8": True},
    )
)
BACKENDS.register(
    BackendEntry(
        "tensorrt",
        f"{_HERE}.tensorrt",
        "TensorRTBackend",
        ENGINE_SUFFIXES,
        install="pip install tensorrt (TensorRT 11, CUDA 13) or tensorrt-cu12 (CUDA 12) on the machine "
        "with the NVIDIA GPU",
        options={"flavor": "tensorrt"},
        variants=(Variant("", "gpu"), Variant("cuda graph", "gpu", {"cuda_graph": True})),
    )
)
BACKENDS.register(
    BackendEntry(
        "tensorrt-rtx",
        f"{_HERE}.tensorrt",
        "TensorRTBackend",
        ENGINE_SUFFIXES,
        install='pip install "mattex[rtx]" (tensorrt-rtx-cu13; tensorrt-rtx-cu12 for CUDA 12)',
        options={"flavor": "tensorrt-rtx"},
        variants=(Variant("", "gpu"), Variant("cuda graph", "gpu", {"cuda_graph": True})),
    )
)
