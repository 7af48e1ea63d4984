"""The C++ runtime as its users build it: ctest in both sanitizer builds, and the installed
CMake package found and used by a project of its own (tests/runtime/cpp/consumer)."""

import subprocess
from pathlib import Path

import numpy as np

import mattex
from mattex.runtime import Matter

CONSUMER = Path(__file__).parent / "consumer"


def ctest(build) -> str:
    out = subprocess.run(
        ["ctest", "--test-dir", str(build.root), "--output-on-failure"],
        capture_output=True,
        text=True,
        env=build.env(),
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    return out.stdout


def test_ctest_passes_under_ubsan_beside_openvino(cpp_build):
    assert "100% tests passed, 0 tests failed out of 2" in ctest(cpp_build)


def test_ctest_passes_under_asan_on_mattex_code(asan_build):
    """The runtime's checks and the C API's contract on the test backend, leaks included."""
    assert "100% tests passed, 0 tests failed out of 2" in ctest(asan_build)


def cmake(*args, cwd=None):
    out = subprocess.run(["cmake", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def test_the_installed_package_is_found_and_used_by_another_project(cpp_build, cpp_models, tmp_path):
    prefix = tmp_path / "prefix"
    cmake("--install", cpp_build.root, "--prefix", prefix)
    headers = sorted(p.relative_to(prefix).as_posix() for p in (prefix / "include").rglob("*") if p.is_file())
    # Private headers stay private; errors.hpp, limits.hpp and mattex_status.h are generated from
    # mattex/shared_facts.json.
    names = ("errors.hpp", "limits.hpp", "matter.hpp", "mattex.h", "mattex_status.h")
    assert headers == [f"include/mattex/{name}" for name in names]
    package = next(prefix.glob("lib*/cmake/mattex"))
    assert {"mattexConfig.cmake", "mattexConfigVersion.cmake", "mattexTargets.cmake"} <= {
        p.name for p in package.iterdir()
    }

    build = tmp_path / "consumer"
    cmake("-S", CONSUMER, "-B", build, f"-DCMAKE_PREFIX_PATH={prefix}")
    cmake("--build", build)
    env = cpp_build.env(MATTEX_CACHE=str(tmp_path / "cache"))
    model = cpp_models["fp32"]
    cpp = subprocess.run([build / "consumer", model], capture_output=True, text=True, env=env)
    c = subprocess.run([build / "consumer_c", model], capture_output=True, text=True, env=env)
    assert cpp.returncode == c.returncode == 0, cpp.stdout + cpp.stderr + c.stdout + c.stderr
    version, backend, precision, cpp_mean = cpp.stdout.split()
    assert (version, backend, precision) == (mattex.__version__, "openvino", "fp32")
    assert c.stdout.split()[0] == mattex.__version__

    bgr = np.full((1, 64, 64, 3), 100, np.uint8)
    src = bgr.copy()
    src[:, 16:48, 16:48] = 220
    pha = Matter.open(model, backend="openvino", cache_dir=tmp_path / "cache").matte_frames(src, bgr)["pha"]
    python_mean = float(np.asarray(pha, np.float64).mean())
    assert abs(float(cpp_mean) - python_mean) < 1e-6 and abs(float(c.stdout.split()[1]) - python_mean) < 1e-6
    assert python_mean > 0.1  # the square is matted
