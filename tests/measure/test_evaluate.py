"""`mattex evaluate` prints the paper's table, and its JSON equals the metrics functions."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from mattex.calibration.composite import Composites
from mattex.calibration.synthetic import write_synthetic_photomatte
from mattex.cli.main import app
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.measure.evaluate import difference_matte, tune_difference_gain
from mattex.measure.metrics import score
from mattex.model.sources import WeightsSource, build_model

SIZE = (128, 128)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    write_synthetic_photomatte(root / "pm", 2, seed=5, height=160, width=128, backgrounds=root / "bg")
    torch.save(
        build_model(WeightsSource("random", seed=2), backbone="mobilenetv2").state_dict(),
        root / "pytorch_mobilenetv2.pth",
    )
    export_onnx(
        ExportConfig(sample_pixels=16 * 200, height=128, width=128),
        root / "m.onnx",
        checkpoint=root / "pytorch_mobilenetv2.pth",
    )
    return root


def evaluate(setup, *args):
    """`mattex evaluate` on the fixture's composites at 128x128, with `args` (a model, options)."""
    common = ["--data", str(setup / "pm"), "--backgrounds", str(setup / "bg"), "--resolution", "128x128"]
    return CliRunner().invoke(app, ["evaluate", *args, *common])


def test_evaluate_json_matches_the_metrics_functions(setup):
    result = evaluate(setup, str(setup / "m.onnx"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["count"] == 2 and report["size"] == list(SIZE)
    session = ort.InferenceSession(str(setup / "m.onnx"), providers=["CPUExecutionProvider"])
    expected = []
    for item in Composites(setup / "pm", SIZE, setup / "bg", seed=0):
        pha, fgr = session.run(["pha", "fgr"], {"src": item["src"], "bgr": item["bgr"]})
        s = score(pha[0], item["pha"][0], fgr[0], item["fgr"][0])
        assert report["per_image"][item["name"]] == pytest.approx(s.to_dict())
        expected.append(s)
    for key in ("sad", "mse", "grad", "conn", "fgr_mse"):
        assert report["mean"][key] == pytest.approx(np.mean([getattr(s, key) for s in expected]))


def test_evaluate_prints_the_table_for_a_checkpoint(setup):
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(setup / "pytorch_mobilenetv2.pth"),
            "--data",
            str(setup / "pm"),
            "--resolution",
            "128x128",
            "--limit",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    for column in ("SAD", "MSE (x1e3)", "Grad", "Conn", "FG MSE (x1e3)"):
        assert column in result.output


def test_evaluate_rejects_a_bad_resolution(setup):
    result = CliRunner().invoke(app, ["evaluate", "--data", str(setup / "pm"), "--resolution", "130x128"])
    assert result.exit_code != 0 and "divisible by 4" in result.output


def test_difference_matte_and_gain_tuning(setup):
    items = list(Composites(setup / "pm", SIZE, setup / "bg", seed=0))
    gain = tune_difference_gain(items, gains=[1.0, 4.0, 16.0])
    assert gain in (1.0, 4.0, 16.0)
    src, bgr = np.full((1, 3, 2, 2), 0.5, np.float32), np.full((1, 3, 2, 2), 0.4, np.float32)
    assert np.allclose(difference_matte(src, bgr, 2.0), 0.6)


def test_over_the_metric_budget_exits_1_and_no_budget_scores_the_file_alone(setup, tmp_path, monkeypatch):
    """An fp16 file held to an impossible metric budget (planted: half of fp32's error) exits 1
    naming the metric; `--no-budget` scores it alone and exits 0."""
    from dataclasses import replace

    from mattex.measure.budgets import BUDGETS, MetricBudget

    fp16 = export_onnx(
        ExportConfig(sample_pixels=16 * 200, height=128, width=128, precision="fp16"),
        tmp_path / "m_fp16.onnx",
        checkpoint=setup / "pytorch_mobilenetv2.pth",
    ).path
    monkeypatch.setitem(BUDGETS, "fp16", replace(BUDGETS["fp16"], metrics=MetricBudget(ratio=0.5)))
    over = evaluate(setup, str(fp16), "--checkpoint", str(setup / "pytorch_mobilenetv2.pth"))
    assert over.exit_code == 1, over.output
    assert "over budget" in over.output
    alone = evaluate(setup, str(fp16), "--no-budget", "--json")
    assert alone.exit_code == 0, alone.output
    assert "budget" not in json.loads(alone.output)


def test_evaluate_without_a_model_runs_the_demo_weights(setup):
    result = evaluate(setup, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["count"] == 2 and 0 < report["mean"]["sad"]
