"""mattex.h from Python through ctypes: what a binding in any language with a C FFI (Rust, Go,
C#, Java) does. The suite (tests/runtime/cpp) and benchmarks/cpp_runtime.py use it.

    lib = MattexLibrary("build/cpp/libmattex.so")
    status, handle = lib.open("bgm_mobilenetv2_hd_fp32.onnx")
    status, pha, fgr = lib.matte(handle, frames, background)   # uint8 (B, H, W, 3) or float (B, 3, H, W)
    lib.close(handle)
"""

from __future__ import annotations

import ctypes

import numpy as np


class Options(ctypes.Structure):  # mattex_options
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("backend", ctypes.c_char_p),
        ("inference_precision", ctypes.c_char_p),
        ("threads", ctypes.c_int),
        ("cache_dir", ctypes.c_char_p),
        ("skip_value_checks", ctypes.c_int),
        ("device", ctypes.c_int),
    ]


class Info(ctypes.Structure):  # mattex_info
    _fields_ = [
        ("backend", ctypes.c_char_p),
        ("precision", ctypes.c_char_p),
        ("io", ctypes.c_char_p),
        ("io_dtype", ctypes.c_char_p),
        ("size_multiple", ctypes.c_int64),
    ]


class MattexLibrary:
    def __init__(self, library: str):
        self.lib = lib = ctypes.CDLL(str(library))
        size, i64, ptr = ctypes.c_size_t, ctypes.c_int64, ctypes.c_void_p
        lib.mattex_options_init.argtypes = [ctypes.POINTER(Options)]
        lib.mattex_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(Options), ctypes.POINTER(ptr)]
        for call in (lib.mattex_run, lib.mattex_matte_frames):
            call.argtypes = [ptr, ptr, ptr, size, i64, i64, i64, ptr, size, ptr, size]
        lib.mattex_get_info.argtypes = [ptr, ctypes.POINTER(Info)]
        lib.mattex_close.argtypes = [ptr]
        for call in (lib.mattex_last_error, lib.mattex_status_name, lib.mattex_version):
            call.restype = ctypes.c_char_p

    def open(self, path, threads: int = 0, cache_dir=None, options=None) -> tuple[int, ctypes.c_void_p]:
        """(status, handle); the handle is NULL when the status is not 0 (MATTEX_OK). `options`:
        an Options struct passed as it is (threads and cache_dir are then not applied)."""
        if options is None:
            options = Options()
            self.lib.mattex_options_init(ctypes.byref(options))
            options.threads = threads
            options.cache_dir = str(cache_dir).encode() if cache_dir else None
        handle = ctypes.c_void_p()
        status = self.lib.mattex_open(str(path).encode(), ctypes.byref(options), ctypes.byref(handle))
        return status, handle

    def matte(self, handle, src: np.ndarray, bgr: np.ndarray, pha_count=None, fgr_count=None):
        """(status, pha, fgr): uint8 frames through mattex_matte_frames, float32 through
        mattex_run; the output counts may be overridden (to see them refused)."""
        frames = src.dtype == np.uint8
        batch, height, width = src.shape[:3] if frames else (src.shape[0], *src.shape[2:])
        pha = np.empty((batch, 1, height, width), np.float32)  # as a runtime returns fresh outputs
        fgr = np.empty((batch, 3, height, width), np.float32)
        call = self.lib.mattex_matte_frames if frames else self.lib.mattex_run
        status = call(
            handle, src.ctypes.data, bgr.ctypes.data, src.size, batch, height, width,
            pha.ctypes.data, pha.size if pha_count is None else pha_count,
            fgr.ctypes.data, fgr.size if fgr_count is None else fgr_count,
        )  # fmt: skip
        return status, pha, fgr

    def info(self, handle) -> Info:
        info = Info()
        status = self.lib.mattex_get_info(handle, ctypes.byref(info))
        if status != 0:
            raise RuntimeError(self.error(status))
        return info

    def error(self, status: int) -> str:
        """"<PythonErrorClass>: <message>" of this thread's last failed call."""
        return f"{self.lib.mattex_status_name(status).decode()}: {self.lib.mattex_last_error().decode()}"

    def close(self, handle) -> None:
        self.lib.mattex_close(handle)

    def version(self) -> str:
        return self.lib.mattex_version().decode()
