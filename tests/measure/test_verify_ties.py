"""The tie-aware gate: patches whose errors tie at the k-th value are interchangeable, any other
difference in selection or in refined values still fails."""

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from test_verify import perturbed_copy
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import ConfigError
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.measure.budgets import BUDGETS
from mattex.measure.verify import file_selection, interchangeable_patches, verify_onnx
from mattex.model import MattingRefine
from mattex.model.checkpoint import read_state_dict
from mattex.model.sources import WeightsSource, build_model, demo_weights_path

runner = CliRunner()
SIZE = 256
K = 1000  # of 4,096 patches


@pytest.fixture(scope="module")
def saturated(tmp_path_factory):
    """The issue's case: the demo weights with the error channel's bias raised by 50, so the
    error map saturates at 1.0 and every patch ties at the k-th value."""
    folder = tmp_path_factory.mktemp("ties")
    state = read_state_dict(demo_weights_path("mobilenetv2"))
    state["decoder.conv4.bias"][4] += 50
    torch.save(state, folder / "saturated.pth")
    export_onnx(
        ExportConfig(sample_pixels=16 * K, height=SIZE, width=SIZE),
        folder / "m.onnx",
        checkpoint=folder / "saturated.pth",
    )
    return folder


def test_the_saturated_error_map_ties_everywhere(saturated):
    model = build_model(
        WeightsSource("checkpoint", saturated / "saturated.pth"), backbone="mobilenetv2", refine_sample_pixels=16 * K
    )
    src = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err_sm = model(src, src.flip(-1))[4]
    assert (err_sm == 1.0).float().mean() > 0.99


def test_verify_passes_a_faithful_file_whose_patches_tie(saturated):
    result = runner.invoke(
        app,
        [
            "verify",
            str(saturated / "m.onnx"),
            "--checkpoint",
            str(saturated / "saturated.pth"),
            "--json",
            str(saturated / "r.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((saturated / "r.json").read_text())
    # PyTorch breaks the exact ties lowest index first, as the file does: the same patches.
    assert report["patch_mismatch"] == 0.0 and report["tie_flips"] == 0.0
    assert report["tie_band"] == BUDGETS["fp32"].outputs["err_sm"].max_abs


def test_the_references_own_tie_break_flips_ties_and_still_passes(saturated):
    report = verify_onnx(saturated / "m.onnx", checkpoint=saturated / "saturated.pth", tie_break="torch")
    assert report.tie_flips > 0.1  # torch.topk took other tied patches (30% in the issue)
    assert report.passed and report.patch_mismatch == 0.0
    assert report.outputs["pha"].max_abs <= BUDGETS["fp32"].outputs["pha"].max_abs


def test_other_weights_fail_even_where_every_patch_ties(saturated, tmp_path):
    perturbed_copy(saturated / "m.onnx", tmp_path / "bad.onnx")
    report = verify_onnx(tmp_path / "bad.onnx", checkpoint=saturated / "saturated.pth")
    assert not report.passed
    assert report.outputs["pha"].max_abs > BUDGETS["fp32"].outputs["pha"].max_abs


def selecting_the_smallest_errors(src, dst):
    """The same file with its selection fed the negated scores: it refines the k lowest errors."""
    model = onnx.load(str(src))
    meta = {p.key: p.value for p in model.metadata_props}
    scores = json.loads(meta["selection"])[0]["scores"]
    node = next(n for n in model.graph.node if scores in n.output)
    position = list(model.graph.node).index(node)
    model.graph.node.insert(position + 1, helper.make_node("Neg", [scores], [scores + "_neg"], name="wrong"))
    for consumer in model.graph.node:
        if consumer.name != "wrong":
            consumer.input[:] = [scores + "_neg" if i == scores else i for i in consumer.input]
    onnx.save(model, dst)


@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    """Random weights: errors spread out, few ties."""
    folder = tmp_path_factory.mktemp("spread")
    torch.save(build_model(WeightsSource("random", seed=5), backbone="mobilenetv2").state_dict(), folder / "w.pth")
    export_onnx(
        ExportConfig(sample_pixels=16 * 300, height=128, width=160), folder / "m.onnx", checkpoint=folder / "w.pth"
    )
    return folder


def test_verify_fails_a_file_that_selects_patches_outside_the_ties(spread, tmp_path):
    assert verify_onnx(spread / "m.onnx", checkpoint=spread / "w.pth").passed
    selecting_the_smallest_errors(spread / "m.onnx", tmp_path / "wrong.onnx")
    result = runner.invoke(
        app,
        [
            "verify",
            str(tmp_path / "wrong.onnx"),
            "--checkpoint",
            str(spread / "w.pth"),
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert result.exit_code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["patch_mismatch"] > 0.1 and report["tie_flips"] < report["patch_mismatch"]
    assert any("outside the ties" in f for f in report["failures"])


def test_interchangeable_patches_lie_within_the_band_of_the_kth_error_or_zero():
    config = ExportConfig(sample_pixels=16 * 3, height=8, width=16, backbone_scale=0.5)
    # err_sm at half resolution (4x8) upsamples to the 2x4 patch grid by averaging 2x2 blocks.
    err_sm = np.zeros((1, 1, 4, 8), np.float32)
    err_sm[0, 0, :2] = np.repeat([0.9, 0.5, 0.5 + 5e-5, 0.1], 2)
    err_sm[0, 0, 2:] = np.repeat([0.0, 3e-5, 0.2, 0.5 - 2e-4], 2)
    near = interchangeable_patches(err_sm, (2, 4), config, band=1e-4)
    # k = 3: the 3rd largest is 0.5; 0.5 + 5e-5 ties with it, 0.5 - 2e-4 does not; 0 and 3e-5
    # tie with the prevent-oversampling boundary at 0.
    assert near.tolist() == [[[False, True, True, False], [True, True, False, False]]]
    full = ExportConfig(refine_mode="full", height=8, width=16, backbone_scale=0.5)
    assert not interchangeable_patches(err_sm, (2, 4), full, band=1.0).any()


def test_file_selection_drops_zero_error_patches_only_under_prevent_oversampling():
    scores = np.array([[0.0, 0.3, 0.0, 0.7]], np.float32)
    indices = np.array([[3, 0]])
    assert file_selection(scores, indices, True).tolist() == [[False, False, False, True]]
    assert file_selection(scores, indices, False).tolist() == [[True, False, False, True]]


def test_lowest_index_tie_break_takes_tied_patches_in_index_order():
    model = MattingRefine("mobilenetv2", refine_sample_pixels=16 * 3, refine_tie_break="lowest_index")
    err = torch.tensor([[[[0.5, 0.9, 0.5, 0.5], [0.5, 0.1, 0.5, 0.2]]]])  # (1, 1, 2, 4)
    ids, keep, ref = model.refiner._select_top_k(err)
    assert sorted(ids.tolist()) == [0, 1, 2]
    with pytest.raises(ConfigError, match="unknown tie_break 'random'"):
        MattingRefine("mobilenetv2", refine_tie_break="random")
