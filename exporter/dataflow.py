"""Which tensors carry image data and which only shapes.

Both precision passes leave shape arithmetic in float32: the traced model computes Resize target
sizes and patch coordinates in float from `Shape`, and those values must stay exact at every
input size (fp16 is exact only below 2048; int8 ranges calibrated at the trace size round or
saturate at any other size).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import onnx_graphsurgeon as gs

# Ops whose outputs carry no data from their inputs' values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})
SHAPE_ARITHMETIC = "shape arithmetic"


def data_tensors(graph: gs.Graph) -> set[str]:
    """Names of tensors whose values depend on the graph inputs' values (not only on shapes).
    `graph` must be topologically sorted."""
    data = {t.name for t in graph.inputs}
    for node in graph.nodes:
        if node.op in SHAPE_ONLY_OPS:
            continue
        if any(t.name in data for t in node.inputs if isinstance(t, gs.Variable)):
            data.update(t.name for t in node.outputs)
    return data


def takes_data(node: gs.Node, data: set[str]) -> bool:
    return any(isinstance(t, gs.Variable) and t.name in data for t in node.inputs)


def count_reasons(nodes: Iterable[gs.Node], reason: Callable[[gs.Node], str | None]) -> dict[str, int]:
    """How many of `nodes` a precision pass left in float32, by the reason `reason` gives
    (None: converted), most frequent first."""
    counts = Counter(r for r in map(reason, nodes) if r is not None)
    return dict(counts.most_common())
