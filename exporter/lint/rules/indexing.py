"""Scatter, Where chains and TopK: the selection and pasting ops of the refiner."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mattex.contract import TENSORRT_MAX_TOPK

from ..registry import RULES, Finding
from ..view import (
    WHERE_CHAIN_LIMIT,
    ModelView,
    node_attrs,
    node_label,
)


@RULES.register(
    "scatter-extent",
    catches="ScatterElements whose indices may be longer than the data along the scatter axis "
    "(ONNX allows it, TensorRT does not)",
    rtx="rejects",
)
def scatter_extent(view: ModelView) -> Iterator[Finding]:
    """ScatterElements whose indices may be longer than its data along `axis`: ONNX allows it
    (only the other axes must fit), TensorRT's builder does not and fails at build time ("The
    extent of dimension i ... of indices"). Flagged where the data's extent along the axis is a
    constant that the indices' extent exceeds or, being unknown until run time, may exceed."""
    for node in view.nodes:
        if node.op_type != "ScatterElements":
            continue
        data, indices = view.shapes.get(node.input[0]), view.shapes.get(node.input[1])
        if not data or not indices or len(data) != len(indices):
            continue
        axis = node_attrs(node).get("axis", 0) % len(data)
        d, i = data[axis], indices[axis]
        if isinstance(d, int) and (not isinstance(i, int) or i > d):
            yield Finding(
                node_label(node),
                f"indices extent {i if i is not None else '?'} along axis {axis} may exceed the "
                f"data's {d}: TensorRT requires it not to (size the data at least as long "
                "as the indices)",
            )


@RULES.register(
    "where-chain",
    catches="chains of more than 12 `Where` nodes, each feeding the next (an unrolled select bisection)",
    rtx="never finishes",
    basis="TensorRT for RTX 1.7's builder: build time exponential in the chain's length (it builds short chains)",
)
def where_chain(view: ModelView) -> Iterator[Finding]:
    """Chains of more than WHERE_CHAIN_LIMIT Where nodes, each feeding the next (an unrolled
    bisection built from selects): TensorRT's builder takes time exponential in their length.
    Update such loops by arithmetic (t += step * condition) instead."""
    depth: dict[str, int] = {}
    deepest, at = 0, None
    for node in view.nodes:  # ONNX requires topological order
        level = max((depth.get(i, 0) for i in node.input if i), default=0) + (node.op_type == "Where")
        for out in node.output:
            depth[out] = level
        if node.op_type == "Where" and level > deepest:
            deepest, at = level, node
    if deepest > WHERE_CHAIN_LIMIT:
        yield Finding(
            node_label(at),
            f"a chain of {deepest} Where nodes, each feeding the next: TensorRT's builder takes "
            f"time exponential in its length (more than {WHERE_CHAIN_LIMIT} did not build in "
            "100 s); update the state by arithmetic instead of selecting",
        )


@RULES.register("topk-limits", catches="TopK with K >= 3840, a non-constant K, or sorted = 0", rtx="rejects")
def topk_limits(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type != "TopK":
            continue
        if node_attrs(node).get("sorted", 1) != 1:
            yield Finding(node_label(node), "TopK must have sorted=1 for TensorRT")
        k = view.constant(node.input[1]) if len(node.input) > 1 else None
        if k is None:
            yield Finding(node_label(node), "TopK K must be a build-time constant")
        elif int(np.asarray(k).reshape(-1)[0]) >= TENSORRT_MAX_TOPK:
            yield Finding(
                node_label(node),
                f"TopK K = {int(np.asarray(k).reshape(-1)[0])} but TensorRT requires "
                f"K < {TENSORRT_MAX_TOPK} (mattex rewrites unordered TopK exactly)",
            )


@RULES.register("scatternd-reduction", catches="ScatterND with a reduction", rtx="rejects")
def scatternd_reduction(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type == "ScatterND":
            reduction = node_attrs(node).get("reduction", "none")
            if reduction != "none":
                yield Finding(node_label(node), f"ScatterND reduction must be 'none', got {reduction!r}")
