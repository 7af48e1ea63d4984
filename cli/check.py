"""`mattex check`: lint an ONNX file against TensorRT's rules; --build runs the real builder."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import EXIT_FINDING, JSON_OPTION, as_flags, console, emit_json, user_errors

SHORT_HELP = "Lint an ONNX file against TensorRT's rules; --build runs the real builder."
FLAGS = {"profile": "--profile", "build": "--build"}


@user_errors(FLAGS, requires=("check", "mattex check"))
def command(
    model: Path = typer.Argument(..., help="The ONNX file."),
    target: str = typer.Option("tensorrt", help="tensorrt | tensorrt-rtx | onnxruntime."),
    build: bool = typer.Option(
        False,
        "--build",
        help="Also parse and build the file with the real TensorRT (TensorRT for RTX needs no GPU); no engine is kept.",
    ),
    backend: str = typer.Option("auto", help="With --build: auto | tensorrt | tensorrt-rtx."),
    profile: list[str] = typer.Option(
        [], help="With --build: hd | 4k | HxW | HxW-HxW (default: the file's trace size)."
    ),
    batch: int = typer.Option(1, min=1, help="With --build: largest batch of the profiles."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex check bgm_resnet50_hd_fp32.onnx --target tensorrt --build

    Statically check the graph against TensorRT's parser and builder rules (unsupported ops,
    TopK K/sorted, scatter extents, Q/DQ, Resize modes, float64, data-dependent shapes,
    shape-tensor inputs, plugins; docs/commands/check.md lists them). With --build, TensorRT's
    own parser and builder then build it for real, a GPU-free TensorRT check for CI with
    TensorRT for RTX. Exits 1 on any error finding or a failed build.
    """
    from mattex.exporter.build import parse_profile
    from mattex.exporter.lint import check_file

    report, built = check_file(model, target, build, backend, [parse_profile(p, batch) for p in profile], batch)
    if not emit_json({**report.to_dict(), **({"build": built.to_dict()} if built else {})}, json_output):
        _print(model, target, report, built)
    if not report.passed or (built is not None and not built.passed):
        raise typer.Exit(EXIT_FINDING)


def _print(model: Path, target: str, report, built) -> None:
    from rich.table import Table

    if report.findings:
        table = Table(title=f"mattex check {model} ({target})")
        for column in ("rule", "where", "problem"):
            table.add_column(column, overflow="fold")
        for f in report.findings:
            message = as_flags(f.message if f.severity == "error" else f"({f.severity}) {f.message}")
            table.add_row(f.rule, f.node, message + (f"\n[dim]rests on: {f.basis}[/]" if f.basis else ""))
        console.print(table)
    verdict = "[green]passes[/]" if report.passed else "[red]fails[/]"
    errors = sum(f.severity == "error" for f in report.findings)
    notes = len(report.findings) - errors
    console.print(
        f"{model}: {verdict} {len(report.rules)} {target} rules, "
        f"{errors} error{'s' * (errors != 1)}, {notes} note{'s' * (notes != 1)}"
    )
    if built is not None:
        mark = "[green]builds[/]" if built.passed else "[red]does not build[/]"
        console.print(f"{model}: {mark}: {as_flags(built.message)}", highlight=False)
