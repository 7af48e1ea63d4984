"""Q/DQ nodes as strongly typed TensorRT takes them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..registry import RULES, Finding
from ..view import (
    ModelView,
    node_label,
)


@RULES.register("qdq-zero-point", catches="Q/DQ with a non-zero zero point", rtx="rejects")
def qdq_zero_point(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if not node.input[2]:
            continue
        zero_point = view.constant(node.input[2])
        if zero_point is None:
            yield Finding(node_label(node), "zero point must be a constant 0")
        elif np.any(zero_point != 0):
            yield Finding(
                node_label(node),
                f"zero point must be 0 (symmetric int8), got {np.unique(zero_point)[:4]}",
            )


# TensorRT quantizes to and dequantizes from INT8 (and FP8/INT4, which mattex does not emit);
# ONNX Runtime's defaults (uint8 activations, int32 biases) do not build.
@RULES.register("qdq-int8", catches="Q/DQ on uint8 activations or int32 biases", rtx="rejects")
def qdq_int8(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type == "QuantizeLinear" and len(node.input) >= 3 and node.input[2]:
            quantized = view.constant(node.input[2])
        elif node.op_type == "DequantizeLinear":
            quantized = view.constant(node.input[0])
            if quantized is None and len(node.input) >= 3 and node.input[2]:
                quantized = view.constant(node.input[2])
        else:
            continue
        if quantized is not None and quantized.dtype != np.int8:
            yield Finding(
                node_label(node),
                f"{node.op_type} on {quantized.dtype} values; TensorRT needs int8 "
                "(keep biases float: QuantizeBias=False)",
            )
