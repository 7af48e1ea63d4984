"""fp32 vs fp16 vs int8 on ONNX Runtime CPU, side by side in one process: ms per frame and the
paper's metrics against ground truth.

    python benchmarks/precision.py --backbones resnet50 mobilenetv2 --json precision.json

For each backbone it exports the HD sampling graph (k = 5,000) three times from the same
weights: fp32, `--fp16` and `--int8` (calibrated on synthetic PhotoMatte85-layout composites at
HD, written by `mattex data synth` into a temporary folder unless --data is given). It then
- times the three files through mattex's runtime (`Matter.open`, so int8 files get the
  session settings users get), interleaved round by round on the same inputs;
- scores each on held-out composites (other seeds than the calibration set) with SAD, MSE,
  Grad, Conn and FG MSE, and checks the fp16/int8 ratios against the declared metric budgets.

Weights: mobilenetv2 uses the shipped demo weights (trained on synthetic data, so the metrics
mean something); resnet50 has no demo weights and uses seeded random weights with every patch
eligible (as benchmarks/export_speed.py does), so its metrics only compare precisions with each
other, not matting quality. Pass --checkpoint for real weights.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_speed import _every_patch_eligible, benchmark_parser, time_rounds  # noqa: E402
from timing import bench_frame  # noqa: E402

from mattex.calibration.composite import Composites  # noqa: E402
from mattex.calibration.int8 import CalibrationSettings  # noqa: E402
from mattex.calibration.synthetic import write_synthetic_photomatte  # noqa: E402
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx  # noqa: E402
from mattex.measure.bench import keep_freed_memory  # noqa: E402
from mattex.measure.budgets import BUDGETS  # noqa: E402
from mattex.measure.evaluate import check_metric_budget, evaluate  # noqa: E402
from mattex.model.sources import WeightsSource, resolve_weights  # noqa: E402
from mattex.runtime import Matter  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")


def export_three(backbone: str, args, folder: Path, data: dict[str, Path]) -> dict[str, Path]:
    if args.checkpoint:
        weights = resolve_weights(backbone, args.checkpoint)
    else:
        weights = resolve_weights(backbone, None)
        if weights.kind == "random":
            base = ExportConfig.from_preset("hd", backbone=backbone)
            weights = _every_patch_eligible(WeightsSource("random", seed=0), base, folder / f"{backbone}_eligible.pth")
    paths = {}
    for precision in PRECISIONS:
        config = ExportConfig.from_preset(
            "hd", backbone=backbone, precision=precision, height=args.height, width=args.width
        )
        calibration = None
        if precision == "int8":
            calibration = CalibrationSettings(
                data["calib"], data["calib_bg"], samples=args.calibration_samples, method=args.calibration_method
            )
        paths[precision] = folder / f"{backbone}_{precision}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(config, paths[precision], weights=weights, calibration=calibration)
        print(f"  exported {paths[precision].name}", flush=True)
    return paths


def bench_backbone(backbone: str, args, folder: Path, data: dict[str, Path]) -> list[dict]:
    print(f"{backbone}:", flush=True)
    paths = export_three(backbone, args, folder, data)
    matters = {p: Matter.open(paths[p], providers=["CPUExecutionProvider"], threads=args.threads) for p in PRECISIONS}
    src, bgr = bench_frame(args.height, args.width)
    times = time_rounds({p: (lambda m=m: m(src, bgr)) for p, m in matters.items()}, args.rounds)

    composites = Composites(data["eval"], (args.height, args.width), data["eval_bg"], seed=1)
    reports = {p: evaluate(m.matte_floats, composites, p, (args.height, args.width)) for p, m in matters.items()}
    baseline = statistics.median(times["fp32"])
    rows = []
    for p in PRECISIONS:
        median = statistics.median(times[p])
        row = {
            "backbone": backbone,
            "precision": p,
            "ms_per_frame": 1000 * median,
            "min_ms": 1000 * min(times[p]),
            "speedup_vs_fp32": baseline / median,
            "metrics": reports[p].mean.to_dict(),
            "images": len(reports[p].per_image),
        }
        if p != "fp32":
            check = check_metric_budget(reports[p], reports["fp32"], p)
            row["metric_ratios_vs_fp32"] = check.ratios
            row["within_metric_budget"] = check.passed
            row["metric_budget"] = BUDGETS[p].metrics.ratio
        rows.append(row)
    return rows


def synthetic_data(root: Path, calibration_count: int, eval_count: int) -> dict[str, Path]:
    write_synthetic_photomatte(
        root / "calib", calibration_count, seed=100, height=640, width=512, backgrounds=root / "calib_bg"
    )
    write_synthetic_photomatte(root / "eval", eval_count, seed=200, height=640, width=512, backgrounds=root / "eval_bg")
    return {"calib": root / "calib", "calib_bg": root / "calib_bg", "eval": root / "eval", "eval_bg": root / "eval_bg"}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--calibration-samples", type=int, default=16)
    parser.add_argument("--calibration-method", default="minmax")
    parser.add_argument("--eval-count", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # PyTorch eager without page-fault noise (mattex.measure.bench)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_data(Path(tmp) / "data", args.calibration_samples, args.eval_count)
        for backbone in args.backbones:
            rows += bench_backbone(backbone, args, Path(tmp), data)
    print(
        f"\nHD {args.width}x{args.height} sampling k=5000, batch 1, ONNX Runtime CPU, "
        f"{args.threads} threads, median of {args.rounds} interleaved rounds; metrics on "
        f"{args.eval_count} held-out synthetic composites"
    )
    print(
        f"{'backbone':<12} {'precision':<9} {'ms/frame':>9} {'vs fp32':>8} {'SAD':>8} "
        f"{'MSE':>8} {'Grad':>8} {'Conn':>8} {'FG MSE':>8}  budget"
    )
    for r in rows:
        m = r["metrics"]
        verdict = (
            ""
            if r["precision"] == "fp32"
            else (f"{'within' if r['within_metric_budget'] else 'OVER'} {r['metric_budget']}x")
        )
        print(
            f"{r['backbone']:<12} {r['precision']:<9} {r['ms_per_frame']:>9.1f} "
            f"{r['speedup_vs_fp32']:>7.2f}x {m['sad']:>8.3f} {m['mse']:>8.3f} {m['grad']:>8.4f} "
            f"{m['conn']:>8.3f} {m['fgr_mse']:>8.3f}  {verdict}"
        )
    if args.json:
        cpu_flags = _cpu_flags()
        meta = {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "threads": args.threads,
            "cpu_count": os.cpu_count(),
            "size": [args.height, args.width],
            "cpu_int8_instructions": cpu_flags,
            "calibration_samples": args.calibration_samples,
            "calibration_method": args.calibration_method,
            "eval_count": args.eval_count,
        }
        args.json.write_text(json.dumps({"environment": meta, "results": rows}, indent=2))


def _cpu_flags() -> list[str]:
    """The x86 extensions that decide ONNX Runtime's int8 convolution speed."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    except (OSError, IndexError):
        return []
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    return [f for f in wanted if f in flags]


if __name__ == "__main__":
    main()
