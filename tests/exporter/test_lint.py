"""Each TensorRT lint rule: a tiny graph that breaks it and one that passes it."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import ConfigError
from mattex.exporter.lint import RULES, ModelView, RuleRegistry, check_model
from onnx_graphs import const, model, tensor, topk_model

IMG = ("B", 3, "H", "W")


def rule_findings(m: onnx.ModelProto, rule: str):
    return [f for f in RULES[rule](ModelView(m)) if f.severity == "error"]


def relu(inp="x", out="y"):
    return helper.make_node("Relu", [inp], [out])


def resize_model(**attrs):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], **attrs)
    return model([node], [tensor("x", shape=IMG)], [tensor("y", shape=IMG)], [const("scales", [1, 1, 2, 2])])


def qdq_model(zero_point):
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
    ]
    return model(nodes, [tensor("x")], [tensor("y")], [const("s", 0.1), const("zp", zero_point, np.int8)])


def dq_bias_model(dtype):
    """A dequantized constant, as ONNX Runtime writes int32 biases by default."""
    node = helper.make_node("DequantizeLinear", ["b", "s"], ["bf"])
    add = helper.make_node("Add", ["x", "bf"], ["y"])
    return model(
        [node, add],
        [tensor("x", shape=(4,))],
        [tensor("y", shape=(4,))],
        [const("b", [1, 2, 3, 4], dtype), const("s", 0.5)],
    )


def scatternd_model(reduction):
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], reduction=reduction)
    return model(
        [node],
        [tensor("x", shape=(4,))],
        [tensor("y", shape=(4,))],
        [const("i", [[1]], np.int64), const("u", [2.0])],
        opset=18,
    )


def cumsum_model(dtype, axis_from_input=False):
    axis = "a_in" if axis_from_input else "a"
    node = helper.make_node("CumSum", ["x", axis], ["y"])
    inputs = [tensor("x", dtype, ("N",))] + ([tensor("a_in", TensorProto.INT64, ())] if axis_from_input else [])
    return model([node], inputs, [tensor("y", dtype, ("N",))], [const("a", 0, np.int64)])


def reduce_model(axes_from_input):
    axes = "ax_in" if axes_from_input else "ax"
    node = helper.make_node("ReduceSum", ["x", axes], ["y"])
    inputs = [tensor("x")] + ([tensor("ax_in", TensorProto.INT64, (1,))] if axes_from_input else [])
    return model([node], inputs, [tensor("y", shape=("B", 1))], [const("ax", [1], np.int64)])


def data_dependent_model():
    # Reshape to a shape computed from pixel values: no static engine can hold it.
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
        helper.make_node("Cast", ["m"], ["mi"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["mi", "one"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["y"]),
    ]
    return model(nodes, [tensor("x", shape=IMG)], [tensor("y", shape=("N",))], [const("one", [1], np.int64)])


def shape_derived_model():
    # The same op chain from Shape: sizes depend on the input's shape only.
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ConstantOfShape", ["s"], ["y"])]
    return model(nodes, [tensor("x", shape=IMG)], [tensor("y", shape=IMG)])


def ratio_input_model(dtype=TensorProto.FLOAT):
    # RobustVideoMatting's downsample_ratio: a scalar input that sets Resize's scales.
    nodes = [
        helper.make_node("Cast", ["ratio"], ["r"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["ones", "r", "r"], ["scales"], axis=0),
        helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear"),
    ]
    return model(
        nodes, [tensor("x", shape=IMG), tensor("ratio", dtype, (1,))], [tensor("y", shape=IMG)], [const("ones", [1, 1])]
    )


def uint8_frames_model():
    """--io uint8: frames (B, H, W, 3) uint8 in, converted to (B, 3, H, W) floats in [0, 1]."""
    nodes = [
        helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Div", ["t", "scale"], ["y"]),
    ]
    return model(
        nodes, [tensor("x", TensorProto.UINT8, ("B", "H", "W", 3))], [tensor("y", shape=IMG)], [const("scale", 255.0)]
    )


def uint8_transpose_model():
    """Frames transposed while still uint8, then cast."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["t"], ["y"], to=TensorProto.FLOAT),
    ]
    return model(nodes, [tensor("x", TensorProto.UINT8, ("B", "H", "W", 3))], [tensor("y", shape=IMG)])


def foreign_op_model(domain="com.microsoft", op="FastGelu"):
    # By default an ONNX Runtime contrib op, as ORT's offline optimizer writes them. (Not Gelu:
    # TensorRT's parser ignores the domain and would import com.microsoft::Gelu as ONNX's Gelu.)
    m = model([helper.make_node(op, ["x"], ["y"], domain=domain)], [tensor("x")], [tensor("y")])
    m.opset_import.append(helper.make_opsetid(domain, 1))
    return m


def loop_model():
    """y = x + 1, three times, as an ONNX Loop."""
    body = helper.make_graph(
        [helper.make_node("Add", ["x_in", "one"], ["x_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body",
        [tensor("i", TensorProto.INT64, ()), tensor("c_in", TensorProto.BOOL, ()), tensor("x_in")],
        [tensor("c_out", TensorProto.BOOL, ()), tensor("x_out")],
        [const("one", [1.0])],
    )
    return model(
        [helper.make_node("Loop", ["trip", "cond", "x"], ["y"], body=body)],
        [tensor("x")],
        [tensor("y")],
        [const("trip", 3, np.int64), const("cond", True, np.bool_)],
    )


def scatter_elements_model(data_width):
    """Scatter a row of N values into a buffer `data_width` wide (an int: fixed; "N": as wide)."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "zero", "one"], ["b"]),
        helper.make_node("Concat", ["b", "width"], ["buffer_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["buffer_shape"], ["buffer"]),
        helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT64),
        helper.make_node("ScatterElements", ["buffer", "i", "x"], ["y"], axis=1),
    ]
    inits = [const("zero", [0], np.int64), const("one", [1], np.int64)]
    if data_width == "N":
        nodes[2] = helper.make_node("Shape", ["x"], ["buffer_shape"])
    else:
        inits.append(const("width", [data_width], np.int64))
    return model(nodes, [tensor("x")], [tensor("y", shape=("B", data_width))], inits)


def bisection_model(steps, select):
    """An unrolled search for the largest t with count(x >= t) >= 4 per row: each step selects
    between two coupled states with Where (`select`), or updates one state by arithmetic."""
    nodes, inits = [], [const("half", 0.5), const("k", 4.0), const("ax", [1], np.int64)]
    nodes += [
        helper.make_node("ReduceMin", ["x"], ["lo0"], axes=[1]),
        helper.make_node("ReduceMax", ["x"], ["hi0"], axes=[1]),
        helper.make_node("Sub", ["hi0", "lo0"], ["w"]),
    ]
    lo, hi = "lo0", "hi0"
    for i in range(steps):
        if select:
            nodes += [
                helper.make_node("Sub", [hi, lo], [f"d{i}"]),
                helper.make_node("Mul", [f"d{i}", "half"], [f"h{i}"]),
                helper.make_node("Add", [lo, f"h{i}"], [f"m{i}"]),
            ]
            cand = f"m{i}"
        else:
            inits.append(const(f"f{i}", 2.0 ** -(i + 1)))
            nodes += [
                helper.make_node("Mul", ["w", f"f{i}"], [f"d{i}"]),
                helper.make_node("Add", [lo, f"d{i}"], [f"m{i}"]),
            ]
            cand = f"m{i}"
        nodes += [
            helper.make_node("GreaterOrEqual", ["x", cand], [f"ge{i}"]),
            helper.make_node("Cast", [f"ge{i}"], [f"gf{i}"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", [f"gf{i}", "ax"], [f"c{i}"]),
            helper.make_node("GreaterOrEqual", [f"c{i}", "k"], [f"ok{i}"]),
        ]
        if select:
            nodes += [
                helper.make_node("Where", [f"ok{i}", cand, lo], [f"lo{i + 1}"]),
                helper.make_node("Where", [f"ok{i}", hi, cand], [f"hi{i + 1}"]),
            ]
            lo, hi = f"lo{i + 1}", f"hi{i + 1}"
        else:
            nodes += [
                helper.make_node("Cast", [f"ok{i}"], [f"okf{i}"], to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"d{i}", f"okf{i}"], [f"s{i}"]),
                helper.make_node("Add", [lo, f"s{i}"], [f"lo{i + 1}"]),
            ]
            lo = f"lo{i + 1}"
    nodes.append(helper.make_node("GreaterOrEqual", ["x", lo], ["sel"]))
    nodes.append(helper.make_node("Cast", ["sel"], ["y"], to=TensorProto.FLOAT))
    return model(nodes, [tensor("x")], [tensor("y")], inits)


def plugin_model():
    from mattex.plugins import PLUGIN_DOMAIN, TOPK_LAST_DIM

    attrs = TOPK_LAST_DIM.attributes(type_id=0, k=2, is_largest=1, axis=-1)
    node = helper.make_node("TopkLastDim", ["x"], ["v", "i"], domain=PLUGIN_DOMAIN, **attrs)
    m = model([node], [tensor("x")], [tensor("v", shape=("B", 2)), tensor("i", TensorProto.INT32, ("B", 2))])
    m.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return m


CASES = {
    "unsupported-op": (
        model([helper.make_node("Unique", ["x"], ["y"])], [tensor("x", shape=("N",))], [tensor("y", shape=("M",))]),
        model([relu()], [tensor("x")], [tensor("y")]),
    ),
    "control-flow": (loop_model(), model([relu()], [tensor("x")], [tensor("y")])),
    "scatter-extent": (scatter_elements_model(5), scatter_elements_model("N")),
    "where-chain": (bisection_model(20, select=True), bisection_model(20, select=False)),
    "topk-limits": (topk_model(5000, sorted_=0), topk_model(100, sorted_=1)),
    "scatternd-reduction": (scatternd_model("add"), scatternd_model("none")),
    "qdq-zero-point": (qdq_model(3), qdq_model(0)),
    "qdq-int8": (dq_bias_model(np.int32), dq_bias_model(np.int8)),
    "resize-mode": (
        resize_model(mode="cubic"),
        resize_model(mode="linear", coordinate_transformation_mode="half_pixel"),
    ),
    "float64": (
        model(
            [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)],
            [tensor("x")],
            [tensor("y", TensorProto.DOUBLE)],
        ),
        model(
            [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT16)],
            [tensor("x")],
            [tensor("y", TensorProto.FLOAT16)],
        ),
    ),
    "data-dependent-shape": (data_dependent_model(), shape_derived_model()),
    "shape-tensor-input": (ratio_input_model(), uint8_frames_model()),
    "uint8-cast": (uint8_transpose_model(), uint8_frames_model()),
    "cumsum-float": (cumsum_model(TensorProto.INT32), cumsum_model(TensorProto.FLOAT)),
    "reduce-axes-constant": (reduce_model(True), reduce_model(False)),
    # A known plugin passing it: tests/exporter/test_topk_plugin.py.
    "tensorrt-plugin": (foreign_op_model(), model([relu()], [tensor("x")], [tensor("y")])),
    "no-plugins": (plugin_model(), model([relu()], [tensor("x")], [tensor("y")])),
    "onnxruntime-domain": (plugin_model(), foreign_op_model()),
}


def test_every_registered_rule_has_a_case():
    assert sorted(CASES) == sorted(RULES.names())


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_flags_the_breaking_graph(rule):
    breaking, _ = CASES[rule]
    assert rule_findings(breaking, rule), f"{rule} missed its breaking graph"
    assert not check_model(breaking, RULES.targets_of(rule)[0]).passed


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_passes_the_conforming_graph(rule):
    _, passing = CASES[rule]
    assert rule_findings(passing, rule) == []


def test_more_breaking_variants():
    assert any("K = 5000" in f.message for f in rule_findings(topk_model(5000, sorted_=1), "topk-limits"))
    assert rule_findings(
        resize_model(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"), "resize-mode"
    )
    assert rule_findings(ratio_input_model(TensorProto.INT64), "shape-tensor-input")
    assert rule_findings(ratio_input_model(TensorProto.UINT8), "shape-tensor-input")  # a uint8 parameter
    nonzero = model(
        [helper.make_node("NonZero", ["x"], ["y"])], [tensor("x")], [tensor("y", TensorProto.INT64, (2, "N"))]
    )
    assert rule_findings(nonzero, "data-dependent-shape")
    assert rule_findings(cumsum_model(TensorProto.FLOAT, axis_from_input=True), "cumsum-float")


def test_onnxruntime_target_has_no_tensorrt_rules():
    report = check_model(topk_model(5000, sorted_=0), "onnxruntime")
    assert report.passed and report.rules == ["onnxruntime-domain"]


def test_registry_fails_loudly():
    with pytest.raises(ConfigError, match="unknown check target 'tflite'"):
        check_model(topk_model(5), "tflite")
    with pytest.raises(ConfigError, match="unknown lint rule"):
        RULES["nope"]
    registry = RuleRegistry()
    registry.register("r", rtx="rejects")(lambda view: iter(()))
    with pytest.raises(ValueError, match="already registered"):
        registry.register("r", rtx="rejects")(lambda view: iter(()))
    with pytest.raises(ValueError, match="say what it rests on"):
        registry.register("s", rtx="builds")
    with pytest.raises(ValueError, match="rtx must be one of"):
        registry.register("t", rtx="maybe")


def reference_style_graph():
    """What the published BGMv2 ONNX files do: TopK K=5000 sorted=0, then NonZero."""
    nodes = [
        helper.make_node("TopK", ["x", "k"], ["vals", "idx"], axis=1, sorted=0),
        helper.make_node("NonZero", ["x"], ["nz"]),
    ]
    return model(
        nodes,
        [tensor("x")],
        [tensor("idx", TensorProto.INT64, ("B", 5000)), tensor("nz", TensorProto.INT64, (2, "N"))],
        [const("k", [5000], np.int64)],
    )


def test_check_cli_fails_the_reference_style_graph(tmp_path):
    path = tmp_path / "reference.onnx"
    onnx.save(reference_style_graph(), path)
    result = CliRunner().invoke(app, ["check", str(path), "--json"])
    assert result.exit_code == 1
    import json

    rules = {f["rule"] for f in json.loads(result.output)["findings"]}
    assert rules == {"topk-limits", "data-dependent-shape"}


def test_check_cli_rejects_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x00\x01 not a protobuf")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 2 and "ModelFileError" in result.output
    assert "not a readable ONNX model" in " ".join(result.output.split())


def test_the_docs_rule_table_is_generated_from_the_registry():
    from pathlib import Path

    from mattex.exporter.lint import RULES_TABLE_MARKERS, rules_markdown

    page = (Path(__file__).resolve().parents[2] / "docs" / "commands" / "check.md").read_text()
    start, end = RULES_TABLE_MARKERS
    assert start in page and end in page
    table = page.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == rules_markdown(), (
        "docs/commands/check.md's rule table differs from RULES: regenerate it with python -m mattex.exporter.lint"
    )
    assert all(info.catches for info in RULES.info.values()), "every rule says what it catches"
