"""What bf16 arithmetic does to BGMv2's outputs, measured where no bf16 CPU is at hand: the
evidence behind the bf16 budget in `mattex.exporter.config.BUDGETS`.

    python benchmarks/bf16_proxy.py --json bf16.json

OpenVINO's `inference_precision="bf16"` runs convolutions, matmuls and resizes in bf16 (fp32
accumulation) and keeps the graph's tail after the last of them in fp32. PyTorch's CPU autocast
to bfloat16 does the same to convolutions and matmuls (resizes stay fp32, elementwise ops run in
the dtype they are given): the proxy. On a CPU with AMX or AVX-512 BF16, `mattex verify
model.onnx --backend openvino --inference-precision bf16` measures the real thing against the
same budget.

For each (size, k): the demo mobilenetv2 weights, held-out synthetic composites; differences of
every output against PyTorch fp32 (max, mean), the share of patches selected differently, and
the paper's metrics of both against ground truth (ratio bf16 / fp32).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from mattex.calibration.composite import Composites
from mattex.calibration.synthetic import write_synthetic_photomatte
from mattex.measure.evaluate import evaluate
from mattex.measure.machine import describe_machine
from mattex.model.checkpoint import load_matting_refine
from mattex.model.sources import demo_weights_path

NAMES = ("pha", "fgr", "pha_sm", "fgr_sm", "err_sm", "ref_sm")


def bf16_proxy(model):
    """`model` under CPU autocast to bfloat16: a (src, bgr) -> outputs callable, fp32 out."""

    def run(src: torch.Tensor, bgr: torch.Tensor):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return tuple(t.float() for t in model(src, bgr))

    return run


def compare(model, composites) -> dict:
    """Per-output max/mean |bf16 - fp32| and the share of patches selected differently."""
    proxy = bf16_proxy(model)
    diffs = {n: [] for n in NAMES}
    flipped, cells = 0, 0
    for item in composites:
        src, bgr = torch.from_numpy(item["src"]), torch.from_numpy(item["bgr"])
        with torch.no_grad():
            want = model(src, bgr)
        got = proxy(src, bgr)
        for name, g, w in zip(NAMES, got, want):
            diffs[name].append((g - w).abs().numpy().ravel())
        flipped += int(((got[5] > 0) != (want[5] > 0)).sum())
        cells += want[5].numel()
    out = {
        n: {"max": float(np.concatenate(v).max()), "mean": float(np.concatenate(v).mean())} for n, v in diffs.items()
    }
    out["selection_differs"] = flipped / cells
    return out


def metric_ratios(model, composites, size) -> dict:
    def as_matter(run):
        def matter(src, bgr):
            pha, fgr = run(torch.from_numpy(src), torch.from_numpy(bgr))[:2]
            return {"pha": pha.numpy(), "fgr": fgr.numpy()}

        return matter

    def fp32(src, bgr):
        with torch.no_grad():
            return model(src, bgr)

    bf16 = evaluate(as_matter(bf16_proxy(model)), composites, "bf16", size).mean
    ref = evaluate(as_matter(fp32), composites, "fp32", size).mean
    return {m: getattr(bf16, m) / getattr(ref, m) for m in ("sad", "mse", "grad", "conn")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_photomatte(Path(tmp), args.images, seed=1234)  # held out: not calibration's seed
        for (h, w), k in (((256, 256), 500), ((512, 512), 5000)):
            model = load_matting_refine(
                demo_weights_path("mobilenetv2"), backbone_scale=0.25, refine_mode="sampling", refine_sample_pixels=k
            ).eval()
            composites = list(Composites(Path(tmp), (h, w), seed=0))
            row = {
                "size": [h, w],
                "k": k,
                "images": len(composites),
                **compare(model, composites),
                "metric_ratio_bf16_over_fp32": metric_ratios(model, composites, (h, w)),
            }
            rows.append(row)
            print(json.dumps(row))
    result = {"machine": describe_machine(), "proxy": "torch.autocast('cpu', bfloat16)", "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
