"""The runtime refuses NaN/Inf frames and float frames outside [0, 1] by default, naming the
tensor; check_values=False lets them through; valid frames and uint8 frames are untouched."""

import warnings

import numpy as np
import pytest

from mattex.errors import InputValueError
from mattex.runtime import Matter


def frames(fill=None, scale=1.0):
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32) * np.float32(scale)
    if fill is not None:
        x[0, 1, 5, 7] = fill
    return x


# (a bad frame, the input it is fed as, what the error must say)
BAD_FRAMES = [
    (frames(np.nan), "src", "src has 1 NaN and 0 Inf"),
    (frames(np.inf), "bgr", "bgr has 0 NaN and 1 Inf"),
    (frames(-np.inf), "src", "src has 0 NaN and 1 Inf"),
    (frames(scale=255.0), "src", r"src has values outside \[0, 1\] \(min .*, max 25\d"),
    (frames(-0.2), "bgr", r"bgr has values outside \[0, 1\] \(min -0.2"),
]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_bad_frames_are_refused_naming_the_tensor(small_file, backend, tmp_path):
    if backend == "openvino":
        pytest.importorskip("openvino")
    options = {"cache_dir": tmp_path} if backend == "openvino" else {}
    matter = Matter.open(small_file, backend=backend, **options)
    unchecked = Matter.open(small_file, backend=backend, check_values=False, **options)
    good = frames()
    for bad, which, message in BAD_FRAMES:
        feeds = (bad, good) if which == "src" else (good, bad)
        for call in (matter, matter.run):
            with pytest.raises(InputValueError, match=message):
                call(*feeds)
        pha, _ = unchecked(*feeds)
        assert pha.shape == (1, 1, 64, 64), message


def test_valid_and_uint8_frames_pass(small_file):
    matter = Matter.open(small_file, backend="onnxruntime")
    pha, fgr = matter(frames(), frames())
    assert np.isfinite(pha).all() and pha.shape == (1, 1, 64, 64)
    edge = frames()
    edge[0, 0, 0, :2] = (0.0, 1.0)  # the bounds themselves are valid
    matter(edge, edge)
    u8 = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    out = matter.matte_frames(u8, u8)
    assert out["pha"].shape == (1, 1, 64, 64)


def test_the_one_pass_check_agrees_with_isfinite_and_the_bounds():
    """in_unit_range reads float32/float16 bits as integers: it must say exactly what
    isfinite-and-in-[0, 1] says, for -0.0, the smallest subnormals, negative NaN, the float just
    above 1, strided views and other float types."""
    from mattex.runtime.io_spec import in_unit_range

    rng = np.random.default_rng(0)
    negative_nan = np.array([0xFFC00000], np.uint32).view(np.float32)[0]
    specials = [
        0.0,
        -0.0,
        1.0,
        np.nextafter(np.float32(1), np.float32(2)),
        1e-45,
        -1e-45,
        np.nan,
        negative_nan,
        np.inf,
        -np.inf,
        255.0,
        -0.2,
    ]
    for dtype in (np.float32, np.float16, np.float64):
        for _ in range(300):
            x = rng.random((1, 3, 8, 12)).astype(dtype)
            for _ in range(rng.integers(0, 3)):
                x.flat[rng.integers(x.size)] = specials[rng.integers(len(specials))]
            for view in (x, x[:, :, ::2, ::3], x.transpose(0, 2, 3, 1)):
                want = bool(np.isfinite(view).all() and (view >= 0).all() and (view <= 1).all())
                assert in_unit_range(view) == want, (dtype, view.ravel()[:8])


def test_float16_and_negative_zero_frames():
    from mattex.runtime.io_spec import check_values

    half = frames().astype(np.float16)
    check_values({"src": half, "bgr": half})
    zero = frames()
    zero[0, 0, 0, 0] = -0.0  # the sign bit alone is not out of range
    check_values({"src": zero, "bgr": zero})
    bad = half.copy()
    bad[0, 2, 3, 4] = np.nan
    with pytest.raises(InputValueError, match="bgr has 1 NaN and 0 Inf"):
        check_values({"src": half, "bgr": bad})


def test_a_uint8_file_takes_frames_unchecked(tmp_path):
    """uint8 frames cannot be out of range: a uint8 file runs them as they are, however dark or
    bright, with or without check_values."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    path = tmp_path / "u8.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(ExportConfig(height=64, width=64, sample_pixels=640, io="uint8"), path)
    matter = Matter.open(path, backend="onnxruntime")
    assert matter.io_dtype == np.uint8
    u8 = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    u8[0, 0, 0] = (0, 255, 255)
    pha, _ = matter(u8, u8)
    assert pha.shape == (1, 1, 64, 64)
    assert np.array_equal(matter.run(u8, u8)["pha"], pha)
    assert np.array_equal(matter.matte_frames(u8, u8)["pha"], pha)
