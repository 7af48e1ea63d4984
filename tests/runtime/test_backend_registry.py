"""A new backend is one module and one register line: `fake_backend.py` beside this test is the
module, the `BACKENDS.register` call below the line, and nothing else in mattex changes. It then
runs through Matter.open, the base class's input checks, `mattex verify`, `mattex evaluate`,
`mattex bench` and `mattex run`."""

import numpy as np
import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import ConfigError, InputShapeError
from mattex.runtime import Matter
from mattex.runtime.backends import BACKENDS, BackendEntry, Variant

runner = CliRunner()


@pytest.fixture
def fake():
    BACKENDS.register(
        BackendEntry(
            "fake", "fake_backend", "FakeBackend", (".onnx",), install="nothing to install", variants=(Variant("cpu"),)
        )
    )
    yield BACKENDS["fake"]
    BACKENDS.remove("fake")


def frames(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    src = rng.random((1, 3, h, w), dtype=np.float32)
    return src, np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)


def test_the_registered_backend_runs_like_onnx_runtime(fake, small_file):
    matter = Matter.open(small_file, backend="fake")
    assert matter.kind == "fake" and matter.metadata.refine_k == 100
    src, bgr = frames()
    want = Matter.open(small_file, backend="onnxruntime")(src, bgr)
    for got, expected in zip(matter(src, bgr), want):
        np.testing.assert_array_equal(got, expected)
    assert matter.backend.calls == 1


def test_the_base_checks_inputs_before_the_backend_sees_them(fake, small_file):
    matter = Matter.open(small_file, backend="fake")
    src, bgr = frames()
    with pytest.raises(InputShapeError, match="divisible by 4"):
        matter(src[:, :, :94], bgr[:, :, :94])
    with pytest.raises(InputShapeError, match="must be float32"):
        matter(src.astype(np.float64), bgr.astype(np.float64))
    assert matter.backend.calls == 0
    with pytest.raises(ConfigError, match="backend fake takes no option `providers_of_mars`"):
        Matter.open(small_file, backend="fake", providers_of_mars=1)


def test_verify_evaluate_bench_and_run_reach_it(fake, small_file, tmp_path, precision_data):
    result = runner.invoke(app, ["verify", str(small_file), "--backend", "fake"])
    assert result.exit_code == 0 and "within budget" in result.output, result.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(small_file),
            "--backend",
            "fake",
            "--data",
            str(precision_data / "eval"),
            "--resolution",
            "96x128",
            "--limit",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bench", str(small_file), "--resolution", "96x128", "--rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert "fake cpu" in {row["runner"] for row in __import__("json").loads(result.output)["rows"]}

    from mattex.calibration.synthetic import write_synthetic_video

    write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", 3, 96, 128, 24)
    result = runner.invoke(
        app,
        [
            "run",
            str(small_file),
            str(tmp_path / "clip.mp4"),
            str(tmp_path / "bg.png"),
            "--out",
            str(tmp_path / "out"),
            "--backend",
            "fake",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output


def test_unknown_and_duplicate_backends_fail(fake):
    with pytest.raises(ValueError, match="already registered"):
        BACKENDS.register(BackendEntry("fake", "fake_backend", "FakeBackend", (".onnx",), install=""))
    with pytest.raises(ConfigError, match="unknown backend 'nope'; known: onnxruntime, openvino"):
        BACKENDS["nope"]
