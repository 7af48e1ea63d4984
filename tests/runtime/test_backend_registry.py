"""A new backend is one module and one register line: `fake_backend.py` beside this test is the
module, the `BACKENDS.register` call below the line, and nothing else in mattex changes. It then
runs through Matter.open, the base class's input checks, `mattex verify`, `mattex evaluate`,
`mattex bench` and `mattex run`. An engine backend is the same: its module, its line, and the
build that writes its sidecar (a test writes it here)."""

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


@pytest.fixture
def fake_engine(small_file, tmp_path):
    """A registered engine backend and an engine of it: the plan, and a sidecar naming the backend."""
    from mattex.contract import ENGINE_SUFFIXES
    from mattex.runtime.io_spec import Profile
    from mattex.runtime.sidecar import Sidecar, sha256_file

    BACKENDS.register(
        BackendEntry("fake-engine", "fake_backend", "FakeEngineBackend", ENGINE_SUFFIXES, install="nothing to install")
    )
    engine = tmp_path / "m.engine"
    engine.write_bytes(small_file.read_bytes())
    Sidecar(
        tensorrt_version="0",
        gpu_name=None,
        compute_capability=(8, 9),
        profiles=[Profile((1, 96, 128), (1, 96, 128), (1, 96, 128))],
        io=[],
        precision="fp32",
        onnx_sha256=sha256_file(small_file),
        plan_sha256=sha256_file(engine),
        mattex_version="0",
        export_metadata=Matter.open(small_file, backend="onnxruntime").metadata.to_props(),
        backend="fake-engine",
    ).save(engine)
    yield engine
    BACKENDS.remove("fake-engine")


def test_a_registered_engine_backend_opens_its_engines_and_runs(fake_engine, small_file, tmp_path):
    assert "fake-engine" in BACKENDS.engine_backends()
    matter = Matter.open(fake_engine)  # the sidecar names the backend
    assert matter.kind == "fake-engine" and matter.metadata.refine_k == 100 and not matter.backend.on_gpu
    src, bgr = frames()
    want = Matter.open(small_file, backend="onnxruntime")(src, bgr)
    for got, expected in zip(matter(src, bgr), want):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(InputShapeError, match="profile"):  # the engine's profiles, checked by the base
        matter(*frames(h=64, w=64))
    from mattex.calibration.synthetic import write_synthetic_video

    write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", 2, 96, 128, 24)
    result = runner.invoke(
        app,
        ["run", str(fake_engine), str(tmp_path / "clip.mp4"), str(tmp_path / "bg.png"), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 0 and (tmp_path / "o" / "pha.mp4").is_file(), result.output


def test_the_automatic_choice_follows_the_registrys_ranks_and_options(fake, small_file):
    # A backend ranked first here is chosen; an option only another backend takes picks that one.
    BACKENDS.remove("fake")
    BACKENDS.register(
        BackendEntry("fake", "fake_backend", "FakeBackend", (".onnx",), install="nothing", rank=lambda: -1)
    )
    assert Matter.open(small_file).kind == "fake"
    assert Matter.open(small_file, providers=["CPUExecutionProvider"]).kind == "onnxruntime"
    # A co-runner option of another backend is policy, not a choice: applied where taken.
    assert Matter.open(small_file, spinning=False).kind == "fake"
    assert Matter.open(small_file, sharing_cores=True).kind == "fake"
