"""How good the demo weights are, on held-out synthetic composites (the data issue's gate).

    python -m mattex.measure.demo_quality --count 20 --size 512 --json demo_quality.json

Scores the demo weights and the naive difference matte (alpha = clip(sum |src - bgr| * gain,
0, 1), gain tuned on training-seed composites) with the paper's metrics on `count` held-out
composites, and measures where the predicted error map concentrates: its mean where the true
alpha is fractional against its mean where the true alpha is 0 or 1.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mattex.calibration.composite import Composites
from mattex.calibration.synthetic import write_synthetic_photomatte
from mattex.model.checkpoint import load_matting_refine
from mattex.model.sources import demo_weights_path

from .evaluate import difference_matter, evaluate, tune_difference_gain
from .reference import torch_matter

HELD_OUT_SEED = 7  # the demo weights were trained on seed 1000's pool
TUNING_SEED = 1000


def synthetic_set(folder: Path, count: int, size: int, seed: int) -> Composites:
    write_synthetic_photomatte(folder / "pm", count, seed, size, size, folder / "bg")
    return Composites(folder / "pm", (size, size), folder / "bg", seed=seed)


def error_concentration(model, composites) -> dict:
    """Mean predicted error (err_sm) where the true alpha is fractional vs where it is 0 or 1."""
    fractional, solid = [], []
    for item in composites:
        with torch.no_grad():
            err_sm = model(torch.from_numpy(item["src"]), torch.from_numpy(item["bgr"]))[4]
        true_sm = F.interpolate(torch.from_numpy(item["pha"]), err_sm.shape[2:], mode="area")
        is_fractional = (true_sm > 0.02) & (true_sm < 0.98)
        fractional.append(float(err_sm[is_fractional].mean()))
        solid.append(float(err_sm[~is_fractional].mean()))
    f, s = float(np.mean(fractional)), float(np.mean(solid))
    return {"err_mean_fractional": f, "err_mean_solid": s, "ratio": f / max(s, 1e-12)}


def whole_image_errors(matter, composites) -> dict:
    """SAD (/1000) and MSE (x1e3) of alpha over every pixel, not only the trimap's band."""
    sads, mses = [], []
    for item in composites:
        pha = matter(item["src"], item["bgr"])["pha"]
        diff = pha - item["pha"]
        sads.append(float(np.abs(diff).sum() / 1000))
        mses.append(float((diff**2).mean() * 1000))
    return {"sad": float(np.mean(sads)), "mse": float(np.mean(mses))}


def measure(count: int = 20, size: int = 512, tuning_count: int = 20, weights: Path | None = None) -> dict:
    weights = weights or demo_weights_path("mobilenetv2")
    model = load_matting_refine(weights)
    with tempfile.TemporaryDirectory() as tmp:
        tuning = synthetic_set(Path(tmp) / "tune", tuning_count, size, TUNING_SEED)
        gain = tune_difference_gain(tuning)
        held_out = synthetic_set(Path(tmp) / "test", count, size, HELD_OUT_SEED)

        demo = torch_matter(model)
        demo_scores = evaluate(demo, held_out, "demo weights", (size, size)).mean
        naive_scores = evaluate(difference_matter(gain), held_out, "difference matte", (size, size)).mean
        whole = {
            "demo": whole_image_errors(demo, held_out),
            "difference_matte": whole_image_errors(difference_matter(gain), held_out),
        }
        concentration = error_concentration(model, held_out)
    return {
        "count": count,
        "size": size,
        "difference_gain": gain,
        "demo": demo_scores.to_dict(),
        "difference_matte": naive_scores.to_dict(),
        "sad_ratio": naive_scores.sad / demo_scores.sad,
        "mse_ratio": naive_scores.mse / demo_scores.mse,
        "whole_image": {
            **whole,
            "sad_ratio": whole["difference_matte"]["sad"] / whole["demo"]["sad"],
            "mse_ratio": whole["difference_matte"]["mse"] / whole["demo"]["mse"],
        },
        "error_map": concentration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = measure(args.count, args.size, weights=args.weights)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
