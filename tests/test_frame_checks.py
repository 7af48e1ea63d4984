"""The runtime refuses NaN/Inf frames and float frames outside [0, 1] by default, naming the
tensor; check_values=False lets them through; valid frames and uint8 frames are untouched."""

import warnings

import numpy as np
import pytest

from mattex.errors import InputValueError
from mattex.runtime import Matter


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    path = tmp_path_factory.mktemp("checks") / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(ExportConfig(height=64, width=64, sample_pixels=640), path)
    return path


def frames(fill=None, scale=1.0):
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32) * np.float32(scale)
    if fill is not None:
        x[0, 1, 5, 7] = fill
    return x


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("bad, which, message", [
    (frames(np.nan), "src", "src has 1 NaN and 0 Inf"),
    (frames(np.inf), "bgr", "bgr has 0 NaN and 1 Inf"),
    (frames(-np.inf), "src", "src has 0 NaN and 1 Inf"),
    (frames(scale=255.0), "src", r"src has values outside \[0, 1\] \(min .*, max 25\d"),
    (frames(-0.2), "bgr", r"bgr has values outside \[0, 1\] \(min -0.2"),
])
def test_bad_frames_are_refused_naming_the_tensor(model, backend, bad, which, message, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    matter = Matter.open(model, backend=backend, **({"cache_dir": tmp_path} if backend == "openvino" else {}))
    good = frames()
    feeds = (bad, good) if which == "src" else (good, bad)
    for call in (matter, matter.run):
        with pytest.raises(InputValueError, match=message):
            call(*feeds)
    unchecked = Matter.open(model, backend=backend, check_values=False,
                            **({"cache_dir": tmp_path} if backend == "openvino" else {}))
    pha, _ = unchecked(*feeds)
    assert pha.shape == (1, 1, 64, 64)


def test_valid_and_uint8_frames_pass(model):
    matter = Matter.open(model, backend="onnxruntime")
    pha, fgr = matter(frames(), frames())
    assert np.isfinite(pha).all() and pha.shape == (1, 1, 64, 64)
    edge = frames()
    edge[0, 0, 0, :2] = (0.0, 1.0)  # the bounds themselves are valid
    matter(edge, edge)
    u8 = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    out = matter.matte_frames(u8, u8)
    assert out["pha"].shape == (1, 1, 64, 64)
