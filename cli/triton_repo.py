"""`mattex triton-repo`: a Triton model repository for a file, for any Triton deployment."""

from __future__ import annotations

from pathlib import Path

import typer

from mattex.serving.limits import DEFAULT_MAX_BATCH

from .common import console, user_errors

SHORT_HELP = "Write a Triton model repository (config.pbtxt and the file) any Triton deployment loads."
FLAGS = {"out": "--out", "tensorrt_accelerator": "--tensorrt-accelerator"}


@user_errors(FLAGS)
def command(
    model: Path = typer.Argument(..., help="An exported .onnx or a .engine (with its sidecar)."),
    out: Path = typer.Option(..., "--out", "-o", help="The repository folder (created if missing)."),
    name: str = typer.Option("matte", help="The model's name in the repository."),
    backend: str = typer.Option(
        "auto",
        help="auto (tensorrt for an engine, onnxruntime for an .onnx) | a backend Triton serves (tensorrt, "
        "onnxruntime, openvino) | python (mattex's runtime).",
    ),
    instances: int = typer.Option(1, min=1, help="Model instances."),
    max_batch: int = typer.Option(DEFAULT_MAX_BATCH, min=1, help="Largest batch Triton forms."),
    max_queue_delay_us: int = typer.Option(2000, min=0, help="Dynamic batching's queue delay."),
    device: str | None = typer.Option(
        None, help="gpu | cpu (default: gpu for tensorrt and onnxruntime, cpu for openvino and python with an .onnx)."
    ),
    tensorrt_accelerator: bool = typer.Option(
        False,
        "--tensorrt-accelerator",
        help="onnxruntime: run through Triton's TensorRT execution accelerator at the file's precision.",
    ),
) -> None:
    """Example: mattex triton-repo bgm_resnet50_hd_fp32.engine --out models/ --name matte --instances 2

    Writes REPO/NAME/config.pbtxt and REPO/NAME/1/ (model.plan, model.onnx, or model.py running
    mattex's runtime beside the file), with dims, dtypes and batch sizes from the file itself:
    tritonserver --model-repository REPO then serves it. Written atomically; a file the
    repository cannot describe is refused by name.
    """
    from mattex.serving.repository import RepositoryConfig, write_repository

    folder = write_repository(
        RepositoryConfig(
            model, out, name, backend, instances, max_batch, max_queue_delay_us, device, tensorrt_accelerator
        )
    )
    console.print(f"wrote {folder}: tritonserver --model-repository {out}", highlight=False)
