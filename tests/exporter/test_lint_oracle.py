"""The linter against the real builder: every rule's breaking graph (and its passing graph) goes
through TensorRT for RTX's parser and builder, on the CPU, and the verdict each rule declares
(`RULES.info[rule].rtx`: rejects, builds or never finishes) must be what the builder does."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from test_lint import CASES

from mattex.exporter.build import EngineBuildError, parse_and_build
from mattex.exporter.lint import RULES

trt = pytest.importorskip(
    "tensorrt_rtx",
    reason="TensorRT for RTX is not installed (pip install tensorrt-rtx-cu13; the README's install command brings it)",
)

# Sizes for the tiny graphs' free dimensions (N large enough for topk-limits' K = 100).
DIMS = {"B": 1, "N": 128}
# The breaking where-chain graph has 20 steps; 12 already took over 100 s (time exponential in the
# chain), so a build still running after 8 s is one that does not finish.
NEVER_FINISHES_AFTER_S = 8


def shapes(model: onnx.ModelProto) -> dict[str, list[tuple]]:
    initializers = {t.name for t in model.graph.initializer}
    out = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else DIMS.get(d.dim_param, 8) for d in inp.type.tensor_type.shape.dim
        )
        out[inp.name] = [(dims, dims, dims)]
    return out


def verdict(model: onnx.ModelProto, path, timeout_s: float | None = None) -> tuple[str, str]:
    """('builds' | 'rejects' | 'never finishes', TensorRT for RTX's message)."""
    onnx.save(model, path)
    if timeout_s is None:
        try:
            parse_and_build(trt, path, shapes(model))
            return "builds", ""
        except EngineBuildError as e:
            return "rejects", str(e)
    # A build that may not finish runs in a child process with a deadline.
    script = textwrap.dedent(f"""
        import onnx, tensorrt_rtx as trt
        from test_lint_oracle import shapes
        from mattex.exporter.build import parse_and_build
        parse_and_build(trt, {str(path)!r}, shapes(onnx.load({str(path)!r})))
    """)
    try:
        here = Path(__file__).resolve().parent
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent)])}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout_s, cwd=str(here), env=env
        )
    except subprocess.TimeoutExpired:
        return "never finishes", f"no plan after {timeout_s} s"
    return ("builds", "") if done.returncode == 0 else ("rejects", done.stderr[-500:])


@pytest.mark.parametrize("rule", sorted(CASES))
def test_tensorrt_for_rtx_does_what_the_rule_declares_with_its_breaking_graph(rule, tmp_path):
    declared = RULES.info[rule].rtx
    timeout = NEVER_FINISHES_AFTER_S if declared == "never finishes" else None
    got, message = verdict(CASES[rule][0], tmp_path / "breaking.onnx", timeout)
    assert got == declared, f"{rule}: TensorRT for RTX {trt.__version__} {got} it ({message[:300]})"


@pytest.mark.parametrize("rule", sorted(r for r in CASES if "tensorrt" in "".join(RULES.info[r].targets)))
def test_tensorrt_for_rtx_builds_the_passing_graph(rule, tmp_path):
    got, message = verdict(CASES[rule][1], tmp_path / "passing.onnx")
    assert got == "builds", f"{rule}: {message[:300]}"


def test_rules_tensorrt_for_rtx_does_not_confirm_say_what_they_rest_on():
    for name, info in RULES.info.items():
        assert (info.rtx == "rejects") == (not info.basis), name
        if info.rtx == "builds" and "TensorRT 10/11" in info.basis:
            assert "tensorrt-rtx" not in info.targets, f"{name} would refuse what TensorRT for RTX builds"
