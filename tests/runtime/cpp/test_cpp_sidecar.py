"""The C++ runtime's sidecar reader and plan hash against the Python runtime's (no TensorRT
needed): runtime/cpp/tests/sidecar_check, from the AddressSanitizer build (conftest.py), so the
fuzzing below also checks the reader for memory errors and leaks."""

import pytest

from helpers import plan_with_sidecar
from mattex.runtime import Profile


@pytest.fixture(scope="module")
def sidecar_check(asan_build):
    return asan_build


def write_engine(tmp_path, content=b"a raw TensorRT plan"):
    profiles = [Profile((1, 1080, 1920), (2, 1080, 1920), (2, 1080, 1920))]
    return plan_with_sidecar(tmp_path / "m.engine", content, profiles=profiles)


def test_cpp_reads_the_python_sidecar_and_hashes_the_plan_alike(sidecar_check, tmp_path):
    engine = write_engine(tmp_path)
    out = sidecar_check.run("sidecar_check", engine)
    assert out.stdout.split() == ["tensorrt", "10.13.0", "8.9", "1", "match", "accepts"]
    engine.write_bytes(b"a raw TensorRT plan, corrupted")
    out = sidecar_check.run("sidecar_check", engine)
    assert out.stdout.split()[4] == "mismatch"


def test_cpp_refuses_a_missing_or_foreign_sidecar(sidecar_check, tmp_path):
    (tmp_path / "x.engine").write_bytes(b"plan")
    out = sidecar_check.run("sidecar_check", tmp_path / "x.engine", check=False)
    assert out.returncode == 1 and "no sidecar" in out.stderr
    (tmp_path / "x.engine.json").write_text('{"format": "something-else"}')
    out = sidecar_check.run("sidecar_check", tmp_path / "x.engine", check=False)
    assert out.returncode == 1 and "not a mattex sidecar" in out.stderr


def write_rtx_engine(tmp_path, targets):
    return plan_with_sidecar(
        tmp_path / "rtx.engine",
        b"a raw TensorRT for RTX plan",
        tensorrt_version="1.7.1.116",
        gpu_name=None,
        compute_capability=None,
        profiles=[Profile((1, 1080, 1920), (1, 1080, 1920), (1, 1080, 1920))],
        precision="fp16",
        backend="tensorrt-rtx",
        target_compute_capabilities=targets,
    )


def run_check(sidecar_check, engine, *environment):
    return sidecar_check.run("sidecar_check", engine, *environment, check=False)


def test_cpp_reads_an_rtx_sidecar_built_without_a_gpu(sidecar_check, tmp_path):
    out = run_check(sidecar_check, write_rtx_engine(tmp_path, None))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["tensorrt-rtx", "1.7.1.116", "0.0", "1", "match", "accepts"]


@pytest.mark.parametrize(
    "targets, environment, problem",
    [
        (None, ("tensorrt-rtx", "1.7.1.116", 8, 9, "RTX 4090"), None),
        (None, ("tensorrt-rtx", "1.7.1.116", 9, 0, "H100"), "does not target"),
        ([(8, 6)], ("tensorrt-rtx", "1.7.1.116", 8, 9, "RTX 4090"), "does not target"),
        ([(7, 5)], ("tensorrt-rtx", "1.7.1.116", 7, 5, "RTX 2080 Ti"), None),
        (None, ("tensorrt-rtx", "1.6.0.12", 8, 9, "RTX 4090"), "only on the release that built them"),
        (None, ("tensorrt", "10.13.0", 8, 9, "RTX 4090"), "-DMATTEX_TENSORRT_RTX=ON"),
    ],
)
def test_cpp_applies_the_python_runtimes_rules_to_rtx_engines(sidecar_check, tmp_path, targets, environment, problem):
    from mattex.errors import EngineMismatchError
    from mattex.runtime.sidecar import Environment, check_environment, load_sidecar

    engine = write_rtx_engine(tmp_path, targets)
    out = run_check(sidecar_check, engine, *environment)
    backend, version, major, minor, gpu = environment
    python_error = None
    try:  # the Python runtime's verdict on the same sidecar and environment
        if backend != "tensorrt-rtx":
            raise EngineMismatchError("another backend")
        check_environment(load_sidecar(engine), Environment(version, gpu, (major, minor)))
    except EngineMismatchError as e:
        python_error = e
    assert (out.returncode == 0) == (python_error is None) == (problem is None)
    if problem:
        assert problem in out.stderr
    if problem and backend == "tensorrt-rtx":  # the same words, in full (mattex/shared_facts.json)
        assert out.stderr == f"error: {python_error}\n"


def test_cpp_keeps_the_tensorrt_rules(sidecar_check, tmp_path):
    engine = write_engine(tmp_path)
    assert run_check(sidecar_check, engine, "tensorrt", "10.13.0", 8, 9, "NVIDIA L4").stdout.strip() == "runs"
    other = run_check(sidecar_check, engine, "tensorrt", "10.14.0", 8, 9, "NVIDIA L4")
    assert other.returncode == 1 and "rebuild it here" in other.stderr
    rtx = run_check(sidecar_check, engine, "tensorrt-rtx", "1.7.1.116", 8, 9, "NVIDIA L4")
    assert rtx.returncode == 1 and "build the C++ runtime against TensorRT" in rtx.stderr


def test_cpp_sidecar_reader_survives_fuzzing(sidecar_check, tmp_path):
    """Random, truncated and overwritten sidecars: the C++ reader exits 0 or with its error
    code 1 and a message, never a crash (a signal) or a hang."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    engine = write_engine(tmp_path)
    valid = (tmp_path / "m.engine.json").read_bytes()

    @settings(
        max_examples=30, deadline=5000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(at=st.floats(0, 1, exclude_max=True), patch=st.binary(max_size=12), cut=st.booleans())
    def one(at, patch, cut):
        index = int(at * len(valid))
        data = valid[:index] if cut else valid[:index] + patch + valid[index + len(patch) :]
        (tmp_path / "m.engine.json").write_bytes(data)
        out = sidecar_check.run("sidecar_check", engine, check=False)
        assert out.returncode in (0, 1), (out.returncode, out.stderr[-500:])
        if out.returncode == 1:
            assert out.stderr.strip()

    one()


def test_cpp_sidecar_reader_survives_fields_of_the_wrong_type(sidecar_check, tmp_path):
    """Well-formed JSON with fields replaced by values of any type or deleted, read alone and
    with both environment checks: exit 0, or exit 1 with `error: <message>`; never a signal."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    engine = write_engine(tmp_path)
    valid = json.loads((tmp_path / "m.engine.json").read_text())
    values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=6)
        | st.sampled_from(["tensorrt-rtx", "10.13.0", "1.7.1.116", "1..x", "ampere+"]),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["min", "opt", "max"]), inner),
        max_leaves=10,
    )
    environments = [[], ["tensorrt", "10.13.0", "8", "9", "NVIDIA L4"], ["tensorrt-rtx", "1.7.1.116", "8", "9", "RTX"]]

    @settings(
        max_examples=40, deadline=10000, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        changes=st.lists(
            st.tuples(st.sampled_from(sorted(valid)), st.none() | st.just("delete") | values), min_size=1, max_size=3
        )
    )
    def one(changes):
        data = dict(valid)
        for key, value in changes:
            if value == "delete":
                data.pop(key, None)
            else:
                data[key] = value
        (tmp_path / "m.engine.json").write_text(json.dumps(data))
        for environment in environments:
            out = sidecar_check.run("sidecar_check", engine, *environment, check=False)
            assert out.returncode in (0, 1), (out.returncode, data, out.stderr[-500:])
            if out.returncode == 1:
                assert out.stderr.startswith("error: ") and len(out.stderr.strip()) > len("error:"), out.stderr

    one()
