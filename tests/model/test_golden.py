"""The model reproduces the reference implementation's outputs (shared/spec/golden)."""

import numpy as np
import pytest
import torch

from helpers import golden_config, golden_files, golden_state_dict
from mattex.model import MattingRefine

OUTPUTS = ("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm")

# float32 tolerance against the golden file. 1e-4 holds for mobilenetv2. The golden resnet50
# weights drive activations to ~7e3 (x4), so float32 rounding alone moves the outputs by ~5e-4:
# changing the thread count moves ours that much, and the golden file itself is 3.8e-4 away
# from a float64 run of the same network. For resnet50 the structure is proven in float64
# below (test_resnet50_golden_in_float64), and float32 gets the rounding floor.
FLOAT32_TOL = {"mobilenetv2": 1e-4, "resnet50": 2e-3}


def run(model: MattingRefine, data, dtype=torch.float32):
    model = model.to(dtype).eval()
    with torch.no_grad():
        src = torch.from_numpy(data["src"]).to(dtype)
        bgr = torch.from_numpy(data["bgr"]).to(dtype)
        return dict(zip(OUTPUTS, (o.double().numpy() for o in model(src, bgr))))


def golden_model(path):
    backbone, kwargs = golden_config(path)
    model = MattingRefine(backbone, **kwargs)
    model.load_state_dict(golden_state_dict(backbone))
    return backbone, model


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_golden_float32(path):
    backbone, model = golden_model(path)
    data = np.load(path)
    out = run(model, data)
    assert np.array_equal(out["ref_sm"], data["ref_sm"]), "selected patches differ"
    errors = {name: float(np.abs(out[name] - data[name]).max()) for name in OUTPUTS[:5]}
    tol = FLOAT32_TOL[backbone]
    assert all(e <= tol for e in errors.values()), f"max abs diff over {tol}: {errors}"


@pytest.mark.parametrize("path", [p for p in golden_files() if p.stem.startswith("resnet50")], ids=lambda p: p.stem)
def test_resnet50_golden_in_float64(path):
    """In float64 (no rounding floor to speak of) the model lands within the golden file's own
    float32 rounding (~4e-4); a structural difference would be off by orders of magnitude."""
    _, model = golden_model(path)
    data = np.load(path)
    out = run(model, data, torch.float64)
    assert np.array_equal(out["ref_sm"], data["ref_sm"])
    errors = {name: float(np.abs(out[name] - data[name]).max()) for name in OUTPUTS[:5]}
    assert all(e <= 1e-3 for e in errors.values()), errors
