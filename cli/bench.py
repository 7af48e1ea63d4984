"""`mattex bench`: every backend that can run the given files, timed side by side."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from .common import JSON_OPTION, console, emit_json, err_console, user_errors

SHORT_HELP = "Time every backend that can run the given files, side by side."
FLAGS = {"size": "--resolution"}


@user_errors(FLAGS)
def command(
    models: list[Path] = typer.Argument(..., help="Exported .onnx files and/or .engine files."),
    resolution: str = typer.Option("hd", help="Comma-separated sizes: hd, 4k or HxW."),
    batch: str = typer.Option("1", help="Comma-separated batch sizes."),
    reference: bool = typer.Option(
        False,
        "--reference",
        help="Also time PyTorch eager with the reference implementation's patch method (same weights).",
    ),
    rounds: int = typer.Option(3, min=1, help="Timed rounds (runners interleaved round by round; the median counts)."),
    warmup: int = typer.Option(1, help="Untimed calls per runner first."),
    threads: int | None = typer.Option(None, help="CPU threads for ONNX Runtime and PyTorch (default: all)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex bench bgm_mobilenetv2_hd_fp32.onnx bgm_mobilenetv2_hd_int8.onnx --resolution hd --reference

    ms per frame, frames/s and memory of each file on every registered backend that opens it
    (ONNX Runtime's CPU provider, and its CUDA and TensorRT providers, TensorRT and TensorRT for
    RTX engines, where a GPU is; OpenVINO), and of PyTorch eager with the same weights, in one
    process, interleaved round by round. The machine (CPU model and instruction sets, GPU) is
    recorded with the results; what cannot run here is listed with the reason.
    """
    from mattex.contract import parse_sizes
    from mattex.measure.bench import bench, parse_batches

    with err_console.status("benchmarking", spinner="dots") as status:
        report = bench(
            models,
            parse_sizes(resolution),
            parse_batches(batch),
            reference,
            rounds,
            warmup,
            threads,
            progress=lambda step: None if json_output else status.update(step),
        )
    if not emit_json(report.to_dict(), json_output):
        _print(report)


def _print(report) -> None:
    from rich.table import Table

    machine = report.machine
    gpu = f", GPU {machine['gpu']['name']}" if machine["gpu"] else ", no GPU"
    table = Table(
        title=f"mattex bench on {machine['cpu']} ({machine['cores']} cores, "
        f"{' + '.join(machine['instruction_sets']) or 'no AVX'}{gpu})"
    )
    for column in ("runner", "file", "size", "batch", "ms/frame", "fps", "peak MiB"):
        table.add_column(column, justify="left" if column in ("runner", "file") else "right", overflow="fold")
    for row in report.rows:
        table.add_row(
            row.runner,
            Path(row.file).name if row.file else "-",
            f"{row.size[0]}x{row.size[1]}",
            str(row.batch),
            f"{row.ms_per_frame:.1f}",
            f"{row.fps:.2f}",
            f"{row.peak_rss_mib:.0f}",
        )
    console.print(table)
    seen = set()
    for skip in report.skipped:
        line = f"{skip['runner']}" + (f" ({Path(skip['file']).name})" if skip.get("file") else "") + f": {skip['why']}"
        if line not in seen:
            seen.add(line)
            console.print(f"[dim]not run: {escape(line)}[/]", highlight=False)
