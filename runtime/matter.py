"""One small session API over every backend:

matter = Matter.open("bgm_resnet50_hd_fp32.engine")  # TensorRT or TensorRT for RTX (sidecar says)
matter = Matter.open("bgm_resnet50_hd_fp32.onnx")  # the registry's automatic choice (CPU: OpenVINO where installed)
pha, fgr = matter(src, bgr)  # (B, 3, H, W) float32 in [0, 1]
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mattex.contract import ENGINE_SUFFIXES, ONNX_SUFFIXES
from mattex.errors import ConfigError, MattexError, ResourceError
from mattex.files import check_model_file

from .backends import BACKENDS
from .backends.base import exhausted_resource
from .io_spec import check_inputs, check_values, float_to_input, frames_to_input
from .sidecar import load_sidecar


def resource_message(resource: str, asking: str, what: str) -> str:
    """ResourceError's message, word for word the C++ runtime's (matter.cpp resourceMessage):
    `what` the exception said, of which the last line (OpenVINO stacks its context above the
    system's own words)."""
    said = what.strip().splitlines()[-1].strip() if what.strip() else what
    if resource == "threads":
        return (
            f"threads: {asking} needs threads this machine would not start ({said}): "
            "a process or thread limit (ulimit -u) is reached"
        )
    return f"memory: {asking} could not be allocated on this machine ({said})"


def _frames_asked(src, frames: bool) -> str:
    """The frames a call converts, e.g. "batch 2 of 1080x1920 (buffers of 49766400 bytes each)"."""
    shape = tuple(getattr(src, "shape", ()))
    if len(shape) != 4:
        return f"frames of shape {shape}"
    batch, height, width = (shape[0], shape[1], shape[2]) if frames else (shape[0], shape[2], shape[3])
    return f"batch {batch} of {height}x{width} (buffers of {4 * 3 * batch * height * width} bytes each)"


def _naming_resources(frames: bool | None) -> Callable:
    """A Matter call whose failure to get memory or threads (numpy's MemoryError for a frame size
    that passes the checks but cannot be allocated here; an engine's own) is a ResourceError naming
    the size and the bytes. `frames`: the call takes (B, H, W, 3) frames; None: as the file takes."""

    def wrap(call: Callable) -> Callable:
        @functools.wraps(call)
        def named(self, src, bgr):
            try:
                return call(self, src, bgr)
            except MattexError:
                raise
            except Exception as e:
                resource = exhausted_resource(e)
                if resource is None:
                    raise
                as_frames = self.io_dtype == np.uint8 if frames is None else frames
                said = str(e) or type(e).__name__
                raise ResourceError(resource_message(resource, _frames_asked(src, as_frames), said)) from None

        return named

    return wrap


class Matter:
    """Mattes frames against a captured background with an exported model."""

    def __init__(self, backend, check_values: bool = True) -> None:
        self.backend = backend
        self.check_values = check_values  # NaN/Inf and [0, 1] checks of float frames

    @classmethod
    def open(
        cls,
        path: str | Path,
        backend: str | None = None,
        providers: list[str] | None = None,
        check_values: bool = True,
        sharing_cores: bool = False,
        **options,
    ) -> Matter:
        """Open `path` with `backend` (a name in `mattex.runtime.backends.BACKENDS`). An engine
        (`.engine`/`.plan`) runs on the backend its sidecar names: TensorRT, or TensorRT for
        RTX (options: `runtime_cache=PATH`, `cuda_graph`, `device`). An `.onnx` file runs on
        `backend` "onnxruntime" (options: `providers`, default TensorRT EP, CUDA EP, CPU,
        whichever exist; `threads`; `spinning`) or "openvino" (`inference_precision` f32 or
        bf16, `threads`, `cache_dir`, `cache_max_size`). Without one, the registry's automatic
        choice: ONNX Runtime with a GPU provider, else OpenVINO for fp32/fp16 files where it is
        installed, else ONNX Runtime (int8 files); an option only one backend takes picks it.
        `sharing_cores`: the backend shares the cores with other work (a video pipeline, a
        server) and takes its co-runner options (ONNX Runtime: idle threads sleep)."""
        path = check_model_file(path)
        try:
            return cls._open(path, backend, providers, check_values, sharing_cores, **options)
        except MattexError:
            raise
        except Exception as e:  # the machine, not the file, when it says so
            resource = exhausted_resource(e)
            if resource is None:
                raise
            raise ResourceError(resource_message(resource, f"opening {path.name}", str(e))) from None

    @classmethod
    def _open(cls, path: Path, backend, providers, check_values: bool, sharing_cores: bool, **options) -> Matter:
        if providers is not None:  # an option like any other: a backend that takes none refuses it by name
            options["providers"] = providers
        suffix = path.suffix.lower()
        if suffix in ENGINE_SUFFIXES:
            sidecar = load_sidecar(path)  # read once, handed to the backend
            if backend is not None and backend != sidecar.backend:
                raise ConfigError(f"{path.name} was built for {sidecar.backend}; it cannot run on {backend}")
            backend, options["sidecar"] = sidecar.backend, sidecar
        elif suffix in ONNX_SUFFIXES:
            if backend is None:
                return cls(BACKENDS.open_automatically(path, sharing_cores, **options), check_values)
        else:
            raise ConfigError(f"{path.name}: expected a .onnx model or a .engine/.plan engine")
        entry = BACKENDS[backend]
        if suffix not in entry.suffixes:
            raise ConfigError(f"backend {backend} opens {', '.join(entry.suffixes)} files, not {path.name}")
        return cls(entry.open(path, sharing_cores, **options), check_values)

    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def io_dtype(self) -> np.dtype:
        """The dtype the model takes: float32, float16 (fp16-I/O files) or uint8 (files exported
        with `io` uint8, whose inputs are frames (B, H, W, 3))."""
        return self.backend.io_dtype

    @property
    def output_names(self) -> list[str]:
        """pha, fgr, and the debug outputs (pha_sm, fgr_sm, err_sm, ref_sm) where the file has them."""
        return list(self.backend.output_names)

    @property
    def metadata(self):
        """The file's ExportMetadata (None for an ONNX file mattex did not export)."""
        return self.backend.metadata

    @property
    def arithmetic(self) -> str | None:
        """The lower arithmetic the backend runs a float file at (OpenVINO bf16), or None."""
        return self.backend.arithmetic

    @_naming_resources(frames=None)
    def __call__(self, src, bgr):
        """Returns (pha, fgr) for inputs src, bgr: (B, 3, H, W) floats in [0, 1], or (B, H, W, 3)
        uint8 frames for a uint8 file. Float frames with NaN/Inf or values outside [0, 1]
        raise InputValueError unless the Matter was opened with check_values=False."""
        self._check(src, bgr)
        return self.backend(src, bgr)

    @_naming_resources(frames=None)
    def run(self, src, bgr) -> dict:
        """Every output of the file by name, for the same inputs as __call__."""
        self._check(src, bgr)
        return self.backend.run(src, bgr)

    @_naming_resources(frames=True)
    def matte_frames(self, src, bgr) -> dict:
        """Every output for uint8 RGB frames (B, H, W, 3) as decoders give them, whatever the
        file takes: a uint8 file gets them as they are, a float file as (B, 3, H, W) in [0, 1]."""
        # Checked as the caller sent them (a message about converted shapes would confuse); frames
        # converted from uint8 are finite and in [0, 1] by construction: no value check.
        check_inputs({"src": src, "bgr": bgr}, np.uint8)
        return self.backend.run(frames_to_input(src, self.io_dtype), frames_to_input(bgr, self.io_dtype))

    @_naming_resources(frames=False)
    def matte_floats(self, src: np.ndarray, bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Every output as float32 for float32 (B, 3, H, W) RGB in [0, 1], whatever the file
        takes: cast for fp16-I/O files, stored as uint8 frames (rounded) for uint8 files."""
        self._check(src, bgr)
        outputs = self.backend.run(float_to_input(src, self.io_dtype), float_to_input(bgr, self.io_dtype))
        return {name: np.asarray(value, dtype=np.float32) for name, value in outputs.items()}

    def _check(self, src, bgr) -> None:
        if self.check_values:
            check_values({"src": src, "bgr": bgr})
