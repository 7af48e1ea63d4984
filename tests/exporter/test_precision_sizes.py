"""A file runs at any size: every precision and both input kinds, exported at one size, hold
their budget against PyTorch on held-out composites at the trace size and at sizes they were
not traced or calibrated at (int8 once rounded its Resize target sizes there: shape arithmetic
had Q/DQ with ranges calibrated at the trace size)."""

import onnx
import pytest

from helpers import PRECISION_SIZE, precision_export
from mattex.contract import IO_FORMATS, PRECISIONS
from mattex.measure.budgets import BUDGETS
from mattex.measure.inputs import composite_pairs
from mattex.measure.verify import Verifier

K = 500  # precision_export: sample_pixels 8000
SIZES = {
    "trace": (PRECISION_SIZE, PRECISION_SIZE),
    "smaller": (192, 192),
    "larger": (512, 512),
    "another aspect ratio": (480, 864),
    "fewer patches than k": (72, 96),  # 18 x 24 = 432 patches < k: every eligible one refined
}
assert (72 // 4) * (96 // 4) < K


@pytest.fixture(scope="session")
def size_files(precision_data, fp32_file, fp16_file, int8_file, int8_frames_file):
    """(precision, io) -> file: the float-input files of conftest.py and their uint8-frame twins."""
    files = {
        ("fp32", "float"): fp32_file,
        ("fp16", "float"): fp16_file,
        ("int8", "float"): int8_file,
        ("int8", "uint8"): int8_frames_file,
    }
    for precision in ("fp32", "fp16"):
        files[precision, "uint8"] = precision_export(precision_data, precision, io="uint8")
    return files


@pytest.mark.parametrize("io", IO_FORMATS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_file_holds_its_budget_at_every_size(size_files, precision_data, precision, io):
    path = size_files[precision, io]
    rows = {}
    with Verifier(path) as verifier:  # opened once, verified at every size
        for label, (height, width) in SIZES.items():
            pairs = composite_pairs(path, precision_data / "eval", precision_data / "eval_bg", height, width)
            limit = 1 if height * width > 256 * 256 else 2  # keep CI short at the large sizes
            report = verifier.verify(p for _, p in zip(range(limit), pairs))
            rows[label] = report
            assert report.precision == precision and report.shape[2:] == [height, width]
    failures = {label: r.failures for label, r in rows.items() if not r.passed}
    assert not failures, failures
    budget = BUDGETS[precision].outputs["pha"].mean_abs
    assert all(r.outputs["pha"].mean_abs <= budget for r in rows.values())


def test_int8_leaves_the_shape_arithmetic_without_qdq(int8_file):
    """No QuantizeLinear reads a tensor computed from Shape (found by data flow)."""
    import onnx_graphsurgeon as gs

    from mattex.exporter.dataflow import data_tensors

    graph = gs.import_onnx(onnx.load(str(int8_file)))
    graph.toposort()
    data = data_tensors(graph)
    quantized = [n.inputs[0] for n in graph.nodes if n.op == "QuantizeLinear"]
    assert quantized
    off_path = [t.name for t in quantized if isinstance(t, gs.Variable) and t.name not in data]
    assert off_path == []
    info = __import__("json").loads(
        {p.key: p.value for p in onnx.load(str(int8_file), load_external_data=False).metadata_props}["int8_calibration"]
    )
    assert info["left_float"]["shape arithmetic"] > 0 and info["left_float"]["top-k selection"] > 0
