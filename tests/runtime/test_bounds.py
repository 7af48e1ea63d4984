"""Bounds the Python runtime puts on what a user gives and what the machine can give: the threads
rule (MATTEX_THREADS, every `threads=` option, `mattex bench --threads`), what the machine refuses
(threads at open, memory for a frame) as ResourceError, and model paths that are not files (a
FIFO, a device, a symbolic link loop). Extremes run in a subprocess under a cap (address space,
process count) and a time limit: a regression fails the test, not the machine. The C++ runtime's
side, and that both say the same words, is tests/runtime/cpp/test_cpp_bounds.py."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from contextlib import contextmanager

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from mattex.errors import ConfigError
from mattex.runtime import Matter
from mattex.runtime.backends.base import THREADS_PER_CORE, max_threads

RULE = (
    f"give a whole number of threads from 1 to {max_threads()} "
    f"({THREADS_PER_CORE} per core, {os.cpu_count()} cores here)"
)
ADDRESS_SPACE_CAP = 2 << 30  # room for Python, numpy and ONNX Runtime; not for thousands of thread stacks


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A graph with mattex's inputs and outputs (pha = mean |src - bgr|, fgr = src), made in
    milliseconds: the runtime runs any ONNX file whose inputs are src and bgr."""
    shape = ["b", 3, "h", "w"]
    tensor = lambda name, dims: helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)  # noqa: E731
    nodes = [
        helper.make_node("Sub", ["src", "bgr"], ["difference"]),
        helper.make_node("Abs", ["difference"], ["distance"]),
        helper.make_node("ReduceMean", ["distance"], ["pha"], axes=[1], keepdims=1),
        helper.make_node("Identity", ["src"], ["fgr"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [tensor("src", shape), tensor("bgr", shape)],
        [tensor("pha", ["b", 1, "h", "w"]), tensor("fgr", shape)],
    )
    path = tmp_path_factory.mktemp("bounds") / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def run_capped(script: str, *args, env: dict | None = None, cap: int | None = None, timeout: int = 60):
    """`script` in a fresh Python, its address space capped at `cap` bytes before it starts."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))) if cap else None
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=limit,
        timeout=timeout,
    )


@pytest.mark.parametrize("value", ["99999", "1000000", "²", "٣", "+3", " 3x", "0", "-1", "3.0"])
def test_mattex_threads_outside_the_rule_is_a_config_error_naming_it(model, monkeypatch, value):
    """Only ASCII digits making 1..max_threads(): '²' once raised a bare ValueError, '٣' was read
    as 3, and 99999 started 32,431 threads."""
    monkeypatch.setenv("MATTEX_THREADS", value)
    with pytest.raises(ConfigError) as raised:
        Matter.open(model, backend="onnxruntime")
    assert type(raised.value) is ConfigError
    assert str(raised.value) == f"MATTEX_THREADS='{value.strip()}': {RULE}"


def test_mattex_threads_up_to_the_maximum_is_taken(model, monkeypatch):
    monkeypatch.setenv("MATTEX_THREADS", f" 0{max_threads()}\n")
    session = Matter.open(model, backend="onnxruntime").backend.session
    assert session.get_session_options().intra_op_num_threads == max_threads()


@pytest.mark.parametrize("threads", [-1, 0, "max+1", 10**6, True, 2.5, "3"])
def test_threads_options_outside_the_rule_are_config_errors(model, threads):
    """`threads=` of ONNX Runtime and OpenVINO (through Matter.open), and `mattex bench
    --threads`, which also sizes PyTorch's pool: checked before any thread starts."""
    from mattex.measure.bench import bench

    threads = max_threads() + 1 if threads == "max+1" else threads
    expected = f"threads={threads!r}: {RULE}"
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ConfigError) as raised:
            Matter.open(model, backend=backend, threads=threads)
        assert str(raised.value) == expected
    with pytest.raises(ConfigError) as raised:
        bench([model], [(8, 8)], [1], threads=threads)
    assert str(raised.value) == expected


def test_run_with_a_huge_mattex_threads_exits_2_at_once_under_a_cap(model, tmp_path):
    """The row that stopped a machine: `mattex run` with MATTEX_THREADS=99999 on ONNX Runtime,
    here with the address space capped and a time limit, must refuse before starting a thread."""
    for name, value in (("f.png", 200), ("bg.png", 20)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / name)
    script = "import sys; from mattex.cli.main import main; sys.argv[0] = 'mattex'; main()"
    args = (
        "run",
        model,
        tmp_path / "f.png",
        tmp_path / "bg.png",
        "--out",
        tmp_path / "out",
        "--backend",
        "onnxruntime",
    )
    out = run_capped(script, *args, env={"MATTEX_THREADS": "99999"}, cap=ADDRESS_SPACE_CAP)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == f"error: ConfigError: MATTEX_THREADS='99999': {RULE}"
    assert not (tmp_path / "out").exists()


def test_memory_a_frame_cannot_get_is_a_resource_error_naming_size_and_bytes(model):
    """A frame size that passes the checks but whose float32 buffers cannot be allocated (the
    address space capped 16 MiB above what the process holds): numpy's MemoryError once left
    Matter as it was."""
    script = """
        import resource, sys
        import numpy as np
        from mattex.runtime import Matter

        matter = Matter.open(sys.argv[1], backend="onnxruntime")
        src = np.full((1, 2048, 2048, 3), 200, np.uint8)
        held = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:"))
        cap = held * 1024 + (16 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        try:
            matter.matte_frames(src, src)
        except Exception as e:
            print(f"{type(e).__name__}: {e}")
    """
    out = run_capped(script, model)
    assert out.stdout.startswith(
        "ResourceError: memory: batch 1 of 2048x2048 (buffers of 50331648 bytes each) could not be allocated "
        "on this machine (Unable to allocate 48.0 MiB"
    ), (out.stdout, out.stderr[-2000:])


@pytest.mark.skipif(os.geteuid() != 0, reason="the test drops root's exemption from RLIMIT_NPROC: needs root")
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_open_without_threads_is_a_resource_error_not_a_model_file_error(model, tmp_path, backend):
    """A process at its process/thread limit (RLIMIT_NPROC 1 under the real uid of nobody; files
    still read as root) opening a good file: the engines' "Resource temporarily unavailable" was
    a ModelFileError blaming the file."""
    pytest.importorskip(backend)
    script = """
        import ctypes, os, resource, sys
        from mattex.runtime import Matter

        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        os.setresuid(65534, 65534, 0)
        ctypes.CDLL(None).setfsuid(0)
        try:
            Matter.open(sys.argv[1], backend=sys.argv[2], threads=2)
            print("ok")
        except Exception as e:
            print(f"{type(e).__name__}: {e}")
    """
    env = {"MATTEX_CACHE": str(tmp_path / "cache"), "OPENVINO_TELEMETRY_DISABLE": "1"}
    out = run_capped(script, model, backend, env=env)
    line = out.stdout.strip().splitlines()[-1]  # ONNX Runtime prints its own report first
    assert line.startswith("ResourceError: threads: opening tiny.onnx needs threads this machine would not start ("), (
        line,
        out.stderr[-2000:],
    )
    assert line.endswith("Resource temporarily unavailable): a process or thread limit (ulimit -u) is reached")


@contextmanager
def time_limit(seconds: int):
    """A call that blocks (a FIFO opened for reading waits for a writer forever) fails the test."""

    def expire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_fifo_device_and_link_loop_are_named_for_what_they_are(tmp_path):
    """They exist, so "no such model file" was wrong; the FIFO is never opened."""
    from mattex.errors import ModelFileError

    os.mkfifo(tmp_path / "fifo.onnx")
    (tmp_path / "zero.onnx").symlink_to("/dev/zero")
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    for name, kind in (("fifo", "a FIFO (named pipe)"), ("zero", "a character device"), ("a", "a symbolic link loop")):
        path = tmp_path / f"{name}.onnx"
        with time_limit(20), pytest.raises(ModelFileError) as raised:
            Matter.open(path)
        assert str(raised.value) == f"{path} is {kind}, not a model file"
