"""The C++ runtime (runtime/cpp), built with CMake once per session against the installed
`openvino` wheel, and small mattex exports to hold it to the Python runtime.

Two builds: under UndefinedBehaviorSanitizer with OpenVINO and the examples (everything the
tests run), and under AddressSanitizer without OpenVINO (its TBB `dlopen`s with RTLD_DEEPBIND,
which ASan refuses), running mattex's own code on the test backend. The Debian packages they
compile against are installed by `.ci/run`; a machine without them fails these tests, naming
the packages, rather than skipping them."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

CPP = Path(__file__).resolve().parents[3] / "runtime" / "cpp"
PACKAGES = (
    "g++ cmake pkg-config nlohmann-json3-dev libssl-dev libpng-dev libavformat-dev libavcodec-dev "
    "libswscale-dev libavutil-dev libopencv-dev"
)
HEADERS = (
    "nlohmann/json.hpp",
    "openssl/evp.h",
    "png.h",
    "libavformat/avformat.h",
    "libswscale/swscale.h",
    "opencv4/opencv2/core.hpp",  # the clean-plate aligner (runtime/cpp/align)
)
# Any report fails the run: -fno-sanitize-recover=all (CMakeLists.txt) stops at the first.
SANITIZER_ENV = {"UBSAN_OPTIONS": "print_stacktrace=1", "ASAN_OPTIONS": "detect_leaks=1"}
TRACE_SIZE = 64  # the files' trace size; they run at any size divisible by 4


def _missing_toolchain() -> list[str]:
    missing = [tool for tool in ("g++", "gcc", "cmake", "pkg-config") if shutil.which(tool) is None]
    roots = [Path("/usr/include"), Path("/usr/include/x86_64-linux-gnu")]
    return missing + [h for h in HEADERS if not any((root / h).is_file() for root in roots)]


@dataclass(frozen=True)
class Build:
    root: Path

    def tool(self, name: str) -> Path:
        """A test program (tests/) or an example (examples/)."""
        for folder in ("tests", "examples"):
            if (self.root / folder / name).is_file():
                return self.root / folder / name
        raise FileNotFoundError(f"{name} was not built in {self.root}")

    @property
    def library(self) -> Path:
        return next(self.root.glob("libmattex.so.*.*.*"))

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        """The environment its programs (and programs linking its library) run in."""
        return {**os.environ, **SANITIZER_ENV, **extra}

    def run(self, name: str, *args, env: dict | None = None, check: bool = True, **kwargs):
        """Run a built program; any sanitizer report fails the test whatever the exit code."""
        out = subprocess.run(
            [self.tool(name), *map(str, args)],
            capture_output=True,
            text=True,
            errors="replace",  # messages may quote a damaged file's bytes
            env=self.env(**(env or {})),
            timeout=120,
            **kwargs,
        )
        for report in ("runtime error:", "AddressSanitizer", "LeakSanitizer"):
            assert report not in out.stderr, out.stderr[-3000:]
        if check:
            assert out.returncode == 0, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
        return out


def cmake_build(root: Path, *options: str) -> Build:
    missing = _missing_toolchain()
    if missing:
        pytest.fail(
            f"the C++ tests need {', '.join(missing)}: apt-get install {PACKAGES} (.ci/run does)", pytrace=False
        )
    configure = ["cmake", "-S", CPP, "-B", root, "-DCMAKE_BUILD_TYPE=Debug", f"-DPython3_EXECUTABLE={sys.executable}"]
    for command in (configure + list(options), ["cmake", "--build", root, "-j", str(os.cpu_count() or 2)]):
        out = subprocess.run(list(map(str, command)), capture_output=True, text=True)
        assert out.returncode == 0, f"{' '.join(map(str, command))}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return Build(root)


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory) -> Build:
    """OpenVINO, the examples, the clean-plate aligner and the tests, under UndefinedBehaviorSanitizer."""
    return cmake_build(
        tmp_path_factory.mktemp("cpp") / "build", "-DMATTEX_SANITIZE=undefined", "-DMATTEX_WITH_ALIGN=ON"
    )


@pytest.fixture(scope="session")
def asan_build(tmp_path_factory) -> Build:
    """mattex's own code (readers, checks, conversions, the C API) on the test backend, under
    AddressSanitizer, leaks included (the other build has UBSan over the same code)."""
    return cmake_build(
        tmp_path_factory.mktemp("cpp-asan") / "build",
        "-DMATTEX_SANITIZE=address",
        "-DMATTEX_WITH_OPENVINO=OFF",
        "-DMATTEX_BUILD_EXAMPLES=OFF",
        "-DMATTEX_WITH_GSTREAMER=OFF",  # the element is tested in the UBSan build, with OpenVINO
        "-DMATTEX_WITH_ALIGN=OFF",  # the aligner too (tests/runtime/cpp/test_align_cpp.py)
    )


@pytest.fixture(scope="session")
def cpp_models(tmp_path_factory) -> dict[str, Path]:
    """mobilenetv2 (demo weights) traced once at 64x64 with k = 40 of 256 patches: fp32, fp16
    (float32 I/O), fp16 with float16 I/O, and fp32 taking uint8 frames."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    root = tmp_path_factory.mktemp("cpp-models")
    variants = {
        "fp32": {},
        "fp16": {"precision": "fp16"},
        "fp16-io16": {"precision": "fp16", "io_dtype": "float16"},
        "frames": {"io": "uint8"},
    }
    paths = {}
    for name, options in variants.items():
        paths[name] = root / f"{name}.onnx"
        export_onnx(ExportConfig(height=TRACE_SIZE, width=TRACE_SIZE, sample_pixels=640, **options), paths[name])
    return paths


@pytest.fixture(scope="session")
def c_api(cpp_build):
    """mattex.h through ctypes (runtime/cpp/examples/mattex_ctypes.py), as a Rust, Go, C# or
    Java binding would call it, on the UBSan build's library."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mattex_ctypes", CPP / "examples" / "mattex_ctypes.py")
    binding = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(binding)
    return binding.MattexLibrary(cpp_build.library)


@pytest.fixture
def cache_env(tmp_path) -> dict[str, str]:
    """OpenVINO's compiled-model cache in the test's folder, for C++ and Python alike."""
    return {"MATTEX_CACHE": str(tmp_path / "cache")}
