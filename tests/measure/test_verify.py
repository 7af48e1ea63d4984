"""`mattex verify`: 0 on a faithful export, 1 on a perturbed one, with the numbers in JSON."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image
from typer.testing import CliRunner

from mattex.calibration.images import DataError
from mattex.cli.main import app
from mattex.errors import CheckpointError, ModelFileError
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.measure.budgets import BUDGETS
from mattex.measure.verify import verify_onnx
from mattex.model.sources import WeightsSource, build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def faithful(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    torch.save(
        build_model(WeightsSource("random", seed=3), backbone="mobilenetv2").state_dict(),
        folder / "pytorch_mobilenetv2.pth",
    )
    config = ExportConfig(sample_pixels=16 * 300, height=128, width=160)
    export_onnx(config, folder / "m.onnx", checkpoint=folder / "pytorch_mobilenetv2.pth")
    return folder


def perturbed_copy(src, dst):
    """The same file with one convolution weight nudged by 1%."""
    model = onnx.load(str(src))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    init = next(t for t in model.graph.initializer if t.name in conv_weights)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    onnx.save(model, dst)


def test_verify_passes_a_faithful_export_and_writes_the_report(faithful):
    report_path = faithful / "report.json"
    result = runner.invoke(
        app,
        [
            "verify",
            str(faithful / "m.onnx"),
            "--checkpoint",
            str(faithful / "pytorch_mobilenetv2.pth"),
            "--samples",
            "2",
            "--batch",
            "2",
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["samples"] == 2 and report["shape"] == [2, 3, 128, 160]
    budget = BUDGETS["fp32"].outputs["pha"]
    for name in ("pha", "fgr"):
        assert 0 <= report["outputs"][name]["max_abs"] <= budget.max_abs
        assert report["outputs"][name]["mean_abs"] <= budget.mean_abs
    assert report["patch_mismatch"] == 0.0


def test_verify_fails_a_perturbed_export(faithful):
    perturbed_copy(faithful / "m.onnx", faithful / "bad.onnx")
    report_path = faithful / "bad.json"
    result = runner.invoke(
        app,
        [
            "verify",
            str(faithful / "bad.onnx"),
            "--checkpoint",
            str(faithful / "pytorch_mobilenetv2.pth"),
            "--json",
            str(report_path),
        ],
    )
    assert result.exit_code == 1
    report = json.loads(report_path.read_text())
    assert not report["passed"]
    assert report["outputs"]["pha"]["max_abs"] > BUDGETS["fp32"].outputs["pha"].max_abs
    assert any(f.startswith("pha: max abs diff") for f in report["failures"])


def test_verify_refuses_a_different_checkpoint(faithful, tmp_path):
    torch.save(
        build_model(WeightsSource("random", seed=4), backbone="mobilenetv2").state_dict(), tmp_path / "other.pth"
    )
    with pytest.raises(CheckpointError, match="is not the checkpoint the file was exported from"):
        verify_onnx(faithful / "m.onnx", checkpoint=tmp_path / "other.pth")


def test_verify_needs_mattex_metadata(tmp_path):
    from onnx import helper

    from onnx_graphs import model, tensor

    onnx.save(model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y")]), tmp_path / "foreign.onnx")
    with pytest.raises(ModelFileError, match="not a mattex export"):
        verify_onnx(tmp_path / "foreign.onnx")


def test_verify_on_real_frames_with_their_background(faithful, tmp_path):
    rng = np.random.default_rng(0)
    frames = tmp_path / "frames"
    frames.mkdir()
    background = (rng.random((130, 162, 3)) * 255).astype(np.uint8)  # cropped to 128 x 160
    Image.fromarray(background).save(tmp_path / "bgr.png")
    for i in range(2):
        person = background.copy()
        person[30:100, 40:120] = (rng.random((70, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(person).save(frames / f"{i}.png")
    result = runner.invoke(
        app,
        [
            "verify",
            str(faithful / "m.onnx"),
            "--checkpoint",
            str(faithful / "pytorch_mobilenetv2.pth"),
            "--images",
            str(frames),
            "--background",
            str(tmp_path / "bgr.png"),
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 2 and report["shape"] == [1, 3, 128, 160]


def test_verify_frame_errors_are_clear(faithful, tmp_path):
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "bgr.png")
    with pytest.raises(DataError, match="no images"):
        from mattex.measure.inputs import frame_pairs

        list(frame_pairs(tmp_path / "empty", tmp_path / "bgr.png"))
    (tmp_path / "frames").mkdir()
    Image.fromarray(np.zeros((12, 8, 3), np.uint8)).save(tmp_path / "frames" / "a.png")
    with pytest.raises(DataError, match="must match"):
        list(frame_pairs(tmp_path / "frames", tmp_path / "bgr.png"))
