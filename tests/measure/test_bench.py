"""`mattex bench`: one row per runner that can run here, with its ms per frame; the machine is
recorded; what cannot run here is listed with the reason; the reference baseline computes what
mattex's model computes."""

import json

import pytest
import torch
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.contract import parse_sizes
from mattex.errors import ConfigError
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.measure.bench import parse_batches
from mattex.model.reference_method import as_reference_formulation
from mattex.model.sources import WeightsSource, build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def two_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    export_onnx(ExportConfig(height=96, width=128, sample_pixels=16 * 200), folder / "a.onnx")
    export_onnx(ExportConfig(height=96, width=128, sample_pixels=16 * 200, io="uint8"), folder / "b.onnx")
    return folder


def test_bench_json_has_a_row_per_file_with_its_ms_per_frame(two_files):
    result = runner.invoke(
        app,
        [
            "bench",
            str(two_files / "a.onnx"),
            str(two_files / "b.onnx"),
            "--resolution",
            "96x128",
            "--batch",
            "1,2",
            "--reference",
            "--rounds",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["machine"]["cores"] >= 1 and "instruction_sets" in report["machine"]
    rows = {(r["runner"], r["file"].rsplit("/", 1)[-1], r["batch"]): r for r in report["rows"]}
    for batch in (1, 2):
        for name in ("a.onnx", "b.onnx"):
            row = rows[("onnxruntime cpu", name, batch)]
            assert row["ms_per_frame"] > 0 and row["fps"] > 0 and row["rounds"] == 2
            assert row["size"] == [96, 128] and row["peak_rss_mib"] > 0
        assert rows[("pytorch cpu, mattex model", "a.onnx", batch)]["ms_per_frame"] > 0
        assert rows[("pytorch cpu, reference patch method", "a.onnx", batch)]["ms_per_frame"] > 0
    if not torch.cuda.is_available():
        assert any(s["runner"] == "pytorch cuda" for s in report["skipped"])


def test_an_engine_without_a_gpu_is_listed_as_not_run(two_files):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is not installed")
    from mattex.exporter.build import build_engine, parse_profile
    from mattex.runtime.cuda import device_count

    if device_count() > 0:
        pytest.skip("a GPU is here: the engine runs")
    build_engine(two_files / "a.onnx", two_files / "a.engine", [parse_profile("96x128")], "tensorrt-rtx")
    result = runner.invoke(app, ["bench", str(two_files / "a.engine"), "--resolution", "96x128", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == []
    assert [s["runner"] for s in report["skipped"]] == ["tensorrt-rtx", "tensorrt-rtx cuda graph"]
    assert all("GPU" in skipped["why"] for skipped in report["skipped"])


def test_bench_options_are_checked():
    assert parse_sizes("hd,4k,96x128") == [(1080, 1920), (2160, 3840), (96, 128)]
    assert parse_batches("1,4") == [1, 4]
    for bad in ("97x128", "big", ""):
        with pytest.raises(ConfigError):
            parse_sizes(bad)
    for bad in ("0", "1,x", ""):
        with pytest.raises(ConfigError):
            parse_batches(bad)
    result = runner.invoke(app, ["bench", "missing.onnx"])
    assert result.exit_code == 2 and "no such model file" in result.output


def test_the_reference_patch_method_computes_what_mattex_computes():
    model = build_model(WeightsSource("random", seed=1), backbone="mobilenetv2", refine_sample_pixels=16 * 300)
    reference = as_reference_formulation(
        build_model(WeightsSource("random", seed=1), backbone="mobilenetv2", refine_sample_pixels=16 * 300)
    )
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 128, 160, generator=g)
    bgr = (src + 0.2 * torch.randn(src.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        want, got = model(src, bgr), reference(src, bgr)
    for name, a, b in zip(("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm"), want, got):
        assert torch.allclose(a, b, atol=1e-5), name
