"""`mattex build`: an engine (raw plan + JSON sidecar) with TensorRT or TensorRT for RTX."""

from __future__ import annotations

from pathlib import Path

import typer

from mattex.contract import RTX_DEFAULT_TARGETS_TEXT

from .common import JSON_OPTION, console, emit_json, err_console, user_errors

SHORT_HELP = "Build an engine (raw plan + JSON sidecar) with TensorRT or TensorRT for RTX."
FLAGS = {"compute_capabilities": "--compute-capability", "workspace_gib": "--workspace"}


@user_errors(FLAGS, requires=("check", "mattex build"))
def command(
    model: Path = typer.Argument(..., help="The exported ONNX file."),
    backend: str = typer.Option(
        "auto",
        help="auto or an engine backend that builds (tensorrt, tensorrt-rtx, any registered). auto: "
        "TensorRT where it and a GPU are here, else TensorRT for RTX (no GPU needed).",
    ),
    profile: list[str] = typer.Option(["hd"], help="hd | 4k | HxW | HxW-HxW (min-max); repeat for several profiles."),
    batch: int = typer.Option(1, min=1, help="Largest batch of every profile (batch 1..N)."),
    compute_capability: str | None = typer.Option(
        None,
        help="TensorRT for RTX: the GPUs to target, e.g. 8.6,8.9,12.0, or current (this machine's "
        f"GPU). Default: its portable set, {RTX_DEFAULT_TARGETS_TEXT}; 7.5 only when named.",
    ),
    workspace: float = typer.Option(4.0, help="Builder workspace in GiB."),
    timing_cache: Path | None = typer.Option(
        None, help="TensorRT: timing cache file, created if missing and reused (same TensorRT version only)."
    ),
    version_compatible: bool = typer.Option(
        False, help="TensorRT: runs on later TensorRT versions of the same major (slower)."
    ),
    hardware_compat: str = typer.Option(
        "none", help="TensorRT: none | ampere+ (any GPU from Ampere on) | same-cc (same compute capability)."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Engine path (default: MODEL with .engine)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Example: mattex build bgm_resnet50_hd_fp32.onnx --backend tensorrt-rtx --profile hd --compute-capability 8.6,8.9

    Parse the ONNX with TensorRT's parser into a strongly typed network (precision comes from
    the file), build a plan with the given optimization profiles, and write it beside a JSON
    sidecar recording the backend and its version, the GPU or target compute capabilities,
    profiles, I/O, precision and the ONNX's and plan's sha256. TensorRT builds for the GPU it
    runs on; TensorRT for RTX builds ahead of time on any machine, no GPU needed, and compiles
    the kernels when the engine loads. The plan stays raw: trtexec --loadEngine (the RTX
    tools for RTX plans) and C++ load it.
    """
    from mattex.exporter.build import (
        BuildOptions,
        build_engine,
        engine_build,
        parse_compute_capabilities,
        parse_profile,
    )

    profiles = [parse_profile(p, batch) for p in profile]
    output = output or model.with_suffix(".engine")
    options = BuildOptions(
        workspace, timing_cache, version_compatible, hardware_compat, parse_compute_capabilities(compute_capability)
    )
    sidecar = build_engine(
        model,
        output,
        profiles,
        backend,
        options,
        log=(lambda m: None) if json_output else lambda m: err_console.print(m, highlight=False),
    )
    if emit_json(sidecar.to_dict(), json_output):
        return
    summary = engine_build(sidecar.backend).summary(sidecar)
    console.print(f"built {output} {summary}; sidecar {output}.json", highlight=False)
