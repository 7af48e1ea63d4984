"""Issue 48's table: an int8 file's pha mean off PyTorch fp32 on each kind of input `mattex
verify` can measure it on, for one or more files side by side (ONNX Runtime, the reference
backend).

    mattex data synth --out synth --count 32 && mattex data synth --out held --count 8 --seed 7
    mattex export --backbone mobilenetv2 --height 256 --width 256 --sample-pixels 8000 \\
        --int8 --calibration-data synth -o int8.onnx --no-engine
    python benchmarks/verify_footage.py int8_before.onnx int8.onnx --data held --json results.json

int8_before.onnx: the same command run on a checkout before issue 48 (calibrated on the paper's
evaluation composites rather than footage). Rows: the former default (2 and 8 synthetic
composites at the trace size), `--data` composites, footage (calibration/footage.py) at the
trace size frame by frame and at 480x864, and the new default gate (16 samples over the gate
sizes, three seeds: the mean, its spread and its 95% upper bound).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mattex.measure.inputs import composite_pairs, footage_pairs, gate_sizes, synthetic_pairs
from mattex.measure.machine import describe_machine
from mattex.measure.verify import Verifier

FOOTAGE = "footage"


def per_frame(verifier: Verifier, pairs) -> list[float]:
    """The pha mean of each pair on its own."""
    return [verifier.verify([pair], kind=FOOTAGE).outputs["pha"].mean_abs for pair in pairs]


def rows_for(path: Path, data: Path, frames: int) -> dict:
    with Verifier(path) as verifier:
        height, width = verifier.config.height, verifier.config.width
        pha = lambda report: report.outputs["pha"].mean_abs  # noqa: E731
        rows = {
            "old default, 2 synthetic composites": pha(verifier.verify(synthetic_pairs(2, 1, height, width))),
            "old default, 8 synthetic composites": pha(verifier.verify(synthetic_pairs(8, 1, height, width))),
            "--data composites": pha(verifier.verify(composite_pairs(path, data))),
        }
        trace = per_frame(verifier, footage_pairs(frames, 1, [(height, width)], seed=11))
        large = per_frame(verifier, footage_pairs(4, 1, [(480, 864)], seed=11))
        rows["footage at the trace size, per frame"] = trace
        rows["footage at the trace size, mean"] = float(np.mean(trace))
        rows["footage at the trace size, spread"] = float(np.std(trace, ddof=1))
        rows["footage at 480x864, per frame"] = large
        gates = []
        for seed in range(3):
            report = verifier.verify(footage_pairs(16, 1, gate_sizes(height, width), seed=seed), kind=FOOTAGE)
            diff = report.outputs["pha"]
            gates.append(
                {"seed": seed, "mean": diff.mean_abs, "spread": diff.mean_abs_spread, "upper": diff.mean_abs_upper}
            )
        rows["new default gate (16 samples, gate sizes)"] = gates
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="PhotoMatte-layout held-out composites")
    parser.add_argument("--frames", type=int, default=16, help="footage frames at the trace size")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {"machine": describe_machine(), "backend": "onnxruntime"}
    results["files"] = {str(path): rows_for(path, args.data, args.frames) for path in args.files}
    print(json.dumps(results, indent=2))
    if args.json:
        from mattex.files import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
