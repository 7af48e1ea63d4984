"""TensorRT for RTX ahead-of-time builds of mattex exports, on this machine's CPU (no GPU).

    python benchmarks/rtx_build.py --backbones mobilenetv2 resnet50 resnet101 --json rtx.json

For each backbone and preset (hd: traced at 1080x1920, k = 5,000; 4k: 2160x3840, k = 20,000)
it exports the sampling graph as fp32, fp16 and int8 (calibrated on synthetic composites) and
the full-refinement graph as fp32, runs `mattex check`, builds each with TensorRT for RTX for a
profile at the trace size (batch 1) and records export and build times, plan size and what the
builder said. Build times are CPU times of the ahead-of-time compile: the GPU compiles the final
kernels when the engine loads, which needs an RTX GPU and is not measured here. Weights are
seeded random ones (the build does not depend on them); kernel size 3.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

from mattex.calibration.int8 import CalibrationSettings
from mattex.calibration.synthetic import write_synthetic_photomatte
from mattex.exporter.build import build_engine, parse_profile
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.exporter.lint import check_model
from mattex.measure.machine import describe_machine
from mattex.model.sources import WeightsSource

VARIANTS = [("sampling", "fp32"), ("sampling", "fp16"), ("sampling", "int8"), ("full", "fp32")]


def build_variant(
    backbone: str, preset: str, mode: str, precision: str, folder: Path, calibration: CalibrationSettings
) -> dict:
    config = ExportConfig.from_preset(preset, backbone=backbone, refine_mode=mode, precision=precision)
    onnx_path = folder / f"{backbone}_{preset}_{mode}_{precision}.onnx"
    started = time.perf_counter()
    export_onnx(
        config,
        onnx_path,
        weights=WeightsSource("random", seed=0),
        calibration=calibration if precision == "int8" else None,
    )
    exported = time.perf_counter() - started
    import onnx

    lint = check_model(onnx.load(str(onnx_path)), "tensorrt-rtx")
    started = time.perf_counter()
    sidecar = build_engine(
        onnx_path, onnx_path.with_suffix(".engine"), [parse_profile(f"{config.height}x{config.width}")], "tensorrt-rtx"
    )
    built = time.perf_counter() - started
    row = {
        "backbone": backbone,
        "preset": preset,
        "mode": mode,
        "precision": precision,
        "k": config.k if mode == "sampling" else None,
        "trace": [config.height, config.width],
        "export_s": round(exported, 1),
        "build_s": round(built, 2),
        "plan_mib": round(onnx_path.with_suffix(".engine").stat().st_size / 2**20, 1),
        "lint_passed": lint.passed,
        "tensorrt_rtx": sidecar.tensorrt_version,
    }
    for path in (onnx_path, onnx_path.with_suffix(".engine")):
        path.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["mobilenetv2", "resnet50", "resnet101"])
    parser.add_argument("--presets", nargs="+", default=["hd", "4k"])
    parser.add_argument("--calibration-samples", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Write the results here.")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "photomatte"
        write_synthetic_photomatte(data, args.calibration_samples, 0, 720, 540)
        calibration = CalibrationSettings(data, None, samples=args.calibration_samples)
        for backbone in args.backbones:
            for preset in args.presets:
                for mode, precision in VARIANTS:
                    row = build_variant(backbone, preset, mode, precision, folder, calibration)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    result = {"machine": describe_machine(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
