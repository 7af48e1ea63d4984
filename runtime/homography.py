"""The plane geometry of a plate brought to a frame: where a homography takes points and the
image's corners, how far it moves them, whether it is a camera's small motion, and which of the
frame's pixels the moved plate covers (`align` estimates the homographies)."""

from __future__ import annotations

import numpy as np


def covered_by_plate(homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame's pixels (a uint8 mask, 1 inside) that the plate moved by `homography` covers:
    the plate's edge, moved, is a quadrilateral (a homography keeps lines straight); the pixels
    along it, which mix in the border the warp invents, are left out."""
    import cv2

    height, width = size
    inside = corners(homography, (height - 1, width - 1))
    covered = cv2.fillConvexPoly(np.zeros((height, width), np.uint8), np.round(inside * 16).astype(np.int32), 1, 8, 4)
    return cv2.erode(covered, np.ones((3, 3), np.uint8))


def corners(homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    points = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], np.float64)
    mapped = points @ homography.T
    return mapped[:, :2] / mapped[:, 2:]


def corner_distance(a: np.ndarray, b: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance between where `a` and `b` take the image's corners."""
    return float(np.linalg.norm(corners(a, size) - corners(b, size), axis=1).mean())


def corner_shift(homography: np.ndarray, size: tuple[int, int]) -> float:
    return corner_distance(homography, np.eye(3), size)


def rescale(homography: np.ndarray, factor: float) -> np.ndarray:
    """The same motion in an image scaled by `factor`."""
    scaled = homography * np.array([[1, 1, factor], [1, 1, factor], [1 / factor, 1 / factor, 1]])
    return scaled


def apply(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) points taken by `homography`."""
    mapped = points @ homography[:2, :2].T + homography[:2, 2]
    return (mapped / (points @ homography[2, :2] + homography[2, 2])[:, None]).astype(np.float32)


def residual(homography: np.ndarray, source: np.ndarray, target: np.ndarray) -> float:
    """Median distance between `target` and where `homography` takes `source`."""
    mapped = source @ homography[:, :2].T + homography[:, 2]
    return float(np.median(np.linalg.norm(mapped[:, :2] / mapped[:, 2:] - target, axis=1)))


def spread(points: np.ndarray, size: tuple[int, int]) -> float:
    """The points' convex hull area as a fraction of the frame's."""
    import cv2

    return float(cv2.contourArea(cv2.convexHull(points.astype(np.float32)))) / (size[0] * size[1])


def well_conditioned(homography: np.ndarray, size: tuple[int, int]) -> bool:
    """A camera that moved a little: scale within 0.67-1.5, little shear and perspective, the
    corners still a convex quadrilateral in order."""
    h = homography / homography[2, 2]
    if not np.all(np.isfinite(h)):
        return False
    height, width = size
    linear = h[:2, :2]
    singular = np.linalg.svd(linear, compute_uv=False)
    if singular.min() < 0.67 or singular.max() > 1.5 or singular.max() / singular.min() > 1.2:
        return False
    if abs(h[2, 0]) * width + abs(h[2, 1]) * height > 0.1:
        return False
    quad = corners(h, size)
    edges = np.roll(quad, -1, axis=0) - quad
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    return bool(np.all(turns > 0))
