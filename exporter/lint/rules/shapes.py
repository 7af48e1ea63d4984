"""Resize, float64, shapes set by values, uint8 tensors, CumSum and Reduce axes."""

from __future__ import annotations

from collections.abc import Iterator

from onnx import TensorProto

from mattex.contract import TENSORRT

from ..registry import RULES, Finding
from ..view import (
    DATA_DEPENDENT_OPS,
    FLOAT_TYPES,
    RESIZE_COORDINATES,
    RESIZE_MODES,
    SHAPE_INPUTS,
    ModelView,
    node_attrs,
    node_label,
    rank,
)


@RULES.register(
    "resize-mode",
    catches="Resize modes other than nearest/linear, unsupported coordinate modes, antialias",
    rtx="builds",
    targets=(TENSORRT,),
    basis="TensorRT 10/11's ONNX parser table (nearest and linear; TensorRT for RTX 1.7 builds cubic)",
)
def resize_mode(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type != "Resize":
            continue
        text = node_attrs(node)
        mode = text.get("mode", "nearest")
        coords = text.get("coordinate_transformation_mode", "half_pixel")
        if mode not in RESIZE_MODES:
            yield Finding(node_label(node), f"Resize mode {mode!r} is not nearest/linear")
        if coords not in RESIZE_COORDINATES:
            yield Finding(node_label(node), f"Resize coordinate_transformation_mode {coords!r} is unsupported")
        if text.get("antialias", 0):
            yield Finding(node_label(node), "Resize antialias is unsupported")


@RULES.register(
    "float64",
    catches="float64 tensors or casts",
    rtx="builds",
    basis="TensorRT's parser casts float64 down to float32: the engine would compute in "
    "another precision than the file says",
)
def float64(view: ModelView) -> Iterator[Finding]:
    for name, dtype in view.dtypes.items():
        if dtype == TensorProto.DOUBLE:
            yield Finding(f"tensor '{name}'", "float64 tensors are not supported")
    for node in view.nodes:
        if node.op_type == "Cast" and node_attrs(node).get("to") == TensorProto.DOUBLE:
            yield Finding(node_label(node), "Cast to float64 is not supported")


@RULES.register(
    "data-dependent-shape",
    catches="NonZero and friends, shapes computed from pixel values",
    rtx="builds",
    basis="mattex's runtimes: TensorRT builds data-dependent shapes, but running them needs "
    "an output allocator, and mattex engines preallocate static outputs",
)
def data_dependent_shape(view: ModelView) -> Iterator[Finding]:
    image_inputs = {i.name for i in view.inputs if rank(i) > 1}
    for node in view.nodes:
        if node.op_type in DATA_DEPENDENT_OPS:
            yield Finding(
                node_label(node),
                f"{node.op_type} has a data-dependent output shape (no static engine)",
            )
        for pos in SHAPE_INPUTS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos]:
                sources = view.value_sources(node.input[pos])
                bad = sorted((sources & image_inputs) | {s for s in sources if s.startswith("<")})
                if bad:
                    yield Finding(
                        node_label(node),
                        f"input {pos} sets a shape from tensor values of {', '.join(bad)}",
                    )


@RULES.register(
    "shape-tensor-input", catches="integer or parameter inputs that set shapes (bake them in)", rtx="rejects"
)
def shape_tensor_input(view: ModelView) -> Iterator[Finding]:
    """Parameter inputs (integers, or any input of rank <= 1 whose value sets a shape): TensorRT
    treats them as shape tensors. Image-like inputs, float or uint8 frames (--io uint8), are not."""
    for inp in view.inputs:
        dtype = inp.type.tensor_type.elem_type
        if dtype not in FLOAT_TYPES and (dtype != TensorProto.UINT8 or rank(inp) <= 1):
            yield Finding(
                f"input '{inp.name}'",
                f"{TensorProto.DataType.Name(dtype)} network input of rank {rank(inp)}: "
                "TensorRT treats it as a shape tensor; bake the parameter into the graph",
            )
            continue
        if rank(inp) > 1:
            continue
        for node in view.nodes:
            for pos in SHAPE_INPUTS.get(node.op_type, ()):
                if pos < len(node.input) and inp.name in view.value_sources(node.input[pos]):
                    yield Finding(
                        f"input '{inp.name}'",
                        f"its value sets a shape ({node_label(node)} input {pos}); bake "
                        "the parameter into the graph at export",
                    )


@RULES.register(
    "uint8-cast",
    catches="a uint8 tensor read by anything but a Cast (TensorRT has uint8 only as network I/O)",
    rtx="rejects",
)
def uint8_cast(view: ModelView) -> Iterator[Finding]:
    """TensorRT has uint8 tensors only as network inputs and outputs: a uint8 tensor may only be
    Cast (a Transpose of uint8 frames fails to parse: "has type UInt8 but must have type Float")."""
    for node in view.nodes:
        if node.op_type == "Cast":
            continue
        uint8 = [name for name in node.input if name and view.dtypes.get(name) == TensorProto.UINT8]
        if uint8:
            yield Finding(
                node_label(node),
                f"{node.op_type} reads uint8 {uint8[0]!r}: TensorRT takes uint8 only as a "
                "network input, so Cast it to float first",
            )


@RULES.register(
    "cumsum-float",
    catches="CumSum on integers, or with a non-constant axis",
    rtx="builds",
    targets=(TENSORRT,),
    basis="TensorRT 10/11's ONNX parser table (CumSum FP32/FP16/BF16; TensorRT for RTX 1.7 builds integer CumSum)",
)
def cumsum_float(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type != "CumSum":
            continue
        dtype = view.dtypes.get(node.input[0])
        if dtype is not None and dtype not in FLOAT_TYPES:
            yield Finding(
                node_label(node),
                f"CumSum on {TensorProto.DataType.Name(dtype)}: TensorRT has float CumSum only",
            )
        if view.constant(node.input[1]) is None:
            yield Finding(node_label(node), "CumSum axis must be a constant")


@RULES.register("reduce-axes-constant", catches="Reduce* with non-constant axes", rtx="rejects")
def reduce_axes_constant(view: ModelView) -> Iterator[Finding]:
    for node in view.nodes:
        if node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1]:
            if view.constant(node.input[1]) is None:
                yield Finding(node_label(node), f"{node.op_type} axes must be a constant")
