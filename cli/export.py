"""`mattex export`: one ONNX graph that ONNX Runtime runs and TensorRT builds, and its engine."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from mattex.calibration.settings import CalibrationSettings as Calibration
from mattex.contract import BACKBONES, PATCH_PIXELS, REFINE_MODES, SIZE_MULTIPLE, TARGETS
from mattex.exporter.config import OPSETS, PRESETS
from mattex.exporter.config import ExportConfig as Config

from .common import JSON_OPTION, as_flags, console, emit_json, err_console, field_table, progress, user_errors

SHORT_HELP = "Export BGMv2 to one ONNX graph that ONNX Runtime runs and TensorRT builds."
# Library option -> the flag that sets it here (others are --name-with-dashes).
FLAGS = {
    "precision": "--fp16/--int8",
    "calibration": "--calibration-data",
    "data": "--calibration-data",
    "int8": "--int8",
    "samples": "--calibration-samples",
    "method": "--calibration-method",
    "threshold": "--refine-threshold",
    "replace": "--force",
}


@user_errors(FLAGS, requires=("export", "mattex export"))
def command(
    backbone: str = typer.Option(Config.backbone, help=" | ".join(BACKBONES) + "."),
    checkpoint: Path | None = typer.Option(
        None, help="Official .pth. Default: pytorch_BACKBONE.pth in . or $MATTEX_HOME, then the demo weights."
    ),
    resolution: str = typer.Option(
        "hd", help="Preset: " + ", ".join(f"{n} ({p.backbone_scale}, {p.sample_pixels:,})" for n, p in PRESETS.items())
    ),
    backbone_scale: float | None = typer.Option(None, help="Override the preset's scale."),
    sample_pixels: int | None = typer.Option(None, help=f"Override: k = sample_pixels // {PATCH_PIXELS}."),
    refine_mode: str = typer.Option(Config.refine_mode, help=" | ".join(REFINE_MODES) + "."),
    refine_threshold: float = typer.Option(Config.threshold, help="Error threshold of thresholding mode."),
    kernel_size: int = typer.Option(Config.kernel_size, help="Refiner kernel size, 3 or 1."),
    height: int | None = typer.Option(None, min=SIZE_MULTIPLE, help="Trace height (the file runs at any size)."),
    width: int | None = typer.Option(None, min=SIZE_MULTIPLE, help="Trace width."),
    opset: int = typer.Option(Config.opset, help=f"ONNX opset ({OPSETS[0]}..{OPSETS[-1]})."),
    debug_outputs: bool = typer.Option(Config.debug_outputs, help="Also output pha_sm, fgr_sm, err_sm, ref_sm."),
    target: str = typer.Option(Config.target, help="Rules the file must pass: " + " | ".join(TARGETS) + "."),
    fp16: bool = typer.Option(False, "--fp16", help="Mixed fp16/fp32 graph (strongly typed TensorRT FP16)."),
    io_dtype: str = typer.Option(Config.io_dtype, help="With --fp16: float32 (callers unchanged) or float16 I/O."),
    io: str = typer.Option(
        Config.io,
        "--io",
        help="Inputs: float ((B, 3, H, W) RGB in [0, 1]) or uint8 (frames "
        "(B, H, W, 3) RGB as decoders give them, converted inside the graph).",
    ),
    int8: bool = typer.Option(False, "--int8", help="Q/DQ int8 graph calibrated on --calibration-data."),
    calibration_data: Path | None = typer.Option(None, help="PhotoMatte85-layout folder for --int8."),
    backgrounds: Path | None = typer.Option(
        None, help="Background images for calibration composites (default: procedural)."
    ),
    calibration_samples: int = typer.Option(Calibration.samples, min=1, help="Composites to calibrate on."),
    calibration_method: str = typer.Option(Calibration.method, help="minmax | entropy | percentile."),
    calibration_cache: Path | None = typer.Option(
        None, help="Ranges cache (default: beside the output); reused while model, data and settings match."
    ),
    weight_bits: int = typer.Option(
        Calibration.weight_bits,
        help="int8 weight range: 7 (runs exactly on x86 CPUs without VNNI too) or 8 (TensorRT-only files).",
    ),
    topk: str = typer.Option(
        Config.topk,
        help="How the top-k patch selection is exported: onnx (exact, "
        "standard ops, runs everywhere) or plugin (TensorRT 11's TopkLastDim "
        "plugin; TensorRT only, frames need at least k patches).",
    ),
    output: str | None = typer.Option(  # a str: Path() would drop a trailing / (a folder, refused)
        None,
        "--output",
        "-o",
        help="Where to write. Default: a name that says what the file holds (backbone, preset or HxW, "
        "precision, as in bgm_resnet50_hd_fp16.onnx) in the working folder.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace a file of another model at the output path (it is refused otherwise)."
    ),
    no_engine: bool = typer.Option(
        False,
        "--no-engine",
        help="Do not build an engine. By default export "
        "builds one where it can: with TensorRT and a GPU, else with TensorRT for RTX (no GPU needed).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex export --backbone resnet50 --fp16

    Writes bgm_resnet50_hd_fp16.onnx (and its engine where one can be built here): MattingRefine
    traced with its top-k patch refinement (batch, height and width dynamic), TopK rewritten
    into TensorRT-buildable ops, checked and written atomically with its metadata. --fp16 and
    --int8 put the precision in the graph, as strongly typed TensorRT wants: fp16 tensors, or
    int8 Q/DQ nodes calibrated on PhotoMatte85 (--int8 --calibration-data PhotoMatte85/).
    """
    import onnxruntime

    from mattex.exporter.workflow import export_and_build

    # ONNX Runtime's optimizer notices while folding and calibrating are not the user's concern.
    onnxruntime.set_default_logger_severity(3)
    if fp16 and int8:  # two flags for one library field, `precision`
        raise typer.BadParameter("choose --fp16 or --int8, not both")
    calibration_options = {"samples": calibration_samples, "method": calibration_method, "weight_bits": weight_bits}
    settings = Calibration(calibration_data, backgrounds, **calibration_options)
    asked = settings != Calibration(None)  # the library refuses settings given for a file that is not int8
    config = Config.from_preset(
        resolution,
        backbone=backbone,
        backbone_scale=backbone_scale,
        sample_pixels=sample_pixels,
        refine_mode=refine_mode,
        threshold=refine_threshold,
        kernel_size=kernel_size,
        height=height,
        width=width,
        opset=opset,
        debug_outputs=debug_outputs,
        target=target,
        precision="fp16" if fp16 else "int8" if int8 else "fp32",
        io_dtype=io_dtype,
        io=io,
        topk=topk,
    )
    calibration = settings if (calibration_data is not None if int8 else asked) else None
    log = (lambda m: None) if json_output else (lambda m: err_console.print(m, highlight=False))
    with progress("exporting", disable=json_output) as update:
        outcome = export_and_build(
            config,
            output=output,
            checkpoint=checkpoint,
            calibration=calibration,
            calibration_cache=calibration_cache,
            build=not no_engine,
            progress=lambda step: update(step),
            calibration_progress=lambda i, n: update(f"calibrating int8 ({i}/{n})", i, n),
            build_log=log,
            replace=force,
        )
    for warning in outcome.warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    if outcome.note:
        err_console.print(f"[bold yellow]note:[/] {escape(as_flags(outcome.note))}", highlight=False)
    if not emit_json(outcome.to_dict(), json_output):
        _print(outcome)


def _print(outcome) -> None:
    result, config = outcome.result, outcome.config
    ops = ", ".join(f"{op} {n}" for op, n in list(result.op_histogram.items())[:12])
    selection = ", top-k by TensorRT 11's TopkLastDim plugin" if config.topk == "plugin" else ""
    console.print(
        field_table(
            f"exported {result.path}",
            [
                ("size", f"{result.size_bytes / 2**20:.1f} MiB"),
                ("nodes", str(result.nodes)),
                ("ops", ops),
                ("weights", result.metadata.weights),
                ("precision", _precision(outcome)),
                ("refine", f"{config.refine_mode}, k = {config.k}, backbone_scale {config.backbone_scale}{selection}"),
                ("check", f"[green]passes {config.target} rules[/]"),
                (
                    "engine",
                    f"{outcome.engine} ({outcome.engine_backend})"
                    if outcome.engine
                    else "not built (--no-engine, or no TensorRT for RTX, nor TensorRT with a GPU, here)",
                ),
            ],
        )
    )
    console.print("next:\n  " + "\n  ".join(outcome.next_steps), highlight=False)


def _precision(outcome) -> str:
    meta, q = outcome.result.metadata, outcome.result.quantization
    left = ", ".join(f"{n} {reason}" for reason, n in outcome.left_in_float.items()) or "none"
    if meta.precision == "fp16":
        return f"fp16 ({meta.fp16['fp16_nodes']} nodes fp16, I/O {meta.fp16['io_dtype']}; left fp32: {left})"
    if meta.precision == "int8":
        cache = "reused" if q.cache_reused else "written"
        return (
            f"int8 (symmetric Q/DQ, {q.samples} calibration composites; ranges {cache}: "
            f"{q.cache_path}; left float: {left})"
        )
    return "fp32"
