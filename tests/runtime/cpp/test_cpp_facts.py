"""One source for what the Python and C++ runtimes both know: mattex/shared_facts.json. Python reads
it (mattex.facts); CMake turns it into the C++ headers (runtime/cpp/cmake/generate_facts.py). The
C++ messages are held to Python's in full, and an edited source reaches both runtimes."""

import copy
import inspect
import json
import shutil
import subprocess
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

import mattex.errors
from helpers import plan_with_sidecar
from mattex import facts
from mattex.errors import CorruptEngineError, EngineMismatchError, MattexError, ModelFileError
from mattex.metadata import ExportMetadata
from mattex.runtime.backends import BACKENDS
from mattex.runtime.sidecar import Environment, check_environment, load_sidecar

CPP = Path(__file__).resolve().parents[3] / "runtime" / "cpp"
GENERATOR = CPP / "cmake" / "generate_facts.py"


def test_every_python_error_class_is_in_the_shared_list_with_its_parent():
    classes = {
        name: cls
        for name, cls in inspect.getmembers(mattex.errors, inspect.isclass)
        if issubclass(cls, MattexError) and cls.__module__ == "mattex.errors"
    }
    parents = {
        name: None if cls is MattexError else next(b.__name__ for b in cls.__bases__ if issubclass(b, MattexError))
        for name, cls in classes.items()
    }
    assert parents == facts.error_parents()
    assert not issubclass(ModelFileError, CorruptEngineError)
    assert {facts.exit_code(name) for name in classes} == {2}


def test_the_shared_metadata_keys_are_export_metadatas_fields():
    """C++ requires and parses the keys the source names; Python's ExportMetadata must agree."""
    props = facts.FACTS["metadata_props"]
    required = [f.name for f in fields(ExportMetadata) if f.default is MISSING and f.default_factory is MISSING]
    assert props["required"] == required
    typed = {f.name: f.type for f in fields(ExportMetadata)}
    assert {typed[name] for name in props["json_lists"]} == {"list"}
    assert {typed[name] for name in props["json_objects"]} == {"dict", "dict | None"}


def test_the_c_and_cpp_status_lists_are_generated_from_the_source(asan_build, c_api):
    """mattex.h and matter.hpp keep no list of their own; the library names each code as the source does."""
    assert "MATTEX_ERROR_MODEL_FILE =" not in (CPP / "include" / "mattex" / "mattex.h").read_text()
    assert "enum class Status" not in (CPP / "include" / "mattex" / "matter.hpp").read_text()
    header = (asan_build.root / "generated" / "include" / "mattex" / "mattex_status.h").read_text()
    for status in facts.FACTS["statuses"]:
        assert f"  {status['c']} = {status['value']}" in header
        assert c_api.lib.mattex_status_name(status["value"]).decode() == status["name"]
    assert facts.status_values()["ResourceError"] == 10  # appended by issue 42: codes are ABI
    errors = (asan_build.root / "generated" / "include" / "mattex" / "errors.hpp").read_text()
    assert "struct MATTEX_CXX_API ModelFileError : Error {" in errors  # no CorruptEngineError, as in Python


def test_cpp_ranks_backends_as_the_python_registry_does(asan_build, tmp_path):
    ranks = dict(line.split() for line in asan_build.run("rank_check").stdout.splitlines())
    assert ranks == {name: str(facts.backend_rank(name) or -1) for name in ("openvino", "tensorrt", "tensorrt-rtx")}
    assert BACKENDS["openvino"].rank() == int(ranks["openvino"])  # openvino is installed here
    ranked = tmp_path / "m.ranked"
    ranked.write_text("a model")
    # The first registered (rank 0, not built in) and the second (rank 2) lose to the best built in.
    assert asan_build.run("rank_check", ranked).stdout.strip() == "ConfigError: opened by first"


# --- the sidecar's messages, C++ against Python, in full -------------------------------------------


def save(engine: Path, **changes) -> Path:
    return plan_with_sidecar(engine, b"a raw plan", **changes)


RTX = dict(backend="tensorrt-rtx", tensorrt_version="1.7.1.116", gpu_name=None, compute_capability=None)
ENVIRONMENTS = {
    "another TensorRT": ({}, ("10.14.0", 8, 9, "NVIDIA L4")),
    "an older major, version-compatible": ({"version_compatible": True}, ("9.0.0", 8, 9, "NVIDIA L4")),
    "another compute capability": ({}, ("10.13.0", 8, 6, "NVIDIA A10")),
    "ampere+ on Turing": ({"hardware_compatibility": "ampere+"}, ("10.13.0", 7, 5, "Tesla T4")),
    "another GPU model": ({}, ("10.13.0", 8, 9, "NVIDIA L40S")),
    "another TensorRT for RTX": (RTX, ("1.8.0.1", 8, 9, "RTX 4090")),
    "Turing, not a default target": (RTX, ("1.7.1.116", 7, 5, "RTX 2080")),
    "Volta, undocumented": (RTX, ("1.7.1.116", 7, 0, "Tesla V100")),
    "a target list without it": (
        {**RTX, "target_compute_capabilities": [(8, 6)]},
        ("1.7.1.116", 8, 9, "RTX 4090"),
    ),
}


@pytest.mark.parametrize("case", ENVIRONMENTS)
def test_cpp_refuses_an_environment_in_pythons_words(asan_build, tmp_path, case):
    changes, (version, major, minor, gpu) = ENVIRONMENTS[case]
    engine = save(tmp_path / "m.engine", **changes)
    sidecar = load_sidecar(engine)
    with pytest.raises(EngineMismatchError) as python:
        check_environment(sidecar, Environment(version, gpu, (major, minor)))
    out = asan_build.run("sidecar_check", engine, sidecar.backend, version, major, minor, gpu, check=False)
    assert out.stderr == f"error: {python.value}\n"


def sidecars(folder: Path) -> dict[str, Path]:
    """A missing sidecar, and sidecars whose format, backend or profiles no build writes."""
    good = json.loads(save(folder / "ok.engine").with_suffix(".engine.json").read_text())
    texts = {
        "missing": None,
        "foreign": '{"format": "something-else"}',
        "formatless": "{}",
        "list": "[1, 2]",
        "backend": json.dumps({**good, "backend": "onnx"}),
        "hardware": json.dumps({**good, "hardware_compatibility": "any"}),
        "a profile too large": json.dumps(
            {**good, "profiles": [{"min": [1, 64, 64], "opt": [1, 64, 64], "max": [1, 64, 1 << 17]}]}
        ),
        "a profile out of order": json.dumps(
            {**good, "profiles": [good["profiles"][0], {"min": [1, 64, 64], "opt": [1, 32, 64], "max": [1, 64, 64]}]}
        ),
    }
    faults = {  # one field each that no build writes, as Python's field rules name it
        "tensorrt_version": 5,
        "gpu_name": 3.5,
        "compute_capability": [8],
        "profiles": [],
        "io": 'it\'s "quoted"\n\x01',
        "version_compatible": "yes",
        "export_metadata": [1, None, True],
        "onnx_file": False,
        "target_compute_capabilities": [[8, "6"]],
    }
    texts |= {f"field {key}": json.dumps({**good, key: value}) for key, value in faults.items()}
    texts["field plan_sha256 missing"] = json.dumps({k: v for k, v in good.items() if k != "plan_sha256"})
    engines = {}
    for i, (name, text) in enumerate(texts.items()):
        engines[name] = folder / f"{i}.engine"
        engines[name].write_bytes(b"plan")
        if text is not None:
            engines[name].with_suffix(".engine.json").write_text(text)
    return engines


def test_cpp_refuses_a_sidecar_in_pythons_words(asan_build, tmp_path):
    for name, engine in sidecars(tmp_path).items():
        with pytest.raises(CorruptEngineError) as python:
            load_sidecar(engine)
        out = asan_build.run("sidecar_check", engine, check=False)
        assert out.stderr == f"error: {python.value}\n", name


@pytest.mark.parametrize(
    "config", [{"height": "tall"}, {"opset": True}, {"backbone_scale": "half"}, {"height": None}], ids=str
)
def test_cpp_refuses_an_export_configuration_in_pythons_words(asan_build, tmp_path, config):
    """The types of the configuration's fields and both messages (a field lacking, one mistyped)."""
    export_config = {key: kind() for key, kind in facts.config_types().items()} | config
    export_config = {key: value for key, value in export_config.items() if value is not None}
    props = {"mattex_version": "0.1.0", "torch_version": "2", "weights": "random seed=0", "io_contract": "{}"}
    props["export_config"] = json.dumps(export_config)
    model = tmp_path / "m.fake"
    model.write_text("dtype float32\ninputs src bgr\n" + "".join(f"prop {k} {v}\n" for k, v in props.items()))
    with pytest.raises(ModelFileError) as python:
        ExportMetadata.from_props(props, source=model.name)
    out = asan_build.run("mattex_probe", "open", model, check=False)
    assert out.stdout == f"ModelFileError: {python.value}\n"


# --- an edited source reaches both runtimes ----------------------------------------------------------


def test_an_edited_source_reaches_the_python_and_the_cpp_runtime(asan_build, tmp_path, monkeypatch):
    """The generated headers are what CMake wrote from the source; CMake configured on an edited copy
    (-DMATTEX_FACTS) generates the edited message, which the C++ reader, compiled against it, says;
    Python says it too."""
    built = asan_build.root / "generated"
    subprocess.run(["python3", GENERATOR, facts.SOURCE, tmp_path / "same"], check=True)
    for header in (
        "include/mattex/mattex_status.h",
        "include/mattex/errors.hpp",
        "include/mattex/limits.hpp",
        "src/mattex_facts.hpp",
    ):
        assert (tmp_path / "same" / header).read_text() == (built / header).read_text()

    edited = copy.deepcopy(facts.FACTS)
    edited["sidecar"]["messages"]["gpu_model"] = "EDITED: {built_gpu} is not {gpu}"
    source = tmp_path / "shared_facts.json"
    source.write_text(json.dumps(edited))
    configure = ["cmake", "-S", CPP, "-B", tmp_path / "build", f"-DMATTEX_FACTS={source}"]
    configure += [
        f"-D{option}=OFF" for option in ("MATTEX_WITH_OPENVINO", "MATTEX_BUILD_TESTS", "MATTEX_BUILD_EXAMPLES")
    ]
    configured = subprocess.run([*map(str, configure), "-DMATTEX_WITH_GSTREAMER=OFF"], capture_output=True, text=True)
    assert configured.returncode == 0, configured.stdout[-2000:] + configured.stderr[-2000:]
    generated = tmp_path / "build" / "generated"
    program = tmp_path / "sidecar_check"
    # sidecar_check's reader and rules alone (the library's other sources would take a minute to compile):
    # Profile::accepts, from matter.cpp, is needed only by the profile check this test does not reach.
    stub = tmp_path / "profile.cpp"
    accepts = "bool mattex::Profile::accepts(int64_t, int64_t, int64_t) const { return false; }"
    stub.write_text(f'#include "mattex/matter.hpp"\n{accepts}\n')
    sources = [CPP / "tests" / "sidecar_check.cpp", CPP / "src" / "sidecar.cpp", CPP / "src" / "backends.cpp", stub]
    includes = [
        f"-I{CPP / 'include'}",
        f"-I{generated / 'include'}",
        f"-I{generated / 'src'}",
    ]
    compiler = shutil.which("g++")
    subprocess.run([compiler, "-std=c++17", "-O0", *includes, *sources, "-lcrypto", "-o", program], check=True)
    engine = save(tmp_path / "m.engine")
    out = subprocess.run(
        [program, engine, "tensorrt", "10.13.0", "8", "9", "NVIDIA L40S"], capture_output=True, text=True
    )
    assert out.stderr == "error: EDITED: NVIDIA L4 is not NVIDIA L40S\n"

    monkeypatch.setitem(facts.FACTS["sidecar"]["messages"], "gpu_model", edited["sidecar"]["messages"]["gpu_model"])
    with pytest.raises(EngineMismatchError, match=r"^EDITED: NVIDIA L4 is not NVIDIA L40S$"):
        check_environment(load_sidecar(engine), Environment("10.13.0", "NVIDIA L40S", (8, 9)))
