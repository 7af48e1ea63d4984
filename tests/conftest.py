import os
import sys
from pathlib import Path

import pytest
import torch

from mattex.measure.bench import KEEP_FREED_MEMORY_ENV, keep_freed_memory

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py


def pytest_configure(config):
    if "PYTEST_XDIST_WORKER" not in os.environ and "MATTEX_CACHE" not in os.environ:
        # The suite's compiled models go to a cache of its own (the workers inherit it), not the
        # user's: its size is reported at the end (pytest_terminal_summary) and it is removed.
        import tempfile

        os.environ["MATTEX_CACHE"] = config._mattex_cache = tempfile.mkdtemp(prefix="mattex-suite-cache-")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        # Two workers on two cores: one thread each for torch, ONNX Runtime and OpenVINO (and
        # the mattex processes a test starts), not one per core each, fighting over both cores.
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ["MATTEX_THREADS"] = str(threads)
    # glibc keeps freed memory for reuse: otherwise every large tensor a trace or a reference
    # run frees is unmapped and the next one faults its pages in again (10-15% of the suite's
    # time on 2 cores). In this process by mallopt, in the processes a test starts by variable.
    keep_freed_memory(True)
    os.environ.update(KEEP_FREED_MEMORY_ENV)


def pytest_terminal_summary(terminalreporter, config):
    folder = getattr(config, "_mattex_cache", None)
    if folder is None:
        return
    from mattex.runtime.model_cache import entries, openvino_cache_dir

    found = entries(openvino_cache_dir())
    size = sum(e.size for e in found) / 1024**2
    terminalreporter.write_line(f"mattex model cache after the suite: {len(found)} entries, {size:.1f} MB")


def pytest_unconfigure(config):
    folder = getattr(config, "_mattex_cache", None)
    if folder is not None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def precision_data(tmp_path_factory):
    """Synthetic PhotoMatte85-layout sets: calib/ (int8 calibration) and eval/ (held out)."""
    from mattex.calibration.synthetic import write_synthetic_photomatte

    root = tmp_path_factory.mktemp("precision")
    write_synthetic_photomatte(root / "calib", 4, seed=3, height=320, width=256, backgrounds=root / "calib_bg")
    write_synthetic_photomatte(root / "eval", 4, seed=4, height=320, width=256, backgrounds=root / "eval_bg")
    return root


@pytest.fixture(scope="session")
def fp32_file(precision_data):
    from helpers import precision_export

    return precision_export(precision_data, "fp32")


@pytest.fixture(scope="session")
def fp16_file(precision_data):
    from helpers import precision_export

    return precision_export(precision_data, "fp16")


@pytest.fixture(scope="session")
def int8_file(precision_data):
    from helpers import precision_export

    return precision_export(precision_data, "int8")


@pytest.fixture(scope="session")
def small_file(tmp_path_factory):
    """A small fp32 export shared by tests that need any file: mobilenetv2 demo weights, traced at
    96x128 with k = 100 (of 768 patches)."""
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    path = tmp_path_factory.mktemp("small") / "small.onnx"
    export_onnx(ExportConfig(height=96, width=128, sample_pixels=1600), path)
    return path


@pytest.fixture(scope="session")
def int8_frames_file(precision_data):
    """The int8 file of `int8_file` taking uint8 frames (`io` uint8): calibrated on frames."""
    from helpers import precision_export

    return precision_export(precision_data, "int8", io="uint8")


@pytest.fixture(scope="session")
def resnet50_fp16_file(tmp_path_factory):
    """The headline export (`mattex export --backbone resnet50 --fp16`), small: seeded random
    weights (no demo weights exist for resnet50), traced at 256x256 with k = 500."""
    import warnings

    from helpers import resnet50_config
    from mattex.exporter.export import export_onnx

    path = tmp_path_factory.mktemp("resnet50") / "resnet50_fp16.onnx"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(resnet50_config("fp16"), path)
    assert any("RANDOM weights" in str(w.message) for w in caught)
    return path


# The suite runs on two workers (pytest-xdist, `--dist loadgroup`): each test file is one group,
# so module-scoped fixtures are made once, and the files sharing the session's exported files
# above form one group, so those exports are made once. Groups are named by paths under tests/,
# and a name that is no longer a file stops the suite (a renamed file would otherwise silently
# leave its group).
TESTS = Path(__file__).parent
SHARED_EXPORTS = {
    "exporter/test_io_uint8.py",
    "exporter/test_precision.py",
    "exporter/test_precision_sizes.py",
    "exporter/test_rtx_build.py",
    "measure/test_verify_gate.py",
    "runtime/test_backend_registry.py",
    "runtime/test_cache_faults.py",
    "runtime/test_frame_checks.py",
    "runtime/test_openvino.py",
    "test_full_disk.py",
}

# The C++ runtime's tests share its two CMake builds (tests/runtime/cpp/conftest.py): one group.
CPP_GROUP = "runtime/cpp"

# The groups that take longest (measured: `--durations`), longest first; the rest follow in
# collection order.
LONGEST_FIRST = (
    "measure/test_doctor.py",
    CPP_GROUP,
    *sorted(SHARED_EXPORTS),
    "exporter/test_export.py",
    "runtime/test_run.py",
    "batch/test_batch_cluster.py",  # a two-node Ray cluster started and stopped in the file (~40 s on 2 cores)
    "runtime/test_threads_memory.py",
    "test_slim_install.py",
    "exporter/test_topk_plugin.py",
    "serving/test_serve.py",
    "serving/test_serve_startup.py",
    "exporter/test_trace.py",
    "test_fuzz.py",
    "cli/test_bad_inputs.py",
    "test_readme_tour.py",
)
_GONE = [name for name in (*SHARED_EXPORTS, *LONGEST_FIRST) if not (TESTS / name).exists()]
if _GONE:
    raise pytest.UsageError(f"tests/conftest.py groups files that do not exist: {', '.join(_GONE)}")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks to form the groups
def pytest_collection_modifyitems(config, items):
    # The longest groups first, so that no long group starts last and runs alone while the
    # other worker idles. xdist hands groups out in collection order only with
    # --no-loadscope-reorder (pyproject.toml); by default it sorts them by their number of tests,
    # which put the 3-test doctor group, the longest, last.
    order = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: order.get(_group(item), len(LONGEST_FIRST)))
    for item in items:
        group = _group(item)
        item.add_marker(pytest.mark.xdist_group("shared-exports" if group in SHARED_EXPORTS else group))


def _group(item) -> str:
    """A test file's path under tests/ (`exporter/test_export.py`), or the group it belongs to."""
    name = item.path.relative_to(TESTS).as_posix()
    return CPP_GROUP if name.startswith(CPP_GROUP + "/") else name


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    # If a pytest or xdist upgrade stops the groups above from forming, say so instead of running
    # every shared export once per worker.
    if getattr(session.config.option, "loadgroup", False) and session.items:
        if "@" not in session.items[0].nodeid:
            raise pytest.UsageError("--dist loadgroup formed no groups: pytest and pytest-xdist disagree on node ids")
