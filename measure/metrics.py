"""The paper's matting metrics (Rhemann et al. 2009, as the Deep Image Matting evaluation
computes them), on alpha in [0, 1] inside the trimap's unknown region.

Scales, as the paper's tables report them: SAD, Grad and Conn are sums divided by 1000; MSE is
the mean multiplied by 1000; foreground MSE is the mean over pixels whose true alpha is > 0,
multiplied by 1000.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

# The 3x3 "circular" structuring element: a cross.
CIRCLE_3X3 = ndimage.generate_binary_structure(2, 1)


def unknown_region(true_pha: np.ndarray, low: float = 0.06, high: float = 0.96, iterations: int = 10) -> np.ndarray:
    """The trimap's unknown region from ground truth: alpha strictly between `low` and `high`,
    dilated `iterations` times then eroded as often with a 3x3 circular kernel. (H, W) bool."""
    alpha = np.asarray(true_pha, np.float64).squeeze()
    fractional = (alpha > low) & (alpha < high)
    if not fractional.any():
        return fractional
    dilated = ndimage.binary_dilation(fractional, CIRCLE_3X3, iterations=iterations)
    return ndimage.binary_erosion(dilated, CIRCLE_3X3, iterations=iterations, border_value=1)


def sad(pred, true, region) -> float:
    return float(np.abs(pred - true)[region].sum() / 1000)


def mse(pred, true, region) -> float:
    return float(((pred - true) ** 2)[region].mean() * 1000) if region.any() else 0.0


def grad(pred, true, region, sigma: float = 1.4) -> float:
    """Squared difference of Gaussian gradient magnitudes (sigma 1.4)."""
    g_pred = ndimage.gaussian_gradient_magnitude(pred, sigma)
    g_true = ndimage.gaussian_gradient_magnitude(true, sigma)
    return float(((g_pred - g_true) ** 2)[region].sum() / 1000)


def conn(pred, true, region, step: float = 0.1) -> float:
    """Connectivity error: how far each pixel's alpha is from being connected to the largest
    region both mattes agree is foreground, thresholded in steps of 0.1."""
    levels = np.arange(0, 1 + step / 2, step)
    level_map = np.full(pred.shape, -1.0)
    for previous, threshold in zip(levels[:-1], levels[1:]):
        both = (pred >= threshold) & (true >= threshold)
        labels, count = ndimage.label(both)  # 4-connectivity
        if count:
            sizes = np.bincount(labels.ravel())[1:]
            omega = labels == (np.argmax(sizes) + 1)
        else:
            omega = np.zeros_like(both)
        level_map[(level_map == -1) & ~omega] = previous
    level_map[level_map == -1] = 1.0
    d_pred, d_true = pred - level_map, true - level_map
    phi_pred = 1 - d_pred * (d_pred >= 0.15)
    phi_true = 1 - d_true * (d_true >= 0.15)
    return float(np.abs(phi_pred - phi_true)[region].sum() / 1000)


def foreground_mse(pred_fgr, true_fgr, true_pha) -> float:
    mask = np.asarray(true_pha).squeeze() > 0
    if not mask.any():
        return 0.0
    diff = ((np.asarray(pred_fgr) - np.asarray(true_fgr)) ** 2).reshape(-1, *mask.shape)
    return float(diff[:, mask].mean() * 1000)


@dataclass
class MatteScores:
    sad: float
    mse: float
    grad: float
    conn: float
    fgr_mse: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def score(pred_pha, true_pha, pred_fgr=None, true_fgr=None) -> MatteScores:
    """All metrics for one image. Alphas (H, W) or (1, H, W); foregrounds (3, H, W)."""
    pred = np.asarray(pred_pha, np.float64).squeeze()
    true = np.asarray(true_pha, np.float64).squeeze()
    region = unknown_region(true)
    fg = None if pred_fgr is None else foreground_mse(pred_fgr, true_fgr, true)
    return MatteScores(
        sad(pred, true, region), mse(pred, true, region), grad(pred, true, region), conn(pred, true, region), fg
    )


def mean_scores(scores: list[MatteScores]) -> MatteScores:
    fg = [s.fgr_mse for s in scores if s.fgr_mse is not None]
    return MatteScores(
        *(float(np.mean([getattr(s, k) for s in scores])) for k in ("sad", "mse", "grad", "conn")),
        float(np.mean(fg)) if fg else None,
    )
