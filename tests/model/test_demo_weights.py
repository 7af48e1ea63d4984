"""The shipped demo weights are small, load by default, and matte better than the naive
difference matte (numbers of the full measurement: measure/demo_quality_results.json)."""

import numpy as np
import torch

from mattex.measure.demo_quality import error_concentration, synthetic_set, whole_image_errors
from mattex.measure.evaluate import difference_matter
from mattex.measure.reference import torch_matter
from mattex.model.checkpoint import load_matting_refine
from mattex.model.sources import demo_weights_path, resolve_weights


def test_demo_weights_are_shipped_small_and_fp16():
    path = demo_weights_path("mobilenetv2")
    assert path is not None and path.stat().st_size <= 12 * 2**20
    state = torch.load(path, weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert resolve_weights("mobilenetv2").kind == "demo"
    assert demo_weights_path("resnet50") is None


def test_demo_weights_beat_the_difference_matte_and_know_where_they_err(tmp_path):
    model = load_matting_refine(demo_weights_path("mobilenetv2"))
    held_out = synthetic_set(tmp_path, 3, 512, seed=11)  # the measured size (see the JSON)

    demo = torch_matter(model)
    ours = whole_image_errors(demo, held_out)
    naive = whole_image_errors(difference_matter(1.19), held_out)
    # A regression guard on 3 images; the 20-image measurement (SAD 9.7x, MSE 7.1x lower over
    # whole images) is in measure/demo_quality_results.json.
    assert naive["sad"] > 3 * ours["sad"] and naive["mse"] > 1.5 * ours["mse"], (ours, naive)
    concentration = error_concentration(model, held_out)
    assert concentration["ratio"] > 3, concentration  # the error map points at soft edges
    assert np.isfinite(list(concentration.values())).all()
