"""`mattex serve`: an exported file behind a real Triton Inference Server (HTTP, gRPC, metrics)."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import err_console, user_errors

SHORT_HELP = "Serve a file on NVIDIA Triton Inference Server: HTTP, gRPC, dynamic batching, metrics."
FLAGS = {"max_queue_delay_us": "--max-queue-delay-us"}


@user_errors(FLAGS, requires=("serve", "mattex serve"))
def command(
    model: Path = typer.Argument(..., help="An exported .onnx or a .engine."),
    http_port: int = typer.Option(8000, help="HTTP/REST port."),
    grpc_port: int = typer.Option(8001, help="gRPC port."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port."),
    address: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    max_batch: int = typer.Option(4, min=1, help="Largest batch Triton forms."),
    max_queue_delay_us: int = typer.Option(2000, min=0, help="How long a request may wait for a batch to fill."),
    no_batching: bool = typer.Option(False, "--no-dynamic-batching", help="Serve each request alone."),
    instances: int = typer.Option(1, min=1, help="Model instances (each its own Matter)."),
    name: str = typer.Option("matte", help="The model's name on the server."),
    backend: str | None = typer.Option(None, help="onnxruntime or openvino for an .onnx (default: the faster here)."),
    inputs: str = typer.Option("uint8", help="uint8: frames (B, H, W, 3) RGB; float: (B, 3, H, W) in [0, 1]."),
    outputs: str = typer.Option("uint8", help="uint8 (0-255) or float (0-1) pha (B, 1, H, W) and fgr (B, 3, H, W)."),
    max_queue_size: int = typer.Option(0, min=0, help="Reject requests beyond this many waiting (0: no limit)."),
    queue_timeout_us: int = typer.Option(0, min=0, help="Reject requests waiting longer than this (0: no limit)."),
    max_pixels: int = typer.Option(3840 * 2160, min=0, help="Refuse frames larger than this, H x W (0: no limit)."),
) -> None:
    """Example: mattex serve bgm_mobilenetv2_hd.onnx --http-port 8000 --grpc-port 8001 --max-batch 4

    Runs NVIDIA's Triton Inference Server (through PyTriton) with MODEL behind it, matted by
    mattex's runtime: HTTP and gRPC (tritonclient, KServe v2 protocol), dynamic batching,
    several instances, health endpoints (/v2/health/live, /v2/health/ready) and Prometheus
    metrics. Ctrl-C or SIGTERM stops it within a few seconds. mattex run --server URL sends it a
    video. For a GPU Triton deployment, write a model repository: mattex triton-repo.
    """
    from mattex.serving.server import ServeConfig, serve

    config = ServeConfig(
        model,
        name,
        http_port,
        grpc_port,
        metrics_port,
        address,
        max_batch,
        max_queue_delay_us,
        not no_batching,
        instances,
        backend,
        inputs,
        outputs,
        max_queue_size=max_queue_size,
        queue_timeout_us=queue_timeout_us,
        max_pixels=max_pixels,
    )

    def ready(urls: dict, backend: str) -> None:
        err_console.print(
            f"serving {model.name} on {backend} as {name!r}: "
            + ", ".join(f"{k} {v}" for k, v in urls.items())
            + " (Ctrl-C stops)",
            highlight=False,
            soft_wrap=True,
        )

    serve(config, on_ready=ready)
