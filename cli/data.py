"""`mattex data`: synthetic PhotoMatte85-layout sets and clips, nothing to download."""

from __future__ import annotations

from pathlib import Path

import typer

from mattex.contract import SIZE_MULTIPLE

from .common import console, err_console, user_errors

app = typer.Typer(
    help="Example: mattex data synth --out synth/photomatte --count 20\n\n"
    "Matting data: synthetic PhotoMatte85-layout sets and clips.",
    no_args_is_help=True,
)


@app.command("synth")
@user_errors(requires=("export", "mattex data synth"))
def synth(
    out: Path = typer.Option(..., help="Folder for the RGBA PNGs (PhotoMatte85's layout)."),
    count: int = typer.Option(20, min=1, help="How many portraits."),
    seed: int = typer.Option(0, help="Same seed, same images."),
    height: int = typer.Option(640, min=SIZE_MULTIPLE, help="Image height."),
    width: int = typer.Option(512, min=SIZE_MULTIPLE, help="Image width."),
    backgrounds: Path | None = typer.Option(None, help="Also write textured backgrounds here."),
) -> None:
    """Example: mattex data synth --out synth/photomatte --count 20 --backgrounds synth/backgrounds

    Generate portrait-like RGBA foregrounds (soft edges, hair-like strands) and, optionally,
    textured backgrounds, deterministic under --seed: a stand-in for PhotoMatte85.
    """
    from rich.progress import track

    from mattex.calibration.synthetic import write_synthetic_photomatte

    steps = iter(track(range(count), description="synthesising", console=err_console))
    files = write_synthetic_photomatte(
        out, count, seed, height, width, backgrounds, progress=lambda i: next(steps, None)
    )
    console.print(
        f"wrote {len(files)} RGBA portraits to {out}"
        + (f" and {count} backgrounds to {backgrounds}" if backgrounds else "")
    )


@app.command("synth-video")
@user_errors(requires=("export", "mattex data synth-video"))
def synth_video(
    out: str = typer.Option(..., help="The clip to write (.mp4)."),  # str: a trailing / (a folder) is refused
    background: str = typer.Option(..., help="Where to write the captured background (.png)."),
    frames: int = typer.Option(48, min=1, help="How many frames."),
    height: int = typer.Option(240, min=SIZE_MULTIPLE, help="Frame height."),
    width: int = typer.Option(320, min=SIZE_MULTIPLE, help="Frame width."),
    fps: int = typer.Option(24, help="Frames per second."),
    seed: int = typer.Option(0, help="Same seed, same clip."),
) -> None:
    """Example: mattex data synth-video --out clip.mp4 --background bg.png --frames 48

    A clip without downloads: a synthetic person-like shape moving across a textured room,
    filmed with light capture noise, and the room alone as the captured background.
    """
    from rich.progress import track

    from mattex.calibration.synthetic import write_synthetic_video

    steps = iter(track(range(frames), description="synthesising", console=err_console))
    path = write_synthetic_video(
        out, background, frames, height, width, fps, seed, progress=lambda i: next(steps, None)
    )
    console.print(
        f"wrote {frames} frames of {height}x{width} (height x width) at {fps} fps to {path} "
        f"and the background to {background}",
        highlight=False,
    )
