"""The fp16 pass on tiny graphs: what it converts, what it keeps in float32, and the Casts."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from mattex.exporter.mixed_precision import convert_to_fp16
from onnx_graphs import const, model, tensor

IMG = ("B", 2, 8, 8)


def load(m: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(onnx.shape_inference.infer_shapes(m))


def run(graph: gs.Graph, feeds: dict):
    proto = onnx.shape_inference.infer_shapes(gs.export_onnx(graph), strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def conv_block():
    """x -> Conv -> Relu -> Add(x) -> Clip -> y: a residual block with a clamp."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["r", "x"], ["a"]),
        helper.make_node("Clip", ["a", "lo", "hi"], ["y"], name="/model/Clip"),
    ]
    inits = [const("w", rng.normal(0, 0.3, (2, 2, 3, 3))), const("b", [0.1, -0.1]), const("lo", 0.0), const("hi", 1.0)]
    return model(nodes, [tensor("x", shape=IMG)], [tensor("y", shape=IMG)], inits)


def node_types(graph: gs.Graph) -> dict[str, type]:
    return {n.name or n.op: n.outputs[0].dtype for n in graph.nodes}


def test_converts_data_ops_and_keeps_float32_io():
    x = np.random.default_rng(1).random((1, *IMG[1:]), dtype=np.float32)
    want = run(load(conv_block()), {"x": x})[0]
    graph = load(conv_block())
    assert convert_to_fp16(graph) == 4
    assert [n.op for n in graph.nodes].count("Cast") == 2  # x in, y out
    assert graph.inputs[0].dtype == np.float32 and graph.outputs[0].dtype == np.float32
    assert graph.outputs[0].name == "y"
    conv = next(n for n in graph.nodes if n.op == "Conv")
    assert conv.inputs[1].values.dtype == np.float16 and conv.outputs[0].dtype == np.float16
    got = run(graph, {"x": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=4e-3)


def test_keep_fp32_leaves_named_nodes_in_float32_with_casts_around_them():
    graph = load(conv_block())
    assert convert_to_fp16(graph, keep_fp32=["/model/Clip"]) == 3
    clip = next(n for n in graph.nodes if n.op == "Clip")
    assert clip.outputs[0].dtype == np.float32 and clip.inputs[0].dtype == np.float32
    assert clip.inputs[1].values.dtype == np.float32  # its bounds are untouched
    x = np.random.default_rng(2).random((1, *IMG[1:]), dtype=np.float32)
    assert run(graph, {"x": x})[0].dtype == np.float32


def test_float16_io_changes_the_interface():
    graph = load(conv_block())
    convert_to_fp16(graph, io_dtype="float16")
    assert graph.inputs[0].dtype == np.float16 and graph.outputs[0].dtype == np.float16
    assert "Cast" not in [n.op for n in graph.nodes]
    x = np.random.default_rng(3).random((1, *IMG[1:])).astype(np.float16)
    assert run(graph, {"x": x})[0].dtype == np.float16


def shape_arithmetic_model():
    """y = x * W where W is computed in float from x's shape: coordinates, not data."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Cast", ["s"], ["sf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sf", "big"], ["scaled"], name="coords"),
        helper.make_node("ReduceMax", ["scaled"], ["m"], keepdims=1),
        helper.make_node("Mul", ["x", "m"], ["y"], name="data"),
    ]
    return model(nodes, [tensor("x", shape=("N",))], [tensor("y", shape=("N",))], [const("big", [4097.0])])


def test_shape_derived_arithmetic_stays_float32():
    graph = load(shape_arithmetic_model())
    assert convert_to_fp16(graph) == 1
    types = node_types(graph)
    assert types["coords"] == np.float32 and types["data"] == np.float16
    cast_in = next(t for t in graph.nodes if t.name == "data").inputs[1]
    assert cast_in.inputs[0].op == "Cast" and cast_in.inputs[0].inputs[0].name == "m"
    x = np.ones(3, np.float32)
    np.testing.assert_allclose(run(graph, {"x": x})[0], 3 * 4097.0, rtol=1e-3)


def test_the_topk_selection_scope_stays_float32():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="/model/refiner/TopK_select0/Relu_1"),
        helper.make_node("Relu", ["r"], ["y"], name="/model/relu"),
    ]
    graph = load(model(nodes, [tensor("x")], [tensor("y")]))
    assert convert_to_fp16(graph) == 1
    types = node_types(graph)
    assert types["/model/refiner/TopK_select0/Relu_1"] == np.float32
    assert types["/model/relu"] == np.float16


def test_leaves_a_graph_without_float_data_ops_alone():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Neg", ["s"], ["y"])]
    m = model(nodes, [tensor("x")], [tensor("y", TensorProto.INT64, (2,))])
    graph = load(m)
    before = [(n.op, [t.name for t in n.inputs]) for n in graph.nodes]
    assert convert_to_fp16(graph) == 0
    assert [(n.op, [t.name for t in n.inputs]) for n in graph.nodes] == before


def test_refuses_an_unknown_io_dtype():
    with pytest.raises(ValueError, match="io_dtype"):
        convert_to_fp16(load(conv_block()), io_dtype="bfloat16")


def test_a_weight_beyond_float16_keeps_its_node_in_float32():
    nodes = [
        helper.make_node("Mul", ["x", "huge"], ["m"], name="big"),
        helper.make_node("Relu", ["m"], ["y"], name="relu"),
    ]
    graph = load(model(nodes, [tensor("x")], [tensor("y")], [const("huge", [1e6])]))
    assert convert_to_fp16(graph) == 1
    types = node_types(graph)
    assert types["big"] == np.float32 and types["relu"] == np.float16
    x = np.full((1, 2), 1e-3, np.float32)
    np.testing.assert_allclose(run(graph, {"x": x})[0], 1e3, rtol=1e-3)


def test_new_names_never_collide_with_existing_tensors():
    # The graph already has a tensor called x_float16: the input's Cast must not reuse it.
    nodes = [helper.make_node("Relu", ["x"], ["x_float16"]), helper.make_node("Add", ["x_float16", "x"], ["y"])]
    graph = load(model(nodes, [tensor("x")], [tensor("y")]))
    assert convert_to_fp16(graph) == 2
    names = [t for t in graph.tensors()]
    assert len(names) == len(set(names))
    x = np.array([[1.0, -2.0]], np.float32)
    np.testing.assert_allclose(run(graph, {"x": x})[0], [[2.0, -2.0]], rtol=1e-3)
