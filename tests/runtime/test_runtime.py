"""mattex.runtime: the ONNX Runtime backend end to end on the CPU, input and sidecar
validation without a GPU, and TensorRT paths that run only where TensorRT and a GPU exist."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from helpers import plan_with_sidecar
from mattex.errors import (
    BackendUnavailableError,
    ConfigError,
    CorruptEngineError,
    EngineMismatchError,
    InputShapeError,
    ModelFileError,
)
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.measure.budgets import BUDGETS
from mattex.model.sources import WeightsSource, build_model
from mattex.runtime import Matter, Profile, check_inputs
from mattex.runtime.backends.onnxruntime import choose_providers
from mattex.runtime.sidecar import Environment, check_environment, check_plan, load_sidecar

HD = (1080, 1920)


@pytest.fixture(scope="module")
def hd_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("runtime") / "m.onnx"
    # The HD preset (mobilenetv2, k = 5,000, demo weights) traced at 288x512: the graph
    # takes any frame size, and tracing runs the model at the trace size (the full-size trace of
    # the preset is doctor's; tests/measure/test_doctor.py asserts it).
    export_onnx(ExportConfig.from_preset("hd", height=288, width=512), path)
    return path


def test_matter_mattes_a_batch_of_two_hd_frames_like_pytorch(hd_onnx):
    rng = np.random.default_rng(0)
    src = rng.random((2, 3, *HD), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)
    matter = Matter.open(hd_onnx, backend="onnxruntime")
    assert matter.kind == "onnxruntime"
    pha, fgr = matter(src, bgr)
    model = build_model(WeightsSource.parse(matter.metadata.weights), **ExportConfig.from_preset("hd").model_kwargs())
    with torch.no_grad():
        want_pha, want_fgr = model(torch.from_numpy(src), torch.from_numpy(bgr))[:2]
    budget = BUDGETS["fp32"].outputs
    assert pha.shape == (2, 1, *HD) and fgr.shape == (2, 3, *HD)
    assert np.abs(pha - want_pha.numpy()).max() <= budget["pha"].max_abs
    assert np.abs(fgr - want_fgr.numpy()).max() <= budget["fgr"].max_abs


@pytest.mark.parametrize(
    "feeds, message",
    [
        ({"src": np.zeros((1, 3, 64, 64), np.float32)}, "missing ['bgr']"),
        (
            {"src": np.zeros((1, 3, 64, 64), np.float64), "bgr": np.zeros((1, 3, 64, 64), np.float64)},
            "src must be float32, got float64",
        ),
        (
            {"src": np.zeros((1, 4, 64, 64), np.float32), "bgr": np.zeros((1, 4, 64, 64), np.float32)},
            "src must be (B, 3, H, W) RGB, got shape (1, 4, 64, 64)",
        ),
        (
            {"src": np.zeros((1, 3, 64, 64), np.float32), "bgr": np.zeros((1, 3, 64, 68), np.float32)},
            "src (1, 3, 64, 64) and bgr (1, 3, 64, 68) must have the same shape",
        ),
        (
            {"src": np.zeros((1, 3, 66, 64), np.float32), "bgr": np.zeros((1, 3, 66, 64), np.float32)},
            "divisible by 4, got 66x64",
        ),
        ({"src": [[0.0]], "bgr": [[0.0]]}, "numpy arrays or CUDA arrays"),
    ],
)
def test_input_validation_names_the_tensor_and_the_mismatch(feeds, message):
    with pytest.raises(InputShapeError) as e:
        check_inputs(feeds)
    assert message in str(e.value)


def test_sizes_outside_the_engine_profiles_are_refused():
    profiles = [Profile((1, 1080, 1920), (2, 1080, 1920), (2, 1080, 1920))]
    ok = np.zeros((2, 3, 1080, 1920), np.float32)
    assert check_inputs({"src": ok, "bgr": ok}, profiles=profiles) == (2, 1080, 1920)
    big = np.zeros((3, 3, 1080, 1920), np.float32)
    with pytest.raises(InputShapeError, match=r"batch 3, height 1080, width 1920\) is outside"):
        check_inputs({"src": big, "bgr": big}, profiles=profiles)


def test_onnx_runtime_backend_rejects_bad_inputs_before_running(hd_onnx):
    matter = Matter.open(hd_onnx)
    x = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(InputShapeError, match="bgr must be float32"):
        matter(x, x.astype(np.float16))


def test_providers_never_fall_back_silently():
    assert choose_providers(None, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    with pytest.raises(BackendUnavailableError, match=r"\['CUDAExecutionProvider'\] are not available"):
        choose_providers(["CUDAExecutionProvider"], ["CPUExecutionProvider"])


def test_asking_for_a_gpu_provider_here_is_an_error(hd_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the refusal is tested where it does not")
    with pytest.raises(BackendUnavailableError):
        Matter.open(hd_onnx, providers=["CUDAExecutionProvider"])


def test_open_rejects_unknown_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        Matter.open(tmp_path / "missing.onnx")
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="expected a .onnx model or a .engine"):
        Matter.open(tmp_path / "m.pt")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        Matter.open(tmp_path / "bad.onnx")


# Sidecar checks: pure Python, no TensorRT or GPU needed ----------------------------------------


def make_sidecar(tmp_path, **changes) -> tuple:
    fields = dict(
        gpu_name="NVIDIA GeForce RTX 4090",
        profiles=[Profile((1, 1080, 1920), (1, 1080, 1920), (1, 1080, 1920))],
        io=[{"name": "src", "mode": "input", "dtype": "float32", "shape": [-1, 3, -1, -1]}],
    )
    engine = plan_with_sidecar(tmp_path / "m.engine", b"plan bytes as TensorRT wrote them", **{**fields, **changes})
    return engine, load_sidecar(engine)


HERE = Environment("10.13.0", "NVIDIA GeForce RTX 4090", (8, 9))


def test_sidecar_round_trips_and_matches_its_plan(tmp_path):
    engine, sidecar = make_sidecar(tmp_path)
    assert sidecar.profiles[0].max == (1, 1080, 1920)
    check_plan(engine, sidecar)
    check_environment(sidecar, HERE)


def test_corrupted_plan_is_refused(tmp_path):
    engine, sidecar = make_sidecar(tmp_path)
    engine.write_bytes(b"plan bytes as TensorRT wrote them, then damaged")
    with pytest.raises(CorruptEngineError, match="m.engine changed since it was built"):
        check_plan(engine, sidecar)


def test_missing_or_foreign_sidecar_is_refused(tmp_path):
    (tmp_path / "a.engine").write_bytes(b"x")
    with pytest.raises(CorruptEngineError, match="no sidecar a.engine.json"):
        load_sidecar(tmp_path / "a.engine")
    (tmp_path / "a.engine.json").write_text(json.dumps({"format": "ultralytics"}))
    with pytest.raises(CorruptEngineError, match="not a mattex sidecar"):
        load_sidecar(tmp_path / "a.engine")
    (tmp_path / "a.engine.json").write_text("{ not json")
    with pytest.raises(CorruptEngineError, match="not a readable mattex sidecar"):
        load_sidecar(tmp_path / "a.engine")


def test_foreign_tensorrt_version_is_refused(tmp_path):
    _, sidecar = make_sidecar(tmp_path)
    with pytest.raises(EngineMismatchError, match="built with TensorRT 10.13.0, running TensorRT 11.4.0"):
        check_environment(sidecar, dataclasses.replace(HERE, tensorrt_version="11.4.0"))
    _, compatible = make_sidecar(tmp_path, version_compatible=True)
    check_environment(compatible, dataclasses.replace(HERE, tensorrt_version="10.15.1"))
    with pytest.raises(EngineMismatchError, match="same major version"):
        check_environment(compatible, dataclasses.replace(HERE, tensorrt_version="11.4.0"))


def test_other_gpu_is_refused(tmp_path):
    _, sidecar = make_sidecar(tmp_path)
    with pytest.raises(
        EngineMismatchError,
        match=r"built for NVIDIA GeForce RTX 4090 \(compute capability 8.9\), running on NVIDIA A100",
    ):
        check_environment(sidecar, Environment("10.13.0", "NVIDIA A100", (8, 0)))
    with pytest.raises(EngineMismatchError, match="tuned to the GPU model"):
        check_environment(sidecar, Environment("10.13.0", "NVIDIA L4", (8, 9)))
    _, ampere = make_sidecar(tmp_path, hardware_compatibility="ampere+")
    check_environment(ampere, Environment("10.13.0", "NVIDIA A100", (8, 0)))
    with pytest.raises(EngineMismatchError, match="compute capability 8.0 or newer"):
        check_environment(ampere, Environment("10.13.0", "Tesla T4", (7, 5)))


def test_build_without_tensorrt_says_what_to_install(hd_onnx):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; the missing-TensorRT message is tested elsewhere")
    except ImportError:
        pass
    from typer.testing import CliRunner

    from mattex.cli.main import app

    result = CliRunner().invoke(app, ["build", str(hd_onnx), "--backend", "tensorrt"])
    assert result.exit_code == 2
    assert "TensorRT is not installed here: pip install tensorrt" in result.output
    assert "Traceback" not in result.output


def test_build_with_nothing_installed_names_both_backends(monkeypatch):
    import mattex.exporter.build.tensorrt as tensorrt_build
    from mattex.exporter.build import choose_build_backend

    monkeypatch.setattr(tensorrt_build, "tensorrt_installed", lambda flavor: False)
    with pytest.raises(BackendUnavailableError, match="TensorRT for RTX builds on any machine.*tensorrt-rtx"):
        choose_build_backend("auto")


# TensorRT on a GPU: runs where both exist, skips with the reason elsewhere ---------------------


def _tensorrt_and_gpu():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed (pip install tensorrt on a GPU machine)"
    from mattex.runtime.cuda import device_count

    try:
        if device_count() == 0:
            return "no CUDA GPU visible"
    except BackendUnavailableError as e:
        return str(e)
    return None


needs_tensorrt = pytest.mark.skipif(_tensorrt_and_gpu() is not None, reason=str(_tensorrt_and_gpu()))


@needs_tensorrt
def test_tensorrt_engine_builds_runs_and_matches_pytorch(tmp_path):
    from mattex.exporter.build import build_engine, parse_profile

    config = ExportConfig(sample_pixels=16 * 400, height=256, width=320)
    export_onnx(config, tmp_path / "m.onnx")
    build_engine(
        tmp_path / "m.onnx",
        tmp_path / "m.engine",
        [parse_profile("256x320", 2)],
        timing_cache=tmp_path / "timing.cache",
    )
    assert (tmp_path / "timing.cache").is_file()
    matter = Matter.open(tmp_path / "m.engine")
    rng = np.random.default_rng(1)
    src = rng.random((2, 3, 256, 320), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)
    pha, fgr = matter(src, bgr)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    model = build_model(WeightsSource.parse(meta["weights"]), **config.model_kwargs())
    with torch.no_grad():
        want = model(torch.from_numpy(src), torch.from_numpy(bgr))
    assert np.abs(pha - want[0].numpy()).max() <= 1e-3
    again = Matter.open(tmp_path / "m.engine", cuda_graph=True)(src, bgr)
    assert np.array_equal(again[0], pha)


@needs_tensorrt
def test_tensorrt_refuses_a_size_outside_the_profile(tmp_path):
    from mattex.exporter.build import build_engine, parse_profile

    export_onnx(ExportConfig(sample_pixels=16 * 100, height=128, width=128), tmp_path / "m.onnx")
    build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", [parse_profile("128x128")])
    x = np.zeros((1, 3, 256, 256), np.float32)
    with pytest.raises(InputShapeError, match="outside the engine's profiles"):
        Matter.open(tmp_path / "m.engine")(x, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_frames_become_the_float_inputs_a_file_takes(dtype):
    """matte_frames on a float16-I/O file sends float16 (it sent float32, which the file's
    input check refused): u / 255 in float32, then rounded to the file's dtype."""
    from mattex.runtime.io_spec import frames_to_input

    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3) * 2
    got = frames_to_input(frames, dtype)
    assert got.dtype == dtype and got.shape == (2, 3, 4, 4)
    expected = (frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)).astype(dtype)
    np.testing.assert_array_equal(got, expected)
