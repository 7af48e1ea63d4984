"""Ops TensorRT cannot build, and control flow."""

from __future__ import annotations

from collections.abc import Iterator

from ..registry import RULES, Finding
from ..view import (
    CONTROL_FLOW_OPS,
    UNSUPPORTED_OPS,
    ModelView,
    node_label,
)


@RULES.register(
    "unsupported-op",
    catches="ops TensorRT has no importer for: Unique, Col2Im, sequences, strings, optionals; RoiAlign (a plugin)",
    rtx="rejects",
)
def unsupported_ops(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type in UNSUPPORTED_OPS:
            yield Finding(
                node_label(node),
                f"TensorRT cannot build {node.op_type}: {UNSUPPORTED_OPS[node.op_type]}",
            )


@RULES.register(
    "control-flow",
    catches="If, Loop, Scan",
    rtx="builds",
    basis="mattex's own: TensorRT builds If and Loop, but a mattex graph is straight-line "
    "(static shapes, an exact static selection); control flow means a data-dependent "
    "path slipped into the export",
)
def control_flow(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type in CONTROL_FLOW_OPS:
            yield Finding(
                node_label(node),
                f"{node.op_type}: a mattex graph has no control flow; unroll it or bake the branch",
            )
