"""`mattex verify`: hold a file to PyTorch with its precision's budget."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mattex.contract import SIZE_MULTIPLE
from mattex.measure.verify_options import VerifyOptions as Verify

from .common import EXIT_FINDING, console, err_console, user_errors

SHORT_HELP = "Compare an ONNX file with the PyTorch model; exit 1 over budget."


@user_errors(requires=("export", "mattex verify"))
def command(
    model: Path = typer.Argument(..., help="The exported ONNX file."),
    checkpoint: Path | None = typer.Option(None, help="The checkpoint it was exported from."),
    samples: int = typer.Option(
        Verify.samples,
        min=1,
        help="Generated input pairs (ignored with --images/--data): "
        "random for fp32 files, synthetic composites for fp16/int8.",
    ),
    batch: int = typer.Option(Verify.batch, min=1, help="Batch size of random inputs."),
    height: int | None = typer.Option(None, min=SIZE_MULTIPLE, help="Input height (default: trace size)."),
    width: int | None = typer.Option(None, min=SIZE_MULTIPLE, help="Input width."),
    images: Path | None = typer.Option(None, help="Folder of frames (use with --background)."),
    background: Path | None = typer.Option(None, help="The captured background image."),
    data: Path | None = typer.Option(None, help="PhotoMatte85-layout folder: verify on its composites."),
    backgrounds: Path | None = typer.Option(None, help="Background images for --data composites."),
    budget: str | None = typer.Option(
        None, help="Hold the file to another precision's budget (fp32, fp16, int8, bf16); default: the file's own."
    ),
    backend: str = typer.Option(
        Verify.backend, help="Run the file on onnxruntime or openvino (any registered backend)."
    ),
    inference_precision: str | None = typer.Option(
        None,
        help="OpenVINO's arithmetic: f32, or bf16 (CPUs with AMX/AVX-512 BF16; fp32 files then get the bf16 budget).",
    ),
    json_report: str | None = typer.Option(None, "--json", help="Write the report as JSON here."),
) -> None:
    """Example: mattex verify bgm_resnet50_hd.onnx --checkpoint pytorch_resnet50.pth --json report.json

    Run the file on ONNX Runtime (or --backend openvino) and the PyTorch model on the same
    inputs; report per-output max and mean absolute differences and the share of patches
    selected differently, and exit 1 when they exceed the budget declared for the file's
    precision (docs/precision.md). Inputs: generated pairs, real frames (--images with
    --background), or PhotoMatte85-layout composites (--data, at the trace size or
    --height/--width).
    """
    from mattex.files import check_not_input, output_file
    from mattex.measure.verify import verify_file

    if json_report:  # refused now, not after the verification
        inputs = {"model file": model, "checkpoint": checkpoint, "background": background}
        check_not_input(output_file(json_report), inputs)
    report = verify_file(
        model,
        checkpoint=checkpoint,
        samples=samples,
        batch=batch,
        height=height,
        width=width,
        images=images,
        background=background,
        data=data,
        backgrounds=backgrounds,
        budget=budget,
        backend=backend,
        inference_precision=inference_precision,
    )
    if json_report:
        report.save(json_report)
    _print(model, report)
    if not report.passed:
        for failure in report.failures:
            err_console.print(f"[red]over budget:[/] {escape(failure)}", highlight=False)
        raise typer.Exit(EXIT_FINDING)
    console.print("[green]within budget[/]")


def _print(model: Path, report) -> None:
    from rich.table import Table

    table = Table(title=f"mattex verify {model} ({report.precision}, {report.samples} x {report.shape})")
    for column in ("output", "max abs", "budget", "mean abs", "budget", "ok"):
        table.add_column(column)
    for name, d in report.outputs.items():
        table.add_row(
            name,
            f"{d.max_abs:.3g}",
            f"{d.budget_max_abs:.3g}",
            f"{d.mean_abs:.3g}",
            f"{d.budget_mean_abs:.3g}",
            "[green]yes[/]" if d.ok else "[red]no[/]",
        )
    console.print(table)
    console.print(
        f"patches selected or refined differently: {report.patch_mismatch:.4%} "
        f"(budget {report.patch_budget:.4%}); at ties (errors within {report.tie_band:.3g} "
        f"of the k-th, interchangeable, left out of the values above): {report.tie_flips:.4%}"
    )
