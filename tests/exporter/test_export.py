"""Exported graphs run on ONNX Runtime and match the PyTorch model (issue: exporter)."""

import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from helpers import golden_config, golden_files, golden_state_dict
from helpers import metadata_props as read_metadata
from mattex.cli.main import app
from mattex.errors import ConfigError, OutputPathError
from mattex.exporter import export as export_module
from mattex.exporter.config import OPSETS, ExportConfig
from mattex.exporter.export import ExportCheckError, export_onnx
from mattex.exporter.lint import check_model
from mattex.model.sources import WeightsSource, build_model

OUTPUTS = ("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm")
TRACE = dict(height=192, width=256)


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def pairs(batch, h, w, seed=7):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(batch, 3, h, w, generator=g)
    return src, (src + 0.25 * torch.randn(batch, 3, h, w, generator=g)).clamp(0, 1)


def compare(path, config, batch, h, w):
    """Max abs difference per output between ONNX Runtime and PyTorch on the same inputs."""
    meta = read_metadata(onnx.load(str(path), load_external_data=False))
    model = build_model(WeightsSource.parse(meta["weights"]), **config.model_kwargs())
    src, bgr = pairs(batch, h, w)
    got = session(path).run(None, {"src": src.numpy(), "bgr": bgr.numpy()})
    with torch.no_grad():
        want = [t.numpy() for t in model(src, bgr)]
    assert [g.shape for g in got] == [x.shape for x in want]
    return {n: float(np.abs(g - x).max()) for n, g, x in zip(OUTPUTS, got, want)}, want


def assert_faithful(diffs):
    assert diffs["ref_sm"] == 0.0, "selected patches differ"
    assert diffs["pha"] <= 1e-4 and diffs["fgr"] <= 1e-4, diffs


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One export per refine mode (mobilenetv2, default weights, debug outputs), made once."""
    folder = tmp_path_factory.mktemp("exports")
    made = {}
    for mode, extra in [
        ("sampling", {"sample_pixels": 16 * 400}),
        ("full", {}),
        ("thresholding", {"target": "onnxruntime", "threshold": 0.02}),
    ]:
        config = ExportConfig(refine_mode=mode, debug_outputs=True, **TRACE, **extra)
        made[mode] = (export_onnx(config, folder / f"{mode}.onnx"), config)
    return made


@pytest.mark.parametrize("mode", ["sampling", "full", "thresholding"])
@pytest.mark.parametrize("batch, h, w", [(1, 192, 256), (2, 192, 256), (1, 128, 160), (2, 128, 160)])
def test_mobilenetv2_matches_pytorch(exports, mode, batch, h, w):
    result, config = exports[mode]
    diffs, want = compare(result.path, config, batch, h, w)
    assert_faithful(diffs)
    if mode != "full":  # a meaningful test refines some patches and leaves others
        assert 0 < want[5].sum() < want[5].size


def test_k_larger_than_the_patch_count(exports):
    result, config = exports["sampling"]  # k = 400 > 16 * 24 = 384 patches at 64x96
    diffs, want = compare(result.path, config, 2, 64, 96)
    assert_faithful(diffs)


def test_exported_file_passes_checks_and_records_metadata(exports):
    result, config = exports["sampling"]
    proto = onnx.load(str(result.path))
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    assert check_model(proto, "tensorrt").passed
    assert not any(n.op_type in ("TopK", "NonZero") for n in proto.graph.node)
    meta = read_metadata(proto)
    assert meta["backbone"] == "mobilenetv2" and meta["refine_k"] == "400"
    assert meta["weights"].split()[0] in ("demo", "random") and meta["precision"] == "fp32"
    assert meta["opset"] == "17" and json.loads(meta["io_contract"])["outputs"] == list(OUTPUTS)
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert not list(result.path.parent.glob(".*.tmp"))  # the temporary name was renamed


@pytest.mark.parametrize("opset", OPSETS)
def test_every_supported_opset_exports_a_file_that_matches_pytorch(opset, tmp_path):
    """docs/commands/export.md: `--opset` 13..20. Each writes that opset, records it, and its file
    selects the same patches and mattes as PyTorch does (operators change form across these
    opsets: reductions take their axes as an input from 13 and 18)."""
    config = ExportConfig(height=64, width=96, sample_pixels=16 * 100, opset=opset, debug_outputs=True)
    result = export_onnx(config, tmp_path / f"opset{opset}.onnx")
    proto = onnx.load(str(result.path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == opset
    assert read_metadata(proto)["opset"] == str(opset)
    diffs, _ = compare(result.path, config, 1, 64, 96)
    assert_faithful(diffs)


def test_4k_preset_with_k_20000(tmp_path):
    # 576 x 640 has 144 * 160 = 23,040 patches, more than k = 20,000.
    config = ExportConfig.from_preset("4k", height=576, width=640, debug_outputs=True)
    assert (config.k, config.backbone_scale) == (20_000, 0.125)
    result = export_onnx(config, tmp_path / "4k.onnx")
    assert check_model(onnx.load(str(result.path)), "tensorrt").passed
    diffs, want = compare(result.path, config, 1, 576, 640)
    assert_faithful(diffs)


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.stem)
def test_golden_files_through_the_exported_graph(tmp_path, path):
    """The reference's recorded outputs through ONNX Runtime. Where the golden error map ties
    at the k-th value (92% of it is saturated at 1.0), ONNX picks the lowest-index tied patches
    and PyTorch's topk others: both are valid top-k sets, so there the test checks validity
    and compares every patch both chose alike."""
    backbone, kwargs = golden_config(path)
    torch.save(golden_state_dict(backbone), tmp_path / "golden.pth")
    mode = kwargs.get("refine_mode", "sampling")
    config = ExportConfig(
        backbone=backbone,
        backbone_scale=kwargs.get("backbone_scale", 0.25),
        refine_mode=mode,
        sample_pixels=kwargs.get("refine_sample_pixels", 80_000),
        threshold=kwargs.get("refine_threshold", 0.1),
        debug_outputs=True,
        target="onnxruntime" if mode == "thresholding" else "tensorrt",
        **TRACE,
    )
    export_onnx(config, tmp_path / "g.onnx", checkpoint=tmp_path / "golden.pth")
    data = np.load(path)
    got = dict(zip(OUTPUTS, session(tmp_path / "g.onnx").run(None, {"src": data["src"], "bgr": data["bgr"]})))
    # float32 rounding floor of these deep random networks (see test_golden.py); ONNX Runtime
    # kernels add their own rounding to that of the reference machine.
    tol = 2e-4 if backbone == "mobilenetv2" else 2e-3
    for name in ("pha_sm", "fgr_sm", "err_sm"):
        assert np.abs(got[name] - data[name]).max() <= tol, name
    ref, want_ref = got["ref_sm"][:, 0], data["ref_sm"][:, 0]
    agree = ref == want_ref
    if mode == "sampling":
        # The error map on the patch grid, as the refiner sees it.
        err = torch.nn.functional.interpolate(
            torch.from_numpy(data["err_sm"]), ref.shape[1:], mode="bilinear", align_corners=False
        )[:, 0].numpy()
        for b in range(2):
            e, sel, want = err[b].ravel(), ref[b].ravel() > 0, want_ref[b].ravel() > 0
            kth = np.sort(e)[::-1][config.k - 1]
            assert sel.sum() == want.sum() == min(config.k, (e > 0).sum())
            assert e[sel].min() >= e[~sel & (e > 0)].max(initial=0)  # a valid top-k set
            assert (sel == want)[e != kth].all()  # only ties at the k-th value may differ
    else:
        assert agree.all()
    agree = np.kron(agree, np.ones((4, 4)))[:, None].astype(bool)
    for name in ("pha", "fgr"):
        mask = np.broadcast_to(agree, got[name].shape)
        assert np.abs(got[name] - data[name])[mask].max() <= tol, name


def test_bad_configs_write_nothing(tmp_path):
    out = tmp_path / "x.onnx"
    with pytest.raises(ConfigError, match="fewer than k = 5000"):
        export_onnx(ExportConfig(height=64, width=64), out)
    with pytest.raises(ConfigError, match="TensorRT cannot build"):
        export_onnx(ExportConfig(refine_mode="thresholding", **TRACE), out)
    with pytest.raises(ConfigError, match="divisible by 4"):
        export_onnx(ExportConfig(height=190, width=256), out)
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_written_is_refused_before_the_trace(tmp_path):
    steps = []
    with pytest.raises(OutputPathError, match="is a folder"):
        export_onnx(ExportConfig(sample_pixels=16 * 100, **TRACE), tmp_path, progress=steps.append)
    assert steps == [] and list(tmp_path.iterdir()) == []


def test_a_graph_failing_the_check_is_refused_and_not_written(tmp_path, monkeypatch):
    # Without the TopK rewrite the traced graph keeps TopK(sorted=0): the check must stop it.
    monkeypatch.setattr(export_module, "EXPORT_PASSES", ["fold_constants", "cleanup", "toposort"])
    with pytest.raises(ExportCheckError, match="topk-limits"):
        export_onnx(ExportConfig(sample_pixels=16 * 100, **TRACE), tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_another_precision_of_a_model_reuses_its_trace_and_equals_a_new_export(tmp_path, monkeypatch):
    config = ExportConfig(height=64, width=64, sample_pixels=16 * 100)
    export_module.clear_trace_cache()
    export_onnx(config, tmp_path / "first.onnx")
    traces = []
    trace = export_module._trace
    monkeypatch.setattr(export_module, "_trace", lambda *args: traces.append(args) or trace(*args))
    steps = []
    export_onnx(replace(config, precision="fp16"), tmp_path / "fp16.onnx", progress=steps.append)
    export_onnx(config, tmp_path / "again.onnx")
    assert traces == [] and "reusing this process's trace of the model" in steps
    export_module.clear_trace_cache()
    export_onnx(config, tmp_path / "new.onnx")
    assert len(traces) == 1
    assert (tmp_path / "again.onnx").read_bytes() == (tmp_path / "new.onnx").read_bytes()
    assert (tmp_path / "first.onnx").read_bytes() == (tmp_path / "new.onnx").read_bytes()


def test_the_trace_key_holds_what_the_graph_depends_on(tmp_path):
    demo = WeightsSource("demo", sha256="a" * 64)
    key = export_module._graph_key
    base = ExportConfig(**TRACE)
    same = [replace(base, precision="fp16", io_dtype="float16"), replace(base, precision="int8", target="onnxruntime")]
    assert all(key(c, demo, ["p"]) == key(base, demo, ["p"]) for c in same)
    differ = [
        (replace(base, sample_pixels=16 * 99), demo, ["p"]),
        (replace(base, io="uint8"), demo, ["p"]),
        (replace(base, debug_outputs=True), demo, ["p"]),
        (replace(base, height=96), demo, ["p"]),
        (base, WeightsSource("demo", sha256="b" * 64), ["p"]),
        (base, WeightsSource("random", seed=0), ["p"]),
        (base, demo, ["p", "q"]),
    ]
    assert len({key(*args) for args in differ} | {key(base, demo, ["p"])}) == len(differ) + 1
    # A checkpoint known by its path alone could change under it: never reused.
    assert key(base, WeightsSource("checkpoint", tmp_path / "x.pth"), ["p"]) is None


def test_cli_export_finds_the_checkpoint_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(5)
    torch.save(
        build_model(WeightsSource("random", seed=5), backbone="mobilenetv2").state_dict(),
        tmp_path / "pytorch_mobilenetv2.pth",
    )
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--height",
            "128",
            "--width",
            "160",
            "--sample-pixels",
            "1600",
            "--no-engine",
            "-o",
            "m.onnx",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["metadata"]["weights"].startswith("checkpoint ")
    assert summary["nodes"] > 0 and summary["op_histogram"]["Conv"] > 0
    assert (tmp_path / "m.onnx").is_file()


def test_cli_export_uses_mattex_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    torch.save(
        build_model(WeightsSource("random", seed=6), backbone="mobilenetv2").state_dict(),
        home / "pytorch_mobilenetv2.pth",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MATTEX_HOME", str(home))
    result = CliRunner().invoke(
        app, ["export", "--height", "128", "--width", "160", "--sample-pixels", "1600", "--no-engine", "-o", "m.onnx"]
    )
    assert result.exit_code == 0, result.output
    meta = read_metadata(onnx.load(str(tmp_path / "m.onnx")))
    assert meta["weights"].startswith("checkpoint ")


def test_a_full_4k_frame_matches_pytorch(tmp_path):
    """'Runs at any size' up to 2160x3840: the 4K preset's 1/8 base scale at full 4K size, with a
    small k (500 patches: the selection, crops and paste at 4K's scale, without 4K's k cost)."""
    config = ExportConfig.from_preset("4k", height=256, width=256, sample_pixels=16 * 500, debug_outputs=True)
    result = export_onnx(config, tmp_path / "4k_small_k.onnx")
    diffs, want = compare(result.path, config, 1, 2160, 3840)
    assert_faithful(diffs)
    assert want[0].shape == (1, 1, 2160, 3840) and want[5].sum() == 500


@pytest.mark.parametrize(
    "overrides, name",
    [
        ({"backbone": "resnet50", "precision": "fp16"}, "bgm_resnet50_hd_fp16.onnx"),
        ({"precision": "int8", "io": "uint8"}, "bgm_mobilenetv2_hd_int8_uint8.onnx"),
        (
            {"precision": "fp16", "io_dtype": "float16", "refine_mode": "full"},
            "bgm_mobilenetv2_hd_fp16_full_float16.onnx",
        ),
        ({"height": 240, "width": 320}, "bgm_mobilenetv2_240x320_fp32.onnx"),
        ({"sample_pixels": 16_000}, "bgm_mobilenetv2_1080x1920_fp32.onnx"),  # not the preset's k
        ({"topk": "plugin"}, "bgm_mobilenetv2_hd_fp32_topk_plugin.onnx"),
    ],
)
def test_the_default_file_name_says_what_the_file_holds(overrides, name):
    assert ExportConfig.from_preset("hd", **overrides).default_filename() == name
    assert ExportConfig.from_preset("4k", backbone="resnet101").default_filename() == "bgm_resnet101_4k_fp32.onnx"


def test_export_names_its_file_and_never_silently_replaces_another_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = ["export", "--height", "128", "--width", "160", "--sample-pixels", "1600", "--no-engine"]
    name = tmp_path / "bgm_mobilenetv2_128x160_fp32.onnx"
    assert CliRunner().invoke(app, small).exit_code == 0
    assert name.is_file() and not (tmp_path / "mattex.onnx").exists()
    # Another model to the same name: refused before any work, naming the difference, file untouched.
    before = name.read_bytes()
    result = CliRunner().invoke(app, [*small, "--debug-outputs", "-o", name.name])
    assert result.exit_code == 2
    assert "OutputPathError" in result.output and "debug_outputs False (this export: True)" in result.output
    assert "--force" in result.output and name.read_bytes() == before
    # The same model again replaces it (that is how a model is updated); --force replaces another.
    result = CliRunner().invoke(app, small)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*small, "--debug-outputs", "-o", name.name, "--force"])
    assert result.exit_code == 0, result.output
    assert json.loads(read_metadata(onnx.load(str(name)))["export_config"])["debug_outputs"] is True
    # A file mattex did not export is another model too.
    (tmp_path / "notes.onnx").write_text("my notes")
    result = CliRunner().invoke(app, [*small, "-o", "notes.onnx"])
    assert result.exit_code == 2 and "notes.onnx holds a file mattex cannot read" in result.output
    assert (tmp_path / "notes.onnx").read_text() == "my notes"
