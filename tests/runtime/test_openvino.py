"""The OpenVINO backend: mattex's fp32 and fp16 files as they are, within each precision's
budget of ONNX Runtime and of PyTorch; int8 files refused while OpenVINO fails their budget
(measured here, so a fixed release shows up); bf16 arithmetic with its own budget; the cache."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.errors import BackendUnavailableError, ModelFileError
from mattex.measure.budgets import BUDGETS
from mattex.measure.inputs import composite_pairs, synthetic_pairs
from mattex.measure.verify import verify_onnx
from mattex.runtime import Matter
from mattex.runtime.backends.openvino import check_inference_precision

ov = pytest.importorskip("openvino", reason='OpenVINO is not installed (pip install "mattex[openvino]")')
runner = CliRunner()


def has_bf16() -> bool:
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def open_both(path, cache):
    return (
        Matter.open(path, backend="onnxruntime", providers=["CPUExecutionProvider"]),
        Matter.open(path, backend="openvino", cache_dir=cache),
    )


@pytest.mark.parametrize("name", ["fp32", "fp16"])
def test_openvino_matches_onnx_runtime_within_the_precision_budget(name, request, tmp_path):
    path = request.getfixturevalue(f"{name}_file")
    ort_matter, ov_matter = open_both(path, tmp_path / "cache")
    assert ov_matter.kind == "openvino" and ov_matter.output_names == ort_matter.output_names
    budget = BUDGETS[name].outputs
    for src, bgr in synthetic_pairs(2, 1, 256, 256, seed=5):
        want, got = ort_matter.run(src, bgr), ov_matter.run(src, bgr)
        for output in ("pha", "fgr"):
            diff = np.abs(got[output].astype(np.float64) - want[output])
            assert diff.mean() <= budget[output].mean_abs, (output, diff.mean())
            if name == "fp32":
                assert diff.max() <= budget[output].max_abs, (output, diff.max())
        # The selection is the exporter's exact standard-op top-k on both engines.
        differs = (got["ref_sm"] != want["ref_sm"]).mean()
        assert differs <= BUDGETS[name].outputs["ref_sm"].mean_abs, differs


@pytest.mark.parametrize("name", ["fp32", "fp16"])
def test_verify_through_openvino_holds_each_file_to_its_budget(name, request, precision_data):
    path = request.getfixturevalue(f"{name}_file")
    pairs = composite_pairs(path, precision_data / "eval", precision_data / "eval_bg")
    report = verify_onnx(path, pairs, backend="openvino")
    assert report.precision == name and report.samples == 4
    assert report.passed, report.failures
    if name == "fp32":
        assert report.patch_mismatch == 0.0
        assert report.outputs["pha"].max_abs <= BUDGETS["fp32"].outputs["pha"].max_abs


# oneDNN's own switch for the instruction sets it may use; OpenVINO's CPU plugin honours it.
WITHOUT_AMX = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}


def test_int8_files_are_refused_because_openvino_fails_their_budget(int8_file, precision_data, tmp_path):
    """The refusal rests on this measurement: when an OpenVINO release computes mattex's int8
    files within budget this test fails, and the refusal (INT8_REFUSAL) can go. OpenVINO's int8
    path depends on the CPU: with AMX-INT8 the same file ran within budget (pha_sm 0.0035 off
    PyTorch, Intel Xeon, 2026-12-05), on AVX-512 VNNI and AVX2 it is 0.09 off (AMD EPYC, and the
    same Xeon told to use no AMX). A file must not be right or wrong by the CPU it lands on, so
    the failure is measured with AMX switched off, which any machine can do, in a process of
    its own (oneDNN reads the switch once)."""
    with pytest.raises(BackendUnavailableError, match="int8 files on ONNX Runtime"):
        Matter.open(int8_file, backend="openvino", cache_dir=tmp_path)
    script = textwrap.dedent(
        f"""
        import json
        from mattex.measure.inputs import composite_pairs
        from mattex.measure.verify import verify_onnx
        data = {str(precision_data)!r}
        pairs = composite_pairs({str(int8_file)!r}, data + "/eval", data + "/eval_bg")
        report = verify_onnx({str(int8_file)!r}, pairs, backend="openvino")
        print(json.dumps({{"passed": report.passed, "pha_sm": report.outputs["pha_sm"].mean_abs}}))
        """
    )
    env = {**os.environ, **WITHOUT_AMX, "MATTEX_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    without_amx = json.loads(result.stdout.strip().splitlines()[-1])
    assert not without_amx["passed"]
    assert without_amx["pha_sm"] > 3 * BUDGETS["int8"].outputs["pha_sm"].mean_abs  # 0.09 measured
    onnx_runtime = verify_onnx(
        int8_file, composite_pairs(int8_file, precision_data / "eval", precision_data / "eval_bg")
    )
    assert onnx_runtime.passed, onnx_runtime.failures


def test_verify_cli_with_openvino_writes_the_report(fp32_file, tmp_path):
    report = tmp_path / "ov.json"
    result = runner.invoke(
        app, ["verify", str(fp32_file), "--backend", "openvino", "--samples", "1", "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(report.read_text())
    assert saved["passed"] and saved["precision"] == "fp32"
    assert saved["outputs"]["pha"]["max_abs"] <= BUDGETS["fp32"].outputs["pha"].max_abs


def test_evaluate_through_openvino_holds_fp16_to_its_metric_budget(fp16_file, precision_data):
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(fp16_file),
            "--backend",
            "openvino",
            "--data",
            str(precision_data / "eval"),
            "--backgrounds",
            str(precision_data / "eval_bg"),
            "--resolution",
            "256x256",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["budget"]["precision"] == "fp16" and out["budget"]["passed"]
    assert all(r <= BUDGETS["fp16"].metrics.ratio for r in out["budget"]["ratios"].values())


def test_the_compiled_model_cache_is_written_once_and_reused(fp32_file, tmp_path):
    cache = tmp_path / "cache"
    entry = Matter.open(fp32_file, backend="openvino", cache_dir=cache).backend.cache_entry
    assert entry.parent == cache and entry.name.startswith(fp32_file.stem + "-")
    first = {p.name: p.stat().st_mtime_ns for p in entry.glob("*.blob")}
    assert first, list(entry.iterdir())
    Matter.open(fp32_file, backend="openvino", cache_dir=cache)
    assert {p.name: p.stat().st_mtime_ns for p in entry.glob("*.blob")} == first


def test_the_cache_cap_evicts_the_least_recently_used_model(fp32_file, fp16_file, tmp_path, monkeypatch):
    """Each file compiles into an entry of its own; under a cap that holds one, opening a second
    file evicts the first (least recently used), never the one being opened."""
    from mattex.runtime.model_cache import entries

    cache = tmp_path / "cache"
    first = Matter.open(fp32_file, backend="openvino", cache_dir=cache).backend.cache_entry
    one_entry = entries(cache)[0].size
    monkeypatch.setenv("MATTEX_CACHE_MAX_SIZE", str(one_entry + one_entry // 2))
    second = Matter.open(fp16_file, backend="openvino", cache_dir=cache).backend.cache_entry
    assert [e.path for e in entries(cache)] == [second] and not first.exists()
    third = Matter.open(fp32_file, backend="openvino", cache_dir=cache, cache_max_size=0).backend.cache_entry
    assert [e.path for e in entries(cache)] == [third]  # the option wins; the entry just opened stays


def test_bf16_budget_is_declared_and_holds_for_the_pytorch_bf16_proxy(precision_data):
    """The bf16 budget's evidence, on a small scale: PyTorch CPU autocast to bfloat16 (the proxy
    benchmarks/bf16_proxy.py measures) stays within it against fp32 on held-out composites."""
    from mattex.model.checkpoint import load_matting_refine
    from mattex.model.sources import demo_weights_path

    budget = BUDGETS["bf16"]
    assert (
        BUDGETS["fp16"].outputs["pha"].mean_abs
        < budget.outputs["pha"].mean_abs
        < BUDGETS["int8"].outputs["pha"].mean_abs
    )
    model = load_matting_refine(demo_weights_path("mobilenetv2"), refine_sample_pixels=8000).eval()
    pairs = list(synthetic_pairs(2, 1, 256, 256, seed=11))
    for src, bgr in pairs:
        src, bgr = torch.from_numpy(src), torch.from_numpy(bgr)
        with torch.no_grad():
            want = model(src, bgr)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got = [t.float() for t in model(src, bgr)]
        for name, g, w in zip(("pha", "fgr", "pha_sm", "fgr_sm", "err_sm"), got, want):
            diff = (g - w).abs()
            assert diff.mean() <= budget.outputs[name].mean_abs, (name, float(diff.mean()))
            if name.endswith("_sm"):
                assert diff.max() <= budget.outputs[name].max_abs, (name, float(diff.max()))
        assert float(((got[5] > 0) != (want[5] > 0)).float().mean()) <= budget.patch_mismatch


def test_bf16_is_refused_by_name_on_a_cpu_without_it():
    with pytest.raises(BackendUnavailableError, match="bf16 needs a CPU with BF16"):
        check_inference_precision("bf16", ["FP32", "INT8", "BIN"], "AMD EPYC")
    assert check_inference_precision("bf16", ["FP32", "BF16", "INT8"], "Xeon") == "bf16"
    assert check_inference_precision("f32", ["FP32"], "any") == "f32"


def test_bf16_on_this_cpu(fp32_file, precision_data, tmp_path):
    """Where the CPU has BF16 the fp32 file runs in bf16 within the bf16 budget; elsewhere the
    backend refuses rather than silently running f32."""
    if not has_bf16():
        with pytest.raises(BackendUnavailableError, match="BF16"):
            Matter.open(fp32_file, backend="openvino", inference_precision="bf16", cache_dir=tmp_path)
        pytest.skip("this CPU has no BF16 (AMX or AVX-512 BF16): refusal checked, bf16 accuracy not")
    pairs = composite_pairs(fp32_file, precision_data / "eval", precision_data / "eval_bg")
    report = verify_onnx(fp32_file, pairs, backend="openvino", inference_precision="bf16")
    assert report.precision == "bf16"
    assert report.passed, report.failures


def test_unknown_precision_corrupt_foreign_and_plugin_files_get_typed_errors(fp32_file, tmp_path):
    from mattex.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown OpenVINO inference precision 'fp8'"):
        Matter.open(fp32_file, backend="openvino", inference_precision="fp8", cache_dir=tmp_path)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(fp32_file.read_bytes()[:5000])
    with pytest.raises(ModelFileError, match="corrupt.onnx"):
        Matter.open(corrupt, backend="openvino", cache_dir=tmp_path)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), foreign)
    with pytest.raises(ModelFileError, match="not a mattex model"):
        Matter.open(foreign, backend="openvino", cache_dir=tmp_path)
    plugin = tmp_path / "plugin.onnx"
    node = helper.make_node("TopkLastDim", ["x"], ["y"], domain="trt.plugins")
    onnx.save(
        helper.make_model(
            helper.make_graph([node], "g", [x], [y]),
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("trt.plugins", 1)],
        ),
        plugin,
    )
    with pytest.raises(BackendUnavailableError, match="TensorRT plugin"):
        Matter.open(plugin, backend="openvino", cache_dir=tmp_path)


def test_openvino_backend_runs_with_torch_and_onnx_blocked(fp32_file, tmp_path):
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys
        import numpy as np

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnx", "torchvision"):
                    raise ImportError(f"blocked import of {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        from mattex.runtime import Matter
        matter = Matter.open({str(fp32_file)!r}, backend="openvino", cache_dir={str(tmp_path)!r})
        x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
        pha, fgr = matter(x, x * 0.5)
        assert pha.shape == (1, 1, 64, 64) and fgr.shape == (1, 3, 64, 64)
        assert not [m for m in sys.modules if m.split(".")[0] in ("torch", "onnx")]
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_matter_open_picks_openvino_for_float_files_and_onnx_runtime_for_int8(fp32_file, int8_file):
    import onnxruntime as ort

    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("ONNX Runtime has a GPU provider here: the automatic choice is ONNX Runtime")
    assert Matter.open(fp32_file).kind == "openvino"
    assert Matter.open(int8_file).kind == "onnxruntime"
    assert Matter.open(fp32_file, providers=["CPUExecutionProvider"]).kind == "onnxruntime"
    # ONNX Runtime's thread policy (what `mattex run` asks for) is no reason to leave OpenVINO
    assert Matter.open(fp32_file, spinning=False).kind == "openvino"
    assert Matter.open(int8_file, spinning=False).kind == "onnxruntime"


def test_each_input_shape_gets_its_own_static_compile(small_file, tmp_path, monkeypatch):
    """Compiled at open for the trace size, then once per new input shape (static shapes, which
    OpenVINO runs faster), the last STATIC_SHAPES_KEPT kept; every result as ONNX Runtime's."""
    from mattex.runtime.backends import openvino as backend_module

    monkeypatch.setattr(backend_module, "STATIC_SHAPES_KEPT", 2)
    matter = Matter.open(small_file, backend="openvino", cache_dir=tmp_path)
    onnx_runtime = Matter.open(small_file, backend="onnxruntime")
    assert list(matter.backend._by_shape) == [(1, 3, 96, 128)]
    for batch, height, width in ((1, 96, 128), (2, 64, 96), (1, 64, 64), (2, 64, 96)):
        [(src, bgr)] = synthetic_pairs(1, batch, height, width, seed=batch + height)
        got, expected = matter.matte_floats(src, bgr), onnx_runtime.matte_floats(src, bgr)
        np.testing.assert_allclose(got["pha"], expected["pha"], atol=1e-4)
        assert matter.backend.compiled.input(0).get_partial_shape().is_static
    assert list(matter.backend._by_shape) == [(1, 3, 64, 64), (2, 3, 64, 96)]  # least recent went first
