"""FP16 for strongly typed TensorRT: rewrite a float32 graph so its activations and weights are
float16 where that is safe, with Casts at the borders of the float32 islands.

Why our own pass: onnxconverter-common's `convert_float_to_float16` (1.16) produces an invalid
graph for this model (a Cast whose output type no longer matches its consumer), and it converts
by op type alone, which would also halve the precision of the refiner's coordinate arithmetic
(patch offsets computed in float from Shape) and of the exact top-k selection.

What stays float32, and why:
- Shape-derived arithmetic: a node is converted only when one of its float inputs derives from
  the graph inputs through data, not through Shape/Size; coordinates above 2048 are not
  representable exactly in fp16.
- The patch selection built by `topk_select` (nodes in a `..._select` scope): its bisection
  needs float32 resolution and its CumSum counts patches (exact below 2**24, not 2**11).
- Whatever `keep_fp32` names (node-name substrings): the measured choice lives in
  `mattex.exporter.config.FP16_KEEP_FP32`.
- Ops not in `_FLOAT_INPUTS` (unknown ops are never converted).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx_graphsurgeon as gs

from .dataflow import SHAPE_ARITHMETIC, count_reasons, data_tensors, takes_data
from .topk_select import SELECT_SCOPE

# Ops that run in fp16, and which of their inputs carry the op's float type T (the others, such
# as Resize's scales, keep their own fixed type).
_ALL = None
_FLOAT_INPUTS: dict[str, tuple[int, ...] | None] = {
    "Conv": _ALL,
    "ConvTranspose": _ALL,
    "BatchNormalization": _ALL,
    "Relu": _ALL,
    "LeakyRelu": _ALL,
    "Sigmoid": _ALL,
    "Tanh": _ALL,
    "HardSigmoid": _ALL,
    "HardSwish": _ALL,
    "Clip": _ALL,
    "Abs": _ALL,
    "Neg": _ALL,
    "Add": _ALL,
    "Sub": _ALL,
    "Mul": _ALL,
    "Div": _ALL,
    "Max": _ALL,
    "Min": _ALL,
    "Concat": _ALL,
    "Sum": _ALL,
    "Resize": (0,),
    "MaxPool": (0,),
    "AveragePool": (0,),
    "GlobalAveragePool": (0,),
    "Slice": (0,),
    "Gather": (0,),
    "GatherElements": (0,),
    "Reshape": (0,),
    "Transpose": (0,),
    "Squeeze": (0,),
    "Unsqueeze": (0,),
    "Flatten": (0,),
    "Expand": (0,),
    "Tile": (0,),
    "Split": (0,),
    "Identity": (0,),
    "Pad": (0, 2),
    "Where": (1, 2),
    "ScatterElements": (0, 2),
    "ScatterND": (0, 2),
}
# Ops that accept any input type: a float16 input needs no Cast back.
_ANY_INPUT = {"Cast", "Shape", "Size"}


def convert_to_fp16(graph: gs.Graph, io_dtype: str = "float32", keep_fp32: Iterable[str] = ()) -> int:
    """Rewrite `graph` in place to mixed precision; return the number of nodes now in fp16.
    `io_dtype` float32 keeps the inputs and outputs float32 (callers do not change); float16
    makes them float16. A graph without float32 data ops is left alone."""
    if io_dtype not in ("float32", "float16"):
        raise ValueError(f"io_dtype must be float32 or float16, got {io_dtype!r}")
    keep = tuple(keep_fp32)
    graph.toposort()
    data = data_tensors(graph)
    converted = [n for n in graph.nodes if _runs_in_fp16(n, data, keep)]
    if not converted:
        return 0
    casts = _CastCache(graph)
    if io_dtype == "float16":
        for inp in graph.inputs:
            if inp.dtype == np.float32:
                inp.dtype = np.float16
    fp16_nodes = {id(n) for n in converted}
    for node in list(graph.nodes):
        if id(node) in fp16_nodes:
            _convert_node(node, casts)
        elif node.op not in _ANY_INPUT:
            node.inputs = [casts.to(t, np.float32) if _is_float(t, np.float16) else t for t in node.inputs]
    _fix_outputs(graph, io_dtype, casts)
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return len(converted)


def kept_in_fp32(graph: gs.Graph, keep_fp32: Iterable[str] = ()) -> dict[str, int]:
    """How many float32 nodes `convert_to_fp16` leaves in float32, by reason (call it first)."""
    keep = tuple(keep_fp32)
    graph.toposort()
    data = data_tensors(graph)
    floats = [
        n for n in graph.nodes if n.op in _FLOAT_INPUTS and any(_is_float(t, np.float32) for t in _typed_inputs(n))
    ]
    return count_reasons(floats, lambda n: _fp32_reason(n, data, keep))


def _runs_in_fp16(node: gs.Node, data: set[str], keep: tuple[str, ...]) -> bool:
    return node.op in _FLOAT_INPUTS and _fp32_reason(node, data, keep) is None


def _fp32_reason(node: gs.Node, data: set[str], keep: tuple[str, ...]) -> str | None:
    """Why a node of `_FLOAT_INPUTS` stays float32, or None when it runs in fp16."""
    name = node.name or ""
    if SELECT_SCOPE in name:
        return "top-k selection"
    for k in keep:
        if k in name:
            return k
    floats = [t for t in _typed_inputs(node) if _is_float(t, np.float32)]
    if any(isinstance(t, gs.Constant) and _overflows_fp16(t.values) for t in floats):
        return "weights beyond fp16's range"
    if not any(isinstance(t, gs.Variable) and t.name in data for t in floats):
        return SHAPE_ARITHMETIC if floats and not takes_data(node, data) else "no float data input"
    return None


def _overflows_fp16(values: np.ndarray) -> bool:
    finite = np.abs(values[np.isfinite(values)])
    return finite.size > 0 and float(finite.max()) > float(np.finfo(np.float16).max)


def _typed_inputs(node: gs.Node) -> list:
    indices = _FLOAT_INPUTS[node.op]
    if indices is _ALL:
        return [t for t in node.inputs if t is not None and t.name]
    return [node.inputs[i] for i in indices if i < len(node.inputs) and node.inputs[i].name]


def _convert_node(node: gs.Node, casts: _CastCache) -> None:
    typed = {id(t) for t in _typed_inputs(node)}
    node.inputs = [casts.to(t, np.float16) if id(t) in typed and _is_float(t, np.float32) else t for t in node.inputs]
    for out in node.outputs:
        if out.dtype == np.float32:
            out.dtype = np.float16


def _fix_outputs(graph: gs.Graph, io_dtype: str, casts: _CastCache) -> None:
    """Graph outputs keep their names; with float32 I/O a final Cast restores their type."""
    want = np.float16 if io_dtype == "float16" else np.float32
    outputs = []
    for out in graph.outputs:
        if out.dtype in (np.float16, np.float32) and out.dtype != want:
            name = out.name
            out.name = casts.unique(f"{name}_{np.dtype(out.dtype).name}")
            cast = casts.to(out, want)
            casts.names.discard(cast.name)
            cast.name = name
            outputs.append(cast)
        else:
            outputs.append(out)
    graph.outputs = outputs


def _is_float(t, dtype) -> bool:
    return t is not None and getattr(t, "dtype", None) == dtype


class _CastCache:
    """One Cast (or one converted constant) per tensor and target type."""

    def __init__(self, graph: gs.Graph) -> None:
        self.graph = graph
        self.made: dict[tuple[str, type], gs.Tensor] = {}
        self.names = set(graph.tensors()) | {n.name for n in graph.nodes}

    def unique(self, name: str) -> str:
        """`name`, or `name_<n>` when the graph already has it."""
        candidate, n = name, 1
        while candidate in self.names:
            candidate, n = f"{name}_{n}", n + 1
        self.names.add(candidate)
        return candidate

    def to(self, tensor: gs.Tensor, dtype) -> gs.Tensor:
        key = (tensor.name, np.dtype(dtype).name)
        if key not in self.made:
            self.made[key] = self._make(tensor, dtype)
        return self.made[key]

    def _make(self, tensor: gs.Tensor, dtype) -> gs.Tensor:
        suffix = np.dtype(dtype).name
        if isinstance(tensor, gs.Constant):
            # _runs_in_fp16 keeps nodes with out-of-range weights in float32
            assert not (dtype == np.float16 and _overflows_fp16(tensor.values)), tensor.name
            return gs.Constant(self.unique(f"{tensor.name}_{suffix}"), tensor.values.astype(dtype))
        out = gs.Variable(self.unique(f"{tensor.name}_{suffix}"), dtype=dtype, shape=tensor.shape)
        self.graph.nodes.append(
            gs.Node("Cast", self.unique(f"{tensor.name}_cast_{suffix}"), {"to": _onnx_type(dtype)}, [tensor], [out])
        )
        return out


def _onnx_type(dtype) -> int:
    from onnx import TensorProto

    return {np.dtype(np.float16): TensorProto.FLOAT16, np.dtype(np.float32): TensorProto.FLOAT}[np.dtype(dtype)]
