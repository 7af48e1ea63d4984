"""The TensorRT backend (TensorRT 10 and 11 Python API): named I/O tensors, execute_async_v3 on
its own CUDA stream, pinned host buffers and device buffers reused across calls, optional CUDA
graph. The engine is checked against its sidecar (plan sha256, TensorRT version, GPU) first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mattex.errors import BackendUnavailableError, CorruptEngineError

from .io_spec import INPUTS, OUTPUTS, array_shape_dtype, check_inputs
from .sidecar import Environment, check_environment, check_plan, load_sidecar

INSTALL_HINT = ("pip install tensorrt (TensorRT 11, CUDA 13) or tensorrt-cu12 (CUDA 12) on the "
                "machine with the NVIDIA GPU")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailableError(f"TensorRT is not installed here: {INSTALL_HINT}") from None
    return trt


def current_environment(trt, device: int = 0) -> Environment:
    from .cuda import device_properties

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
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "version": 3, "strides": None}


class _Buffer:
    """A device buffer that grows as needed and is reused across calls."""

    def __init__(self) -> None:
        from polygraphy import cuda

        self.array = cuda.DeviceArray(shape=(0,), dtype=np.uint8)

    def ensure(self, nbytes: int) -> int:
        if self.array.nbytes < nbytes:
            self.array.resize((nbytes,))
        return self.array.ptr


class TensorRTBackend:
    kind = "tensorrt"

    def __init__(self, path: str | Path, cuda_graph: bool = False, device: int = 0) -> None:
        trt = import_tensorrt()
        self.path = Path(path)
        self.sidecar = load_sidecar(self.path)
        check_plan(self.path, self.sidecar)
        check_environment(self.sidecar, current_environment(trt, device))
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")  # plans exported with --topk plugin call them
        self.runtime = trt.Runtime(self.logger)
        if self.sidecar.version_compatible:
            self.runtime.engine_host_code_allowed = True  # version-compatible plans embed a lean runtime
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise CorruptEngineError(f"TensorRT {trt.__version__} could not deserialize {self.path.name}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted(INPUTS + OUTPUTS):
            raise CorruptEngineError(f"{self.path.name} has I/O tensors {names}, expected {list(INPUTS + OUTPUTS)}")
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.context = self.engine.create_execution_context()

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
        from .cuda import PinnedBuffer

        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        buffer = self.pinned.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = self.pinned[name] = PinnedBuffer(nbytes)
        return buffer.array(shape, dtype)

    def __call__(self, src, bgr):
        feeds = {"src": src, "bgr": bgr}
        bhw = check_inputs(feeds, self.dtypes["src"], self.sidecar.profiles)
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

                cuda.wrapper().memcpy(ptr, staging.ctypes.data, staging.nbytes,
                                      cuda.MemcpyKind.HostToDevice, self.stream.ptr)
                addresses[name] = ptr
                self.context.set_tensor_address(name, ptr)
        shapes = {}
        for name in OUTPUTS:
            shape = tuple(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * self.dtypes[name].itemsize
            addresses[name] = self.buffers[name].ensure(nbytes)
            self.context.set_tensor_address(name, addresses[name])
            shapes[name] = shape
        self._execute((bhw, self.profile, tuple(sorted(addresses.items()))))
        if on_device:
            self.stream.synchronize()
            return tuple(DeviceTensor(self.buffers[n].array.ptr, shapes[n], self.dtypes[n]) for n in OUTPUTS)
        from polygraphy import cuda

        outputs = []
        for name in OUTPUTS:
            host = self._host_staging(name + ":out", shapes[name], self.dtypes[name])
            cuda.wrapper().memcpy(host.ctypes.data, self.buffers[name].array.ptr, host.nbytes,
                                  cuda.MemcpyKind.DeviceToHost, self.stream.ptr)
            outputs.append(host)
        self.stream.synchronize()
        return tuple(o.copy() for o in outputs)  # the pinned staging is reused next call

    def _execute(self, key) -> None:
        """Run the engine; with CUDA graphs, replay the capture made for these shapes and
        addresses (a new capture whenever either changes)."""
        if not self.use_cuda_graph:
            if not self.context.execute_async_v3(self.stream.ptr):
                raise BackendUnavailableError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            return
        from .cuda import CudaGraph

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
