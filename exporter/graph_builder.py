"""A small helper to append named nodes to an onnx-graphsurgeon Graph."""

from __future__ import annotations

import itertools

import numpy as np
import onnx_graphsurgeon as gs


class GraphBuilder:
    """Appends nodes to `graph`, each named `<prefix>/<op>_<n>`, and returns their outputs."""

    def __init__(self, graph: gs.Graph, prefix: str) -> None:
        self.graph = graph
        self.prefix = prefix
        self._ids = itertools.count()

    def _name(self, op: str) -> str:
        return f"{self.prefix}/{op}_{next(self._ids)}"

    def const(self, value, dtype=np.float32) -> gs.Constant:
        return gs.Constant(self._name("const"), np.asarray(value, dtype=dtype))

    def op(self, op: str, inputs: list, attrs: dict | None = None, outputs: int = 1, domain: str | None = None):
        name = self._name(op)
        outs = [gs.Variable(f"{name}_out{i}") for i in range(outputs)]
        self.graph.nodes.append(gs.Node(op, name, dict(attrs or {}), list(inputs), outs, domain=domain))
        return outs[0] if outputs == 1 else outs

    def reduce(self, op: str, x, axis: int, keepdims: bool = True):
        """Reduce over one axis in the form the graph's opset wants (attribute or input)."""
        attrs = {"keepdims": int(keepdims)}
        axes = [axis]
        takes_axes_input = op == "ReduceSum" and self.graph.opset >= 13 or self.graph.opset >= 18
        if takes_axes_input:
            return self.op(op, [x, self.const(axes, np.int64)], attrs)
        return self.op(op, [x], {**attrs, "axes": axes})
