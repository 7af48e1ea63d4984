"""The `mattex` command line: a thin Typer layer over the library.

Heavy imports (torch, onnx) happen inside commands so that `mattex --help` stays instant.
"""

from __future__ import annotations

import json
import warnings
from functools import wraps
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

import mattex
from mattex.errors import MattexError

app = typer.Typer(
    name="mattex",
    help="BackgroundMattingV2 to exact ONNX and TensorRT engines.\n\n"
    "Example: mattex info pytorch_resnet50.pth",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # reflow docstring paragraphs
)
console = Console()
err_console = Console(stderr=True)


def user_errors_exit(code: int = 2):
    """Show a MattexError as one clear message and an exit code, never a traceback."""

    def decorate(command):
        @wraps(command)
        def run(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except MattexError as e:
                err_console.print(f"[bold red]error:[/] {type(e).__name__}: {e}", highlight=False,
                                  soft_wrap=True)
                raise typer.Exit(code) from None

        return run

    return decorate


def _version(value: bool) -> None:
    if value:
        console.print(f"mattex {mattex.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """BackgroundMattingV2 to exact ONNX and TensorRT engines."""


@app.command(short_help="Backbone, parameter count and key check of a checkpoint.")
@user_errors_exit()
def info(
    checkpoint: Path = typer.Argument(..., help="A published .pth state_dict or TorchScript file."),
    backbone: Optional[str] = typer.Option(
        None, help="resnet50 | resnet101 | mobilenetv2 (inferred from the keys when omitted)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Example: mattex info pytorch_resnet50.pth

    Show a checkpoint's backbone, parameter count and whether its keys and shapes match the
    model. Exits 1 when they do not.
    """
    from mattex.model.checkpoint import describe_checkpoint

    facts = describe_checkpoint(checkpoint, backbone)
    if json_output:
        print(json.dumps(facts, indent=2))
    else:
        _print_info(facts)
    if not facts["keys_match"]:
        raise typer.Exit(1)


def _print_info(facts: dict) -> None:
    table = Table(title=f"mattex info: {facts['file']}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    inferred = " (inferred from keys)" if facts["backbone_inferred"] else ""
    table.add_row("format", facts["format"])
    table.add_row("sha256", facts["sha256"])
    table.add_row("backbone", facts["backbone"] + inferred)
    table.add_row("state_dict entries", str(facts["keys"]))
    table.add_row("parameters", f"{facts['parameters']:,}")
    table.add_row("key check", "[green]OK[/]" if facts["keys_match"] else "[red]MISMATCH[/]")
    console.print(table)
    for title, items in (("missing", facts["missing"]), ("unexpected", facts["unexpected"])):
        for key in items:
            console.print(f"  [red]{title}[/] {key}")
    for m in facts["mismatched"]:
        console.print(f"  [red]shape[/] {m['key']}: checkpoint {m['checkpoint']} vs model {m['model']}")



def _emit_json(data: dict, json_output: bool) -> bool:
    if json_output:
        print(json.dumps(data, indent=2, default=str))
    return json_output


@app.command(short_help="Export BGMv2 to one ONNX graph that ONNX Runtime runs and TensorRT builds.")
@user_errors_exit()
def export(
    backbone: str = typer.Option("mobilenetv2", help="resnet50 | resnet101 | mobilenetv2."),
    checkpoint: Optional[Path] = typer.Option(
        None, help="Official .pth. Default: pytorch_<backbone>.pth in . or $MATTEX_HOME, then "
        "the shipped demo weights, then random weights (with a warning)."),
    resolution: str = typer.Option("hd", help="Preset: hd (backbone_scale 0.25, sample_pixels "
                                   "80,000) or 4k (0.125, 320,000)."),
    backbone_scale: Optional[float] = typer.Option(None, help="Override the preset's scale."),
    sample_pixels: Optional[int] = typer.Option(None, help="Override: k = sample_pixels // 16."),
    refine_mode: str = typer.Option("sampling", help="sampling | full | thresholding."),
    refine_threshold: float = typer.Option(0.1, help="Error threshold of thresholding mode."),
    kernel_size: int = typer.Option(3, help="Refiner kernel size, 3 or 1."),
    height: Optional[int] = typer.Option(None, min=4, help="Trace height (the file runs at any H % 4 == 0)."),
    width: Optional[int] = typer.Option(None, min=4, help="Trace width."),
    opset: int = typer.Option(17, help="ONNX opset (13..20)."),
    debug_outputs: bool = typer.Option(False, help="Also output pha_sm, fgr_sm, err_sm, ref_sm."),
    target: str = typer.Option("tensorrt", help="Rules the file must pass: tensorrt | tensorrt-rtx | onnxruntime."),
    fp16: bool = typer.Option(False, "--fp16", help="Mixed fp16/fp32 graph (strongly typed TensorRT FP16)."),
    io_dtype: str = typer.Option("float32", help="With --fp16: float32 (callers unchanged) or float16 I/O."),
    io: str = typer.Option("float", "--io", help="Inputs: float ((B, 3, H, W) RGB in [0, 1]) or uint8 (frames "
                           "(B, H, W, 3) RGB as decoders give them, converted inside the graph)."),
    int8: bool = typer.Option(False, "--int8", help="Q/DQ int8 graph calibrated on --calibration-data."),
    calibration_data: Optional[Path] = typer.Option(None, help="PhotoMatte85-layout folder for --int8."),
    backgrounds: Optional[Path] = typer.Option(None, help="Background images for calibration composites "
                                               "(default: procedural)."),
    calibration_samples: int = typer.Option(32, min=1, help="Composites to calibrate on."),
    calibration_method: str = typer.Option("minmax", help="minmax | entropy | percentile."),
    calibration_cache: Optional[Path] = typer.Option(None, help="Ranges cache (default: beside the "
                                                     "output); reused while model, data and settings match."),
    weight_bits: int = typer.Option(7, help="int8 weight range: 7 (runs exactly on x86 CPUs without "
                                    "VNNI too) or 8 (TensorRT-only files)."),
    topk: str = typer.Option("onnx", help="How the top-k patch selection is exported: onnx (exact, "
                             "standard ops, runs everywhere) or plugin (TensorRT 11's TopkLastDim "
                             "plugin; TensorRT only, frames need at least k patches)."),
    output: Path = typer.Option(Path("mattex.onnx"), "--output", "-o", help="Where to write."),
    no_engine: bool = typer.Option(False, "--no-engine", help="Do not build an engine. By default export "
                                   "builds one where it can: with TensorRT and a GPU, else with TensorRT for RTX (no GPU needed)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Example: mattex export --backbone resnet50 --resolution hd --fp16 -o bgm_resnet50_hd_fp16.onnx

    Trace MattingRefine with its top-k patch refinement to ONNX (batch, height and width
    dynamic), rewrite TopK into TensorRT-buildable ops, check it for TensorRT and write it
    atomically with its metadata. --fp16 and --int8 put the precision in the graph itself, as
    strongly typed TensorRT (10 and 11) wants: fp16 tensors, or symmetric int8 Q/DQ nodes
    calibrated on PhotoMatte85 composites at the trace size
    (--int8 --calibration-data PhotoMatte85/).
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    import onnxruntime

    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx
    from mattex.exporter.quantize import CalibrationSettings

    # Constant folding and calibration run ONNX Runtime sessions whose optimizer notices
    # ("UnsqueezeElimination cannot remove node ...") are not the user's concern. The command
    # owns its process, so it may quiet ONNX Runtime's process-wide logger.
    onnxruntime.set_default_logger_severity(3)
    if fp16 and int8:
        raise typer.BadParameter("choose --fp16 or --int8, not both")
    int8_only = {"--calibration-data": calibration_data is not None,
                 "--backgrounds": backgrounds is not None,
                 "--calibration-samples": calibration_samples != 32,
                 "--calibration-method": calibration_method != "minmax",
                 "--calibration-cache": calibration_cache is not None,
                 "--weight-bits": weight_bits != 7}
    given = [name for name, set_ in int8_only.items() if set_]
    if given and not int8:
        raise typer.BadParameter(f"{', '.join(given)} only apply to --int8")
    if io_dtype != "float32" and not fp16:
        raise typer.BadParameter("--io-dtype float16 needs --fp16")
    precision = "fp16" if fp16 else "int8" if int8 else "fp32"
    config = ExportConfig.from_preset(
        resolution, backbone=backbone, backbone_scale=backbone_scale, sample_pixels=sample_pixels,
        refine_mode=refine_mode, threshold=refine_threshold, kernel_size=kernel_size,
        height=height, width=width, opset=opset, debug_outputs=debug_outputs, target=target,
        precision=precision, io_dtype=io_dtype, io=io, topk=topk)
    calibration = None
    if int8 and calibration_data is not None:
        calibration = CalibrationSettings(calibration_data, backgrounds, calibration_samples,
                                          calibration_method, weight_bits=weight_bits)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=json_output) as bar:
        task = bar.add_task("exporting", total=None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            result = export_onnx(
                config, output, checkpoint,
                progress=lambda step: bar.update(task, description=step),
                calibration=calibration, calibration_cache=calibration_cache,
                calibration_progress=lambda i, n: bar.update(
                    task, description=f"calibrating int8 ({i}/{n})", completed=i, total=n))
    for w in caught:
        err_console.print(f"[bold yellow]warning:[/] {w.message}", highlight=False)
    from mattex.exporter.build import automatic_build, build_engine, parse_profile
    from mattex.exporter.config import TENSORRT_TARGETS

    engine, engine_backend, problem = None, None, None
    build_command = f"mattex build {result.path} --profile {config.height}x{config.width}"
    profiles = [parse_profile(f"{config.height}x{config.width}")]
    if not no_engine and config.target in TENSORRT_TARGETS:
        engine_backend, problem = automatic_build(result.path, profiles)
        if config.target == "tensorrt-rtx" and engine_backend == "tensorrt":
            engine_backend = "tensorrt-rtx"  # the file is for TensorRT for RTX: build that
    if engine_backend is not None:
        engine = result.path.with_suffix(".engine")
        build_engine(result.path, engine, profiles, engine_backend,
                     log=(lambda m: None) if json_output else lambda m: err_console.print(m, highlight=False))
    elif problem and problem != "no TensorRT or TensorRT for RTX here":
        err_console.print(f"[bold yellow]note:[/] engine not built here: {problem}", highlight=False)
    where_to_build = ("on the machine with TensorRT 11 and the GPU" if config.topk == "plugin" else
                      "with TensorRT for RTX (any machine) or TensorRT (on the GPU machine)")
    summary = {
        "file": str(result.path), "engine": str(engine) if engine else None,
        "engine_backend": engine_backend,
        "size_bytes": result.size_bytes, "nodes": result.nodes,
        "op_histogram": result.op_histogram, "passes": result.passes,
        "check": result.check.to_dict(), "metadata": result.metadata,
        "next": [f"mattex check {result.path} --target {config.target}",
                 *([] if config.topk == "plugin" else  # ONNX Runtime cannot run a TensorRT plugin
                   [f"mattex verify {result.path}" + (f" --checkpoint {checkpoint}" if checkpoint else "")]),
                 *([] if engine else [f"{build_command}  # {where_to_build}"])],
    }
    if _emit_json(summary, json_output):
        return
    table = Table(title=f"exported {result.path}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("size", f"{result.size_bytes / 2**20:.1f} MiB")
    table.add_row("nodes", str(result.nodes))
    table.add_row("ops", ", ".join(f"{op} {n}" for op, n in list(result.op_histogram.items())[:12]))
    table.add_row("weights", result.metadata["weights"])
    table.add_row("precision", _precision_summary(result))
    selection = ", top-k by TensorRT 11's TopkLastDim plugin" if config.topk == "plugin" else ""
    table.add_row("refine", f"{config.refine_mode}, k = {config.k}, backbone_scale "
                  f"{config.backbone_scale}{selection}")
    table.add_row("check", f"[green]passes {config.target} rules[/]")
    table.add_row("engine", f"{engine} ({engine_backend})" if engine else
                  "not built (--no-engine, or no TensorRT for RTX, nor TensorRT with a GPU, here)")
    console.print(table)
    console.print("next:\n  " + "\n  ".join(summary["next"]), highlight=False)


def _precision_summary(result) -> str:
    precision = result.metadata["precision"]
    if precision == "fp16":
        info = json.loads(result.metadata["fp16"])
        return (f"fp16 ({info['fp16_nodes']} nodes fp16, I/O {info['io_dtype']}; left fp32: "
                f"{_reasons(info['left_fp32'])})")
    if precision == "int8":
        q = result.quantization
        cache = "reused" if q.cache_reused else "written"
        return (f"int8 (symmetric Q/DQ, {q.samples} calibration composites; "
                f"ranges {cache}: {q.cache_path}; left float: {_reasons(q.left_float)})")
    return "fp32"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in counts.items()) or "none"


@app.command(short_help="Lint an ONNX file against TensorRT's rules; --build runs the real builder.")
@user_errors_exit()
def check(
    model: Path = typer.Argument(..., help="The ONNX file."),
    target: str = typer.Option("tensorrt", help="tensorrt | tensorrt-rtx | onnxruntime."),
    build: bool = typer.Option(False, "--build", help="Also parse and build the file with the real "
                               "TensorRT (TensorRT for RTX needs no GPU); no engine is kept."),
    backend: str = typer.Option("auto", help="With --build: auto | tensorrt | tensorrt-rtx."),
    profile: list[str] = typer.Option([], help="With --build: hd | 4k | HxW | HxW-HxW (default: the "
                                      "file's trace size)."),
    batch: int = typer.Option(1, min=1, help="With --build: largest batch of the profiles."),
    json_output: bool = typer.Option(False, "--json", help="Print findings (and the build) as JSON."),
) -> None:
    """Example: mattex check bgm_resnet50_hd.onnx --target tensorrt --build

    Statically check the graph against TensorRT's parser and builder rules (unsupported ops,
    TopK K/sorted, scatter extents, Q/DQ, Resize modes, float64, data-dependent shapes,
    shape-tensor inputs, plugins; `mattex check --help` lists them in the README). With
    --build, TensorRT's own parser and builder then build it for real, a GPU-free TensorRT
    check for CI with TensorRT for RTX. Exits 1 on any error finding or a failed build.
    """
    import onnx

    from mattex.errors import ModelFileError
    from mattex.exporter.lint import check_model
    from mattex.exporter.onnx_file import load_onnx

    if not build and (profile or backend != "auto" or batch != 1):
        raise typer.BadParameter("--backend, --profile and --batch go with --build")
    proto = load_onnx(model)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise ModelFileError(f"{model} is not a valid ONNX model: {e}") from None
    report = check_model(proto, target)
    built = None
    if build:
        from mattex.exporter.build import check_build, parse_profile

        if backend == "auto" and target == "tensorrt-rtx":
            backend = "tensorrt-rtx"
        built = check_build(model, backend, [parse_profile(p, batch) for p in profile] or None)
    if not _emit_json({**report.to_dict(), **({"build": built.to_dict()} if built else {})}, json_output):
        if report.findings:
            table = Table(title=f"mattex check {model} ({target})")
            for column in ("rule", "where", "problem"):
                table.add_column(column, overflow="fold")
            for f in report.findings:
                message = f.message if f.severity == "error" else f"({f.severity}) {f.message}"
                table.add_row(f.rule, f.node, message + (f"\n[dim]rests on: {f.basis}[/]" if f.basis else ""))
            console.print(table)
        verdict = "[green]passes[/]" if report.passed else "[red]fails[/]"
        errors = sum(f.severity == "error" for f in report.findings)
        notes = len(report.findings) - errors
        console.print(f"{model}: {verdict} {len(report.rules)} {target} rules, "
                      f"{errors} error{'s' * (errors != 1)}, {notes} note{'s' * (notes != 1)}")
        if built is not None:
            mark = "[green]builds[/]" if built.passed else "[red]does not build[/]"
            console.print(f"{model}: {mark}: {built.message}", highlight=False)
    if not report.passed or (built is not None and not built.passed):
        raise typer.Exit(1)


@app.command(short_help="Compare an ONNX file with the PyTorch model; exit 1 over budget.")
@user_errors_exit()
def verify(
    model: Path = typer.Argument(..., help="The exported ONNX file."),
    checkpoint: Optional[Path] = typer.Option(None, help="The checkpoint it was exported from."),
    samples: int = typer.Option(2, min=1, help="Generated input pairs (ignored with --images/--data): "
                                "random for fp32 files, synthetic composites for fp16/int8."),
    batch: int = typer.Option(1, min=1, help="Batch size of random inputs."),
    height: Optional[int] = typer.Option(None, min=4, help="Random input height (default: trace size)."),
    width: Optional[int] = typer.Option(None, min=4, help="Random input width."),
    images: Optional[Path] = typer.Option(None, help="Folder of frames (use with --background)."),
    background: Optional[Path] = typer.Option(None, help="The captured background image."),
    data: Optional[Path] = typer.Option(None, help="PhotoMatte85-layout folder: verify on its composites."),
    backgrounds: Optional[Path] = typer.Option(None, help="Background images for --data composites."),
    budget: Optional[str] = typer.Option(None, help="Hold the file to another precision's budget "
                                         "(fp32, fp16, int8, bf16); default: the file's own."),
    backend: str = typer.Option("onnxruntime", help="Run the file on onnxruntime or openvino."),
    inference_precision: str = typer.Option("f32", help="OpenVINO's arithmetic: f32, or bf16 (CPUs "
                                            "with AMX/AVX-512 BF16; fp32 files then get the bf16 budget)."),
    json_report: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here."),
) -> None:
    """Example: mattex verify bgm_resnet50_hd.onnx --checkpoint pytorch_resnet50.pth --json report.json

    Run the file on ONNX Runtime (or --backend openvino) and the PyTorch model on the same inputs; report per-output max
    and mean absolute differences and the share of patches selected differently, and exit 1 when
    they exceed the budget declared for the file's precision (README: accuracy budgets).
    Inputs: random pairs, real frames (--images with --background), or PhotoMatte85-layout
    composites (--data, at the trace size or --height/--width).
    """
    from mattex.exporter.verify import composite_pairs, frame_pairs, verify_onnx

    if (images is None) != (background is None):
        raise typer.BadParameter("--images and --background go together")
    if images is not None and data is not None:
        raise typer.BadParameter("choose --images or --data, not both")
    if backgrounds is not None and data is None:
        raise typer.BadParameter("--backgrounds goes with --data")
    pairs = None
    if images is not None:
        pairs = frame_pairs(images, background)
    elif data is not None:
        pairs = composite_pairs(model, data, backgrounds, height, width)
    report = verify_onnx(model, pairs, checkpoint, samples, batch, height, width, budget=budget,
                         backend=backend, inference_precision=inference_precision)
    if json_report:
        report.save(json_report)
    table = Table(title=f"mattex verify {model} ({report.precision}, {report.samples} x {report.shape})")
    for column in ("output", "max abs", "budget", "mean abs", "budget", "ok"):
        table.add_column(column)
    for name, d in report.outputs.items():
        table.add_row(name, f"{d.max_abs:.3g}", f"{d.budget_max_abs:.3g}", f"{d.mean_abs:.3g}",
                      f"{d.budget_mean_abs:.3g}", "[green]yes[/]" if d.ok else "[red]no[/]")
    console.print(table)
    console.print(f"patches selected or refined differently: {report.patch_mismatch:.4%} "
                  f"(budget {report.patch_budget:.4%}); at ties (errors within {report.tie_band:.3g} "
                  f"of the k-th, interchangeable, left out of the values above): {report.tie_flips:.4%}")
    if not report.passed:
        for failure in report.failures:
            err_console.print(f"[red]over budget:[/] {failure}", highlight=False)
        raise typer.Exit(1)
    console.print("[green]within budget[/]")


data_app = typer.Typer(help="Matting data: synthetic PhotoMatte85-layout sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("synth")
@user_errors_exit()
def data_synth(
    out: Path = typer.Option(..., help="Folder for the RGBA PNGs (PhotoMatte85's layout)."),
    count: int = typer.Option(20, min=1, help="How many portraits."),
    seed: int = typer.Option(0, help="Same seed, same images."),
    height: int = typer.Option(640, min=4, help="Image height."),
    width: int = typer.Option(512, min=4, help="Image width."),
    backgrounds: Optional[Path] = typer.Option(None, help="Also write textured backgrounds here."),
) -> None:
    """Example: mattex data synth --out synth/photomatte --count 20 --backgrounds synth/backgrounds

    Generate portrait-like RGBA foregrounds (soft edges, hair-like strands) and, optionally,
    textured backgrounds, deterministic under --seed: a stand-in for PhotoMatte85.
    """
    from rich.progress import track

    from mattex.calibration.synthetic import write_synthetic_photomatte

    steps = iter(track(range(count), description="synthesising", console=err_console))
    files = write_synthetic_photomatte(out, count, seed, height, width, backgrounds,
                                       progress=lambda i: next(steps, None))
    console.print(f"wrote {len(files)} RGBA portraits to {out}"
                  + (f" and {count} backgrounds to {backgrounds}" if backgrounds else ""))


@data_app.command("synth-video")
@user_errors_exit()
def data_synth_video(
    out: Path = typer.Option(..., help="The clip to write (.mp4)."),
    background: Path = typer.Option(..., help="Where to write the captured background (.png)."),
    frames: int = typer.Option(48, min=1, help="How many frames."),
    height: int = typer.Option(240, min=4, help="Frame height."),
    width: int = typer.Option(320, min=4, help="Frame width."),
    fps: int = typer.Option(24, help="Frames per second."),
    seed: int = typer.Option(0, help="Same seed, same clip."),
) -> None:
    """Example: mattex data synth-video --out clip.mp4 --background bg.png --frames 48

    A clip without downloads: a synthetic person-like shape moving across a textured room,
    filmed with light capture noise, and the room alone as the captured background.
    """
    from rich.progress import track

    from mattex.calibration.synthetic import write_synthetic_video

    steps = iter(track(range(max(frames, 0)), description="synthesising", console=err_console))
    path = write_synthetic_video(out, background, frames, height, width, fps, seed,
                                 progress=lambda i: next(steps, None))
    console.print(f"wrote {frames} frames of {width}x{height} at {fps} fps to {path} and the background to "
                  f"{background}", highlight=False)


@app.command(short_help="Matte a video, an image or a folder of images with an exported model.")
@user_errors_exit()
def run(
    model: Path = typer.Argument(..., help="An exported .onnx or a .engine."),
    src: Path = typer.Argument(..., help="A video (mp4, mov, mkv, webm), one image, or a folder of images."),
    bgr: Path = typer.Argument(..., help="The captured background: an image, or a video with as many frames."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the outputs."),
    outputs: str = typer.Option("com,pha,fgr", help="Any of com,pha,fgr,err,ref (err and ref need a file "
                                "exported with --debug-outputs)."),
    composite: str = typer.Option("green", help="What com is composited on: green, white, or an image file."),
    png: bool = typer.Option(False, "--png", help="Image sequences (<output>/<frame>.png) instead of videos."),
    rgba: bool = typer.Option(False, "--rgba", help="Write fgr as RGBA PNGs carrying the alpha (image outputs)."),
    batch: int = typer.Option(1, min=1, help="Frames per inference call."),
    crf: int = typer.Option(18, help="Video quality (x264 CRF: lower is better and larger)."),
    preset: str = typer.Option("ultrafast", help="x264 preset: ultrafast hides encoding behind inference; "
                               "slower ones make smaller files."),
    providers: Optional[str] = typer.Option(None, help="ONNX Runtime providers, comma-separated (default: "
                                            "TensorRT EP, CUDA EP, CPU, whichever exist)."),
    runtime_cache: Optional[Path] = typer.Option(None, help="TensorRT for RTX engines: the runtime cache file."),
    resize_bgr: bool = typer.Option(False, "--resize-bgr", help="Resize the background to the frames "
                                    "(else a size mismatch is an error)."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Example: mattex run bgm_mobilenetv2_hd.onnx clip.mp4 bg.png --out matted/

    Decode, matte and encode in their own threads: videos in give com.mp4, pha.mp4 and fgr.mp4
    with the source's frame count, frame rate and size (com keeps the source's audio); images
    in give <output>/<name>.png. com is composited on green (the reference's), white or an
    image. Ctrl-C stops cleanly and keeps the frames done; a failure leaves no output behind.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mattex.runtime.pipeline import matte_media

    if rgba and not png and src.suffix.lower() not in ("", ) and src.is_file() and \
            src.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"):
        raise typer.BadParameter("--rgba writes PNGs: add --png for a video source")
    options = {}
    if providers:
        options["providers"] = [p.strip() for p in providers.split(",") if p.strip()]
    if runtime_cache:
        options["runtime_cache"] = runtime_cache
    columns = (TextColumn("matting"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[fps]:.2f} frames/s"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=json_output) as bar:
        task = bar.add_task("matting", total=None, fps=0.0)
        started = [None]

        def advance(n):
            import time

            started[0] = started[0] or time.perf_counter() - 1e-9
            done = bar.tasks[0].completed + n
            bar.update(task, advance=n, fps=done / (time.perf_counter() - started[0]))

        result = matte_media(model, src, bgr, out, [o.strip() for o in outputs.split(",") if o.strip()],
                             composite, png, rgba, batch, resize_bgr, crf, preset, progress=advance,
                             on_start=lambda info: bar.update(task, total=info["frames"]), **options)
    summary = result.to_dict()
    if not _emit_json(summary, json_output):
        table = Table(title=f"mattex run {model.name} on {src.name}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_row("frames", f"{result.stats.frames}" + (" (interrupted)" if result.stats.interrupted else ""))
        table.add_row("frames/s", f"{result.stats.fps:.2f}")
        table.add_row("ms per frame", ", ".join(f"{k} {v:.1f}" for k, v in summary["ms_per_frame"].items())
                      + " (stages overlap)")
        for kind, path in result.outputs.items():
            table.add_row(kind, path)
        console.print(table)
    if result.stats.interrupted:
        raise typer.Exit(130)


@app.command(short_help="Time every backend that can run the given files, side by side.")
@user_errors_exit()
def bench(
    models: list[Path] = typer.Argument(..., help="Exported .onnx files and/or .engine files."),
    resolution: str = typer.Option("hd", help="Comma-separated sizes: hd, 4k or HxW."),
    batch: str = typer.Option("1", help="Comma-separated batch sizes."),
    reference: bool = typer.Option(False, "--reference", help="Also time PyTorch eager with the reference "
                                   "implementation's patch method (same weights)."),
    rounds: int = typer.Option(3, min=1, help="Timed rounds (runners interleaved round by round; the median counts)."),
    warmup: int = typer.Option(1, help="Untimed calls per runner first."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for ONNX Runtime and PyTorch (default: all)."),
    json_output: bool = typer.Option(False, "--json", help="Print the results (and the machine) as JSON."),
) -> None:
    """Example: mattex bench bgm_mobilenetv2_hd.onnx bgm_mobilenetv2_hd_int8.onnx --resolution hd --reference

    ms per frame, frames/s and memory of each file on ONNX Runtime's CPU provider (and its CUDA
    and TensorRT providers, TensorRT and TensorRT for RTX engines, where a GPU is), and of
    PyTorch eager with the same weights, in one process, interleaved round by round. The
    machine (CPU model and instruction sets, GPU) is recorded with the results; what cannot run
    here is listed with the reason.
    """
    from mattex.bench import bench as run_bench, parse_batches, parse_sizes

    with err_console.status("benchmarking", spinner="dots") as status:
        report = run_bench(models, parse_sizes(resolution), parse_batches(batch), reference, rounds, warmup,
                           threads, progress=lambda step: None if json_output else status.update(step))
    if _emit_json(report.to_dict(), json_output):
        return
    machine = report.machine
    gpu = f", GPU {machine['gpu']['name']}" if machine["gpu"] else ", no GPU"
    table = Table(title=f"mattex bench on {machine['cpu']} ({machine['cores']} cores, "
                  f"{' + '.join(machine['instruction_sets']) or 'no AVX'}{gpu})")
    for column in ("runner", "file", "size", "batch", "ms/frame", "fps", "peak MiB"):
        table.add_column(column, justify="left" if column in ("runner", "file") else "right",
                         overflow="fold")
    for row in report.rows:
        table.add_row(row.runner, Path(row.file).name if row.file else "-", f"{row.size[0]}x{row.size[1]}",
                      str(row.batch), f"{row.ms_per_frame:.1f}", f"{row.fps:.2f}", f"{row.peak_rss_mib:.0f}")
    console.print(table)
    seen = set()
    for skip in report.skipped:
        line = f"{skip['runner']}" + (f" ({Path(skip['file']).name})" if skip.get("file") else "") + f": {skip['why']}"
        if line not in seen:
            seen.add(line)
            console.print(f"[dim]not run: {line}[/]", highlight=False)


@app.command(short_help="The paper's metrics (SAD, MSE, Grad, Conn, FG MSE) on composites.")
@user_errors_exit()
def evaluate(
    model: Optional[Path] = typer.Argument(None, help="An exported .onnx or a .pth checkpoint "
                                           "(default: the shipped demo weights)."),
    data: Path = typer.Option(..., help="PhotoMatte85-layout folder (RGBA PNGs or fgr/ + pha/)."),
    backgrounds: Optional[Path] = typer.Option(None, help="Background images (default: procedural)."),
    resolution: str = typer.Option("hd", help="hd (1080x1920), 4k (2160x3840) or HxW, e.g. 512x512."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate the first N images only."),
    seed: int = typer.Option(0, help="Seed of backgrounds and perturbations."),
    checkpoint: Optional[Path] = typer.Option(None, help="For an fp16/int8 ONNX exported from a "
                                              "checkpoint: that checkpoint (the fp32 reference)."),
    budget: bool = typer.Option(True, help="For an fp16/int8 ONNX: also score PyTorch fp32 and "
                                "exit 1 when the metrics exceed the precision's budget."),
    backend: str = typer.Option("onnxruntime", help="Run an ONNX file on onnxruntime or openvino."),
    inference_precision: str = typer.Option("f32", help="OpenVINO's arithmetic: f32, or bf16 (held "
                                            "to the bf16 metric budget)."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Example: mattex evaluate bgm_mobilenetv2_hd.onnx --data PhotoMatte85 --resolution hd --json

    Composite each foreground over a background with the paper's capture perturbations, matte
    it with the model, and score alpha inside the trimap's unknown region. An fp16 or int8 file
    is also held to its precision's metric budget against PyTorch fp32 on the same composites.
    """
    from rich.progress import Progress

    from mattex.calibration.composite import Composites
    from mattex.calibration.evaluate import checkpoint_matter, evaluate as run_evaluation, onnx_matter

    size = _parse_size(resolution)
    is_onnx = model is not None and model.suffix == ".onnx"
    if (backend, inference_precision) != ("onnxruntime", "f32") and not is_onnx:
        raise typer.BadParameter("--backend and --inference-precision apply to an exported .onnx MODEL")
    if is_onnx:
        from mattex.exporter.verify import file_metadata

        file_metadata(model)  # a missing, corrupt or foreign file is named before any work
        options = {"inference_precision": inference_precision} if backend == "openvino" else {}
        if backend == "onnxruntime" and inference_precision != "f32":
            raise typer.BadParameter("--inference-precision is OpenVINO's (--backend openvino)")
        matter = onnx_matter(model, backend=backend, **options)
    else:
        backbone_scale = 0.125 if size[0] * size[1] >= 2160 * 3840 else 0.25
        matter = checkpoint_matter(model, backbone_scale=backbone_scale)
    composites = Composites(data, size, backgrounds, seed=seed, limit=limit)
    reference, precision, label = None, "fp32", "pytorch"
    if model is not None and model.suffix == ".onnx":
        from mattex.exporter.verify import budget_name, file_metadata, reference_matter

        meta = file_metadata(model)
        label = precision = budget_name(meta.get("precision", "fp32"), backend, inference_precision)
        if not budget:
            precision = "fp32"  # score the file alone
        elif precision != "fp32":  # an fp32 file is verified against PyTorch by `mattex verify`
            reference = reference_matter(meta, checkpoint)
    if checkpoint is not None and reference is None:
        raise typer.BadParameter("--checkpoint is the fp32 reference of an fp16/int8 ONNX file; "
                                 "pass a checkpoint to evaluate as MODEL")
    with Progress(console=err_console, transient=True, disable=json_output) as bar:
        task = bar.add_task("evaluating", total=len(composites))
        report = run_evaluation(matter, composites, str(model or "demo weights"), size,
                                progress=lambda: bar.advance(task))
        check = None
        if precision != "fp32":
            from mattex.calibration.evaluate import check_metric_budget

            task = bar.add_task("scoring PyTorch fp32", total=len(composites))
            fp32 = run_evaluation(reference, composites, "pytorch fp32", size,
                                  progress=lambda: bar.advance(task))
            check = check_metric_budget(report, fp32, precision)
    out = report.to_dict()
    if check is not None:
        out["budget"] = check.to_dict()
    if not _emit_json(out, json_output):
        table = Table(title=f"{report.model} on {len(report.per_image)} composites at {size[0]}x{size[1]}")
        for column in ("model", "SAD", "MSE (x1e3)", "Grad", "Conn", "FG MSE (x1e3)"):
            table.add_column(column, justify="right")
        rows = [(label, report.mean)] + ([("pytorch fp32", check.reference)] if check else [])
        for name, mean in rows:
            table.add_row(name, f"{mean.sad:.3f}", f"{mean.mse:.3f}", f"{mean.grad:.4f}",
                          f"{mean.conn:.3f}", f"{mean.fgr_mse:.3f}" if mean.fgr_mse is not None else "-")
        console.print(table)
        if check is not None:
            verdict = "[green]within[/]" if check.passed else "[red]over[/]"
            console.print(f"{verdict} the {precision} metric budget (<= {check.ratio_budget}x fp32): "
                          + ", ".join(f"{k} {v:.4f}x" for k, v in check.ratios.items()))
    if check is not None and not check.passed:
        for failure in check.failures:
            err_console.print(f"[red]over budget:[/] {failure}", highlight=False)
        raise typer.Exit(1)


def _parse_size(resolution: str) -> tuple[int, int]:
    presets = {"hd": (1080, 1920), "4k": (2160, 3840)}
    if resolution in presets:
        return presets[resolution]
    try:
        height, width = (int(v) for v in resolution.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"resolution must be hd, 4k or HxW, got {resolution!r}") from None
    if height % 4 or width % 4:
        raise typer.BadParameter(f"height and width must be divisible by 4, got {resolution}")
    return height, width


@app.command(short_help="Build an engine (raw plan + JSON sidecar) with TensorRT or TensorRT for RTX.")
@user_errors_exit()
def build(
    model: Path = typer.Argument(..., help="The exported ONNX file."),
    backend: str = typer.Option("auto", help="auto | tensorrt | tensorrt-rtx. auto: TensorRT where it and "
                                "a GPU are here, else TensorRT for RTX (no GPU needed)."),
    profile: list[str] = typer.Option(["hd"], help="hd | 4k | HxW | HxW-HxW (min-max); repeat for several profiles."),
    batch: int = typer.Option(1, min=1, help="Largest batch of every profile (batch 1..N)."),
    compute_capability: Optional[str] = typer.Option(
        None, help="TensorRT for RTX: the GPUs to target, e.g. 8.6,8.9,12.0, or current (this machine's "
        "GPU). Default: its portable set, compute capability 8.0, 8.6, 8.9, 12.0 and later; 7.5 only when named."),
    workspace: float = typer.Option(4.0, help="Builder workspace in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, help="TensorRT: timing cache file, created if missing and reused (same TensorRT version only)."),
    version_compatible: bool = typer.Option(False, help="TensorRT: runs on later TensorRT versions of the same major (slower)."),
    hardware_compat: str = typer.Option("none", help="TensorRT: none | ampere+ (any GPU from Ampere on) | same-cc (same compute capability)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Engine path (default: MODEL with .engine)."),
    json_output: bool = typer.Option(False, "--json", help="Print the sidecar as JSON."),
) -> None:
    """Example: mattex build bgm_resnet50_hd.onnx --backend tensorrt-rtx --profile hd --compute-capability 8.6,8.9,12.0

    Parse the ONNX with TensorRT's parser into a strongly typed network (precision comes from
    the file), build a plan with the given optimization profiles, and write it beside a JSON
    sidecar recording the backend and its version, the GPU or target compute capabilities,
    profiles, I/O, precision and the ONNX's and plan's sha256. TensorRT builds for the GPU it
    runs on; TensorRT for RTX builds ahead of time on any machine, no GPU needed, and compiles
    the kernels when the engine loads. The plan stays raw: trtexec --loadEngine (the RTX
    tools for RTX plans) and C++ load it.
    """
    from mattex.exporter.build import BuildOptions, build_engine, parse_compute_capabilities, parse_profile

    profiles = [parse_profile(p, batch) for p in profile]
    output = output or model.with_suffix(".engine")
    options = BuildOptions(workspace, timing_cache, version_compatible, hardware_compat,
                           parse_compute_capabilities(compute_capability))
    sidecar = build_engine(model, output, profiles, backend, options,
                           log=(lambda m: None) if json_output else lambda m: err_console.print(m, highlight=False))
    if _emit_json(sidecar.to_dict(), json_output):
        return
    from mattex.runtime.sidecar import describe_targets

    target = (f"for {describe_targets(sidecar.target_compute_capabilities)}" if sidecar.backend == "tensorrt-rtx"
              else f"for {sidecar.gpu_name}")
    label = "TensorRT for RTX" if sidecar.backend == "tensorrt-rtx" else "TensorRT"
    console.print(f"built {output} with {label} {sidecar.tensorrt_version} {target}; sidecar {output}.json",
                  highlight=False)


if __name__ == "__main__":
    app()
