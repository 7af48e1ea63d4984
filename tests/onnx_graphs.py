"""Tiny hand-built ONNX graphs for the pass and lint tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def model(nodes, inputs, outputs, initializers=(), opset=OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "tiny", list(inputs), list(outputs), list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def tensor(name, dtype=TensorProto.FLOAT, shape=("B", "N")):
    return helper.make_tensor_value_info(name, dtype, list(shape))


def const(name, values, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def topk_model(k: int, sorted_: int = 0, with_values: bool = False) -> onnx.ModelProto:
    outputs = [tensor("idx", TensorProto.INT64, ("B", k))]
    if with_values:
        outputs.append(tensor("vals", TensorProto.FLOAT, ("B", k)))
    node = helper.make_node("TopK", ["x", "k"], ["vals", "idx"], axis=1, sorted=sorted_, largest=1)
    return model([node], [tensor("x")], outputs, [const("k", [k], np.int64)])


def numpy_topk_set(row: np.ndarray, k: int) -> set[int]:
    """ONNX TopK's set: largest values, ties to the lowest index."""
    order = np.lexsort((np.arange(row.size), -row))
    return set(order[: min(k, row.size)].tolist())
