"""INT8 as an export step: which nodes of the traced graph get Q/DQ, and which stay float and
why. The ranges themselves are measured on data by `mattex.calibration.int8`.

Quantized: the op types below, on the data path only. Left float: the exact top-k selection
(it counts patches and bisects error values), the layers kept float by measurement
(`INT8_KEEP_FLOAT`), and everything off the data path, found by data flow as the fp16 pass finds
it: shape arithmetic (Resize target sizes computed in float from `Shape`), whose ranges,
calibrated at the trace size, rounded or saturated at every other size (a file traced at 256x256
gave a 64x64 coarse map at 512x512), and integer or index arithmetic, which has no float data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from mattex.calibration.int8 import CalibrationSettings, QuantizationResult, calibrate_and_quantize

from .config import INT8_KEEP_FLOAT
from .dataflow import SHAPE_ARITHMETIC, data_tensors, takes_data
from .topk_select import SELECT_SCOPE

QUANTIZED_OP_TYPES = ("Conv", "Relu", "Clip", "Add", "MaxPool", "Concat")


def quantize_int8(
    fp32: onnx.ModelProto,
    settings: CalibrationSettings,
    size: tuple[int, int],
    cache_path: Path,
    progress: Callable[[int, int], None] = lambda i, n: None,
    write_cache: bool = True,
    keep_float: tuple[str, ...] = INT8_KEEP_FLOAT,
) -> QuantizationResult:
    """The Q/DQ model of `fp32`, calibrated on composites at `size` (height, width); see
    `calibrate_and_quantize` for the cache and `write_cache`."""
    return calibrate_and_quantize(
        fp32, settings, size, cache_path, QUANTIZED_OP_TYPES, left_float(fp32, keep_float), progress, write_cache
    )


def left_float(fp32: onnx.ModelProto, keep_float: tuple[str, ...] = INT8_KEEP_FLOAT) -> dict[str, str]:
    """The nodes of quantized op types that stay float, by name, with the reason."""
    graph = gs.import_onnx(fp32)
    graph.toposort()
    data = data_tensors(graph)

    def reason(node: gs.Node) -> str | None:
        if SELECT_SCOPE in node.name:
            return "top-k selection"
        for kept in keep_float:
            if kept in node.name:
                return kept
        if not takes_data(node, data):
            return SHAPE_ARITHMETIC
        if not any(t.dtype in (np.float32, np.float16) for t in node.outputs):
            return "integer arithmetic"
        return None

    quantizable = [n for n in graph.nodes if n.op in QUANTIZED_OP_TYPES]
    return {n.name: r for n in quantizable if (r := reason(n)) is not None}
