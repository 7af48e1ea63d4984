"""`mattex plate`: build a clean plate from a clip recorded without the subject, or check a plate
against a clip before matting a day's footage."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JSON_OPTION, console, emit_json, field_table, user_errors

SHORT_HELP = "Build a clean plate from a clip (temporal median), or check a plate against a clip."


@user_errors()
def command(
    clip: Path = typer.Argument(
        ..., help="A video, or a folder of images, of the scene (without the subject to build)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Build: write the plate here (PNG)."),
    check: Path | None = typer.Option(None, "--check", help="Check this plate against the clip instead."),
    frames: int = typer.Option(60, min=3, help="Frames used, spread evenly over the clip."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex plate empty_room.mp4 --out plate.png

    Build (`--out`): the per-pixel temporal median of the clip's frames, so that noise averages
    out and a passer-by drops out. Check (`--check plate.png`): each frame against the plate,
    brought to it as `mattex run --align` does: how far the camera moved (pixels), how far the
    exposure drifted (per-channel gains), and how much of the frame still differs once aligned
    (a moved chair, or the subject): frames over 0.5% changed are counted as stale. The check
    needs the align extra.
    """
    from mattex.errors import ConfigError

    if (out is None) == (check is None):
        raise ConfigError("give `out` to build a plate, or `check` to check one (not both)")
    if out is not None:
        from mattex.runtime.plates import build_plate

        built = build_plate(clip, out, frames)
        if not emit_json(built, json_output):
            console.print(field_table(f"mattex plate {clip.name}", [(k, str(v)) for k, v in built.items()]))
        return
    from mattex.extras import require
    from mattex.runtime.plates import check_plate

    require("align", "checking a plate (`check`)")
    report = check_plate(check, clip, frames)
    if emit_json(report, json_output):
        return
    low, high = report["gain_range"]
    rows = [
        ("frames", str(report["frames"])),
        ("camera moved", f"up to {report['max_shift_px']:.1f} px ({report['fallbacks']} frames not estimated)"),
        ("exposure gain", f"{low:.3f} to {high:.3f}"),
        ("scene changed", f"{report['stale_frames']} frames over 0.5% (up to {100 * report['max_changed']:.1f}%)"),
    ]
    console.print(field_table(f"mattex plate {check.name} against {clip.name}", rows))
