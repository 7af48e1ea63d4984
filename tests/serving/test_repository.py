"""`mattex triton-repo`: every kind of repository parses into Triton's own ModelConfig protobuf
with the dims, dtypes and batch sizes of its file; files it cannot describe are refused and leave
nothing; and the Python-backend repository loads in the real `tritonserver` binary and serves."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request

import numpy as np
import onnx
import pytest

pytest.importorskip("tritonclient", reason="the serve extra is not installed (pip install '.[serve]')")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402

from helpers import engine_with_sidecar  # noqa: E402
from mattex.errors import ConfigError, CorruptEngineError  # noqa: E402
from mattex.runtime import Matter  # noqa: E402
from mattex.serving.repository import RepositoryConfig, write_repository  # noqa: E402

TYPES = model_config_pb2.DataType


def parse(folder) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def dims(tensors) -> dict:
    return {t.name: (list(t.dims), TYPES.Name(t.data_type)) for t in tensors}


def test_a_tensorrt_plan_repository(tmp_path):
    folder = write_repository(
        RepositoryConfig(engine_with_sidecar(tmp_path, frames=True), tmp_path / "repo", instances=2, max_batch=2)
    )
    config = parse(folder)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 2  # the 4K profile's batch
    assert dims(config.input) == {"src": ([-1, -1, 3], "TYPE_UINT8"), "bgr": ([-1, -1, 3], "TYPE_UINT8")}
    assert dims(config.output) == {"pha": ([1, -1, -1], "TYPE_FP32"), "fgr": ([3, -1, -1], "TYPE_FP32")}
    group = config.instance_group[0]
    assert (group.count, model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind)) == (2, "KIND_GPU")
    assert list(group.profile) == ["0", "1"]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.plan", "model.plan.json"]


@pytest.mark.parametrize(
    "backend, platform, kind",
    [("onnxruntime", "onnxruntime_onnx", "KIND_GPU"), ("openvino", "", "KIND_CPU"), ("python", "", "KIND_CPU")],
)
def test_onnx_repositories(small_file, tmp_path, backend, platform, kind):
    folder = write_repository(
        RepositoryConfig(
            small_file,
            tmp_path / "repo",
            name="m",
            backend=backend,
            max_batch=8,
            tensorrt_accelerator=backend == "onnxruntime",
        )
    )
    config = parse(folder)
    assert config.name == "m" and config.max_batch_size == 8 and config.platform == platform
    assert config.backend == ("" if platform else backend)
    assert dims(config.input) == {"src": ([3, -1, -1], "TYPE_FP32"), "bgr": ([3, -1, -1], "TYPE_FP32")}
    assert dims(config.output) == {"pha": ([1, -1, -1], "TYPE_FP32"), "fgr": ([3, -1, -1], "TYPE_FP32")}
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == kind
    files = sorted(p.name for p in (folder / "1").iterdir())
    if backend == "python":
        assert files == ["model.onnx", "model.py"] and config.parameters["mattex_model"].string_value == "model.onnx"
    else:
        assert files == ["model.onnx"]
    if backend == "onnxruntime":
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP32"
    if backend == "openvino":
        assert config.default_model_filename == "model.onnx"


def test_what_triton_cannot_be_told_is_refused_and_leaves_nothing(small_file, tmp_path):
    out = tmp_path / "repo"
    no_sidecar = tmp_path / "bare.engine"
    no_sidecar.write_bytes(b"plan")
    with pytest.raises(CorruptEngineError, match="no sidecar"):
        write_repository(RepositoryConfig(no_sidecar, out))
    for folder in "abc":
        (tmp_path / folder).mkdir()
    with pytest.raises(ConfigError, match="smallest batch is 2"):
        write_repository(RepositoryConfig(engine_with_sidecar(tmp_path / "a", min_batch=2), out))
    # its profiles' largest batches are 4 (HD) and 2 (4K): Triton may form only batches both take
    with pytest.raises(ConfigError, match="`max_batch` 4 exceeds the engine's largest batch 2"):
        write_repository(RepositoryConfig(engine_with_sidecar(tmp_path / "c"), out, max_batch=4))
    with pytest.raises(ConfigError, match="TensorRT for RTX, which Triton's own backends do not load"):
        write_repository(RepositoryConfig(engine_with_sidecar(tmp_path / "b", backend="tensorrt-rtx"), out))
    int8 = onnx.load(str(small_file))
    for prop in int8.metadata_props:
        if prop.key == "export_config":  # the file's facts; flat keys are copies
            prop.value = json.dumps({**json.loads(prop.value), "precision": "int8"})
    onnx.save(int8, str(tmp_path / "int8.onnx"))
    with pytest.raises(ConfigError, match="int8"):
        write_repository(RepositoryConfig(tmp_path / "int8.onnx", out, backend="openvino"))
    write_repository(RepositoryConfig(small_file, out))
    with pytest.raises(ConfigError, match="exists"):
        write_repository(RepositoryConfig(small_file, out))
    assert sorted(p.name for p in out.iterdir()) == ["matte"]  # only the one written


def bad_request_answer(http_port: int) -> tuple[str, str]:
    """What tritonclient gets for float frames 94 high (not divisible by 4): status and message."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    tensors = []
    for name in ("src", "bgr"):
        tensor = httpclient.InferInput(name, [1, 3, 94, 128], "FP32")
        tensor.set_data_from_numpy(np.full((1, 3, 94, 128), 0.5, np.float32))
        tensors.append(tensor)
    try:
        client.infer("matte", tensors)
    except InferenceServerException as e:
        return str(e.status()), e.message()
    finally:
        client.close()
    raise AssertionError("the bad request was served")


def test_the_python_repository_serves_in_the_real_tritonserver(small_file, tmp_path):
    """NVIDIA's tritonserver binary (the one PyTriton ships), started as a deployment starts it:
    `tritonserver --model-repository REPO`, its Python backend given the stub of this Python."""
    pytriton = pytest.importorskip("pytriton")
    from pytriton.utils.distribution import get_libs_path, get_root_module_path, get_stub_path

    from mattex.serving.client import RemoteMatter

    repo = tmp_path / "repo"
    write_repository(RepositoryConfig(small_file, repo, backend="python", max_batch=4))
    triton = tmp_path / "tritonserver"
    shutil.copytree(
        get_root_module_path() / "tritonserver", triton, ignore=shutil.ignore_patterns("python_backend_stubs")
    )
    shutil.copy(
        get_stub_path(f"{sys.version_info.major}.{sys.version_info.minor}"),
        triton / "backends" / "python" / "triton_python_backend_stub",
    )
    from serve_helpers import free_ports

    http_port, grpc_port, metrics_port = free_ports(3)
    env = {
        **os.environ,
        "TMPDIR": str(tmp_path),
        # the stub embeds this Python (its libpython first) and finds its packages from PATH
        "LD_LIBRARY_PATH": os.pathsep.join([sysconfig.get_config_var("LIBDIR"), str(get_libs_path())]),
        "PATH": os.pathsep.join([str(os.path.dirname(sys.executable)), os.environ["PATH"]]),
    }
    server = subprocess.Popen(
        [
            str(triton / "bin" / "tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={triton / 'backends'}",
            f"--http-port={http_port}",
            f"--grpc-port={grpc_port}",
            f"--metrics-port={metrics_port}",
            "--exit-timeout-secs=3",
            "--allow-gpu-metrics=false",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                if (
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/matte/ready", timeout=1).status
                    == 200
                ):
                    break
            except OSError:
                time.sleep(0.3)
        rng = np.random.default_rng(0)
        bgr = rng.integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
        src = bgr.copy()
        src[:, 30:70, 40:90] = 200
        got = RemoteMatter(f"grpc://127.0.0.1:{grpc_port}", "matte").matte_frames(src, bgr)
        want = Matter.open(small_file, backend="onnxruntime").matte_frames(src, bgr)
        assert np.abs(got["pha"] - want["pha"]).max() <= 1e-5  # float outputs: the same numbers
        assert bad_request_answer(http_port) == (
            "400",
            "InputShapeError: src and bgr height and width must be divisible by 4, got 94x128",
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert pytriton
