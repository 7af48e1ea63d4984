"""`mattex serve` starting and stopping, each test with a server of its own (the shared one serving
requests: test_serve.py): a port in use, or taken between the check and Triton's bind; an engine on
its sidecar's backend; a model Triton does not load; Ctrl-C while serving; the options the shared
server does not use (float I/O, two instances, no batching, OpenVINO); a second instance whose
first is late to answer it.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install '.[serve]')")
import tritonclient.http as httpclient  # noqa: E402
from serve_helpers import frames, free_ports, launch, leftovers, process_tree, survivors, tritons_started_here  # noqa: E402

from mattex.runtime import Matter  # noqa: E402


def test_a_port_in_use_is_a_clear_error(small_file, tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    http_port, metrics_port = free_ports(2)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mattex.cli.main",
            "serve",
            str(small_file),
            "--http-port",
            str(http_port),
            "--grpc-port",
            str(port),
            "--metrics-port",
            str(metrics_port),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    taken.close()
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error:" in done.stderr and str(port) in done.stderr and "Traceback" not in done.stderr


def test_a_port_taken_after_the_check_fails_as_soon_as_triton_exits(small_file, monkeypatch):
    """A port free when serve checked it and taken before Triton binds it (here as it most likely
    happened in CI: as the local port of another program's client connection): Triton exits, and serve ends with
    BackendUnavailableError at once (PyTriton alone waits out its 120 s startup timeout, then says
    "timed out"), leaving no Triton process and no shared memory behind."""
    from mattex.errors import BackendUnavailableError
    from mattex.serving import server as serving
    from mattex.serving.server import ServeConfig, serve

    monkeypatch.setenv("LD_LIBRARY_PATH", os.environ.get("LD_LIBRARY_PATH", ""))  # serve() extends it
    http_port, grpc_port, metrics_port = free_ports(3)
    listener, connection = socket.create_server(("127.0.0.1", 0)), socket.socket()
    open_matter = serving.open_for_serving

    def open_and_meanwhile_take_the_port(config):
        if connection.getsockname()[1] == 0:  # the first instance's Matter
            connection.bind(("127.0.0.1", http_port))
            connection.connect(listener.getsockname())
        return open_matter(config)

    monkeypatch.setattr(serving, "open_for_serving", open_and_meanwhile_take_the_port)
    config = ServeConfig(small_file, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)
    try:
        with pytest.raises(BackendUnavailableError, match="Triton exited while loading the model 'matte'"):
            serve(config, on_ready=lambda urls, backend: pytest.fail("reported ready"))
    finally:
        connection.close()
        listener.close()
    assert not survivors(tritons_started_here()), "a Triton process outlived serve()"
    assert not [n for n in os.listdir("/dev/shm") if n.startswith(f"pytrtion{os.getpid()}-")]


def test_an_engine_runs_on_its_sidecars_backend_or_is_refused_before_triton_starts(tmp_path):
    """`mattex serve m.engine` opens the engine on the backend its sidecar names. Serving a real
    engine needs TensorRT and a GPU (README: what ran on what); without TensorRT it is refused by
    name with exit 2, before any Triton process starts."""
    import importlib.util

    from helpers import engine_with_sidecar

    if importlib.util.find_spec("tensorrt"):
        pytest.skip("TensorRT is installed: serving an engine is a GPU check, not run by this suite")
    http_port, grpc_port, metrics_port = free_ports(3)
    done = subprocess.run(
        [sys.executable, "-m", "mattex.cli.main", "serve", str(engine_with_sidecar(tmp_path))]
        + ["--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "BackendUnavailableError: TensorRT is not installed here" in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "serving" not in done.stderr


class FakeTriton:
    """PyTriton's Triton as far as serve() uses it, for what a real one does rarely: `run` and
    `is_alive` do what the test says; `stopped` counts the stops. Like PyTriton's, `bind` writes
    the model's proxy into the workspace's model store, and the stop removes the workspace."""

    def __init__(self, run, is_alive):
        self.run, self.is_alive, self.stopped = run, is_alive, 0

    def __call__(self, workspace, **_):  # serve() constructs it
        self.workspace = workspace
        return self

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stopped += 1
        shutil.rmtree(self.workspace, ignore_errors=True)

    def bind(self, name, *_, **__):
        version = self.workspace / "model-store" / name / "1"
        version.mkdir(parents=True)
        (version / "model.py").write_text("# PyTriton's proxy model\n")


def serve_on(fake: FakeTriton, small_file, monkeypatch, on_ready=lambda urls, backend: None) -> None:
    import pytriton.triton

    from mattex.serving.server import ServeConfig, serve

    monkeypatch.setattr(pytriton.triton, "Triton", fake)
    monkeypatch.setenv("LD_LIBRARY_PATH", os.environ.get("LD_LIBRARY_PATH", ""))  # serve() extends it
    http_port, grpc_port, metrics_port = free_ports(3)
    serve(ServeConfig(small_file, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port), on_ready)


def test_a_model_triton_does_not_load_is_a_typed_error_not_a_live_server(small_file, monkeypatch):
    """Triton never becoming ready while it loads the model ends serve() with
    BackendUnavailableError naming the model (the CLI's exit 2), and Triton is stopped."""
    from mattex.errors import BackendUnavailableError

    def never_ready():
        raise TimeoutError("Triton Inference Server is not ready after timeout.")  # as PyTriton says it

    fake = FakeTriton(run=never_ready, is_alive=lambda: True)
    with pytest.raises(BackendUnavailableError, match="Triton did not load the model 'matte': Triton Inference"):
        serve_on(fake, small_file, monkeypatch, on_ready=lambda urls, backend: pytest.fail("reported ready"))
    assert fake.stopped == 1


def test_ctrl_c_while_serving_stops_triton_and_gives_the_caller_its_signal_handlers_back(small_file, monkeypatch):
    """serve() ignores a second Ctrl-C or SIGTERM while it stops (it must not cut the cleanup
    short); a program that serves in-process and then goes on gets its own handlers back."""

    def ctrl_c():
        raise KeyboardInterrupt

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    ready, fake = [], FakeTriton(run=lambda: None, is_alive=ctrl_c)
    serve_on(fake, small_file, monkeypatch, on_ready=lambda urls, backend: ready.append(backend))
    assert ready and fake.stopped == 1
    assert {signum: signal.getsignal(signum) for signum in before} == before


def test_float_io_two_instances_no_batching_on_openvino_and_ctrl_c(small_file, tmp_path):
    """The options the module's server does not use, as a user passes them: --inputs/--outputs
    float, --instances 2, --no-dynamic-batching, --backend openvino. Triton's own model config
    shows them, concurrent float requests get what Matter gives on OpenVINO, and Ctrl-C (SIGINT
    to the whole process group, as a terminal sends it) stops the server cleanly."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    options = ["--inputs", "float", "--outputs", "float", "--instances", "2", "--no-dynamic-batching"]
    before = leftovers(tmp_path)
    process, urls = launch(small_file, tmp_path, *options, "--backend", "openvino", start_new_session=True)
    try:
        client = httpclient.InferenceServerClient(urls["http"][len("http://") :], concurrency=4)
        config = client.get_model_config("matte")
        assert [group["count"] for group in config["instance_group"]] == [2], config
        assert "dynamic_batching" not in config, config
        assert {t["name"]: (t["data_type"], t["dims"]) for t in config["input"]} == {
            "src": ("TYPE_FP32", [3, -1, -1]),
            "bgr": ("TYPE_FP32", [3, -1, -1]),
        }
        assert {t["name"]: t["data_type"] for t in config["output"]} == {"pha": "TYPE_FP32", "fgr": "TYPE_FP32"}

        local = Matter.open(small_file, backend="openvino")
        pairs = [tuple(f.transpose(0, 3, 1, 2).astype(np.float32) / 255 for f in frames(seed)) for seed in range(4)]

        def request(pair):
            tensors = []
            for name, value in zip(("src", "bgr"), pair):
                tensor = httpclient.InferInput(name, list(value.shape), "FP32")
                tensor.set_data_from_numpy(value)
                tensors.append(tensor)
            return client.async_infer("matte", tensors)

        pending = [request(pair) for pair in pairs * 2]  # 8 requests in flight over 2 instances
        for pair, answer in zip(pairs * 2, pending):
            result, want = answer.get_result(), local.run(*pair)
            for name in ("pha", "fgr"):
                got = result.as_numpy(name)
                assert got.dtype == np.float32 and got.shape == want[name].shape, name
                np.testing.assert_allclose(got, want[name], atol=1e-6)
        client.close()
    finally:
        pids = process_tree(process.pid)
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr[-2000:]
    assert time.monotonic() - started <= 10
    assert "serving small.onnx on openvino as 'matte'" in stderr
    assert leftovers(tmp_path, pids) <= before, leftovers(tmp_path, pids) - before
    assert not survivors(pids), survivors(pids)  # two instances: no stub left running (Triton may give up on one)


LATE_HANDSHAKE = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
/* PyTriton's handshake socket (the first model instance's) bound 1.5 s before it listens */
int listen(int fd, int backlog) {
  int (*real)(int, int) = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
  struct sockaddr_un address;
  socklen_t size = sizeof address;
  if (getsockname(fd, (struct sockaddr*)&address, &size) == 0 && address.sun_family == AF_UNIX &&
      strstr(address.sun_path, "-config.sock"))
    usleep(1500000);
  return real(fd, backlog);
}
"""


def test_a_second_instance_waits_for_the_first_to_answer_its_handshake(small_file, tmp_path):
    """PyTriton's second model instance reads its configuration from the first one's handshake
    socket, giving it 1 s; on a loaded machine the first was later ("Connection refused") and
    `--instances 2` failed to start (seen once in CI). With that socket bound 1.5 s before it
    listens (listen() delayed by LD_PRELOAD), which failed every time before, the server starts
    with both instances (mattex's proxy model waits for the first)."""
    if shutil.which("gcc") is None:
        pytest.fail("this test compiles an LD_PRELOAD shim: apt-get install gcc", pytrace=False)
    (tmp_path / "late.c").write_text(LATE_HANDSHAKE)
    shim = tmp_path / "late.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", shim, tmp_path / "late.c", "-ldl"], check=True)
    options = ["--instances", "2", "--backend", "openvino"]
    process, urls = launch(small_file, tmp_path, *options, start_new_session=True, env={"LD_PRELOAD": str(shim)})
    try:
        client = httpclient.InferenceServerClient(urls["http"][len("http://") :])
        assert client.is_model_ready("matte")
        assert [group["count"] for group in client.get_model_config("matte")["instance_group"]] == [2]
        client.close()
    finally:
        pids = process_tree(process.pid)
        os.killpg(process.pid, signal.SIGINT)
        process.communicate(timeout=30)
    assert not survivors(pids), survivors(pids)
