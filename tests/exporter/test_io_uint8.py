"""`mattex export --io uint8`: frames (B, H, W, 3) uint8 RGB in, converted inside the graph; the
file equals the float file within 1/255, passes the TensorRT rules and builds with TensorRT for
RTX, and the runtime, verify and int8 calibration take it as it is."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import InputShapeError
from mattex.exporter.build import build_engine, check_build, parse_profile
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.measure.budgets import BUDGETS
from mattex.measure.verify import verify_onnx
from mattex.model.sources import WeightsSource
from mattex.runtime import Matter
from mattex.runtime.sidecar import load_sidecar

SIZE = (128, 160)
WEIGHTS = WeightsSource("random", seed=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uint8")
    for io in ("float", "uint8"):
        export_onnx(
            ExportConfig(sample_pixels=16 * 300, height=SIZE[0], width=SIZE[1], io=io),
            folder / f"{io}.onnx",
            weights=WEIGHTS,
        )
    return folder


def frames(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, (batch, *SIZE, 3), dtype=np.uint8)
    bgr = np.clip(src.astype(int) + rng.integers(-60, 60, src.shape), 0, 255).astype(np.uint8)
    return src, bgr


def test_the_uint8_file_takes_frames_and_equals_the_float_file(files):
    inputs = ort.InferenceSession(str(files / "uint8.onnx")).get_inputs()
    assert [(i.type, i.shape) for i in inputs] == [("tensor(uint8)", ["batch", "height", "width", 3])] * 2
    src, bgr = frames()
    as_float = Matter.open(files / "float.onnx").matte_frames(src, bgr)
    as_frames = Matter.open(files / "uint8.onnx").matte_frames(src, bgr)
    for name in ("pha", "fgr"):
        assert np.abs(as_frames[name] - as_float[name]).max() <= 1 / 255


def test_the_runtime_names_the_layout_a_uint8_file_wants(files):
    matter = Matter.open(files / "uint8.onnx")
    assert matter.io_dtype == np.uint8
    chw = np.zeros((1, 3, *SIZE), np.uint8)
    with pytest.raises(InputShapeError, match=r"\(B, H, W, 3\) uint8 RGB frames"):
        matter(chw, chw)
    with pytest.raises(InputShapeError, match="must be uint8, got float32"):
        x = np.zeros((1, *SIZE, 3), np.float32)
        matter(x, x)


def test_the_uint8_file_passes_check_verify_and_builds_with_tensorrt_for_rtx(files):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed")
    runner = CliRunner()
    # The static rules here; the builder itself below (`check --build` is test_rtx_build's).
    checked = runner.invoke(app, ["check", str(files / "uint8.onnx"), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["passed"]
    sidecar = build_engine(
        files / "uint8.onnx", files / "uint8.engine", [parse_profile("96x128-128x160", 2)], "tensorrt-rtx"
    )
    assert [(t["name"], t["dtype"], t["shape"]) for t in sidecar.io[:2]] == [
        ("src", "uint8", [-1, -1, -1, 3]),
        ("bgr", "uint8", [-1, -1, -1, 3]),
    ]
    assert load_sidecar(files / "uint8.engine").io == sidecar.io
    report = verify_onnx(files / "uint8.onnx", samples=2, batch=2)
    assert report.passed, report.failures
    assert report.outputs["pha"].max_abs <= BUDGETS["fp32"].outputs["pha"].max_abs


def test_int8_with_uint8_frames_calibrates_on_frames_and_builds(int8_frames_file):
    """The int8 file taking frames (conftest.py; calibrated on frames, held to its budget at every
    size by test_precision_sizes.py) builds with TensorRT for RTX."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed")
    inputs = ort.InferenceSession(str(int8_frames_file)).get_inputs()
    assert inputs[0].type == "tensor(uint8)"
    assert check_build(int8_frames_file, "tensorrt-rtx").passed


def test_uint8_io_refuses_float16_outputs():
    from mattex.errors import ConfigError

    with pytest.raises(ConfigError, match="`io` uint8 takes uint8 frames"):
        ExportConfig(io="uint8", precision="fp16", io_dtype="float16").validate()
