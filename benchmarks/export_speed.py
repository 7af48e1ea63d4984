"""Exported graph on ONNX Runtime CPU vs PyTorch eager, side by side in one process.

    python benchmarks/export_speed.py --backbones resnet50 mobilenetv2 --json speed.json

For each backbone, on the same HD inputs and the same weights (a checkpoint, or seeded random
weights), it times, interleaved round by round so machine noise hits all alike:
  - PyTorch eager, the reference implementation's patch method (unfold crop, scatter_nd
    replace): the baseline;
  - PyTorch eager, mattex's model (static-k gather/scatter);
  - ONNX Runtime CPU on the exported sampling graph (k = 5,000) and on full refinement.
It prints a table of median ms per frame and writes JSON.

Random weights leave the error map at 0 almost everywhere (25 of 129,600 patches eligible with
seed 0), so the reference would refine 25 patches while a static-k graph always refines k. By
default (`--eligible all`, random weights only) the error channel's bias is raised so every
patch is eligible and both refine exactly k = 5,000 patches, as the paper's timings do;
`--eligible natural` keeps the weights as they are.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import bench_frame, eager  # noqa: E402

from mattex.exporter.config import ExportConfig  # noqa: E402
from mattex.exporter.export import export_onnx  # noqa: E402
from mattex.measure.bench import keep_freed_memory  # noqa: E402
from mattex.model.reference_method import as_reference_formulation  # noqa: E402
from mattex.model.sources import WeightsSource, build_model, resolve_weights  # noqa: E402


def time_rounds(runners: dict, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    for _ in range(warmup):
        for run in runners.values():
            run()
    times = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def bench_backbone(backbone: str, args, folder: Path) -> list[dict]:
    weights = resolve_weights(backbone, args.checkpoint) if args.checkpoint else WeightsSource("random", seed=0)
    hd = ExportConfig.from_preset("hd", backbone=backbone)
    full = ExportConfig.from_preset("hd", backbone=backbone, refine_mode="full")
    if weights.kind == "random" and args.eligible == "all":
        weights = _every_patch_eligible(weights, hd, folder / f"{backbone}_eligible.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(hd, folder / f"{backbone}_hd.onnx", weights=weights)
        export_onnx(full, folder / f"{backbone}_hd_full.onnx", weights=weights)
    model = build_model(weights, **hd.model_kwargs())
    reference = as_reference_formulation(copy.deepcopy(model))

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3
    sessions = {
        name: ort.InferenceSession(str(folder / f"{backbone}_{name}.onnx"), options, providers=["CPUExecutionProvider"])
        for name in ("hd", "hd_full")
    }
    src, bgr = bench_frame(args.height, args.width)
    feeds = {"src": src, "bgr": bgr}
    runners = {
        "pytorch eager, reference patch method (baseline)": eager(reference, src, bgr),
        "pytorch eager, mattex model": eager(model, src, bgr),
        "onnxruntime cpu, exported sampling k=5000": lambda: sessions["hd"].run(None, feeds),
        "onnxruntime cpu, exported full refinement": lambda: sessions["hd_full"].run(None, feeds),
    }
    times = time_rounds(runners, args.rounds)
    baseline = statistics.median(next(iter(times.values())))
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append(
            {
                "backbone": backbone,
                "runner": name,
                "ms_per_frame": 1000 * median,
                "min_ms": 1000 * min(samples),
                "speedup_vs_baseline": baseline / median,
                "rounds": len(samples),
            }
        )
    return rows


def _every_patch_eligible(weights: WeightsSource, config: ExportConfig, path: Path) -> WeightsSource:
    """Seeded random weights with the error channel's bias raised by 1 (err > 0 everywhere)."""
    model = build_model(weights, **config.model_kwargs())
    with torch.no_grad():
        model.decoder.conv4.bias[4] += 1.0
    torch.save(model.state_dict(), path)
    return resolve_weights(config.backbone, path)


def eligible_fp32_export(backbone: str, resolution: str, folder: Path) -> tuple[Path, ExportConfig, WeightsSource]:
    """The preset's fp32 file from seeded random weights with every patch eligible (so every
    runner refines exactly k), its config and the weights: what the CPU benchmarks time."""
    config = ExportConfig.from_preset(resolution, backbone=backbone)
    weights = _every_patch_eligible(WeightsSource("random", seed=0), config, folder / f"{backbone}_{resolution}.pth")
    path = folder / f"{backbone}_{resolution}_fp32.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(config, path, weights=weights)
    return path, config, weights


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """The options every HD benchmark here takes; each script adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "mobilenetv2"])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", type=Path, default=None)
    return parser


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--eligible", choices=["all", "natural"], default="all")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # PyTorch eager without page-fault noise (mattex.measure.bench)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            rows += bench_backbone(backbone, args, Path(tmp))
    print(
        f"\nHD {args.width}x{args.height}, batch 1, fp32, {args.threads} threads, "
        f"median of {args.rounds} interleaved rounds"
    )
    print(f"{'backbone':<12} {'runner':<52} {'ms/frame':>9} {'speedup':>8}")
    for r in rows:
        print(f"{r['backbone']:<12} {r['runner']:<52} {r['ms_per_frame']:>9.1f} {r['speedup_vs_baseline']:>7.2f}x")
    if args.json:
        meta = {
            "eligible": args.eligible,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "size": [args.height, args.width],
        }
        args.json.write_text(json.dumps({"environment": meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
