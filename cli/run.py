"""`mattex run`: matte a video, an image or a folder of images with an exported model."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mattex.runtime.pipeline import matte_media

from .common import (
    EXIT_INTERRUPTED,
    JSON_OPTION,
    console,
    defaults_of,
    emit_json,
    err_console,
    field_table,
    user_errors,
)

SHORT_HELP = "Matte a video, an image or a folder of images with an exported model."
FLAGS = {"rgba_fgr": "--rgba", "png": "--png", "out": "--out"}
Run = defaults_of(matte_media)


@user_errors(FLAGS)
def command(
    model: Path = typer.Argument(..., help="An exported .onnx or a .engine (with --server: the model's name there)."),
    src: Path = typer.Argument(..., help="A video (mp4, mov, mkv, webm), one image, or a folder of images."),
    bgr: Path = typer.Argument(..., help="The captured background: an image, or a video with as many frames."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the outputs."),
    outputs: str = typer.Option(
        ",".join(Run.outputs),
        help="Any of com,pha,fgr,err,ref (err and ref need a file exported with --debug-outputs).",
    ),
    composite: str = typer.Option(Run.composite, help="What com is composited on: green, white, or an image file."),
    png: bool = typer.Option(Run.png, "--png", help="Image sequences (KIND/FRAME.png) instead of videos."),
    rgba: bool = typer.Option(
        Run.rgba_fgr, "--rgba", help="Write fgr as RGBA PNGs carrying the alpha (image outputs)."
    ),
    batch: int = typer.Option(Run.batch, min=1, help="Frames per inference call."),
    crf: int = typer.Option(Run.crf, help="Video quality (x264 CRF: lower is better and larger)."),
    preset: str = typer.Option(
        Run.preset, help="x264 preset: ultrafast hides encoding behind inference; slower ones make smaller files."
    ),
    backend: str | None = typer.Option(
        None,
        help="Run an .onnx on onnxruntime or openvino (default: OpenVINO for fp32/fp16 files where "
        "it is installed, the faster on the CPU; ONNX Runtime for int8 files or with a GPU provider); "
        "an engine runs on the backend it was built for.",
    ),
    providers: str | None = typer.Option(
        None, help="ONNX Runtime providers, comma-separated (default: TensorRT EP, CUDA EP, CPU, whichever exist)."
    ),
    runtime_cache: Path | None = typer.Option(None, help="TensorRT for RTX engines: the runtime cache file."),
    resize_bgr: bool = typer.Option(
        Run.resize_bgr, "--resize-bgr", help="Resize the background to the frames (else a size mismatch is an error)."
    ),
    keep_partial: bool = typer.Option(
        Run.keep_partial,
        "--keep-partial",
        help="A source video that stops short (truncated, damaged): matte the frames that decode and say so "
        "(else it is an error).",
    ),
    server: str | None = typer.Option(
        None,
        help="Matte on a Triton server instead (mattex serve): "
        "http://host:8000 or grpc://host:8001; MODEL is the model's name there.",
    ),
    align: bool = typer.Option(
        Run.align,
        "--align",
        help="Bring the background to each frame first: a handheld camera's motion and drifting exposure "
        "(needs the align extra).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex run bgm_mobilenetv2_hd_fp32.onnx clip.mp4 bg.png --out matted/

    Decode, matte and encode in their own threads: videos in give com.mp4, pha.mp4 and fgr.mp4
    with the source's frame count, frame rate and size (com keeps the source's audio); images
    in give KIND/NAME.png. com is composited on green (the reference's), white or an
    image. Ctrl-C (or SIGTERM) stops cleanly and keeps the frames done; a failure leaves no
    output behind.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    remote = None
    if server is not None:
        from mattex.serving.client import RemoteMatter

        remote = RemoteMatter(server, str(model))

    options = {"backend": backend} if backend else {}
    if providers:
        options["providers"] = [p.strip() for p in providers.split(",") if p.strip()]
    if runtime_cache:
        options["runtime_cache"] = runtime_cache
    columns = (
        TextColumn("matting"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.2f} frames/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True, disable=json_output) as bar:
        task = bar.add_task("matting", total=None, fps=0.0)
        started = time.perf_counter()

        def advance(n: int) -> None:
            done = bar.tasks[0].completed + n
            bar.update(task, advance=n, fps=done / max(time.perf_counter() - started, 1e-9))

        result = matte_media(
            model,
            src,
            bgr,
            out,
            outputs=[o.strip() for o in outputs.split(",") if o.strip()],
            composite=composite,
            png=png,
            rgba_fgr=rgba,
            batch=batch,
            resize_bgr=resize_bgr,
            keep_partial=keep_partial,
            crf=crf,
            preset=preset,
            progress=advance,
            on_start=lambda info: bar.update(task, total=info["frames"]),
            matter=remote,
            align=align,
            **options,
        )
    summary = result.to_dict()
    if not emit_json(summary, json_output):
        stats = result.stats
        rows = [
            ("frames", f"{stats.frames}" + (" (interrupted)" if stats.interrupted else "")),
            ("frames/s", f"{stats.fps:.2f}"),
            (
                "ms per frame",
                ", ".join(f"{k} {v:.1f}" for k, v in summary["ms_per_frame"].items()) + " (stages overlap)",
            ),
            *result.outputs.items(),
            *_alignment_rows(result.alignment),
        ]
        source = result.source
        if source["frames_from"] == "unknown":
            rows.insert(
                1, ("declared frames", "unknown (the file does not declare them): only decoding errors are caught")
            )
        if source["partial"]:
            rows.insert(1, ("partial", source["partial"]))
        console.print(field_table(f"mattex run {model.name} on {src.name}", rows))
    if result.stats.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def _alignment_rows(alignment: dict | None) -> list[tuple[str, str]]:
    if alignment is None:
        return []
    low, high = alignment["gain_range"]
    rows = [
        ("aligned", f"{alignment['aligned']} of {alignment['frames']} frames ({alignment['fallbacks']} fell back)"),
        ("shift", f"median {alignment['median_shift_px']:.1f} px, max {alignment['max_shift_px']:.1f} px"),
        ("exposure gain", f"{low:.3f} to {high:.3f}"),
    ]
    if alignment["large_motion_frames"]:
        frames = alignment["large_motion_frames"]
        rows.append(("large motion", f"{frames} frames: recapture the plate if the mattes suffer"))
    return rows
