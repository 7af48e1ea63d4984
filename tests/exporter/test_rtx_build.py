"""TensorRT for RTX, the real parser and builder, on the CPU: every kind of mattex export builds,
`mattex build` writes engine and sidecar, and the RTX sidecar and compute-capability checks hold.
Running an RTX engine needs an RTX-class GPU: that test skips here with the reason."""

import json

import numpy as np
import onnx
import pytest
import torch
from test_lint import scatter_elements_model
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import BackendUnavailableError, ConfigError, CorruptEngineError, EngineMismatchError
from mattex.exporter.build import BuildOptions, build_engine, check_build, parse_compute_capabilities, parse_profile
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.exporter.onnx_file import read_export_metadata as file_metadata
from mattex.model.sources import WeightsSource, build_model
from mattex.runtime import Matter
from mattex.runtime.backends.tensorrt import rtx_invalidity_error
from mattex.runtime.sidecar import Environment, check_environment, load_sidecar

trt = pytest.importorskip(
    "tensorrt_rtx",
    reason="TensorRT for RTX is not installed (pip install tensorrt-rtx-cu13; the README's install command brings it)",
)
runner = CliRunner()
RANDOM = WeightsSource("random", seed=0)  # kernel size 1 and resnet have no demo weights

# One build per point to prove: both refine modes in every precision, kernel sizes 3 and 1, the
# 4k preset's k = 20,000 (above TensorRT's TopK limit of 3840), batch 1..4 and size ranges down to
# frames with fewer patches than k, on mobilenetv2; resnet50 (the headline --fp16 export) and
# resnet101 (fp32, at 4K's 1/8 scale), so every backbone builds. benchmarks/rtx_build.py builds
# every backbone, preset, mode and precision. Two are the session's shared files (an
# export, and an int8 calibration above all, costs seconds): named here by their fixture.
SHARED_FILES = {"resnet50-hd-sampling-fp16-k3": "resnet50_fp16_file", "mobilenetv2-sampling-int8-k3": "int8_file"}
VARIANTS = {
    # name: (backbone, preset, mode, precision, kernel, trace (h, w), sample_pixels, profile, batch)
    "mobilenetv2-hd-sampling-fp32-k3": (
        "mobilenetv2",
        "hd",
        "sampling",
        "fp32",
        3,
        (288, 288),
        None,
        "192x192-320x384",
        4,
    ),
    "mobilenetv2-4k-sampling-fp16-k1": ("mobilenetv2", "4k", "sampling", "fp16", 1, (576, 576), None, "576x576", 1),
    "mobilenetv2-sampling-int8-k3": ("mobilenetv2", None, "sampling", "int8", 3, (256, 256), 8000, "256x256", 2),
    "mobilenetv2-hd-full-fp32-k3": ("mobilenetv2", "hd", "full", "fp32", 3, (192, 192), None, "192x192", 1),
    "mobilenetv2-hd-full-fp16-k3": ("mobilenetv2", "hd", "full", "fp16", 3, (256, 256), None, "128x128-256x320", 4),
    "mobilenetv2-4k-full-int8-k3": ("mobilenetv2", "4k", "full", "int8", 3, (256, 256), None, "256x256", 1),
    "resnet50-hd-sampling-fp16-k3": ("resnet50", "hd", "sampling", "fp16", 3, (256, 256), 8000, "256x256", 1),
    "resnet101-4k-sampling-fp32-k3": ("resnet101", "4k", "sampling", "fp32", 3, (256, 256), 8000, "256x256", 1),
}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    from mattex.calibration.int8 import CalibrationSettings
    from mattex.calibration.synthetic import write_synthetic_photomatte

    folder = tmp_path_factory.mktemp("calibration")
    write_synthetic_photomatte(folder, 2, 0, 256, 256)
    return CalibrationSettings(folder, None, samples=2)


def export_variant(name, folder, calibration):
    backbone, preset, mode, precision, kernel, (h, w), pixels, _, _ = VARIANTS[name]
    config = ExportConfig.from_preset(
        preset,
        backbone=backbone,
        refine_mode=mode,
        precision=precision,
        kernel_size=kernel,
        height=h,
        width=w,
        sample_pixels=pixels,
    )
    path = folder / f"{name}.onnx"
    export_onnx(config, path, weights=RANDOM, calibration=calibration if precision == "int8" else None)
    return path, config


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_every_kind_of_export_builds_with_tensorrt_for_rtx(name, tmp_path, calibration, request):
    if name in SHARED_FILES:
        path = request.getfixturevalue(SHARED_FILES[name])
        config = ExportConfig.from_metadata(file_metadata(path))
    else:
        path, config = export_variant(name, tmp_path, calibration)
    *_, profile, batch = VARIANTS[name]
    profiles = [parse_profile(profile, batch)]
    sidecar = build_engine(path, tmp_path / f"{name}.engine", profiles, "tensorrt-rtx")
    assert (tmp_path / f"{name}.engine").stat().st_size > 1_000_000
    assert sidecar.backend == "tensorrt-rtx" and sidecar.tensorrt_version == trt.__version__
    assert sidecar.profiles == profiles and sidecar.precision == config.precision
    assert (config.backbone, config.kernel_size) == VARIANTS[name][0:5:4]
    assert sidecar.export_metadata["refine_kernel_size"] == str(config.kernel_size)
    assert load_sidecar(tmp_path / f"{name}.engine") == sidecar


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rtx")
    export_onnx(ExportConfig(sample_pixels=16 * 300, height=128, width=160), folder / "m.onnx")
    return folder


def test_mattex_build_writes_engine_and_sidecar_without_a_gpu(small):
    engine = small / "m.engine"
    result = runner.invoke(
        app,
        [
            "build",
            str(small / "m.onnx"),
            "--backend",
            "tensorrt-rtx",
            "--profile",
            "128x160",
            "--batch",
            "4",
            "--compute-capability",
            "8.6,8.9,12.0",
            "-o",
            str(engine),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    sidecar = json.loads((small / "m.engine.json").read_text())
    assert json.loads(result.output[result.output.index("{") :]) == sidecar
    assert sidecar["backend"] == "tensorrt-rtx" and sidecar["tensorrt_version"] == trt.__version__
    assert sidecar["target_compute_capabilities"] == [[8, 6], [8, 9], [12, 0]]
    assert sidecar["gpu_name"] is None and sidecar["compute_capability"] is None
    assert sidecar["profiles"] == [{"min": [1, 128, 160], "opt": [4, 128, 160], "max": [4, 128, 160]}]
    from mattex.files import sha256_file

    assert sidecar["plan_sha256"] == sha256_file(engine)
    assert sidecar["onnx_sha256"] == sha256_file(small / "m.onnx")
    assert sidecar["export_metadata"]["refine_k"] == "300"
    assert [t["name"] for t in sidecar["io"]] == ["src", "bgr", "pha", "fgr"]
    # The plan stays raw: no mattex header in front of TensorRT's own.
    assert not engine.read_bytes().startswith(b"{")


def test_auto_picks_tensorrt_for_rtx_without_a_gpu(small):
    result = runner.invoke(
        app, ["build", str(small / "m.onnx"), "--profile", "128x160", "-o", str(small / "auto.engine")]
    )
    assert result.exit_code == 0, result.output
    assert "TensorRT for RTX" in result.output
    assert load_sidecar(small / "auto.engine").target_compute_capabilities is None  # its default set


def test_export_builds_the_rtx_engine_itself_unless_told_not_to(tmp_path, monkeypatch):
    import mattex.exporter.build.products as build
    import mattex.exporter.build.tensorrt as tensorrt_build

    calls = {"_read_onnx": 0, "check_plugin_requirements": 0}
    for module, name in ((build, "_read_onnx"), (tensorrt_build, "check_plugin_requirements")):
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    args = ["export", "--height", "128", "--width", "160", "--sample-pixels", "4800", "--json"]
    built = runner.invoke(app, [*args, "-o", str(tmp_path / "a.onnx")])
    assert built.exit_code == 0, built.output
    # The written file is read once and its plugins checked once, from the decision to build to the engine.
    assert calls == {"_read_onnx": 1, "check_plugin_requirements": 1}
    summary = json.loads(built.output[built.output.index("{") :])
    assert summary["engine"] == str(tmp_path / "a.engine") and summary["engine_backend"] == "tensorrt-rtx"
    assert load_sidecar(tmp_path / "a.engine").backend == "tensorrt-rtx"
    skipped = runner.invoke(app, [*args, "--no-engine", "-o", str(tmp_path / "b.onnx")])
    assert skipped.exit_code == 0 and not (tmp_path / "b.engine").exists()


@pytest.mark.parametrize(
    "options, problem",
    [
        (BuildOptions(timing_cache="t.cache"), "`timing_cache` is a TensorRT option"),
        (
            BuildOptions(version_compatible=True, hardware_compat="ampere+"),
            "`version_compatible`, `hardware_compat` are TensorRT options",
        ),
        (BuildOptions(compute_capabilities=["9.0"]), "cannot target compute capability 9.0"),
        (BuildOptions(workspace_gib=0), "`workspace_gib` must be positive"),
    ],
)
def test_build_refuses_what_tensorrt_for_rtx_cannot_do(small, options, problem):
    with pytest.raises(ConfigError, match=problem):
        build_engine(small / "m.onnx", small / "x.engine", [parse_profile("128x160")], "tensorrt-rtx", options)
    assert not (small / "x.engine").exists()


def test_compute_capability_option_parses_and_refuses_nonsense():
    assert parse_compute_capabilities("8.6, 8.9,12.0") == ["8.6", "8.9", "12.0"]
    assert parse_compute_capabilities(None) is None
    for bad, problem in (("sm86", "expected MAJOR.MINOR"), ("8.6,8.6", "twice"), ("current,8.6", "alone")):
        with pytest.raises(ConfigError, match=problem):
            parse_compute_capabilities(bad)
    with pytest.raises(ConfigError, match="`compute_capabilities` is TensorRT for RTX's"):
        BuildOptions(compute_capabilities=["8.6"]).validate("tensorrt")


def test_topk_plugin_is_refused_for_tensorrt_for_rtx_by_name(tmp_path):
    config = ExportConfig(sample_pixels=16 * 300, height=128, width=160, topk="plugin")
    export_onnx(config, tmp_path / "p.onnx")
    with pytest.raises(ConfigError, match="TensorRT for RTX ships no such plugin"):
        build_engine(tmp_path / "p.onnx", tmp_path / "p.engine", [parse_profile("128x160")], "tensorrt-rtx")
    with pytest.raises(ConfigError, match="TensorRT for RTX ships no such plugin"):
        check_build(tmp_path / "p.onnx", "tensorrt-rtx")
    checked = runner.invoke(app, ["check", str(tmp_path / "p.onnx"), "--target", "tensorrt-rtx", "--json"])
    assert checked.exit_code == 1
    assert [f["rule"] for f in json.loads(checked.output)["findings"]] == ["no-plugins"]
    with pytest.raises(ConfigError, match="TensorRT for RTX ships no plugins"):
        ExportConfig(topk="plugin", target="tensorrt-rtx").validate()
    # export on a machine with TensorRT for RTX writes the file and says why it built no engine
    result = runner.invoke(
        app,
        [
            "export",
            "--height",
            "128",
            "--width",
            "160",
            "--sample-pixels",
            "4800",
            "--topk",
            "plugin",
            "-o",
            str(tmp_path / "q.onnx"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "engine not built here" in result.output and "ships no such plugin" in result.output
    assert not (tmp_path / "q.engine").exists()


def test_check_build_runs_the_real_builder(small, tmp_path):
    good = runner.invoke(app, ["check", str(small / "m.onnx"), "--build", "--json"])
    assert good.exit_code == 0, good.output
    report = json.loads(good.output)
    assert report["build"]["passed"] and report["build"]["backend"] == "tensorrt-rtx"
    onnx.save(scatter_elements_model(5), tmp_path / "scatter.onnx")
    bad = runner.invoke(app, ["check", str(tmp_path / "scatter.onnx"), "--build", "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert [f["rule"] for f in report["findings"]] == ["scatter-extent"]  # the linter saw it coming
    assert not report["build"]["passed"] and "extent of data (5)" in report["build"]["message"]


# The sidecar and compute-capability checks of RTX engines (no GPU needed) ----------------------


def rtx_sidecar(small, targets=None):
    if not (small / "m.engine").exists():
        build_engine(small / "m.onnx", small / "m.engine", [parse_profile("128x160")], "tensorrt-rtx")
    sidecar = load_sidecar(small / "m.engine")
    sidecar.target_compute_capabilities = targets
    return sidecar


@pytest.mark.parametrize(
    "targets, gpu, cc, ok",
    [
        (None, "NVIDIA GeForce RTX 4090", (8, 9), True),
        (None, "NVIDIA GeForce RTX 5090", (12, 0), True),
        (None, "NVIDIA A100", (8, 0), True),
        (None, "NVIDIA H100", (9, 0), False),
        (None, "NVIDIA GeForce RTX 2080 Ti", (7, 5), False),
        ([(7, 5)], "NVIDIA GeForce RTX 2080 Ti", (7, 5), True),
        ([(8, 6), (12, 0)], "NVIDIA GeForce RTX 4090", (8, 9), False),
    ],
)
def test_a_gpu_outside_the_engines_compute_capabilities_is_refused(small, targets, gpu, cc, ok):
    sidecar = rtx_sidecar(small, targets)
    env = Environment(trt.__version__, gpu, cc)
    if ok:
        check_environment(sidecar, env)
    else:
        with pytest.raises(EngineMismatchError, match=f"compute capability {cc[0]}.{cc[1]}"):
            check_environment(sidecar, env)


def test_an_rtx_engine_runs_only_on_the_release_that_built_it(small):
    sidecar = rtx_sidecar(small)
    with pytest.raises(EngineMismatchError, match="only on the release that built them"):
        check_environment(sidecar, Environment("1.6.0.0", "NVIDIA GeForce RTX 4090", (8, 9)))


def test_h100_refusal_says_tensorrt_for_rtx_does_not_support_it(small):
    with pytest.raises(EngineMismatchError, match="documents 7.5, 8.0, 8.6, 8.9 and 12.x only"):
        check_environment(rtx_sidecar(small), Environment(trt.__version__, "NVIDIA H100", (9, 0)))


def test_tensorrt_for_rtx_validity_diagnostics_become_typed_errors():
    flags = trt.EngineInvalidityDiagnostics
    error = rtx_invalidity_error(trt, "m.engine", int(flags.UNSUPPORTED_CC) | int(flags.OLD_CUDA_DRIVER))
    assert isinstance(error, EngineMismatchError)
    assert "compute capability is not among the engine's targets" in str(error)
    assert "update the driver" in str(error)
    assert isinstance(rtx_invalidity_error(trt, "m.engine", int(flags.MALFORMED_ENGINE)), CorruptEngineError)


def test_matter_open_takes_the_backend_from_the_sidecar(small):
    rtx_sidecar(small)
    with pytest.raises(ConfigError, match="was built for tensorrt-rtx; it cannot run on tensorrt"):
        Matter.open(small / "m.engine", backend="tensorrt")
    with pytest.raises(ConfigError, match="`runtime_cache` is TensorRT for RTX's"):
        from mattex.runtime.backends.tensorrt import TensorRTBackend

        TensorRTBackend(small / "m.engine", flavor="tensorrt", runtime_cache="x.cache")
    # On this CPU-only machine it gets as far as looking for the GPU, and says so.
    with pytest.raises(BackendUnavailableError, match="GPU|CUDA"):
        Matter.open(small / "m.engine", runtime_cache=small / "rtx.cache")


def _rtx_gpu() -> str | None:
    from mattex.runtime.cuda import device_properties

    try:
        name, cc = device_properties(0)
    except BackendUnavailableError as e:
        return f"no CUDA GPU here ({e})"
    from mattex.runtime.sidecar import rtx_runs_on

    return None if rtx_runs_on(None, cc) else f"{name} ({cc[0]}.{cc[1]}) is not a TensorRT for RTX GPU"


@pytest.mark.skipif(_rtx_gpu() is not None, reason=str(_rtx_gpu()))
def test_rtx_engine_runs_like_pytorch_and_keeps_its_runtime_cache(small, tmp_path):
    build_engine(small / "m.onnx", tmp_path / "m.engine", [parse_profile("128x160", 2)], "tensorrt-rtx")
    cache = tmp_path / "rtx.cache"
    matter = Matter.open(tmp_path / "m.engine", runtime_cache=cache)
    assert matter.kind == "tensorrt-rtx"
    rng = np.random.default_rng(1)
    src = rng.random((2, 3, 128, 160), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)
    pha, _ = matter(src, bgr)
    assert cache.stat().st_size > 0
    meta = {p.key: p.value for p in onnx.load(str(small / "m.onnx")).metadata_props}
    model = build_model(WeightsSource.parse(meta["weights"]), **ExportConfig(sample_pixels=16 * 300).model_kwargs())
    with torch.no_grad():
        want = model(torch.from_numpy(src), torch.from_numpy(bgr))[0].numpy()
    assert np.abs(pha - want).max() <= 1e-3
    again = Matter.open(tmp_path / "m.engine", runtime_cache=cache)
    assert again.backend.runtime_cache.loaded
    assert np.array_equal(again(src, bgr)[0], pha)
