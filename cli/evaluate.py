"""`mattex evaluate`: the paper's metrics (SAD, MSE, Grad, Conn, FG MSE) on composites."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import EXIT_FINDING, JSON_OPTION, console, emit_json, err_console, progress, user_errors

SHORT_HELP = "The paper's metrics (SAD, MSE, Grad, Conn, FG MSE) on composites."
FLAGS = {"size": "--resolution", "budget": "--budget"}


@user_errors(FLAGS, requires=("export", "mattex evaluate"))
def command(
    model: Path | None = typer.Argument(
        None, help="An exported .onnx or a .pth checkpoint (default: the shipped demo weights)."
    ),
    data: Path = typer.Option(..., help="PhotoMatte85-layout folder (RGBA PNGs or fgr/ + pha/)."),
    backgrounds: Path | None = typer.Option(None, help="Background images (default: procedural)."),
    resolution: str = typer.Option("hd", help="hd (1080x1920), 4k (2160x3840) or HxW, e.g. 512x512."),
    limit: int | None = typer.Option(None, min=1, help="Evaluate the first N images only."),
    seed: int = typer.Option(0, help="Seed of backgrounds and perturbations."),
    checkpoint: Path | None = typer.Option(
        None, help="For an fp16/int8 ONNX exported from a checkpoint: that checkpoint (the fp32 reference)."
    ),
    budget: bool = typer.Option(
        True,
        help="For an fp16/int8 ONNX: also score PyTorch fp32 and "
        "exit 1 when the metrics exceed the precision's budget.",
    ),
    backend: str = typer.Option("onnxruntime", help="Run an ONNX file on onnxruntime or openvino."),
    inference_precision: str | None = typer.Option(
        None, help="OpenVINO's arithmetic: f32, or bf16 (held to the bf16 metric budget)."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex evaluate bgm_mobilenetv2_hd_fp32.onnx --data PhotoMatte85 --resolution hd --json

    Composite each foreground over a background with the paper's capture perturbations, matte
    it with the model, and score alpha inside the trimap's unknown region. An fp16 or int8 file
    is also held to its precision's metric budget against PyTorch fp32 on the same composites.
    """
    from mattex.contract import parse_size
    from mattex.measure.evaluate import evaluate_model

    size = parse_size(resolution)
    with progress("evaluating", disable=json_output) as update:
        result = evaluate_model(
            model,
            data,
            backgrounds,
            size,
            limit,
            seed,
            checkpoint,
            budget,
            backend,
            inference_precision,
            progress=update,
        )
    check = result.check
    if not emit_json(result.to_dict(), json_output):
        _print(result, size)
    if check is not None and not check.passed:
        for failure in check.failures:
            err_console.print(f"[red]over budget:[/] {escape(failure)}", highlight=False)
        raise typer.Exit(EXIT_FINDING)


def _print(result, size) -> None:
    from rich.table import Table

    report, check = result.report, result.check
    table = Table(title=f"{report.model} on {len(report.per_image)} composites at {size[0]}x{size[1]}")
    for column in ("model", "SAD", "MSE (x1e3)", "Grad", "Conn", "FG MSE (x1e3)"):
        table.add_column(column, justify="right")
    rows = [(result.label, report.mean)] + ([("pytorch fp32", check.reference)] if check else [])
    for name, mean in rows:
        table.add_row(
            name,
            f"{mean.sad:.3f}",
            f"{mean.mse:.3f}",
            f"{mean.grad:.4f}",
            f"{mean.conn:.3f}",
            f"{mean.fgr_mse:.3f}" if mean.fgr_mse is not None else "-",
        )
    console.print(table)
    if check is not None:
        verdict = "[green]within[/]" if check.passed else "[red]over[/]"
        console.print(
            f"{verdict} the {check.precision} metric budget (<= {check.ratio_budget}x fp32): "
            + ", ".join(f"{k} {v:.4f}x" for k, v in check.ratios.items())
        )
