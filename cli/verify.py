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
        help="Generated input pairs (random for fp32 files, captured as footage for fp16/int8), "
        "or the frames taken from --video; ignored with --images/--data.",
    ),
    batch: int = typer.Option(Verify.batch, min=1, help="Batch size of random inputs."),
    height: int | None = typer.Option(None, min=SIZE_MULTIPLE, help="Input height (default: trace size)."),
    width: int | None = typer.Option(None, min=SIZE_MULTIPLE, help="Input width."),
    images: Path | None = typer.Option(None, help="Folder of frames (use with --background)."),
    video: Path | None = typer.Option(None, help="A video: up to --samples frames spread over it (with --background)."),
    background: Path | None = typer.Option(None, help="The captured background: an image, or a video for --video."),
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
    junit: str | None = typer.Option(None, "--junit", help="Write the report as JUnit XML here (CI test results)."),
) -> None:
    """Example: mattex verify bgm_resnet50_hd_fp32.onnx --checkpoint pytorch_resnet50.pth --json report.json

    Run the file on ONNX Runtime (or --backend openvino) and the PyTorch model on the same
    inputs; report per-output max and mean absolute differences and the share of patches
    selected differently, and exit 1 when they exceed the budget declared for the file's
    precision and inputs (docs/precision.md; a mean is judged by its 95% upper bound over the
    samples). Inputs: generated pairs, your own footage (--images or --video with --background:
    a deployment's CI gate), or PhotoMatte85-layout composites (--data, at the trace size or
    --height/--width).
    """
    from mattex.files import check_distinct_outputs, check_not_input, output_file
    from mattex.measure.verify import verify_file

    inputs = {"model file": model, "checkpoint": checkpoint, "background": background, "video": video}
    for report_path in (json_report, junit):  # refused now, not after the verification
        if report_path:
            check_not_input(output_file(report_path), inputs)
    check_distinct_outputs({"JSON report": json_report, "JUnit report": junit})
    report = verify_file(
        model,
        checkpoint=checkpoint,
        samples=samples,
        batch=batch,
        height=height,
        width=width,
        images=images,
        video=video,
        background=background,
        data=data,
        backgrounds=backgrounds,
        budget=budget,
        backend=backend,
        inference_precision=inference_precision,
    )
    if json_report:
        report.save(json_report)
    if junit:
        report.save_junit(junit)
    _print(model, report)
    if not report.passed:
        for failure in report.failures:
            err_console.print(f"[red]over budget:[/] {escape(failure)}", highlight=False)
        raise typer.Exit(EXIT_FINDING)
    console.print("[green]within budget[/]")


def _print(model: Path, report) -> None:
    from rich.table import Table

    sizes = ", ".join(f"{h}x{w}" for h, w in report.sizes)
    table = Table(
        title=f"mattex verify {model} ({report.precision}, {report.inputs}, {report.samples} samples at {sizes})"
    )
    upper = f"mean {report.confidence:.0%} upper"
    for column in ("output", "max abs", "budget", "mean abs", "spread", upper, "budget", "ok"):
        table.add_column(column)
    for name, d in report.outputs.items():
        table.add_row(
            name,
            f"{d.max_abs:.3g}",
            f"{d.budget_max_abs:.3g}",
            f"{d.mean_abs:.3g}",
            f"{d.mean_abs_spread:.3g}",
            f"{d.mean_abs_upper:.3g}",
            f"{d.budget_mean_abs:.3g}",
            "[green]yes[/]" if d.ok else "[red]no[/]",
        )
    console.print(table)
    console.print(
        f"patches selected or refined differently: {report.patch_mismatch:.4%}, upper bound "
        f"{report.patch_mismatch_upper:.4%} (budget {report.patch_budget:.4%}); "
        f"at ties (errors within {report.tie_band:.3g} of the k-th, interchangeable, left out of the values "
        f"above): {report.tie_flips:.4%}"
    )
