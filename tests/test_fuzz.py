"""Property-based fuzzing of every file reader: random, truncated, overwritten and bit-flipped
bytes give only mattex's typed errors (MattexError), never another exception, and within a time
bound (hypothesis' deadline per example).

Readers: the ONNX metadata reader (verify/check) and the ONNX Runtime and OpenVINO backends
opening a file; the engine sidecar reader, bytes and fields, with the checks that use what it
read; the checkpoint reader (state_dicts and TorchScript archives). The image and video readers:
test_fuzz_media.py; the settings and damage both use: fuzzing.py.
Examples are derandomized (the same every run) and sized so the file takes about 15 s on 2 cores.
Each reader bug fuzzing found is also pinned below as a deterministic regression test.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import onnx
import pytest
import torch
from fuzzing import DAMAGE, damage, fuzz, only_typed_errors
from hypothesis import given
from hypothesis import strategies as st

from mattex.errors import ModelFileError

# torch.jit.load warns on every TorchScript example; it is still how the published files load.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


# --- seeds: one valid file of each kind ----------------------------------------------------------


def tiny_onnx(metadata: dict[str, str]) -> bytes:
    """A few hundred bytes of valid ONNX with mattex's inputs, outputs and metadata: mutations
    land in the structure, not in megabytes of weights."""
    from onnx import TensorProto, helper

    shape = [1, 3, 64, 64]
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["src"], ["fgr"]),
            helper.make_node("ReduceMean", ["bgr"], ["pha"], axes=[1], keepdims=1),
        ],
        "mattex",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("src", "bgr")],
        [
            helper.make_tensor_value_info("pha", TensorProto.FLOAT, [1, 1, 64, 64]),
            helper.make_tensor_value_info("fgr", TensorProto.FLOAT, shape),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def sidecar_dict() -> dict:
    from mattex.runtime.io_spec import Profile
    from mattex.runtime.sidecar import Sidecar

    return Sidecar(
        tensorrt_version="10.13.0",
        gpu_name="NVIDIA L4",
        compute_capability=(8, 9),
        profiles=[Profile((1, 64, 64), (1, 64, 64), (2, 64, 64))],
        io=[{"name": "src", "mode": "input", "dtype": "float32", "shape": [-1, 3, -1, -1]}],
        precision="fp32",
        onnx_sha256="0" * 64,
        plan_sha256="0" * 64,
        mattex_version="0.1.0",
    ).to_dict()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, small_file):
    exported = small_file.read_bytes()
    metadata = {p.key: p.value for p in onnx.load_from_string(exported).metadata_props}
    state = io.BytesIO()
    torch.save(
        {"backbone.features.0.0.weight": torch.arange(24.0).reshape(2, 3, 2, 2), "refiner.conv1.bias": torch.ones(2)},
        state,
    )
    script = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit: still how the published files load
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    return {
        "onnx": exported,
        "tiny_onnx": tiny_onnx(metadata),
        "pth": state.getvalue(),
        "torchscript": script.getvalue(),
        "sidecar": json.dumps(sidecar_dict(), indent=2).encode(),
    }


# --- ONNX ----------------------------------------------------------------------------------------


@fuzz(120)
@given(how=DAMAGE, which=st.sampled_from(["onnx", "tiny_onnx"]))
def test_onnx_metadata_reader(seeds, tmp_path, how, which):
    from mattex.exporter.onnx_file import read_export_metadata as file_metadata

    path = tmp_path / "f.onnx"
    path.write_bytes(damage(seeds[which], how))
    only_typed_errors(lambda: file_metadata(path))


@fuzz(150)
@given(how=DAMAGE)
def test_onnx_runtime_opening_a_damaged_file(seeds, tmp_path, how):
    from mattex.runtime import Matter

    path = tmp_path / "f.onnx"
    path.write_bytes(damage(seeds["tiny_onnx"], how))
    only_typed_errors(lambda: Matter.open(path, backend="onnxruntime"))


def test_openvino_opening_a_damaged_file(seeds, tmp_path):
    """As for ONNX Runtime (metadata bytes that are not UTF-8 included: ModelFileError)."""
    pytest.importorskip("openvino")
    from mattex.runtime import Matter

    @fuzz(80)
    @given(how=DAMAGE)
    def one(how):
        path = tmp_path / "f.onnx"
        path.write_bytes(damage(seeds["tiny_onnx"], how))
        only_typed_errors(lambda: Matter.open(path, backend="openvino", cache_dir=tmp_path / "cache"))

    one()


def _with_external_data(metadata_of: bytes, location: str, offset: int, length: int) -> bytes:
    """The tiny model with one initializer whose data lives in an external file at `location`."""
    from onnx import TensorProto, helper

    model = onnx.load_from_string(metadata_of)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 1.0, 1.0])
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        weight.external_data.add(key=key, value=value)
    model.graph.initializer.append(weight)
    model.graph.node[0].op_type, model.graph.node[0].input[:] = "Mul", ["src", "w"]
    return model.SerializeToString()


def test_onnx_readers_with_external_data_anywhere(seeds, tmp_path):
    """What onnx's loader itself refuses: external data that is missing, outside the model's
    folder (`../`, absolute paths), a folder, shorter than its offset and length says, or a name
    no file system takes. Every reader gives a typed error (or reads a file that is there)."""
    pytest.importorskip("openvino")
    from mattex.exporter.onnx_file import load_onnx, read_export_metadata
    from mattex.runtime import Matter

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.ones(3, np.float32).tobytes())
    (folder / "sub").mkdir()
    (tmp_path / "outside.bin").write_bytes(np.ones(3, np.float32).tobytes())
    locations = st.sampled_from(
        [
            "w.bin",
            "missing.bin",
            "../outside.bin",
            str(tmp_path / "outside.bin"),
            "sub",
            "sub/../w.bin",
            "/etc/passwd",
            "a\x00b",
            "",
        ]
    ) | st.text(max_size=12)

    @fuzz(40)
    @given(location=locations, offset=st.integers(0, 16), length=st.sampled_from([0, 4, 12, 1 << 40]))
    def one(location, offset, length):
        path = folder / "m.onnx"
        path.write_bytes(_with_external_data(seeds["tiny_onnx"], location, offset, length))
        only_typed_errors(lambda: load_onnx(path))
        only_typed_errors(lambda: read_export_metadata(path))
        only_typed_errors(lambda: Matter.open(path, backend="onnxruntime"))
        only_typed_errors(lambda: Matter.open(path, backend="openvino", cache_dir=tmp_path / "cache"))

    one()


def test_openvino_refuses_metadata_that_is_not_utf8_with_a_typed_error(seeds, tmp_path):
    pytest.importorskip("openvino")
    from mattex.runtime import Matter

    data = seeds["tiny_onnx"]
    at = data.index(b"mattex_version") + len(b"mattex_version") + 2  # the value's first bytes
    path = tmp_path / "f.onnx"
    path.write_bytes(data[:at] + b"\xff\xfe" + data[at + 2 :])
    with pytest.raises(ModelFileError, match="metadata is not UTF-8"):
        Matter.open(path, backend="openvino", cache_dir=tmp_path / "cache")


# --- engine sidecars -----------------------------------------------------------------------------


def use_sidecar(engine) -> None:
    """Read the sidecar and run everything that uses what it says (without TensorRT)."""
    from mattex.runtime.sidecar import Environment, check_environment, check_plan, load_sidecar

    sidecar = load_sidecar(engine)
    only_typed_errors(lambda: check_plan(engine, sidecar))
    for env in (Environment("10.13.0", "NVIDIA L4", (8, 9)), Environment("1.7.1.116", "RTX 4090", (8, 9))):
        only_typed_errors(lambda env=env: check_environment(sidecar, env))
    for profile in sidecar.profiles:
        profile.accepts((1, 64, 64))
        profile.describe()
    sidecar.to_dict()


@fuzz(300)
@given(how=DAMAGE)
def test_sidecar_reader_bytes(seeds, tmp_path, how):
    from mattex.runtime.sidecar import sidecar_path

    engine = tmp_path / "f.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_bytes(damage(seeds["sidecar"], how))
    only_typed_errors(lambda: use_sidecar(engine))


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["tensorrt", "tensorrt-rtx", "ampere+", "10.13.0", "1.7.1.116"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["min", "opt", "max", "x"]), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [*sidecar_dict(), "profiles.0.min", "profiles.0.opt", "profiles.0.max", "unknown"]
DELETE = object()


def set_field(d: dict, key: str, value) -> None:
    if key.startswith("profiles."):
        _, index, sub = key.split(".")
        target = d.get("profiles")
        if isinstance(target, list) and target and isinstance(target[0], dict):
            d, key = target[int(index)], sub
        else:
            return
    if value is DELETE:
        d.pop(key, None)
    else:
        d[key] = value


@fuzz(400)
@given(changes=st.lists(st.tuples(st.sampled_from(FIELDS), st.just(DELETE) | JSON), min_size=1, max_size=3))
def test_sidecar_reader_fields(tmp_path, changes):
    """Well-formed JSON with fields of the wrong type, shape or value: refused when read
    (CorruptEngineError naming the field), never a TypeError later in a check."""
    from mattex.runtime.sidecar import sidecar_path

    d = sidecar_dict()
    for key, value in changes:
        set_field(d, key, value)
    engine = tmp_path / "f.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(json.dumps(d))
    only_typed_errors(lambda: use_sidecar(engine))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("tensorrt_version", 10, "'tensorrt_version' must be a string"),
        ("compute_capability", [8], r"'compute_capability' must be \[major, minor\]"),
        ("compute_capability", None, r"'compute_capability' must be \[major, minor\]"),
        ("profiles", [], "'profiles' must be a non-empty list"),
        ("profiles", [{"min": [1, 64], "opt": [1, 64, 64], "max": [1, 64, 64]}], "'profiles' must be"),
        ("plan_sha256", 0.5, "'plan_sha256' must be a string"),
        ("hardware_compatibility", "any", "'hardware_compatibility' must be none or ampere"),
        ("target_compute_capabilities", [[8, "9"]], "'target_compute_capabilities' must be"),
        ("backend", "onnxruntime", "'backend' must be tensorrt or tensorrt-rtx"),
    ],
)
def test_sidecar_fields_of_the_wrong_type_are_refused_when_read(tmp_path, key, value, message):
    """Fuzzing found these read fine and failed later (AttributeError, TypeError, IndexError in
    check_environment and check_plan)."""
    from mattex.errors import CorruptEngineError
    from mattex.runtime.sidecar import load_sidecar, sidecar_path

    d = sidecar_dict()
    d[key] = value
    engine = tmp_path / "f.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(json.dumps(d))
    with pytest.raises(CorruptEngineError, match=message) as e:
        load_sidecar(engine)
    assert "f.engine.json" in str(e.value)


def test_a_deeply_nested_sidecar_is_refused(tmp_path):
    from mattex.errors import CorruptEngineError
    from mattex.runtime.sidecar import load_sidecar, sidecar_path

    engine = tmp_path / "f.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text("[" * 100_000)  # RecursionError inside json
    with pytest.raises(CorruptEngineError, match="f.engine.json is not a readable mattex sidecar"):
        load_sidecar(engine)


# --- checkpoints ---------------------------------------------------------------------------------


@fuzz(150)
@given(how=DAMAGE, which=st.sampled_from(["pth", "torchscript"]))
def test_checkpoint_reader(seeds, tmp_path, how, which):
    from mattex.model.checkpoint import read_state_dict

    path = tmp_path / "f.pth"
    path.write_bytes(damage(seeds[which], how))
    only_typed_errors(lambda: read_state_dict(path))


def _zip_with_central_directory_damaged(data: bytes) -> bytes:
    at = data.index(b"PK\x01\x02")  # the first central directory header's signature
    return data[:at] + b"PK\x01\x03" + data[at + 4 :]


def _zip_with_a_name_not_utf8(data: bytes) -> bytes:
    at = data.index(b"PK\x01\x02") + 46  # its file name
    return data[:at] + b"\xff\xfe" + data[at + 2 :]


def _torchscript_with_code_not_utf8(data: bytes) -> bytes:
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            body = source.read(info)
            archive.writestr(info, b"\xff\xfe" + body if info.filename.endswith(".py") else body)
    return out.getvalue()


@pytest.mark.parametrize(
    "seed, damaged, message",
    [
        ("pth", _zip_with_central_directory_damaged, "a damaged zip archive: BadZipFile"),
        ("pth", _zip_with_a_name_not_utf8, "a damaged zip archive: UnicodeDecodeError"),
        ("torchscript", _torchscript_with_code_not_utf8, "not a loadable TorchScript archive"),
    ],
)
def test_damaged_checkpoint_archives_raise_checkpoint_error(seeds, tmp_path, seed, damaged, message):
    """Fuzzing found BadZipFile, UnicodeDecodeError (zip names, TorchScript code), IndexError and
    std::bad_alloc (MemoryError) escaping the checkpoint reader."""
    from mattex.errors import CheckpointError
    from mattex.model.checkpoint import read_state_dict

    path = tmp_path / "f.pth"
    path.write_bytes(damaged(seeds[seed]))
    with pytest.raises(CheckpointError, match=message) as e:
        read_state_dict(path)
    assert "f.pth" in str(e.value)
