"""The engines mattex runs on, one module each behind one base class (`base.Backend`), and their
registry.

`BACKENDS` names them; a backend's module is imported only when a file is opened with it, so a
process never loads an engine it does not use. Each entry also holds its policy: where the
automatic choice ranks it (`rank`), the options it takes (its class's signature) and the ones it
takes when it shares the cores with other work (`co_runner_options`). `Matter.open`, `mattex
verify`, `evaluate`, `bench`, `run` and `serve` all reach engines through it: adding an engine
is one module and one `BACKENDS.register` line (tests/runtime/test_backend_registry.py adds an
ONNX backend and an engine backend).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mattex.contract import ENGINE_SUFFIXES, ONNX_SUFFIXES, TENSORRT, TENSORRT_RTX
from mattex.errors import BackendUnavailableError, ConfigError
from mattex.facts import backend_rank
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
    # Where the automatic choice ranks it among the backends of a file's suffix, here and now
    # (lower first; None: not chosen automatically, as engines, which their sidecar names).
    rank: Callable[[], int | None] = lambda: None
    # What it takes when it shares the cores with other work (a video pipeline's decoder and
    # encoder, a server's other instances and clients).
    co_runner_options: dict = field(default_factory=dict)
    # What it opens with to run on the CPU alone (a measurement no GPU may change).
    cpu_options: dict = field(default_factory=dict)
    # Why it refuses a file of a precision ("int8"), or None: a check that would run it skips
    # the file and says why (`mattex doctor`), as `Matter.open` refuses it.
    refuses: Callable[[str], str | None] = lambda precision: None
    # How a Triton model repository serves its files (`mattex triton-repo --backend NAME`): a
    # Triton `platform` or `backend` entry of config.pbtxt; None: not served by Triton itself.
    repository: dict | None = None
    # Its build, for engine backends: "module:Class" of an `exporter.build.backends.EngineBuild`,
    # imported only by `mattex build` and `mattex export` (the runtime never builds).
    builder: str | None = None
    # Its engines' sidecar fields beyond every backend's: "module:function", called as
    # `function(fields, need)` where `need(ok, key, want)` refuses a field by name.
    sidecar_check: str | None = None

    def load(self):
        return getattr(importlib.import_module(self.module), self.cls)

    def _parameters(self):
        return inspect.signature(self.load().__init__).parameters

    def unknown_options(self, options: dict) -> list[str]:
        """The names in `options` its class does not take."""
        accepted = self._parameters()
        if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            return []
        return sorted(set(options) - set(accepted))

    def open(self, path: str | Path, sharing_cores: bool = False, **options):
        """The backend's class opened on `path` (with `sharing_cores`, its co-runner options
        under the caller's); ConfigError for an option it does not take."""
        unknown = self.unknown_options(options)
        if unknown:
            known = [n for n in self._parameters() if n not in ("self", "path", *self.options)]
            raise ConfigError(
                f"backend {self.name} takes no option {', '.join(f'`{u}`' for u in unknown)}"
                f" (it takes {', '.join(f'`{k}`' for k in known) or 'none'})"
            )
        shared = self.co_runner_options if sharing_cores else {}
        return self.load()(path, **self.options, **shared, **options)

    def check_sidecar(self, fields: dict, need: Callable[[bool, str, str], None]) -> None:
        if self.sidecar_check is not None:
            module, function = self.sidecar_check.split(":")
            getattr(importlib.import_module(module), function)(fields, need)

    @property
    def bench_variants(self) -> tuple[Variant, ...]:
        return self.variants or (Variant(""),)


class BackendRegistry(Registry[BackendEntry]):
    kind = "backend"

    def register(self, entry: BackendEntry) -> BackendEntry:
        return self.add(entry.name, entry)

    def for_suffix(self, suffix: str) -> list[BackendEntry]:
        return [self[name] for name in self.names() if suffix.lower() in self[name].suffixes]

    def builders(self) -> list[str]:
        """The names of the backends that build their own engines, in registration order."""
        return [name for name in self.names() if self[name].builder is not None]

    def served_by_triton(self) -> list[str]:
        """The backends a Triton repository serves directly, in registration order."""
        return [name for name in self.names() if self[name].repository is not None]

    def engine_backends(self) -> list[str]:
        """The names of the backends that open engines (files with a sidecar)."""
        return [name for name in self.names() if set(ENGINE_SUFFIXES) & set(self[name].suffixes)]

    def policy_options(self) -> set[str]:
        """Options that say how to share the cores (any entry's co-runner options): applied
        where the chosen backend takes them, never a reason to choose one."""
        return {key for name in self.names() for key in self[name].co_runner_options}

    def automatic(self, suffix: str, options: dict) -> list[BackendEntry]:
        """The backends the automatic choice tries for a `suffix` file, in order: those ranked
        here that take every option asked for (an option only one backend takes picks it)."""
        ranked = [(entry.rank(), i, entry) for i, entry in enumerate(self.for_suffix(suffix))]
        ranked = sorted((rank, i, entry) for rank, i, entry in ranked if rank is not None)
        policy = self.policy_options()
        return [entry for _, _, entry in ranked if not set(entry.unknown_options(options)) - policy]

    def open_automatically(self, path: Path, sharing_cores: bool = False, **options):
        """`path` opened on the first backend of `automatic` that runs it; a backend that
        refuses the file (BackendUnavailableError: OpenVINO and an int8 file) passes it on, and
        the last refusal is raised."""
        candidates = self.automatic(path.suffix, options)
        if not candidates:
            raise BackendUnavailableError(
                f"no installed backend opens {path.name} with options {', '.join(sorted(options)) or 'none'}"
            )
        for i, entry in enumerate(candidates):
            untaken = set(entry.unknown_options(options))  # policy options it has no use for
            taken = {k: v for k, v in options.items() if k not in untaken}
            try:
                return entry.open(path, sharing_cores=sharing_cores, **taken)
            except BackendUnavailableError:
                if i == len(candidates) - 1:
                    raise


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _onnxruntime_rank() -> int | None:
    """First where it has a GPU provider (CUDA, TensorRT EP); on the CPU after OpenVINO, which
    ran every fp32 preset faster (benchmarks/cpu_backends.py, HD and 4K: 243-944 vs 300-1021 ms
    per frame, AMD EPYC with AVX-512; it compiles static shapes) but refuses int8 files."""
    if not _installed("onnxruntime"):
        return None
    import onnxruntime as ort

    gpu = bool({"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()))
    return backend_rank("onnxruntime", gpu=gpu)  # the ranks the C++ runtime follows: mattex/shared_facts.json


def _openvino_refuses(precision: str) -> str | None:
    if precision != "int8":
        return None
    from .openvino import INT8_REFUSAL  # no OpenVINO import: the words alone

    return INT8_REFUSAL


BACKENDS = BackendRegistry()
_HERE = __name__
BACKENDS.register(
    BackendEntry(
        "onnxruntime",
        f"{_HERE}.onnxruntime",
        "OnnxRuntimeBackend",
        ONNX_SUFFIXES,
        install="pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA, TensorRT EP)",
        rank=_onnxruntime_rank,
        # Idle threads sleep rather than spin, leaving the cores to the work beside it.
        co_runner_options={"spinning": False},
        cpu_options={"providers": ["CPUExecutionProvider"]},
        repository={"platform": "onnxruntime_onnx"},
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
        rank=lambda: backend_rank("openvino") if _installed("openvino") else None,
        refuses=_openvino_refuses,
        repository={"backend": "openvino", "default_model_filename": "model.onnx"},
    )
)
BACKENDS.register(
    BackendEntry(
        TENSORRT,
        f"{_HERE}.tensorrt",
        "TensorRTBackend",
        ENGINE_SUFFIXES,
        install="pip install tensorrt (TensorRT 11, CUDA 13) or tensorrt-cu12 (CUDA 12) on the machine "
        "with the NVIDIA GPU",
        options={"flavor": TENSORRT},
        variants=(Variant("", "gpu"), Variant("cuda graph", "gpu", {"cuda_graph": True})),
        repository={"platform": "tensorrt_plan"},
        builder="mattex.exporter.build.tensorrt:TensorRTBuild",
        sidecar_check=f"{_HERE}.tensorrt:check_sidecar_fields",
    )
)
BACKENDS.register(
    BackendEntry(
        TENSORRT_RTX,
        f"{_HERE}.tensorrt",
        "TensorRTBackend",
        ENGINE_SUFFIXES,
        install='pip install "mattex[rtx]" (tensorrt-rtx-cu13; tensorrt-rtx-cu12 for CUDA 12)',
        options={"flavor": TENSORRT_RTX},
        variants=(Variant("", "gpu"), Variant("cuda graph", "gpu", {"cuda_graph": True})),
        builder="mattex.exporter.build.tensorrt:TensorRTRtxBuild",
    )
)
