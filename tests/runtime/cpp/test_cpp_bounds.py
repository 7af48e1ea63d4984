"""Bounds and resources in the C++ runtime, held to the Python runtime's words: the threads rule
(MATTEX_THREADS and Options::threads, one maximum in both), a zeroed C `mattex_options`, what the
machine refuses (threads at open, memory for a frame) as ResourceError, and model paths that are
not files (a FIFO, a device, a symbolic link loop). The C API's own cases are in ctest
(runtime/cpp/tests/c_api_check.c, test_cpp_build.py); these drive mattex_probe and ctypes."""

import ctypes
import os
import subprocess

import numpy as np
import pytest

from helpers import python_open
from mattex.runtime.backends.base import THREADS_PER_CORE, max_threads

# MATTEX_THREADS values either runtime once read otherwise (tests/runtime/test_bounds.py tries
# more in Python alone): past any machine's maximum, not ASCII digits, a sign, trailing text.
CPP_BAD_THREADS = ("1000000", "²", "+3", " 3x")
MATTEX_STATUS_CONFIG, MATTEX_STATUS_INVALID_ARGUMENT, MATTEX_STATUS_INPUT_VALUE = 5, 8, 7


def probe(cpp_build, *args, env=None, timeout=60) -> str:
    """mattex_probe's one line: "ok ..." or "<ErrorKind>: <message>" (exit 1); bounded in time, so
    that a probe blocked on a FIFO fails the test instead of hanging it."""
    out = subprocess.run(
        [cpp_build.tool("mattex_probe"), *map(str, args)],
        capture_output=True,
        text=True,
        errors="replace",
        env=cpp_build.env(**(env or {})),
        timeout=timeout,
    )
    assert "runtime error:" not in out.stderr, out.stderr[-3000:]
    assert out.returncode in (0, 1), (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    return out.stdout.strip()


def test_threads_rule_and_maximum_are_the_same_in_python_and_cpp(cpp_build, cpp_models, cache_env):
    """Every bad MATTEX_THREADS gets the same ConfigError from both runtimes, stating the one
    maximum (THREADS_PER_CORE per core: Python's constant and C++'s kThreadsPerCore agree)."""
    model = cpp_models["fp32"]
    rule = (
        f"give a whole number of threads from 1 to {max_threads()} "
        f"({THREADS_PER_CORE} per core, {os.cpu_count()} cores here)"
    )
    for value in CPP_BAD_THREADS:
        env = {**cache_env, "MATTEX_THREADS": value}
        expected = f"ConfigError: MATTEX_THREADS='{value.strip()}': {rule}"
        assert python_open(model, env) == expected
        assert probe(cpp_build, "open", model, env=env) == expected
    env = {**cache_env, "MATTEX_THREADS": str(max_threads())}  # the maximum itself is allowed
    assert python_open(model, env) == "ok"
    assert probe(cpp_build, "open", model, env=env).startswith("ok ")


def test_threads_option_out_of_range_is_refused_in_cpp_and_c_as_in_python(cpp_build, cpp_models, cache_env, c_api):
    """Options::threads and mattex_options.threads: negative (once silently the default) and past
    the maximum are ConfigError, in Python's words for `threads=`."""
    model = cpp_models["fp32"]
    for threads in (-1, max_threads() + 1, 1000000):
        expected = python_open(model, cache_env, threads=threads)
        assert expected.startswith(f"ConfigError: threads={threads}: give a whole number of threads from 1 to ")
        assert probe(cpp_build, "open-threads", model, threads, env=cache_env) == expected
        status, handle = c_api.open(model, threads=threads, cache_dir=cache_env["MATTEX_CACHE"])
        assert (status, handle.value) == (MATTEX_STATUS_CONFIG, None)
        assert c_api.error(status) == expected


def test_zeroed_c_options_are_refused_and_sized_zero_options_keep_value_checks(c_api, cpp_models, cache_env):
    """`mattex_options o = {0}` once turned value checks off (NaN and 7.0 matted with MATTEX_OK):
    an unsized struct is refused, and a sized one whose fields are all zero checks values."""
    options_struct = type(c_api).open.__globals__["Options"]  # mattex_ctypes.Options, as the binding declares it
    zeroed = options_struct()
    status, handle = c_api.open(cpp_models["fp32"], options=zeroed)
    assert (status, handle.value) == (MATTEX_STATUS_INVALID_ARGUMENT, None)
    assert c_api.error(status) == (
        f"InvalidArgument: options->struct_size is 0, not sizeof(mattex_options) {ctypes.sizeof(options_struct)}: "
        "fill the options with mattex_options_init"
    )
    zeroed.struct_size = ctypes.sizeof(options_struct)
    zeroed.cache_dir = cache_env["MATTEX_CACHE"].encode()
    status, handle = c_api.open(cpp_models["fp32"], options=zeroed)
    assert status == 0, c_api.error(status)
    try:
        src = np.full((1, 3, 64, 64), 0.5, np.float32)
        for bad, words in ((np.nan, "src has 1 NaN and 0 Inf values"), (7.0, "src has values outside [0, 1]")):
            frames = src.copy()
            frames[0, 0, 0, 0] = bad
            status, _, _ = c_api.matte(handle, frames, src)
            assert status == MATTEX_STATUS_INPUT_VALUE
            assert c_api.error(status).startswith(f"InputValueError: {words}")
    finally:
        c_api.close(handle)


def test_memory_a_frame_cannot_get_is_a_resource_error_naming_size_and_bytes(cpp_build, tmp_path):
    """A frame size that passes every check but whose buffers the process cannot allocate (its
    address space capped just above the caller's buffers): std::bad_alloc once left the API."""
    assert probe(cpp_build, "alloc", tmp_path, 2048, 2048) == (
        "ResourceError: memory: batch 1 of 2048x2048 (buffers of 50331648 bytes each) could not be allocated "
        "on this machine (std::bad_alloc)"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the probe drops root's exemption from RLIMIT_NPROC: needs root")
def test_open_without_threads_is_a_resource_error_not_a_model_file_error(cpp_build, cpp_models, cache_env):
    """A process at its process/thread limit opening a good file: OpenVINO's "Resource temporarily
    unavailable" was reported as a ModelFileError blaming the file."""
    assert probe(cpp_build, "open-no-threads", cpp_models["fp32"], env=cache_env) == (
        "ResourceError: threads: opening fp32.onnx needs threads this machine would not start "
        "(Resource temporarily unavailable): a process or thread limit (ulimit -u) is reached"
    )


def test_fifo_device_and_link_loop_are_named_for_what_they_are(cpp_build, tmp_path):
    """Named as Python's check_model_file names them; the FIFO is never opened (a read would wait
    for a writer forever: the probe's time limit would fail the test)."""
    os.mkfifo(tmp_path / "fifo.onnx")
    (tmp_path / "zero.onnx").symlink_to("/dev/zero")
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    for name, kind in (("fifo", "a FIFO (named pipe)"), ("zero", "a character device"), ("a", "a symbolic link loop")):
        path = tmp_path / f"{name}.onnx"
        expected = f"ModelFileError: {path} is {kind}, not a model file"
        assert probe(cpp_build, "open", path, timeout=30) == expected
        assert python_open(path, {}) == expected
