"""Each graph pass: before/after on a tiny graph, and an unmatched graph left alone."""

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_graphsurgeon import Constant

from mattex.errors import ConfigError
from mattex.exporter.passes import PASSES, PassRegistry, cleanup, fold_constants, replace_unordered_topk, toposort
from onnx_graphs import const, model, numpy_topk_set, tensor, topk_model


def load(m: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(onnx.shape_inference.infer_shapes(m))


def run(graph: gs.Graph, feeds: dict):
    proto = gs.export_onnx(graph)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def ops(graph: gs.Graph) -> list[str]:
    return [n.op for n in graph.nodes]


# fold_constants ----------------------------------------------------------------------------


def constant_add_model():
    nodes = [helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Mul", ["x", "ab"], ["y"])]
    return model(nodes, [tensor("x")], [tensor("y")], [const("a", [2.0]), const("b", [3.0])])


def test_fold_constants_evaluates_constant_subgraphs():
    graph = load(constant_add_model())
    assert fold_constants(graph) == 1
    assert ops(graph) == ["Mul"]
    folded = graph.nodes[0].inputs[1]
    assert isinstance(folded, Constant) and folded.values.tolist() == [5.0]
    x = np.ones((2, 3), np.float32)
    assert np.array_equal(run(graph, {"x": x})[0], 5 * x)


def test_fold_constants_leaves_input_dependent_graph_alone():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    graph = load(model(nodes, [tensor("x")], [tensor("y")]))
    assert fold_constants(graph) == 0 and ops(graph) == ["Relu", "Neg"]


# cleanup -----------------------------------------------------------------------------------


def test_cleanup_removes_nodes_no_output_needs():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["unused"])]
    graph = load(model(nodes, [tensor("x")], [tensor("y")]))
    assert cleanup(graph) == 1 and ops(graph) == ["Relu"]


def test_cleanup_leaves_a_clean_graph_alone():
    graph = load(model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y")]))
    assert cleanup(graph) == 0 and ops(graph) == ["Relu"]


# toposort ----------------------------------------------------------------------------------


def test_toposort_orders_producers_first():
    graph = load(
        model(
            [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
            [tensor("x")],
            [tensor("y")],
        )
    )
    graph.nodes.reverse()
    assert ops(graph) == ["Neg", "Relu"]
    assert toposort(graph) == 2 and ops(graph) == ["Relu", "Neg"]


def test_toposort_leaves_a_sorted_graph_alone():
    graph = load(
        model(
            [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
            [tensor("x")],
            [tensor("y")],
        )
    )
    assert toposort(graph) == 0 and ops(graph) == ["Relu", "Neg"]


# replace_unordered_topk --------------------------------------------------------------------

ROWS = {
    "distinct": np.random.default_rng(0).random((3, 40), dtype=np.float32),
    "ties": (np.round(np.random.default_rng(1).random((2, 30)) * 4) / 4).astype(np.float32),
    "fewer than k": np.random.default_rng(2).random((2, 3), dtype=np.float32),
    "all equal": np.zeros((2, 9), np.float32),
    "tiny values": (np.random.default_rng(3).random((1, 50)) * 1e-9).astype(np.float32),
    # the selection's whole documented domain, finite floats above -2**127, not only errors in [0, 1]
    "negative": (np.random.default_rng(4).standard_normal((2, 40)) * 100 - 50).astype(np.float32),
    "huge": np.random.default_rng(5).choice(
        np.array([-1.7e38, -1e38, -3e20, -1.0, 0.0, 2.0, 1e10, 1e38, 3.4e38], np.float32), (2, 40)
    ),
    "subnormal": np.random.default_rng(6).choice(
        np.array([-1e-40, -1e-45, 0.0, 1e-45, 2e-45, 1e-42, 1e-39, 1.2e-38], np.float32), (2, 40)
    ),
}


@pytest.mark.parametrize("case", ROWS, ids=str)
def test_topk_rewrite_selects_onnx_topk_set(case):
    k = 5
    graph = load(topk_model(k))
    assert replace_unordered_topk(graph) == 1
    assert "TopK" not in ops(graph)
    x = ROWS[case]
    (idx,) = run(graph, {"x": x})
    assert idx.shape == (x.shape[0], k) and idx.dtype == np.int64
    for b, row in enumerate(x):
        assert set(idx[b].tolist()) == numpy_topk_set(row, k)
        if row.size < k:  # every element is selected; spare slots repeat index 0, one of them
            assert (idx[b, row.size :] == 0).all()


def test_topk_rewrite_also_provides_values():
    graph = load(topk_model(4, with_values=True))
    replace_unordered_topk(graph)
    x = ROWS["distinct"]
    idx, vals = run(graph, {"x": x})
    assert np.array_equal(vals, np.take_along_axis(x, idx, axis=1))


def test_topk_rewrite_matches_the_reference_for_k_20000():
    graph = load(topk_model(20_000))
    replace_unordered_topk(graph)
    x = np.random.default_rng(4).random((2, 23_040), dtype=np.float32)
    (idx,) = run(graph, {"x": x})
    for b in range(2):
        assert set(idx[b].tolist()) == numpy_topk_set(x[b], 20_000)


@pytest.mark.parametrize(
    "m",
    [topk_model(5, sorted_=1), model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y")])],
    ids=["sorted TopK", "no TopK"],
)
def test_topk_rewrite_leaves_unmatched_graphs_alone(m):
    graph = load(m)
    before = ops(graph)
    assert replace_unordered_topk(graph) == 0 and ops(graph) == before


# registry ----------------------------------------------------------------------------------


def test_registry_lists_the_export_passes_and_rejects_unknown_names():
    assert {"fold_constants", "cleanup", "toposort", "replace_unordered_topk"} <= set(PASSES.names())
    with pytest.raises(ConfigError, match="unknown graph pass 'nope'"):
        PASSES["nope"]


def test_registry_rejects_duplicate_names():
    registry = PassRegistry()
    registry.register("a")(lambda g: 0)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda g: 0)


def test_int64_input_kept_dtype():
    # The rewrite's output replaces TopK's int64 indices: consumers keep their dtype.
    graph = load(topk_model(3))
    replace_unordered_topk(graph)
    assert graph.outputs[0].dtype == np.int64 and graph.outputs[0].name == "idx"
    assert TensorProto.INT64 == gs.export_onnx(graph).graph.output[0].type.tensor_type.elem_type
