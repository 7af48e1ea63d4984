"""`mattex serve`: an exported file behind a real Triton Inference Server (HTTP, gRPC, metrics)."""

from __future__ import annotations

from pathlib import Path

import typer

from mattex.serving.server import ServeConfig as Config

from .common import err_console, user_errors

SHORT_HELP = "Serve a file on NVIDIA Triton Inference Server: HTTP, gRPC, dynamic batching, metrics."
FLAGS = {"max_queue_delay_us": "--max-queue-delay-us"}


@user_errors(FLAGS, requires=("serve", "mattex serve"))
def command(
    model: Path = typer.Argument(..., help="An exported .onnx or a .engine."),
    http_port: int = typer.Option(Config.http_port, help="HTTP/REST port."),
    grpc_port: int = typer.Option(Config.grpc_port, help="gRPC port."),
    metrics_port: int = typer.Option(Config.metrics_port, help="Prometheus metrics port."),
    address: str = typer.Option(Config.address, help="Address to listen on (0.0.0.0 for every interface)."),
    max_batch: int = typer.Option(Config.max_batch, min=1, help="Largest batch Triton forms."),
    max_queue_delay_us: int = typer.Option(
        Config.max_queue_delay_us, min=0, help="How long a request may wait for a batch to fill."
    ),
    no_batching: bool = typer.Option(False, "--no-dynamic-batching", help="Serve each request alone."),
    instances: int = typer.Option(Config.instances, min=1, help="Model instances (each its own Matter)."),
    name: str = typer.Option(Config.name, help="The model's name on the server."),
    backend: str | None = typer.Option(
        None, help="onnxruntime or openvino for an .onnx (default: the automatic choice, docs/runtime.md)."
    ),
    inputs: str = typer.Option(Config.inputs, help="uint8: frames (B, H, W, 3) RGB; float: (B, 3, H, W) in [0, 1]."),
    outputs: str = typer.Option(
        Config.outputs, help="uint8 (0-255) or float (0-1) pha (B, 1, H, W) and fgr (B, 3, H, W)."
    ),
    max_queue_size: int = typer.Option(
        Config.max_queue_size, min=0, help="Reject requests beyond this many waiting (0: no limit)."
    ),
    queue_timeout_us: int = typer.Option(
        Config.queue_timeout_us, min=0, help="Reject requests waiting longer than this (0: no limit)."
    ),
    max_pixels: int = typer.Option(
        Config.max_pixels, min=0, help="Refuse frames larger than this, H x W (0: no limit)."
    ),
) -> None:
    """Example: mattex serve bgm_mobilenetv2_hd_fp32.onnx --http-port 8000 --grpc-port 8001 --max-batch 4

    Runs NVIDIA's Triton Inference Server (through PyTriton) with MODEL behind it, matted by
    mattex's runtime: HTTP and gRPC (tritonclient, KServe v2 protocol), dynamic batching,
    several instances, health endpoints (/v2/health/live, /v2/health/ready) and Prometheus
    metrics. Ctrl-C or SIGTERM stops it within a few seconds. mattex run --server URL sends it a
    video. For a GPU Triton deployment, write a model repository: mattex triton-repo.
    """
    from mattex.serving.server import serve

    config = Config(
        model=model,
        name=name,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        address=address,
        max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us,
        dynamic_batching=not no_batching,
        instances=instances,
        backend=backend,
        inputs=inputs,
        outputs=outputs,
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
