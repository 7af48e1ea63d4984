"""What serving costs: `mattex serve` (Triton through PyTriton) over HTTP and gRPC, with and without
dynamic batching, against in-process `Matter` on the same file, backend and frames.

    python benchmarks/serving.py [--size 720x1280] [--requests 32] [--json serving.json]

For each concurrency (1, 4, 8 client threads, each with its own client), frames/s over all
requests and the p50/p99 latency of one request (one frame: src and bgr uint8, pha and fgr uint8
back). The in-process rows call one `Matter` from as many threads. The server and its clients
share this machine's cores, as they would on one box. mobilenetv2 demo weights, HD preset (k =
5,000), ONNX Runtime on the CPU everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from timing import timed  # benchmarks/timing.py, beside this script

from mattex.measure.machine import describe_machine
from mattex.runtime import Matter
from mattex.serving.client import RemoteMatter

CONCURRENCY = (1, 4, 8)


def frames(size: tuple[int, int]):
    from mattex.calibration.composite import Perturbation, composite, perturb_background
    from mattex.calibration.synthetic import synth_background, synth_portrait

    rng = np.random.default_rng(0)
    fgr, pha = synth_portrait(rng, *size)
    background = synth_background(rng, *size)
    src = composite(fgr, pha, background)
    bgr = perturb_background(background, rng, Perturbation())
    as_frame = lambda x: (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0)[None]  # noqa: E731
    return as_frame(src), as_frame(bgr)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def measure(make_caller, concurrency: int, requests: int) -> dict:
    """`requests` calls spread over `concurrency` threads, each with its own caller."""
    per_thread = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]

    def work(count: int) -> list[float]:
        call = make_caller()
        call()  # warm this thread's connection
        return timed(call, count)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [t for batch in pool.map(work, per_thread) for t in batch]
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "frames_per_s": round(len(latencies) / seconds, 3),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
    }


def start_server(model: Path, batching: bool, tmp: Path, ports: tuple[int, int, int]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "mattex.cli.main",
        "serve",
        str(model),
        "--backend",
        "onnxruntime",
        "--http-port",
        str(ports[0]),
        "--grpc-port",
        str(ports[1]),
        "--metrics-port",
        str(ports[2]),
        "--max-batch",
        "8",
        "--max-queue-delay-us",
        "5000",
    ] + ([] if batching else ["--no-dynamic-batching"])
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(tmp)}
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/models/matte/ready", timeout=1).status == 200:
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise SystemExit("the server did not come up")


def stop_server(process: subprocess.Popen) -> float:
    started = time.perf_counter()
    process.terminate()
    process.wait(timeout=60)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mattex.exporter.config import ExportConfig
    from mattex.exporter.export import export_onnx

    size = tuple(int(v) for v in args.size.split("x"))
    src, bgr = frames(size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tmp / "m.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(ExportConfig.from_preset("hd", height=size[0], width=size[1]), model)
        matter = Matter.open(model, backend="onnxruntime")
        for c in CONCURRENCY:
            rows.append(
                {
                    "runner": "in-process Matter",
                    "concurrency": c,
                    **measure(lambda: lambda: matter.matte_frames(src, bgr), c, args.requests),
                }
            )
            print(rows[-1], flush=True)
        stops = []
        for batching in (True, False):
            ports = tuple(free_ports(3))
            server = start_server(model, batching, tmp, ports)
            for protocol, port in (("http", ports[0]), ("grpc", ports[1])):
                url = f"{protocol}://127.0.0.1:{port}"
                for c in CONCURRENCY:

                    def remote_caller(url=url):  # one client per thread, made in that thread
                        remote = RemoteMatter(url, "matte")
                        return lambda: remote.infer(src, bgr)  # uint8 pha and fgr, as a client keeps them

                    rows.append(
                        {
                            "runner": f"mattex serve, {protocol}",
                            "dynamic_batching": batching,
                            "concurrency": c,
                            **measure(remote_caller, c, args.requests),
                        }
                    )
                    print(rows[-1], flush=True)
            stops.append(round(stop_server(server), 2))
    baseline = {r["concurrency"]: r["frames_per_s"] for r in rows if r["runner"] == "in-process Matter"}
    for row in rows:
        row["vs_in_process"] = round(row["frames_per_s"] / baseline[row["concurrency"]], 3)
    report = {
        "machine": describe_machine(),
        "size": list(size),
        "requests": args.requests,
        "rows": rows,
        "stop_seconds": stops,
    }
    machine = report["machine"]
    print(f"\n{machine['cpu']}, {machine['cores']} cores, {' + '.join(machine['instruction_sets'])}; {args.size}")
    print("| runner | dynamic batching | concurrency | frames/s | vs in-process | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        batching = "-" if "dynamic_batching" not in r else ("on" if r["dynamic_batching"] else "off")
        print(
            f"| {r['runner']} | {batching} | {r['concurrency']} | {r['frames_per_s']:.2f} | {r['vs_in_process']:.2f}x "
            f"| {r['p50_ms']:.0f} | {r['p99_ms']:.0f} |"
        )
    print(f"stop after SIGTERM: {stops} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
