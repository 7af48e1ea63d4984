"""--topk plugin: the refiner's top-k handed to TensorRT 11's TopkLastDim plugin.

TensorRT cannot run here, so these tests prove what can be proven without it: the rewrite's
node is exactly what TensorRT's ONNX parser maps to the plugin (name, domain, fields, version),
`mattex check` validates plugin nodes, the graph around the plugin is right (with the plugin's
documented contract, top-k values and int32 indices, played by ONNX's own TopK, the whole model
matches PyTorch), and every tool refuses what the plugin cannot do. That the node has the form
TensorRT's fallback plugin importer reads is checked here; that the parser accepts it is not. The TensorRT build itself
is tested where TensorRT 11 and a GPU exist, and skipped with the reason elsewhere.
"""

import json
import re

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from helpers import metadata_props as read_metadata
from mattex.cli.main import app
from mattex.errors import BackendUnavailableError, ConfigError
from mattex.exporter.build import EngineBuildError, check_plugin_requirements, parse_profile, plugins_in_graph
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.exporter.lint import check_model
from mattex.exporter.passes import replace_unordered_topk_with_plugin
from mattex.model.sources import WeightsSource, build_model
from mattex.plugins import PLUGIN_DOMAIN, PluginRegistry, TensorRTPlugin
from mattex.runtime.matter import Matter
from onnx_graphs import const, model, numpy_topk_set, tensor, topk_model


def load(m: onnx.ModelProto) -> gs.Graph:
    return gs.import_onnx(onnx.shape_inference.infer_shapes(m))


def exported(graph: gs.Graph) -> onnx.ModelProto:
    proto = onnx.shape_inference.infer_shapes(gs.export_onnx(graph), strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def attrs(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def plugin_as_onnx_topk(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Play the plugin's documented contract with ONNX ops, so ONNX Runtime can run the rest of
    the graph: the k largest values along the last axis, sorted, with int32 indices."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    nodes = []
    for node in proto.graph.node:
        if node.domain != PLUGIN_DOMAIN:
            nodes.append(onnx.NodeProto.FromString(node.SerializeToString()))
            continue
        a = attrs(node)
        k_name, idx64 = f"{node.name}_k", f"{node.name}_idx64"
        proto.graph.initializer.append(const(k_name, [a["k"]], np.int64))
        nodes.append(
            helper.make_node(
                "TopK",
                [node.input[0], k_name],
                [node.output[0], idx64],
                axis=a["axis"],
                largest=a["is_largest"],
                sorted=1,
            )
        )
        nodes.append(helper.make_node("Cast", [idx64], [node.output[1]], to=TensorProto.INT32))
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    standard = [helper.make_opsetid(o.domain, o.version) for o in proto.opset_import if o.domain != PLUGIN_DOMAIN]
    del proto.opset_import[:]
    proto.opset_import.extend(standard)
    return proto


# the rewrite on a tiny graph ----------------------------------------------------------------


def test_rewrite_calls_the_plugin_as_tensorrts_parser_expects():
    graph = load(topk_model(5000, with_values=True))
    assert replace_unordered_topk_with_plugin(graph) == 1
    proto = exported(graph)
    plugin, cast = proto.graph.node
    assert (plugin.op_type, plugin.domain) == ("TopkLastDim", PLUGIN_DOMAIN)
    assert attrs(plugin) == {
        "type_id": 0,
        "k": 5000,
        "is_largest": 1,
        "axis": -1,
        "plugin_version": "1",
        "plugin_namespace": "",
    }
    assert cast.op_type == "Cast" and list(cast.input) == [plugin.output[1]]
    out = {o.name: o.type.tensor_type for o in proto.graph.output}
    assert out["idx"].elem_type == TensorProto.INT64 and out["vals"].elem_type == TensorProto.FLOAT
    assert [d.dim_value for d in out["idx"].shape.dim][1] == 5000


def test_rewrite_gives_the_onnx_topk_set_when_the_plugin_keeps_its_contract():
    graph = load(topk_model(5, with_values=True))
    replace_unordered_topk_with_plugin(graph)
    proto = plugin_as_onnx_topk(exported(graph))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 40), dtype=np.float32)
    idx, vals = session.run(["idx", "vals"], {"x": x})
    assert idx.dtype == np.int64 and idx.shape == (3, 5)
    assert np.array_equal(vals, np.take_along_axis(x, idx, axis=1))
    for b in range(3):
        assert set(idx[b].tolist()) == numpy_topk_set(x[b], 5)


def test_rewrite_names_the_input_type_for_the_plugin():
    half = model(
        [helper.make_node("TopK", ["x", "k"], ["v", "idx"], axis=1, sorted=0)],
        [tensor("x", TensorProto.FLOAT16)],
        [tensor("idx", TensorProto.INT64, ("B", 2))],
        [const("k", [2], np.int64)],
    )
    graph = load(half)
    replace_unordered_topk_with_plugin(graph)
    assert graph.nodes[0].attrs["type_id"] == 1  # TensorRT's DataType::kHALF
    double = model(
        [helper.make_node("TopK", ["x", "k"], ["v", "idx"], axis=1, sorted=0)],
        [tensor("x", TensorProto.DOUBLE)],
        [tensor("idx", TensorProto.INT64, ("B", 2))],
        [const("k", [2], np.int64)],
    )
    with pytest.raises(ConfigError, match="TopkLastDim takes float32, float16, int32, bfloat16, not float64"):
        replace_unordered_topk_with_plugin(load(double))


@pytest.mark.parametrize(
    "m",
    [topk_model(5, sorted_=1), model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x")], [tensor("y")])],
    ids=["sorted TopK", "no TopK"],
)
def test_rewrite_leaves_unmatched_graphs_alone(m):
    graph = load(m)
    before = [n.op for n in graph.nodes]
    assert replace_unordered_topk_with_plugin(graph) == 0
    assert [n.op for n in graph.nodes] == before


# the registry and the linter ----------------------------------------------------------------


def test_plugin_registry_fails_loudly():
    registry = PluginRegistry()
    registry.register(TensorRTPlugin("P", "1", "11.0", {"k": int}))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(TensorRTPlugin("P", "2", "11.0"))
    with pytest.raises(ConfigError, match="unknown TensorRT plugin 'Q'; known: P"):
        registry["Q"]
    with pytest.raises(ConfigError, match=r"unknown fields \['n'\], missing fields \['k'\]"):
        registry["P"].attributes(n=1)
    with pytest.raises(ConfigError, match="field 'k' must be int"):
        registry["P"].attributes(k=1.5)


def plugin_node_model(op="TopkLastDim", domain=PLUGIN_DOMAIN, **overrides):
    fields = {
        "type_id": 0,
        "k": 2,
        "is_largest": 1,
        "axis": -1,
        "plugin_version": "1",
        "plugin_namespace": "",
        **overrides,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    node = helper.make_node(op, ["x"], ["v", "i"], domain=domain, **fields)
    m = model([node], [tensor("x")], [tensor("v", shape=("B", 2)), tensor("i", TensorProto.INT32, ("B", 2))])
    m.opset_import.append(helper.make_opsetid(domain, 1))
    return m


def test_check_accepts_a_known_plugin_and_says_which_tensorrt_it_needs():
    report = check_model(plugin_node_model(), "tensorrt")
    assert report.passed
    (note,) = report.findings
    assert note.severity == "info" and "needs TensorRT >= 11.0" in note.message


@pytest.mark.parametrize(
    "m, problem",
    [
        (plugin_node_model(op="GridSamplePlugin"), "neither an ONNX op nor a known TensorRT plugin"),
        (plugin_node_model(k=None), r"missing \['k'\]"),
        (plugin_node_model(extra=3), r"unknown \['extra'\]"),
        (plugin_node_model(plugin_version="2"), "plugin_version '2'; TensorRT registers '1'"),
        (plugin_node_model(plugin_namespace="mattex"), "plugin_namespace 'mattex'; TensorRT registers ''"),
        (plugin_node_model(k=2.0), r"fields \['k'\] must be INT attributes"),
        (plugin_node_model(domain="my.plugins"), "my.plugins::TopkLastDim is neither"),
        (plugin_node_model(op="FusedConv", domain="com.microsoft"), "com.microsoft::FusedConv"),
    ],
    ids=[
        "unknown plugin",
        "missing field",
        "unknown field",
        "wrong version",
        "wrong namespace",
        "float field",
        "other domain",
        "onnxruntime op",
    ],
)
def test_check_refuses_plugin_nodes_tensorrt_cannot_build(m, problem):
    report = check_model(m, "tensorrt")
    assert not report.passed
    assert any(
        f.rule == "tensorrt-plugin" and f.severity == "error" and re.search(problem, f.message) for f in report.findings
    ), report.findings


def test_check_for_onnxruntime_refuses_a_plugin_file():
    report = check_model(plugin_node_model(), "onnxruntime")
    assert not report.passed
    assert "a TensorRT plugin: export with `topk` onnx" in report.findings[0].message


# the exported model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plugin_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugin") / "m.onnx"
    config = ExportConfig(height=128, width=160, sample_pixels=16 * 300, debug_outputs=True, topk="plugin")
    result = export_onnx(config, path)
    return config, path, result


def test_a_plugin_file_is_refused_by_triton_repo_on_the_onnx_backends(plugin_export, tmp_path):
    """docs/serving.md: a `--topk plugin` file on ONNX Runtime (or OpenVINO) is refused by name,
    leaving nothing; mattex's Python backend may take it (its runtime builds the engine)."""
    from mattex.serving.repository import RepositoryConfig, write_repository

    _, path, _ = plugin_export
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ConfigError, match=f"calls TensorRT plugins .*: {backend} cannot run it"):
            write_repository(RepositoryConfig(path, tmp_path / "repo", backend=backend))
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_plugin_export_passes_check_and_records_what_tensorrt_needs(plugin_export):
    _, path, result = plugin_export
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("TopkLastDim") == 1 and "TopK" not in ops and "CumSum" not in ops
    assert result.check.passed and check_model(proto, "tensorrt").passed
    assert not check_model(proto, "onnxruntime").passed
    meta = read_metadata(proto)
    assert meta["topk"] == "plugin"
    assert json.loads(meta["tensorrt_plugins"]) == [
        {"name": "TopkLastDim", "version": "1", "namespace": "", "min_tensorrt": "11.0", "min_patches": 300}
    ]


@pytest.mark.parametrize("size", [(128, 160), (96, 224)], ids=["trace size", "other size"])
def test_plugin_export_matches_pytorch_around_the_plugin(plugin_export, size):
    config, path, _ = plugin_export
    proto = plugin_as_onnx_topk(onnx.load(str(path)))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    src = rng.random((2, 3, *size), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"src": src, "bgr": bgr})))
    meta = read_metadata(onnx.load(str(path)))
    torch_model = build_model(WeightsSource.parse(meta["weights"]), **config.model_kwargs()).eval()
    with torch.no_grad():
        want = [t.numpy() for t in torch_model(torch.from_numpy(src), torch.from_numpy(bgr))]
    assert np.array_equal(got["ref_sm"], want[5])
    for name, w in zip(("pha", "fgr"), want[:2]):
        assert np.abs(got[name] - w).max() <= 1e-4, name


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precision_plugin_exports_name_the_plugins_input_type(precision, tmp_path):
    config = ExportConfig(height=128, width=160, sample_pixels=16 * 300, topk="plugin", precision=precision)
    calibration = None
    if precision == "int8":
        from mattex.calibration.int8 import CalibrationSettings
        from mattex.calibration.synthetic import write_synthetic_photomatte

        write_synthetic_photomatte(tmp_path / "pm", 2, seed=5, height=128, width=160)
        calibration = CalibrationSettings(tmp_path / "pm", samples=2)
    result = export_onnx(config, tmp_path / "m.onnx", calibration=calibration)
    assert result.check.passed
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "m.onnx")))
    (node,) = [n for n in proto.graph.node if n.op_type == "TopkLastDim"]
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
    want = {TensorProto.FLOAT: 0, TensorProto.FLOAT16: 1}[types[node.input[0]]]
    assert attrs(node)["type_id"] == want


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"target": "onnxruntime"}, "`target` tensorrt"),
        ({"refine_mode": "full"}, "`refine_mode` sampling"),
        ({"topk": "radix"}, "unknown `topk` 'radix'"),
    ],
)
def test_plugin_export_refuses_what_the_plugin_cannot_serve(overrides, problem, tmp_path):
    config = ExportConfig(height=128, width=160, sample_pixels=16 * 300, **{"topk": "plugin", **overrides})
    with pytest.raises(ConfigError, match=problem):
        export_onnx(config, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_cli_exports_with_the_plugin_and_suggests_no_onnxruntime_verify(tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--topk",
            "plugin",
            "--height",
            "128",
            "--width",
            "160",
            "--sample-pixels",
            "4800",
            "-o",
            str(out),
            "--no-engine",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["metadata"]["topk"] == "plugin"
    assert not any("verify" in step for step in summary["next"])
    check = CliRunner().invoke(app, ["check", str(out)])
    assert check.exit_code == 0 and "0 errors, 1 note" in check.output
    report = json.loads(CliRunner().invoke(app, ["check", str(out), "--json"]).stdout)
    assert report["passed"] and "needs TensorRT >= 11.0" in report["findings"][0]["message"]


def test_onnxruntime_refuses_a_plugin_file_by_name(plugin_export):
    _, path, _ = plugin_export
    with pytest.raises(BackendUnavailableError, match="calls the TensorRT plugin TopkLastDim"):
        Matter.open(path)
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code != 0 and "TensorRT only" in result.output and "Traceback" not in result.output


# the TensorRT build -------------------------------------------------------------------------


def test_build_refuses_profiles_the_plugin_cannot_serve(plugin_export):
    _, path, _ = plugin_export
    proto = onnx.load(str(path))
    plugins = plugins_in_graph(proto.graph)
    assert [(p["name"], p["min_axis_size"], p["min_tensorrt"]) for p in plugins] == [("TopkLastDim", 300, "11.0")]
    check_plugin_requirements(plugins, [parse_profile("80x80-128x160")], tensorrt_version="11.0.0")  # 400 >= 300
    with pytest.raises(ConfigError, match="64x64 has 256 patches but the TopkLastDim plugin selects k = 300"):
        check_plugin_requirements(plugins, [parse_profile("64x64-128x160")])
    with pytest.raises(EngineBuildError, match="needs TensorRT >= 11.0, this is 10.13.0"):
        check_plugin_requirements(plugins, [parse_profile("128x160")], tensorrt_version="10.13.0")
    with pytest.raises(ConfigError, match="`version_compatible`"):
        check_plugin_requirements(plugins, [parse_profile("128x160")], version_compatible=True)
    check_plugin_requirements([], [parse_profile("64x64")], version_compatible=True)


def test_build_reads_plugins_from_the_graph_not_the_metadata(plugin_export, tmp_path):
    _, path, _ = plugin_export
    proto = onnx.load(str(path))
    del proto.metadata_props[:]  # as graph tools that rewrite a file may leave it
    stripped = tmp_path / "stripped.onnx"
    onnx.save(proto, str(stripped))
    plugins = plugins_in_graph(onnx.load(str(stripped)).graph)
    with pytest.raises(ConfigError, match="selects k = 300"):
        check_plugin_requirements(plugins, [parse_profile("64x64")])


def _tensorrt_11_and_gpu():
    try:
        import tensorrt
    except ImportError:
        return "TensorRT is not installed (pip install tensorrt on a GPU machine)"
    if int(tensorrt.__version__.split(".")[0]) < 11:
        return f"TopkLastDim ships with TensorRT 11; this is {tensorrt.__version__}"
    from mattex.runtime.cuda import device_count

    try:
        return None if device_count() > 0 else "no CUDA GPU visible"
    except BackendUnavailableError as e:
        return str(e)


@pytest.mark.skipif(_tensorrt_11_and_gpu() is not None, reason=str(_tensorrt_11_and_gpu()))
def test_plugin_engine_builds_and_matches_pytorch(tmp_path):
    from mattex.exporter.build import build_engine

    config = ExportConfig(height=256, width=320, sample_pixels=16 * 400, topk="plugin")
    export_onnx(config, tmp_path / "m.onnx")
    build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", [parse_profile("256x320", 2)])
    rng = np.random.default_rng(1)
    src = rng.random((2, 3, 256, 320), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)
    pha, _ = Matter.open(tmp_path / "m.engine")(src, bgr)
    meta = read_metadata(onnx.load(str(tmp_path / "m.onnx")))
    torch_model = build_model(WeightsSource.parse(meta["weights"]), **config.model_kwargs()).eval()
    with torch.no_grad():
        want = torch_model(torch.from_numpy(src), torch.from_numpy(bgr))[0].numpy()
    assert np.abs(pha - want).max() <= 1e-3
