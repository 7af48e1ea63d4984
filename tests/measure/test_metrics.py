"""Matting metrics on hand-made cases with known values."""

import numpy as np
import pytest
from scipy import ndimage

from mattex.measure.metrics import conn, foreground_mse, grad, mse, sad, score, unknown_region


def soft_disc(size=96, radius=28, softness=6.0):
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.hypot(yy - size / 2, xx - size / 2) - radius
    return np.clip(0.5 - d / softness, 0, 1)


def test_unknown_region_is_the_closed_fractional_band():
    alpha = soft_disc()
    region = unknown_region(alpha)
    fractional = (alpha > 0.06) & (alpha < 0.96)
    assert (region >= fractional).all()  # closing never loses a fractional pixel
    assert not region[48, 48] and not region[0, 0]  # definite foreground and background
    hard = (alpha > 0.5).astype(float)
    assert not unknown_region(hard).any()


def test_identical_mattes_score_zero():
    alpha = soft_disc()
    s = score(alpha, alpha, np.ones((3, 96, 96)), np.ones((3, 96, 96)))
    assert (s.sad, s.mse, s.grad, s.conn, s.fgr_mse) == (0, 0, 0, 0, 0)


def test_constant_offset_gives_exact_sad_and_mse():
    alpha = soft_disc()
    region = unknown_region(alpha)
    pred = alpha + 0.1  # unclipped on purpose: the offset is exact everywhere
    assert sad(pred, alpha, region) == pytest.approx(0.1 * region.sum() / 1000)
    assert mse(pred, alpha, region) == pytest.approx(0.01 * 1000)
    assert grad(pred, alpha, region) == pytest.approx(0, abs=1e-12)  # gradients unchanged


@pytest.mark.parametrize("metric", [grad, conn, sad, mse])
def test_metrics_grow_with_the_error(metric):
    alpha = soft_disc()
    region = unknown_region(alpha)
    values = [metric(ndimage.gaussian_filter(alpha, s), alpha, region) for s in (1.5, 2, 3, 4, 6)]
    assert values[0] > 0 and all(a < b for a, b in zip(values, values[1:])), values


def test_foreground_mse_only_counts_where_alpha_is_positive():
    alpha = np.zeros((1, 4, 4))
    alpha[0, :2] = 0.5
    true = np.zeros((3, 4, 4))
    pred = true.copy()
    pred[:, 2:] = 1.0  # wrong only where alpha is 0
    assert foreground_mse(pred, true, alpha) == 0
    pred[:, :2] = 0.1
    assert foreground_mse(pred, true, alpha) == pytest.approx(0.01 * 1000)
