"""Every bad input of the Python runtime's table that applies to C++ gets the same typed error
from the C++ runtime (its class named as Python names it) with the same message, never a crash.
The C API's statuses for the same errors are in ctest (runtime/cpp/tests/c_api_check.c) and
test_cpp_parity.py."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from helpers import plan_with_sidecar, python_open
from mattex.runtime import Matter, Profile


def cpp_open(cpp_build, path, env, precision=None) -> str:
    out = cpp_build.run("mattex_probe", "open", path, *([precision] if precision else []), env=env, check=False)
    assert out.returncode in (0, 1), (out.returncode, out.stderr[-2000:])
    line = out.stdout.strip()
    return "ok" if line.startswith("ok ") else line


def with_props(source, target, **changes):
    model = onnx.load(source)
    props = {p.key: p.value for p in model.metadata_props}
    props.update(changes)
    props = {key: value for key, value in props.items() if value is not None}
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, target)
    return target


def with_config(source, target, **changes):
    """`source` with entries of its export configuration changed (None removes one): the facts
    every reader takes from the file, where its flat metadata keys are only derived copies."""
    config = json.loads({p.key: p.value for p in onnx.load(source).metadata_props}["export_config"])
    config = {key: value for key, value in {**config, **changes}.items() if value is not None}
    return with_props(source, target, export_config=json.dumps(config))


def tiny_graph(path, node=None, opsets=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    node = node or helper.make_node("Relu", ["x"], ["y"])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets), path)
    return path


def bad_files(root, fp32):
    """name -> (path, environment, options): each a row of the Python runtime's bad-input table."""
    data = fp32.read_bytes()
    (root / "empty.onnx").write_bytes(b"")
    (root / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (root / "text.onnx").write_text("not an ONNX model\n")
    (root / "a_folder.onnx").mkdir()
    (root / "model.txt").write_bytes(data)
    (root / "external").mkdir()
    onnx.save(onnx.load(fp32), root / "external" / "ext.onnx", save_as_external_data=True, location="ext.data")
    (root / "external" / "ext.data").unlink()
    unknown = onnx.load(fp32)
    next(n for n in unknown.graph.node if n.op_type == "Conv").op_type = "NoSuchOp"
    onnx.save(unknown, root / "unknown_op.onnx")
    plugin = helper.make_node("TopkLastDim", ["x"], ["y"], domain="trt.plugins")
    plugin_opsets = [helper.make_opsetid("", 17), helper.make_opsetid("trt.plugins", 1)]
    no_env = {}
    return {
        "missing": (root / "missing.onnx", no_env, {}),
        "a folder": (root / "a_folder.onnx", no_env, {}),
        "empty": (root / "empty.onnx", no_env, {}),
        "truncated": (root / "truncated.onnx", no_env, {}),
        "not ONNX": (root / "text.onnx", no_env, {}),
        "wrong suffix": (root / "model.txt", no_env, {}),
        "foreign graph": (tiny_graph(root / "foreign.onnx"), no_env, {}),
        "external data missing": (root / "external" / "ext.onnx", no_env, {}),
        "unknown operator": (root / "unknown_op.onnx", no_env, {}),
        "TensorRT plugin": (tiny_graph(root / "plugin.onnx", plugin, plugin_opsets), no_env, {}),
        "malformed metadata": (with_props(fp32, root / "malformed.onnx", io_contract="{not json"), no_env, {}),
        "metadata lacking fields": (with_config(fp32, root / "lacking.onnx", height=None, precision=None), no_env, {}),
        "export_config of a wrong type": (with_config(fp32, root / "typed.onnx", height="tall"), no_env, {}),
        "flat keys are copies (opens)": (
            with_props(fp32, root / "flat.onnx", backbone=None, precision="int8"),
            no_env,
            {},
        ),
        "ONNX without mattex metadata (opens)": (with_props(fp32, root / "plain.onnx", export_config=None), no_env, {}),
        "int8 on OpenVINO": (with_config(fp32, root / "int8.onnx", precision="int8"), no_env, {}),
        "unknown inference precision": (fp32, no_env, {"inference_precision": "fp8"}),
        "bf16 (this CPU's verdict)": (fp32, no_env, {"inference_precision": "bf16"}),
        "MATTEX_THREADS=two": (fp32, {"MATTEX_THREADS": "two"}, {}),
        "MATTEX_THREADS=0": (fp32, {"MATTEX_THREADS": "0"}, {}),
    }


def test_bad_files_and_settings_get_pythons_errors(cpp_build, cpp_models, tmp_path):
    rows = []
    for name, (path, env, options) in bad_files(tmp_path, cpp_models["fp32"]).items():
        env = {**env, "MATTEX_CACHE": str(tmp_path / "cache")}
        python = python_open(path, env, **options)
        cpp = cpp_open(cpp_build, path, env, options.get("inference_precision"))
        if "is malformed (" in python:  # the JSON parsers' own words differ (Python's json, nlohmann's)
            python, cpp = python.split("is malformed (")[0], cpp.split("is malformed (")[0]
        rows.append((name, python, cpp))
    mismatched = [row for row in rows if row[1] != row[2]]
    assert not mismatched, "\n".join(f"{n}:\n  Python: {p}\n  C++:    {c}" for n, p, c in mismatched)
    opened = {name for name, python, _ in rows if python == "ok"}
    must_open = {"ONNX without mattex metadata (opens)", "flat keys are copies (opens)"}
    assert must_open <= opened <= must_open | {"bf16 (this CPU's verdict)"}, opened


def probe_run(cpp_build, model, folder, kind, src, bgr, env):
    folder.mkdir()
    src.tofile(folder / "0.src.bin")
    bgr.tofile(folder / "0.bgr.bin")
    batch, height, width = (src.shape[:3]) if kind == "frames" else (src.shape[0], *src.shape[2:])
    (folder / "cases").write_text(f"{kind} {batch} {height} {width}\n")
    out = cpp_build.run("mattex_probe", "run", model, folder, env=env, check=False)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    return "ok" if out.returncode == 0 else out.stdout.strip()


def test_bad_frames_get_pythons_errors(cpp_build, cpp_models, tmp_path):
    """Sizes the I/O contract refuses, batch 0 and float values outside [0, 1]."""
    env = {"MATTEX_CACHE": str(tmp_path / "cache")}
    matter = Matter.open(cpp_models["fp32"], backend="openvino", cache_dir=tmp_path / "cache")
    good = np.full((1, 3, 64, 64), 0.5, np.float32)
    nan, high = good.copy(), good.copy()
    nan[0, 1, 2, 3] = np.nan
    high[0, 0, 5, 5] = 1.5
    cases = {
        "height 62": ("float", good[:, :, :62], good[:, :, :62]),
        "batch 0": ("float", good[:0], good[:0]),
        "NaN": ("float", nan, good),
        "above 1": ("float", good, high),
        "frames 64x30": ("frames", np.zeros((1, 64, 30, 3), np.uint8), np.zeros((1, 64, 30, 3), np.uint8)),
    }
    for name, (kind, src, bgr) in cases.items():
        src, bgr = np.ascontiguousarray(src), np.ascontiguousarray(bgr)
        try:
            matter.matte_frames(src, bgr) if kind == "frames" else matter.matte_floats(src, bgr)
            python = "ok"
        except Exception as e:
            python = f"{type(e).__name__}: {e}"
        cpp = probe_run(cpp_build, cpp_models["fp32"], tmp_path / name.replace(" ", "_"), kind, src, bgr, env)
        # Each runtime names its own switch for the value check.
        python = python.replace("Matter(..., check_values=False)", "mattex::Options::checkValues = false")
        assert cpp == python != "ok", name


def write_engine(path, backend="tensorrt", content=b"a raw TensorRT plan"):
    rtx = {"tensorrt_version": "1.7.1.116", "gpu_name": None, "compute_capability": None}
    profiles = [Profile((1, 64, 64), (1, 64, 64), (2, 64, 64))]
    return plan_with_sidecar(
        path, content, profiles=profiles, backend=backend, **(rtx if backend == "tensorrt-rtx" else {})
    )


def test_engines_without_tensorrt_built_in_name_the_cmake_option(cpp_build, tmp_path):
    """This build has no TensorRT: an engine gets BackendUnavailableError naming the option;
    a plan that does not match its sidecar, or no sidecar, is CorruptEngineError first."""
    engine = write_engine(tmp_path / "m.engine")
    out = cpp_open(cpp_build, engine, {})
    assert out.startswith("BackendUnavailableError: ") and "-DMATTEX_WITH_TENSORRT=ON" in out, out
    rtx = write_engine(tmp_path / "rtx.engine", "tensorrt-rtx")
    out = cpp_open(cpp_build, rtx, {})
    assert out.startswith("BackendUnavailableError: ") and "-DMATTEX_TENSORRT_RTX=ON" in out, out
    engine.write_bytes(b"a raw TensorRT plan, changed")
    out = cpp_open(cpp_build, engine, {})
    assert out.startswith("CorruptEngineError: ") and "m.engine" in out, out
    (tmp_path / "lonely.engine").write_bytes(b"plan")
    assert cpp_open(cpp_build, tmp_path / "lonely.engine", {}).startswith("CorruptEngineError: ")
    # Python says the same of the changed plan
    with pytest.raises(Exception) as python:
        Matter.open(engine)
    assert type(python.value).__name__ == "CorruptEngineError"


def test_half_and_frame_conversions_match_numpy_under_asan(asan_build, cpp_models, tmp_path):
    """float32 -> float16 (round to nearest even, as numpy) and uint8 -> float16 (u / 255 in
    float32, then rounded) through a test backend that returns its float16 input as fgr, in the
    AddressSanitizer build."""
    from helpers import metadata_props

    fake = tmp_path / "m.fake"
    props = metadata_props(cpp_models["fp16-io16"])
    fake.write_text("dtype float16\ninputs src bgr\n" + "".join(f"prop {k} {v}\n" for k, v in props.items()))
    rng = np.random.default_rng(7)
    floats = rng.random((2, 3, 8, 12), dtype=np.float32)
    floats.flat[:6] = [0.0, 1.0, 2.0**-25, 2.0**-24 * 1.5, 1 - 2.0**-12, 0.5 + 2.0**-12]  # ties, subnormals
    frames = rng.integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    frames.flat[:256] = np.arange(256)
    for kind, src, expected in [
        ("float", floats, floats.astype(np.float16).astype(np.float32)),
        ("frames", frames, (frames.transpose(0, 3, 1, 2) / np.float32(255)).astype(np.float16).astype(np.float32)),
    ]:
        folder = tmp_path / kind
        assert probe_run(asan_build, fake, folder, kind, src, src, {}) == "ok"
        fgr = np.fromfile(folder / "0.fgr.cpp.bin", np.float32).reshape(expected.shape)
        np.testing.assert_array_equal(fgr, expected)
