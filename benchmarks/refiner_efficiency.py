"""How close a frame runs to the CPU's arithmetic limit: the base network's and the refiner's
GFLOP/s on each backend, the frame against its FLOP-limit time, and the reference PyTorch eager
method as the baseline, each runner timed alone and interleaved (the two must agree).

    python benchmarks/refiner_efficiency.py --json benchmarks/results_refiner_efficiency_cpu.json
    python benchmarks/refiner_efficiency.py --backbones mobilenetv2 --resolutions 4k --rounds 3

For each backbone and preset (HD: k = 5,000; 4K: k = 20,000) it exports an fp32 file from seeded
random weights with every patch eligible (every runner refines exactly k patches), counts the
frame's FLOPs once with PyTorch's FLOP counter (`mattex.measure.flops`), and times:
- the reference method in PyTorch eager (the public package's patch method, same weights): baseline;
- the file through `Matter` on ONNX Runtime (CPU) and OpenVINO (f32).
Each runner is timed alone (its rounds back to back), then all interleaved round by round; the
JSON keeps both and the ratio, and the run fails if a runner is more than `--tolerance` slower
interleaved than alone (one runtime's idle threads must not slow the next). The base network is
also exported alone and timed on each backend: the refiner's time is the frame's less that
(selection, crop, refine, paste and the resizes around them); the shares of each stage within
the graph (ONNX Runtime's profiler, OpenVINO's performance counters, split as in
cpu_backends.py) are kept beside.
The CPU, its instruction sets, its clock and the FLOP limit assumed are printed beside the figures.
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_backends import onnxruntime_stages, openvino_stages  # noqa: E402
from export_speed import eligible_fp32_export  # noqa: E402
from timing import alone_and_interleaved, bench_frame, cpu_benchmark_arguments, eager, parse_and_prepare  # noqa: E402

from mattex.files import atomic_write_text  # noqa: E402
from mattex.measure.flops import count_flops  # noqa: E402
from mattex.measure.machine import describe_machine, fp32_peak  # noqa: E402
from mattex.model.reference_method import as_reference_formulation  # noqa: E402
from mattex.model.sources import build_model  # noqa: E402
from mattex.runtime import Matter  # noqa: E402

BASELINE = "pytorch eager, reference method (baseline)"


class BaseNetwork(torch.nn.Module):
    """The base network alone, on inputs already at its resolution: what the frame spends before
    the refiner, timed on its own."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, src_sm, bgr_sm):
        return self.model._decode(src_sm, bgr_sm)  # (B, 37, h, w)


def base_network_ms(model, config, folder: Path, args) -> dict[str, float]:
    """Median ms of the base network exported alone (fp32, at the preset's base resolution) on
    ONNX Runtime and OpenVINO, with the same thread settings as the frames."""
    import onnxruntime as ort
    import openvino as ov

    h, w = int(config.height * config.backbone_scale), int(config.width * config.backbone_scale)
    rng = np.random.default_rng(1)
    src, bgr = (rng.random((1, 3, h, w), dtype=np.float32) for _ in range(2))
    path = folder / "base.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            BaseNetwork(model).eval(),
            (torch.from_numpy(src), torch.from_numpy(bgr)),
            str(path),
            input_names=["src", "bgr"],
            dynamo=False,
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(
        str(path),
        "CPU",
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads},
    )
    request = compiled.create_infer_request()
    runners = {
        "onnxruntime": lambda: session.run(None, {"src": src, "bgr": bgr}),
        "openvino f32": lambda: request.infer({"src": src, "bgr": bgr}),
    }
    return {name: 1000 * t["interleaved"] for name, t in alone_and_interleaved(runners, args.rounds).items()}


def bench(backbone: str, resolution: str, args, folder: Path, peak: dict) -> list[dict]:
    path, config, weights = eligible_fp32_export(backbone, resolution, folder)
    flops = count_flops(config)
    model = build_model(weights, **config.model_kwargs()).eval()
    reference = as_reference_formulation(copy.deepcopy(model)).eval()
    src, bgr = bench_frame(config.height, config.width)
    ort = Matter.open(path, backend="onnxruntime", threads=args.threads, spinning=False)
    ov = Matter.open(path, backend="openvino", threads=args.threads, cache_dir=folder / "ov_cache")
    runners = {
        BASELINE: eager(reference, src, bgr),
        "onnxruntime": lambda: ort(src, bgr),
        "openvino f32": lambda: ov(src, bgr),
    }
    times = alone_and_interleaved(runners, args.rounds)
    base_ms = base_network_ms(model, config, folder, args)
    stages = {
        "onnxruntime": onnxruntime_stages(path, src, bgr, args.threads),
        "openvino f32": openvino_stages(path, src, bgr, "f32"),
    }
    baseline = times[BASELINE]["interleaved"]
    limit_ms = 1000 * flops.total / peak["gflops"]
    rows = []
    for name, t in times.items():
        ms = 1000 * t["interleaved"]
        row = {
            "backbone": backbone,
            "resolution": resolution,
            "k": config.k,
            "runner": name,
            "ms_per_frame": round(ms, 1),
            "ms_alone": round(1000 * t["alone"], 1),
            "interleaved_vs_alone": round(t["interleaved"] / t["alone"], 3),
            "speedup_vs_reference": round(baseline / t["interleaved"], 3),
            "gflop": {"base": round(flops.base, 2), "refiner": round(flops.refiner, 2), "total": round(flops.total, 2)},
            "flop_limit_ms": round(limit_ms, 1),
            "x_flop_limit": round(ms / limit_ms, 2),
            "gflops_per_s": round(flops.total / t["interleaved"], 1),
        }
        if name in stages:
            # The base network timed alone; the refiner (and the resizes around it) is the rest.
            base_s = base_ms[name] / 1000
            refiner_s = t["interleaved"] - base_s
            row["base_ms"], row["refiner_ms"] = round(1000 * base_s, 1), round(1000 * refiner_s, 1)
            row["stage_shares"] = {k: round(v, 3) for k, v in stages[name].items()}
            row["base_gflops_per_s"] = round(flops.base / base_s, 1)
            row["refiner_gflops_per_s"] = round(flops.refiner / refiner_s, 1)
            row["refiner_vs_base_efficiency"] = round(row["refiner_gflops_per_s"] / row["base_gflops_per_s"], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = cpu_benchmark_arguments(__doc__)
    parser.add_argument("--tolerance", type=float, default=1.2, help="largest interleaved / alone time allowed")
    args = parse_and_prepare(parser)
    machine = describe_machine()
    peak = fp32_peak(args.threads)
    print(
        f"CPU: {machine['cpu']}, {args.threads} threads, {' + '.join(machine['instruction_sets'])}; "
        f"fp32 limit {peak['gflops']} GFLOP/s (nominal {peak['nominal_gflops']}: {peak['ghz']} GHz x "
        f"{peak['flop_per_cycle']} FLOP/cycle, {peak['how']}; measured sgemm {peak['measured_sgemm_gflops']})"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            for resolution in args.resolutions:
                rows += bench(backbone, resolution, args, Path(tmp), peak)
                for f in Path(tmp).glob("*.onnx"):
                    f.unlink()
    result = {"machine": machine, "threads": args.threads, "fp32_peak": peak, "rows": rows}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2))
    distorted = [r for r in rows if r["interleaved_vs_alone"] > args.tolerance]
    if distorted:
        said = [f"{r['runner']} {r['backbone']} {r['resolution']} x{r['interleaved_vs_alone']}" for r in distorted]
        sys.exit("slower interleaved than alone: " + ", ".join(said))


if __name__ == "__main__":
    main()
