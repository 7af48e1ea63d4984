"""What rules need to know about a model, computed once, and the op sets they share."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..dataflow import SHAPE_ONLY_OPS

UNSUPPORTED_OPS = {
    "Unique": "no TensorRT implementation",
    "RoiAlign": "needs a plugin; crop patches with Gather instead",
    "Col2Im": "no TensorRT implementation (unfold/fold)",
    "SequenceConstruct": "sequences",
    "SequenceAt": "sequences",
    "SequenceInsert": "sequences",
    "SequenceEmpty": "sequences",
    "SplitToSequence": "sequences",
    "ConcatFromSequence": "sequences",
    "StringNormalizer": "strings",
    "Optional": "optionals",
    "OptionalGetElement": "optionals",
}
CONTROL_FLOW_OPS = {"If", "Loop", "Scan"}
DATA_DEPENDENT_OPS = {"NonZero", "Unique", "Compress", "NonMaxSuppression"}
# Chained Where nodes the builder handles in reasonable time. TensorRT for RTX 1.7 (Myelin) took
# time exponential in the chain's length: a bisection whose steps each select between two
# coupled states built in 1 s at 8 steps, 14 s at 10 and did not finish in 100 s at 12; with one
# state, 0.3 s at 12, 2.5 s at 16, 36 s at 20.
WHERE_CHAIN_LIMIT = 12
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", "tf_half_pixel_for_nn"}
# Inputs (by position) that set an output's shape: they must not depend on tensor values.
SHAPE_INPUTS = {
    "Reshape": (1,),
    "Expand": (1,),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "Tile": (1,),
    "Slice": (1, 2, 3, 4),
    "Resize": (2, 3),
    "Upsample": (1,),
    "Pad": (1,),
    "TopK": (1,),
    "OneHot": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
}
FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}


class ModelView:
    """What rules need to know about a model, computed once: producers, constants, dtypes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        try:
            model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        except onnx.shape_inference.InferenceError:
            pass  # rules then see fewer dtypes; the checker reports the inconsistency itself
        self.model = model
        self.graph = model.graph
        self.nodes = list(model.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.dtypes: dict[str, int] = {}
        self.shapes: dict[str, list[int | str | None]] = {}
        for info in [*self.graph.input, *self.graph.output, *self.graph.value_info]:
            self.dtypes[info.name] = info.type.tensor_type.elem_type
            if info.type.tensor_type.HasField("shape"):
                self.shapes[info.name] = [
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in info.type.tensor_type.shape.dim
                ]
        for t in self.graph.initializer:
            self.dtypes[t.name] = t.data_type
            self.shapes[t.name] = list(t.dims)
        self.inputs = [i for i in self.graph.input if i.name not in self.initializers]
        self._value_sources = self._trace_value_sources()

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_int", "value_float", "value_ints", "value_floats"):
                    return np.asarray(onnx.helper.get_attribute_value(a))
        return None

    def _trace_value_sources(self) -> dict[str, frozenset[str]]:
        """For each tensor, the graph inputs whose *values* (not just shapes) flow into it."""
        sources: dict[str, frozenset[str]] = {i.name: frozenset([i.name]) for i in self.inputs}
        for node in self.nodes:  # ONNX requires topological order
            if node.op_type in SHAPE_ONLY_OPS:
                found: frozenset[str] = frozenset()
            else:
                found = frozenset().union(*(sources.get(i, frozenset()) for i in node.input if i))
                if node.op_type in DATA_DEPENDENT_OPS:
                    found = found | {f"<{node.op_type}>"}
            for out in node.output:
                sources[out] = found
        return sources

    def value_sources(self, name: str) -> frozenset[str]:
        return self._value_sources.get(name, frozenset())


def node_attrs(node: onnx.NodeProto) -> dict:
    """A node's attributes as Python values, strings decoded."""
    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} '{node.name or node.output[0]}'"


def rank(info: onnx.ValueInfoProto) -> int:
    return len(info.type.tensor_type.shape.dim)
