"""Running the rules of a target on a model or a file, and the docs' rule table."""

from __future__ import annotations

from pathlib import Path

import onnx

from mattex.contract import TENSORRT, TENSORRT_RTX
from mattex.errors import ConfigError, ModelFileError

from .registry import RULES, CheckReport
from .view import ModelView


def check_model(model: onnx.ModelProto, target: str = TENSORRT) -> CheckReport:
    """Run every rule of `target` ('tensorrt'; 'tensorrt-rtx', the same rules without plugins;
    or 'onnxruntime', whose only rule beyond the ONNX checker the exporter runs is that every op
    is one ONNX Runtime implements) and collect the findings."""
    rules = RULES.for_target(target)
    view = ModelView(model)
    report = CheckReport(target=target, rules=list(rules))
    for name, fn in rules.items():
        for finding in fn(view):
            finding.rule, finding.basis = name, RULES.info[name].basis
            report.findings.append(finding)
    return report


def check_file(
    path: str | Path,
    target: str = TENSORRT,
    build: bool = False,
    backend: str = "auto",
    profiles: list | None = None,
    batch: int = 1,
) -> tuple[CheckReport, object | None]:
    """`mattex check`: the ONNX checker and the static rules of `target` on the file at `path`
    (any ONNX graph, not only mattex's), and with `build` TensorRT's own parser and builder
    (`build.check_build`; TensorRT for RTX needs no GPU), for `profiles` (default: the file's
    trace size up to batch `batch`). Returns (report, build check or None)."""
    from ..onnx_file import load_onnx

    if not build and (profiles or backend != "auto" or batch != 1):
        raise ConfigError("`backend`, `profile` and `batch` go with `build`")
    model = load_onnx(path)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelFileError(f"{path} is not a valid ONNX model: {e}") from None
    report = check_model(model, target)
    if not build:
        return report, None
    from ..build import check_build

    if backend == "auto" and target == TENSORRT_RTX:
        backend = TENSORRT_RTX
    return report, check_build(path, backend, profiles or None, batch)


RULES_TABLE_MARKERS = ("<!-- rules:start -->", "<!-- rules:end -->")


def rules_markdown() -> str:
    """The rule table of docs/commands/check.md, generated from `RULES` (a test holds the page to
    it: `python -m mattex.exporter.lint` prints it)."""
    rows = ["| rule | what it catches | TensorRT for RTX on the breaking graph | targets |", "|---|---|---|---|"]
    for name, info in RULES.info.items():
        verdict = info.rtx + (f": {info.basis}" if info.basis else "")
        rows.append(f"| `{name}` | {info.catches} | {verdict} | {', '.join(info.targets)} |")
    return "\n".join(rows)
