"""The few CUDA runtime calls the TensorRT backend needs, through polygraphy's libcudart
wrapper (streams, device memory, copies) plus pinned host memory, device properties and CUDA
graphs. Imported only when an engine is opened."""

from __future__ import annotations

import ctypes

from mattex.errors import BackendUnavailableError

CAPTURE_MODE_THREAD_LOCAL = 1
ATTR_CC_MAJOR, ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor / Minor


def cudart():
    """polygraphy's CUDA runtime wrapper; BackendUnavailableError when libcudart is missing."""
    try:
        from polygraphy import cuda
        from polygraphy.exception import PolygraphyException
    except ImportError:
        raise BackendUnavailableError(
            'the TensorRT backends need polygraphy\'s CUDA wrapper: pip install "mattex[rtx]" or "mattex[tensorrt]"'
        ) from None
    try:
        return cuda.wrapper()
    except PolygraphyException as e:
        raise BackendUnavailableError(f"the CUDA runtime could not be loaded: {e}") from None
    except OSError as e:
        raise BackendUnavailableError(f"the CUDA runtime (libcudart) is not installed: {e}") from None


def _check(status: int, what: str) -> None:
    if status != 0:
        raise BackendUnavailableError(f"CUDA error {status} in {what}")


def device_count() -> int:
    count = ctypes.c_int(0)
    status = cudart().handle.cudaGetDeviceCount(ctypes.byref(count))
    return count.value if status == 0 else 0


def device_properties(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, (major, minor)) of a GPU; BackendUnavailableError when there is none."""
    if device_count() <= device:
        raise BackendUnavailableError(f"no CUDA GPU {device} on this machine (found {device_count()})")
    lib = cudart().handle
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib.cudaDeviceGetAttribute(ctypes.byref(major), ATTR_CC_MAJOR, device), "cudaDeviceGetAttribute")
    _check(lib.cudaDeviceGetAttribute(ctypes.byref(minor), ATTR_CC_MINOR, device), "cudaDeviceGetAttribute")
    # cudaDeviceProp starts with `char name[256]`; the buffer is larger than the whole struct.
    props = ctypes.create_string_buffer(16384)
    get = getattr(lib, "cudaGetDeviceProperties_v2", None) or lib.cudaGetDeviceProperties
    _check(get(props, device), "cudaGetDeviceProperties")
    return props.raw[:256].split(b"\0", 1)[0].decode(), (major.value, minor.value)


def cuda_versions() -> dict[str, str]:
    """The CUDA driver's and runtime's versions ("12.8"); BackendUnavailableError without them."""
    lib = cudart().handle
    found = {}
    for name, call in (("driver", lib.cudaDriverGetVersion), ("runtime", lib.cudaRuntimeGetVersion)):
        version = ctypes.c_int(0)
        _check(call(ctypes.byref(version)), f"cuda{name.title()}GetVersion")
        found[name] = f"{version.value // 1000}.{version.value % 1000 // 10}"
    return found


class PinnedBuffer:
    """Page-locked host memory, so host<->device copies run asynchronously at full speed."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = ctypes.c_void_p()
        _check(
            cudart().handle.cudaMallocHost(ctypes.byref(self.ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMallocHost"
        )

    def array(self, shape, dtype):
        import numpy as np

        count = int(np.prod(shape))
        raw = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(self.ptr.value)
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            cudart().handle.cudaFreeHost(self.ptr)
            self.ptr = ctypes.c_void_p()

    def __del__(self) -> None:
        self.free()


class CudaGraph:
    """Captures the work queued on a stream once and replays it with one launch."""

    def __init__(self, stream_ptr: int) -> None:
        self.stream = ctypes.c_void_p(stream_ptr)
        self.graph = ctypes.c_void_p()
        self.exec = ctypes.c_void_p()

    def capture(self, enqueue) -> None:
        lib = cudart().handle
        _check(lib.cudaStreamBeginCapture(self.stream, CAPTURE_MODE_THREAD_LOCAL), "cudaStreamBeginCapture")
        try:
            enqueue()
        finally:
            _check(lib.cudaStreamEndCapture(self.stream, ctypes.byref(self.graph)), "cudaStreamEndCapture")
        _check(
            lib.cudaGraphInstantiate(ctypes.byref(self.exec), self.graph, ctypes.c_ulonglong(0)), "cudaGraphInstantiate"
        )

    def launch(self) -> None:
        _check(cudart().handle.cudaGraphLaunch(self.exec, self.stream), "cudaGraphLaunch")

    def destroy(self) -> None:
        lib = cudart().handle
        if self.exec:
            lib.cudaGraphExecDestroy(self.exec)
        if self.graph:
            lib.cudaGraphDestroy(self.graph)
        self.exec, self.graph = ctypes.c_void_p(), ctypes.c_void_p()
