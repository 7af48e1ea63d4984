"""TensorRT 10/11 and TensorRT for RTX (one Python API, the module chosen in one place,
`import_tensorrt`): named I/O tensors, execute_async_v3 on its own CUDA stream, pinned host
buffers and device buffers reused across calls, optional CUDA graph. The engine is checked
against its sidecar (plan sha256, backend, version, GPU) first. TensorRT for RTX compiles the
plan's kernels for the GPU when it loads; a runtime cache file keeps them across launches."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from mattex.contract import DEBUG_OUTPUTS, INPUTS, OUTPUTS, TENSORRT, TENSORRT_RTX
from mattex.errors import BackendUnavailableError, ConfigError, CorruptEngineError, EngineMismatchError
from mattex.facts import FACTS
from mattex.files import atomic_write_bytes
from mattex.metadata import ExportMetadata

from ..io_spec import array_shape_dtype, is_frame_dtype
from ..sidecar import Environment, Sidecar, check_environment, check_plan, load_sidecar
from .base import Backend

# Backend name -> the Python module of its API.
FLAVORS = {TENSORRT: "tensorrt", TENSORRT_RTX: "tensorrt_rtx"}
LABELS = {TENSORRT: "TensorRT", TENSORRT_RTX: "TensorRT for RTX"}


def check_sidecar_fields(fields: dict, need) -> None:
    """A TensorRT 10/11 plan runs on the GPU it was built for (or its kind): its sidecar names it."""
    cc = fields.get("compute_capability")
    whole = isinstance(cc, list) and len(cc) == 2 and all(type(x) is int for x in cc)
    need(whole, "compute_capability", FACTS["sidecar"]["wants"]["cc"])  # as the C++ runtime says it


def import_tensorrt(flavor: str = "tensorrt"):
    """The `tensorrt` or `tensorrt_rtx` module; BackendUnavailableError naming what to install."""
    from . import BACKENDS

    try:
        return importlib.import_module(FLAVORS[flavor])
    except ImportError:
        raise BackendUnavailableError(f"{LABELS[flavor]} is not installed here: {BACKENDS[flavor].install}") from None


def tensorrt_installed(flavor: str) -> bool:
    """Whether `flavor`'s module imports here (no GPU needed)."""
    try:
        import_tensorrt(flavor)
        return True
    except BackendUnavailableError:
        return False


def current_environment(trt, device: int = 0) -> Environment:
    from ..cuda import device_properties

    name, cc = device_properties(device)
    return Environment(trt.__version__, name, cc)


def _c_strides(shape, itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


class DeviceTensor:
    """An output left on the GPU: exposes __cuda_array_interface__ for zero-copy use (CuPy,
    Numba, PyTorch). Valid until the next call of the same Matter."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype) -> None:
        self.ptr, self.shape, self.dtype = ptr, tuple(shape), np.dtype(dtype)

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "version": 3,
            "strides": None,
        }


class _Buffer:
    """A device buffer that grows as needed and is reused across calls."""

    def __init__(self) -> None:
        from polygraphy import cuda

        self.array = cuda.DeviceArray(shape=(0,), dtype=np.uint8)

    def ensure(self, nbytes: int) -> int:
        if self.array.nbytes < nbytes:
            self.array.resize((nbytes,))
        return self.array.ptr


class TensorRTBackend(Backend):
    """A mattex engine on TensorRT (`flavor` "tensorrt") or TensorRT for RTX ("tensorrt-rtx").
    `sidecar`: the engine's sidecar when the caller has read it already (Matter.open has)."""

    takes_device_memory = True
    on_gpu = True

    def __init__(
        self,
        path: str | Path,
        flavor: str = TENSORRT,
        cuda_graph: bool = False,
        device: int = 0,
        runtime_cache: str | Path | None = None,
        sidecar: Sidecar | None = None,
    ) -> None:
        if runtime_cache is not None and flavor != TENSORRT_RTX:
            raise ConfigError(
                "`runtime_cache` is TensorRT for RTX's cache of kernels compiled at load "
                "time; TensorRT plans are compiled when they are built"
            )
        super().__init__(path)
        self.kind = flavor
        self.sidecar = sidecar or load_sidecar(self.path)
        self.profiles = self.sidecar.profiles
        props = self.sidecar.export_metadata
        self.metadata = ExportMetadata.of_file(props, self.path.name)
        if self.sidecar.backend != flavor:
            raise EngineMismatchError(
                f"{self.path.name} was built with {LABELS.get(self.sidecar.backend, self.sidecar.backend)}; "
                f"it cannot run on {LABELS[flavor]} (Matter.open picks the backend from the sidecar)"
            )
        check_plan(self.path, self.sidecar)
        trt = import_tensorrt(flavor)
        check_environment(self.sidecar, current_environment(trt, device))
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        if flavor == TENSORRT:
            trt.init_libnvinfer_plugins(self.logger, "")  # plans exported with --topk plugin call them
        self.runtime = trt.Runtime(self.logger)
        if self.sidecar.version_compatible:
            self.runtime.engine_host_code_allowed = True  # version-compatible plans embed a lean runtime
        plan = self.path.read_bytes()
        if flavor == TENSORRT_RTX:
            _check_rtx_validity(trt, self.runtime, plan, self.path.name)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise CorruptEngineError(f"{LABELS[flavor]} {trt.__version__} could not deserialize {self.path.name}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.output_names = [n for n in names if n not in INPUTS]
        if (
            sorted(set(names) & set(INPUTS)) != sorted(INPUTS)
            or not set(OUTPUTS) <= set(self.output_names)
            or not set(self.output_names) <= set(OUTPUTS + DEBUG_OUTPUTS)
        ):
            raise CorruptEngineError(
                f"{self.path.name} has I/O tensors {names}, expected "
                f"{list(INPUTS + OUTPUTS)} (and optionally {list(DEBUG_OUTPUTS)})"
            )
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.io_dtype = self.dtypes["src"]
        self.runtime_cache = RuntimeCache(self.engine, runtime_cache) if flavor == TENSORRT_RTX else None
        self.context = (
            self.engine.create_execution_context(self.runtime_cache.config)
            if self.runtime_cache
            else self.engine.create_execution_context()
        )

        from polygraphy import cuda

        self.stream = cuda.Stream()
        self.buffers = {n: _Buffer() for n in names}
        self.pinned: dict[str, object] = {}
        self.profile = 0
        self.use_cuda_graph = cuda_graph
        self.graph = None
        self.graph_key = None

    def _select_profile(self, bhw) -> None:
        index = next(i for i, p in enumerate(self.sidecar.profiles) if p.accepts(bhw))
        if index != self.profile:
            self.context.set_optimization_profile_async(index, self.stream.ptr)
            self.profile = index

    def _host_staging(self, name: str, shape, dtype):
        from ..cuda import PinnedBuffer

        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buffer = self.pinned.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self.pinned[name] = PinnedBuffer(nbytes)
        return buffer.array(shape, dtype)

    def _run(self, src, bgr) -> dict:
        """Every output of the engine by name: numpy arrays, or DeviceTensors left on the GPU
        when the inputs were device memory."""
        feeds = {"src": src, "bgr": bgr}
        shape = array_shape_dtype(src)[0]
        bhw = (shape[0], *(shape[1:3] if is_frame_dtype(self.io_dtype) else shape[2:4]))
        self._select_profile(bhw)
        on_device = False
        addresses = {}
        for name, value in feeds.items():
            shape, dtype, kind = array_shape_dtype(value)
            self.context.set_input_shape(name, shape)
            if kind == "device":  # zero copy: TensorRT reads the caller's memory
                interface = value.__cuda_array_interface__
                strides = interface.get("strides")
                if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
                    raise BackendUnavailableError(f"{name} must be C-contiguous device memory")
                addresses[name] = interface["data"][0]
                self.context.set_tensor_address(name, addresses[name])
                on_device = True
            else:
                staging = self._host_staging(name, shape, dtype)
                np.copyto(staging, value)
                ptr = self.buffers[name].ensure(staging.nbytes)
                from polygraphy import cuda

                cuda.wrapper().memcpy(
                    ptr, staging.ctypes.data, staging.nbytes, cuda.MemcpyKind.HostToDevice, self.stream.ptr
                )
                addresses[name] = ptr
                self.context.set_tensor_address(name, ptr)
        shapes = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            addresses[name] = self.buffers[name].ensure(nbytes)
            self.context.set_tensor_address(name, addresses[name])
            shapes[name] = shape
        self._execute((bhw, self.profile, tuple(sorted(addresses.items()))))
        if self.runtime_cache is not None:
            self.runtime_cache.saw(bhw)
        if on_device:
            self.stream.synchronize()
            return {n: DeviceTensor(self.buffers[n].array.ptr, shapes[n], self.dtypes[n]) for n in self.output_names}
        from polygraphy import cuda

        outputs = {}
        for name in self.output_names:
            host = self._host_staging(name + ":out", shapes[name], self.dtypes[name])
            cuda.wrapper().memcpy(
                host.ctypes.data,
                self.buffers[name].array.ptr,
                host.nbytes,
                cuda.MemcpyKind.DeviceToHost,
                self.stream.ptr,
            )
            outputs[name] = host
        self.stream.synchronize()
        return {name: o.copy() for name, o in outputs.items()}  # the pinned staging is reused next call

    def _execute(self, key) -> None:
        """Run the engine; with CUDA graphs, replay the capture made for these shapes and
        addresses (a new capture whenever either changes)."""
        if not self.use_cuda_graph:
            if not self.context.execute_async_v3(self.stream.ptr):
                raise BackendUnavailableError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            return
        from ..cuda import CudaGraph

        if self.graph is None or self.graph_key != key:
            if self.graph is not None:
                self.graph.destroy()
            # One plain run first: TensorRT allocates lazily, which a capture must not see.
            self.context.execute_async_v3(self.stream.ptr)
            self.stream.synchronize()
            self.graph = CudaGraph(self.stream.ptr)
            self.graph.capture(lambda: self.context.execute_async_v3(self.stream.ptr))
            self.graph_key = key
        self.graph.launch()


# EngineInvalidityDiagnostics bits TensorRT for RTX reports, and what they mean for the user.
RTX_DIAGNOSTICS = {
    "UNSUPPORTED_CC": "the GPU's compute capability is not among the engine's targets: rebuild with "
    "`mattex build --backend tensorrt-rtx --compute-capability` naming it",
    "VERSION_MISMATCH": "the engine comes from another TensorRT for RTX version: rebuild it with this one",
    "OLD_CUDA_DRIVER": "the CUDA driver is older than TensorRT for RTX needs: update the driver",
    "OLD_CUDA_RUNTIME": "the CUDA runtime is older than TensorRT for RTX needs",
    "INSUFFICIENT_GPU_MEMORY": "the GPU has too little free memory for the engine",
    "MALFORMED_ENGINE": "the file is not a TensorRT for RTX plan (corrupt or foreign)",
    "CUDA_ERROR": "a CUDA error occurred while checking the engine",
}


def _check_rtx_validity(trt, runtime, plan: bytes, name: str) -> None:
    """TensorRT for RTX's own verdict on running `plan` on this GPU, as a typed error."""
    validity, diagnostics = runtime.get_engine_validity(plan)
    if validity == trt.EngineValidity.INVALID:
        raise rtx_invalidity_error(trt, name, int(diagnostics))


def rtx_invalidity_error(trt, name: str, diagnostics: int):
    """The error for an engine TensorRT for RTX calls invalid here, its diagnostic bits named:
    CorruptEngineError for a malformed plan, EngineMismatchError for anything about this
    machine (compute capability, version, driver, memory)."""
    flags = [flag for flag in RTX_DIAGNOSTICS if diagnostics & int(getattr(trt.EngineInvalidityDiagnostics, flag))]
    error = CorruptEngineError if "MALFORMED_ENGINE" in flags else EngineMismatchError
    reasons = "; ".join(RTX_DIAGNOSTICS[flag] for flag in flags) or f"invalid (diagnostics {diagnostics})"
    return error(f"TensorRT for RTX {trt.__version__} cannot run {name} here: {reasons}")


class RuntimeCache:
    """TensorRT for RTX's runtime cache: the kernels it compiles for this GPU when an engine
    loads and meets a new shape. Read from `path` when it fits this GPU, driver and version
    (TensorRT for RTX checks; a stale file is ignored and rewritten), saved atomically after
    each call that met a new shape, so the next launch skips the compilation."""

    def __init__(self, engine, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.config = engine.create_runtime_config()
        self.cache = self.config.create_runtime_cache()
        self.loaded = False
        if self.path is not None and self.path.is_file():
            self.loaded = bool(self.cache.deserialize(self.path.read_bytes()))
        self.config.set_runtime_cache(self.cache)
        self.shapes: set[tuple[int, int, int]] = set()

    def saw(self, bhw: tuple[int, int, int]) -> None:
        if bhw in self.shapes:
            return
        self.shapes.add(bhw)
        if self.path is not None:
            atomic_write_bytes(self.path, bytes(self.cache.serialize()))
