import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def precision_data(tmp_path_factory):
    """Synthetic PhotoMatte85-layout sets: calib/ (int8 calibration) and eval/ (held out)."""
    from mattex.calibration.synthetic import write_synthetic_photomatte

    root = tmp_path_factory.mktemp("precision")
    write_synthetic_photomatte(root / "calib", 4, seed=3, height=320, width=256, backgrounds=root / "calib_bg")
    write_synthetic_photomatte(root / "eval", 4, seed=4, height=320, width=256, backgrounds=root / "eval_bg")
    return root


@pytest.fixture(scope="session")
def fp32_file(precision_data):
    from helpers import precision_export

    return precision_export(precision_data, "fp32")


@pytest.fixture(scope="session")
def fp16_file(precision_data):
    from helpers import precision_export

    return precision_export(precision_data, "fp16")


@pytest.fixture(scope="session")
def int8_file(precision_data):
    from helpers import precision_export

    return precision_export(precision_data, "int8")


@pytest.fixture(scope="session")
def small_file(tmp_path_factory):
    """A small fp32 export shared by tests that need any file: mobilenetv2 demo weights, traced at
    96x128 with k = 100 (of 768 patches)."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    path = tmp_path_factory.mktemp("small") / "small.onnx"
    export_onnx(ExportConfig(height=96, width=128, sample_pixels=1600), path)
    return path
