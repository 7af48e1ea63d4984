"""The house rules a newcomer relies on to find their way: no product module and no test file
over 450 lines (split by idea, not by length alone); every product module has its test module,
`tests/<folder>/test_<module>.py`, or names the test file that is its home (HOMES, below); and
docs/layout.md lists every module (its "Every module" section)."""

import re

import pytest

from tests.test_layout import PYPROJECT, ROOT

MAX_LINES = 450
FOLDERS = sorted(set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()))

# Modules whose tests live in a test file named for what users do with them (a command, a
# family of checks) rather than for the module: module -> its home.
HOMES = {
    "batch/cluster.py": "tests/batch/test_batch_cluster.py",
    "batch/execute.py": "tests/batch/test_batch.py",
    "batch/jobs.py": "tests/batch/test_batch.py",
    "batch/manifest.py": "tests/batch/test_batch.py",
    "batch/runner.py": "tests/batch/test_batch.py",
    "calibration/composite.py": "tests/measure/test_evaluate.py",
    "calibration/footage.py": "tests/measure/test_verify_gate.py",
    "calibration/handheld.py": "tests/runtime/test_align.py",
    "calibration/images.py": "tests/calibration/test_calibration_data.py",
    "calibration/int8.py": "tests/exporter/test_precision.py",
    "calibration/photomatte.py": "tests/calibration/test_calibration_data.py",
    "calibration/settings.py": "tests/exporter/test_precision.py",
    "calibration/synthetic.py": "tests/calibration/test_calibration_data.py",
    "calibration/train_demo.py": "tests/model/test_demo_weights.py",
    "cli/batch.py": "tests/batch/test_batch.py",
    "cli/bench.py": "tests/measure/test_bench.py",
    "cli/build.py": "tests/exporter/test_rtx_build.py",
    "cli/cache.py": "tests/runtime/test_model_cache.py",
    "cli/check.py": "tests/exporter/test_lint.py",
    "cli/common.py": "tests/cli/test_cli.py",
    "cli/data.py": "tests/calibration/test_calibration_data.py",
    "cli/doctor.py": "tests/measure/test_doctor.py",
    "cli/evaluate.py": "tests/measure/test_evaluate.py",
    "cli/export.py": "tests/exporter/test_export.py",
    "cli/info.py": "tests/cli/test_cli.py",
    "cli/main.py": "tests/cli/test_cli.py",
    "cli/plate.py": "tests/runtime/test_align.py",
    "cli/run.py": "tests/runtime/test_run.py",
    "cli/serve.py": "tests/serving/test_serve.py",
    "cli/triton_repo.py": "tests/serving/test_repository.py",
    "cli/verify.py": "tests/measure/test_verify.py",
    "exporter/build/backends.py": "tests/runtime/test_engine_backend_build.py",
    "exporter/build/core.py": "tests/exporter/test_lint_oracle.py",
    "exporter/build/options.py": "tests/exporter/test_rtx_build.py",
    "exporter/build/plugins.py": "tests/exporter/test_topk_plugin.py",
    "exporter/build/products.py": "tests/exporter/test_rtx_build.py",
    "exporter/build/tensorrt.py": "tests/exporter/test_rtx_build.py",
    "exporter/config.py": "tests/exporter/test_export.py",
    "exporter/dataflow.py": "tests/exporter/test_precision_sizes.py",
    "exporter/graph_builder.py": "tests/exporter/test_passes.py",
    "exporter/lint/check.py": "tests/exporter/test_lint.py",
    "exporter/lint/registry.py": "tests/exporter/test_lint.py",
    "exporter/lint/rules/domains.py": "tests/exporter/test_lint.py",
    "exporter/lint/rules/indexing.py": "tests/exporter/test_lint.py",
    "exporter/lint/rules/ops.py": "tests/exporter/test_lint.py",
    "exporter/lint/rules/quantization.py": "tests/exporter/test_lint.py",
    "exporter/lint/rules/shapes.py": "tests/exporter/test_lint.py",
    "exporter/lint/view.py": "tests/exporter/test_lint.py",
    "exporter/onnx_file.py": "tests/test_fuzz.py",
    "exporter/quantize.py": "tests/exporter/test_precision.py",
    "exporter/topk_select.py": "tests/exporter/test_mixed_precision.py",
    "exporter/workflow.py": "tests/exporter/test_export.py",
    "mattex/contract.py": "tests/test_layout.py",
    "mattex/errors.py": "tests/test_errors_home.py",
    "mattex/extras.py": "tests/test_slim_install.py",
    "mattex/facts.py": "tests/runtime/cpp/test_cpp_facts.py",
    "mattex/files.py": "tests/test_output_paths.py",
    "mattex/memory.py": "tests/runtime/test_threads_memory.py",
    "mattex/registry.py": "tests/exporter/test_passes.py",
    "measure/budgets.py": "tests/measure/test_verify.py",
    "measure/demo_quality.py": "tests/model/test_demo_weights.py",
    "measure/flops.py": "tests/measure/test_efficiency.py",
    "measure/inputs.py": "tests/measure/test_verify.py",
    "measure/machine.py": "tests/measure/test_efficiency.py",
    "measure/reference.py": "tests/measure/test_verify.py",
    "measure/verify_options.py": "tests/measure/test_verify.py",
    "measure/verify_report.py": "tests/measure/test_verify_gate.py",
    "model/backbones.py": "tests/model/test_model_structure.py",
    "model/layers.py": "tests/model/test_model_structure.py",
    "model/matting.py": "tests/model/test_model_structure.py",
    "model/reference_method.py": "tests/measure/test_bench.py",
    "model/refiner.py": "tests/model/test_refiner_parts.py",
    "model/sources.py": "tests/runtime/test_runtime.py",
    "runtime/align_steps.py": "tests/runtime/test_align.py",
    "runtime/backends/base.py": "tests/runtime/test_backend_registry.py",
    "runtime/backends/onnxruntime.py": "tests/runtime/test_runtime.py",
    "runtime/backends/openvino.py": "tests/runtime/test_openvino.py",
    "runtime/backends/tensorrt.py": "tests/exporter/test_rtx_build.py",
    "runtime/cuda.py": "tests/runtime/test_runtime.py",
    "runtime/frames.py": "tests/runtime/test_run.py",
    "runtime/homography.py": "tests/runtime/test_align.py",
    "runtime/images.py": "tests/runtime/test_image_modes.py",
    "runtime/io_spec.py": "tests/runtime/test_frame_checks.py",
    "runtime/matter.py": "tests/runtime/test_runtime.py",
    "runtime/media.py": "tests/runtime/test_media_truth.py",
    "runtime/pipeline.py": "tests/runtime/test_run.py",
    "runtime/plates.py": "tests/runtime/test_align.py",
    "runtime/sidecar.py": "tests/runtime/test_runtime.py",
    "serving/answers.py": "tests/serving/test_serve_faults.py",
    "serving/client.py": "tests/serving/test_serve.py",
    "serving/limits.py": "tests/serving/test_serve_faults.py",
    "serving/processes.py": "tests/serving/test_serve_faults.py",
    "serving/server.py": "tests/serving/test_serve.py",
    "serving/triton_proxy_model.py": "tests/serving/test_serve_faults.py",
    "serving/triton_python_model.py": "tests/serving/test_repository.py",
}


def product_modules() -> list[str]:
    """Every module of the distribution, as a path from the repository root (runtime/cpp is C++)."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*.py")
        if "cpp" not in p.relative_to(ROOT).parts and "__pycache__" not in p.parts
    )


def mirror(module: str) -> str:
    folder, name = module.rsplit("/", 1)
    return f"tests/test_{name}" if folder == "mattex" else f"tests/{folder}/test_{name}"


def long_files(paths) -> list[str]:
    return [f"{p.relative_to(ROOT)}: {n} lines" for p in paths if (n := len(p.read_text().splitlines())) > MAX_LINES]


def test_no_product_module_is_over_the_line_cap():
    assert long_files(ROOT / m for m in product_modules()) == []


def test_no_test_file_is_over_the_line_cap():
    assert long_files(p for p in (ROOT / "tests").rglob("*.py") if "__pycache__" not in p.parts) == []


@pytest.mark.parametrize("module", [m for m in product_modules() if not m.endswith(("__init__.py", "__main__.py"))])
def test_each_module_has_its_test_module_or_names_its_home(module):
    home = HOMES.get(module, mirror(module))
    assert (ROOT / home).is_file(), f"{module}: no {mirror(module)}, and HOMES names none (or a file that is gone)"
    assert module not in HOMES or not (ROOT / mirror(module)).is_file(), f"{module} has {mirror(module)}: drop HOMES'"


def test_homes_names_only_modules_that_exist():
    assert sorted(set(HOMES) - set(product_modules())) == []


def test_layout_lists_every_module():
    text = (ROOT / "docs" / "layout.md").read_text()
    section = text[text.index("## Every module") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    listed = set()
    for folder, names in re.findall(r"^\| `([\w/]+)/` \| (.+) \|$", section, re.M):
        listed |= {f"{folder}/{name}.py" for name in re.findall(r"`([\w/]+)`", names)}
    modules = {m for m in product_modules() if not m.endswith(("__init__.py", "__main__.py"))}
    assert sorted(modules - listed) == [], "modules docs/layout.md does not list"
    assert sorted(listed - modules) == [], "modules docs/layout.md lists that do not exist"
