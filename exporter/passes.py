"""Export-time graph passes, each a small named function over an onnx-graphsurgeon Graph.

Every pass takes a Graph, changes it in place, returns how many places it changed, and leaves
a graph it does not match untouched. `PASSES` is the registry the exporter runs from.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from mattex.errors import ConfigError
from mattex.plugins import PLUGIN_DOMAIN, TENSORRT_TYPE_IDS, TOPK_LAST_DIM
from mattex.registry import Registry

from .graph_builder import GraphBuilder
from .topk_select import build_threshold_select

GraphPass = Callable[[gs.Graph], int]


class PassRegistry(Registry[GraphPass]):
    """Named passes; unknown or duplicate names fail loudly."""

    kind = "graph pass"

    def register(self, name: str):
        return lambda fn: self.add(name, fn)

    def run(self, graph: gs.Graph, names: list[str]) -> dict[str, int]:
        return {name: self[name](graph) for name in names}


PASSES = PassRegistry()


@PASSES.register("fold_constants")
def fold_constants(graph: gs.Graph) -> int:
    """Evaluate subgraphs whose inputs are all constants (shape arithmetic, weight transposes)."""
    before = len(graph.nodes)
    graph.fold_constants(error_ok=False).cleanup()
    return before - len(graph.nodes)


@PASSES.register("cleanup")
def cleanup(graph: gs.Graph) -> int:
    """Remove nodes and tensors that no graph output depends on."""
    before = len(graph.nodes)
    graph.cleanup(remove_unused_graph_inputs=False)
    return before - len(graph.nodes)


@PASSES.register("toposort")
def toposort(graph: gs.Graph) -> int:
    """Order nodes so each comes after its producers (onnx.checker requires it)."""
    order = [id(n) for n in graph.nodes]
    graph.toposort()
    return sum(a != id(b) for a, b in zip(order, graph.nodes))


def is_unordered_topk(node: gs.Node) -> bool:
    """A TopK whose output order does not matter (sorted=0), largest, over the last axis of a
    2-D tensor, with a constant K: the shape the refiner's patch selection exports to."""
    if node.op != "TopK" or len(node.inputs) != 2:
        return False
    x, k = node.inputs
    rank = len(x.shape) if x.shape is not None else None
    axis = node.attrs.get("axis", -1)
    return (
        node.attrs.get("sorted", 1) == 0
        and node.attrs.get("largest", 1) == 1
        and isinstance(k, gs.Constant)
        and rank == 2
        and axis in (-1, 1)
    )


# What replaces one TopK: given a builder, its input and K, the int64 indices and a function
# that makes the values (called only when something reads them).
TopKReplacement = Callable[[GraphBuilder, gs.Variable, int], tuple[gs.Variable, Callable[[], gs.Variable]]]


def _replace_each_unordered_topk(graph: gs.Graph, scope: str, replace: TopKReplacement) -> int:
    """The frame both TopK rewrites share: rewire every unordered TopK's consumers to what
    `replace` builds (in a `<node>_<scope><i>` name scope) and drop the TopK."""
    matches = [n for n in graph.nodes if is_unordered_topk(n)]
    for i, node in enumerate(matches):
        x, k = node.inputs
        b = GraphBuilder(graph, prefix=f"{node.name or 'TopK'}_{scope}{i}")
        indices, make_values = replace(b, x, int(np.asarray(k.values).reshape(-1)[0]))
        values_out, indices_out = node.outputs
        _redirect(graph, indices_out, indices)
        if values_out.outputs or values_out in graph.outputs:
            _redirect(graph, values_out, make_values())
        node.outputs.clear()
        node.inputs.clear()
    if matches:
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return len(matches)


def replace_unordered_topk(graph: gs.Graph) -> int:
    """Replace each unordered TopK by the exact threshold select of `topk_select` (any K)."""

    def threshold_select(b: GraphBuilder, x: gs.Variable, k: int):
        indices = build_threshold_select(b, x, k)
        return indices, lambda: b.op("GatherElements", [x, indices], {"axis": 1})

    return _replace_each_unordered_topk(graph, "select", threshold_select)


PASSES.register("replace_unordered_topk")(replace_unordered_topk)


def replace_unordered_topk_with_plugin(graph: gs.Graph) -> int:
    """Hand each unordered TopK to TensorRT 11's TopkLastDim plugin (any K, TensorRT only).

    The plugin returns the same set (ties aside), sorted, with int32 indices: a Cast gives
    consumers TopK's int64 back. Unlike the ONNX select, the plugin needs N >= K at run time.
    """

    def plugin_call(b: GraphBuilder, x: gs.Variable, k: int):
        if x.dtype is None:
            raise ConfigError(f"{b.prefix}: the TopK input's dtype is unknown (run shape inference first)")
        dtype = np.dtype(x.dtype).name
        if dtype not in TENSORRT_TYPE_IDS:
            raise ConfigError(f"{b.prefix}: TopkLastDim takes {', '.join(TENSORRT_TYPE_IDS)}, not {dtype}")
        attrs = TOPK_LAST_DIM.attributes(type_id=TENSORRT_TYPE_IDS[dtype], k=k, is_largest=1, axis=-1)
        values, indices = b.op(TOPK_LAST_DIM.name, [x], attrs, outputs=2, domain=PLUGIN_DOMAIN)
        # No ONNX schema describes a plugin's outputs: declare them for shape inference.
        rows = x.shape[0] if x.shape else None
        values.dtype, values.shape = x.dtype, [rows, k]
        indices.dtype, indices.shape = np.int32, [rows, k]
        return b.op("Cast", [indices], {"to": onnx.TensorProto.INT64}), lambda: values

    return _replace_each_unordered_topk(graph, "plugin", plugin_call)


PASSES.register("replace_unordered_topk_with_plugin")(replace_unordered_topk_with_plugin)


def _redirect(graph: gs.Graph, old: gs.Variable, new: gs.Variable) -> None:
    """Make every consumer of `old` (and the graph outputs) read `new` instead."""
    new.dtype, new.shape = old.dtype, old.shape
    for consumer in list(old.outputs):
        consumer.inputs = [new if t is old else t for t in consumer.inputs]
    graph.outputs = [new if t is old else t for t in graph.outputs]
    if new in graph.outputs:
        new.name, old.name = old.name, old.name + "_replaced"
