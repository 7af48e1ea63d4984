"""An engine backend owns its build: the fake engine backend (`fake_backend.py`: its runner and
its build in one module) registered with one line builds through `mattex build` and, ranked
first, `mattex export`, and its engines run; nothing else in mattex names it. The registry
carries the other per-backend choices its consumers used to ask for by name: the CPU-only
options, what a backend refuses, how a Triton repository serves it, its sidecar's own fields."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mattex.cli.main import app
from mattex.contract import ENGINE_SUFFIXES
from mattex.errors import ConfigError, CorruptEngineError
from mattex.runtime import Matter
from mattex.runtime.backends import BACKENDS, BackendEntry

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def fake_engine():
    BACKENDS.register(
        BackendEntry(
            "fake-engine",
            "fake_backend",
            "FakeEngineBackend",
            ENGINE_SUFFIXES,
            install="nothing to install",
            builder="fake_backend:FakeEngineBuild",
        )
    )
    yield BACKENDS["fake-engine"]
    BACKENDS.remove("fake-engine")


def same_as_onnx_runtime(engine: Path, onnx_file: Path) -> None:
    rng = np.random.default_rng(0)
    src = rng.random((1, 3, 96, 128), dtype=np.float32)
    bgr = np.clip(src + rng.normal(0, 0.2, src.shape), 0, 1).astype(np.float32)
    matter = Matter.open(engine)  # its sidecar names the backend
    assert matter.kind == "fake-engine"
    for got, want in zip(matter(src, bgr), Matter.open(onnx_file, backend="onnxruntime")(src, bgr)):
        np.testing.assert_array_equal(got, want)


def test_mattex_build_builds_with_a_registered_engine_backend(fake_engine, small_file, tmp_path):
    engine = tmp_path / "m.engine"
    args = ["build", str(small_file), "--backend", "fake-engine", "--profile", "96x128", "-o", str(engine)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    said = "".join(result.output.split())  # the console wraps long paths anywhere, mid-word too
    assert "".join(f"built {engine} with fake-engine fake-1.0 (no GPU); sidecar {engine}.json".split()) in said, said
    sidecar = json.loads(Path(f"{engine}.json").read_text())
    assert sidecar["backend"] == "fake-engine" and sidecar["compute_capability"] is None
    assert sidecar["profiles"] == [{"min": [1, 96, 128], "opt": [1, 96, 128], "max": [1, 96, 128]}]
    same_as_onnx_runtime(engine, small_file)
    # Its options are its build's to refuse: it takes none of TensorRT's.
    refused = runner.invoke(app, [*args, "--timing-cache", str(tmp_path / "t.cache")])
    said = " ".join(refused.output.split())
    assert (
        refused.exit_code == 2
        and "--timing-cache: not an option of the fake-engine build (it takes --workspace)" in said
    )


def test_mattex_export_builds_with_the_best_ranked_engine_backend(fake_engine, tmp_path):
    args = ["export", "--height", "96", "--width", "128", "--sample-pixels", "1600", "--json"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["engine_backend"] == "fake-engine" and summary["engine"] == str(tmp_path / "m.engine")
    same_as_onnx_runtime(tmp_path / "m.engine", tmp_path / "m.onnx")


def test_the_fake_engine_backend_touches_three_files():
    """Its runner and build (one module), its register line (a test) and this test: nothing in
    mattex itself, its docs or its other tests names it."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    naming = {
        name
        for name in listed
        if name.endswith((".py", ".md", ".toml", ".cpp", ".hpp", ".txt"))
        and (ROOT / name).is_file()
        and any(word in (ROOT / name).read_text(errors="replace") for word in ("FakeEngineBuild", "FakeEngineBackend"))
    }
    assert naming <= {
        "tests/runtime/fake_backend.py",
        "tests/runtime/test_backend_registry.py",
        "tests/runtime/test_engine_backend_build.py",
    }, naming
    assert len(naming) <= 3


def test_a_backend_s_sidecar_fields_are_its_own(fake_engine, tmp_path):
    from mattex.runtime.sidecar import Sidecar, load_sidecar

    common = dict(profiles=[], io=[], precision="fp32", onnx_sha256="a", plan_sha256="b", mattex_version="0")
    from mattex.runtime.io_spec import Profile

    common["profiles"] = [Profile((1, 96, 128), (1, 96, 128), (1, 96, 128))]
    unbound = dict(tensorrt_version="1", gpu_name=None, compute_capability=None)
    Sidecar(**common, **unbound, backend="fake-engine").save(tmp_path / "f.engine")
    assert load_sidecar(tmp_path / "f.engine").compute_capability is None  # no GPU of its own to name
    Sidecar(**common, **unbound, backend="tensorrt").save(tmp_path / "t.engine")
    with pytest.raises(CorruptEngineError, match=r"field 'compute_capability' must be \[major, minor\], got None"):
        load_sidecar(tmp_path / "t.engine")  # a TensorRT plan runs on the GPU it was built for


def test_the_registry_carries_what_consumers_asked_for_by_name(small_file, tmp_path):
    from mattex.serving.repository import RepositoryConfig, repository_backends, write_repository

    assert BACKENDS["onnxruntime"].cpu_options == {"providers": ["CPUExecutionProvider"]}
    assert "int8" in (BACKENDS["openvino"].refuses("int8") or "") and BACKENDS["openvino"].refuses("fp16") is None
    with pytest.raises(ConfigError, match="backend openvino takes no option `providers`"):
        Matter.open(small_file, backend="openvino", providers=["CPUExecutionProvider"])
    BACKENDS.register(
        BackendEntry(
            "fake-served", "fake_backend", "FakeBackend", (".onnx",), install="", repository={"backend": "fakeserve"}
        )
    )
    try:
        assert repository_backends()[-2:] == ("fake-served", "python")
        folder = write_repository(RepositoryConfig(small_file, tmp_path / "repo", backend="fake-served"))
        text = (folder / "config.pbtxt").read_text()
        assert 'backend: "fakeserve"' in text and "KIND_CPU" in text  # no GPU variant: its instances on the CPU
    finally:
        BACKENDS.remove("fake-served")
