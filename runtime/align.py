"""Clean plates for real cameras: the captured background brought to each frame, in geometry
(a homography) and in exposure (per-channel gain and offset), before matting.

BGMv2 mattes a frame against its plate, so camera motion or an exposure change between the two
reads as foreground. `PlateAligner` takes the plate once, then each frame with the latest alpha
known (the subject to leave out), and returns the plate for that frame and what it did:

    aligner = PlateAligner(plate)
    for frame in frames:
        plate_now, step = aligner.align(frame, alpha)   # alpha: the latest matte, or None
        alpha = matter.matte_frames(frame[None], plate_now[None])["pha"][0, 0]

Geometry, at reduced resolution, on the background only (the subject masked out with the alpha,
dilated; without one, by where plate and frame disagree after a first estimate over the whole
frame): the plate's corners are followed into the frame by pyramidal Lucas-Kanade from where
the last good estimate puts them, each checked by tracking it back; on the first frame, or when
tracking is lost, ORB features are matched near the last estimate and the result refined to
sub-pixel accuracy by ECC. Either way the correspondences give a robust (MAGSAC) homography, or
a similarity where that explains them as well, checked (inliers, conditioning, reprojection
error). A frame that gives none takes the last good estimate (counted as a fallback), so a
featureless background (a plain wall) never fails and stays where the static plate is. The
estimate is smoothed only within its own noise, so real motion passes without lag.

Exposure: per-channel gain and offset fitted by robust (Huber) least squares on background
pixels. The border the warp leaves uncovered takes the frame's pixels where the subject is not,
so it reads as background, and the plate's nearest pixels where the subject is.

OpenCV comes with the `align` extra; this module imports it on first use.
"""

from __future__ import annotations

import numpy as np

from mattex.errors import ConfigError
from mattex.extras import require
from mattex.facts import FACTS

from . import homography as plane
from .align_steps import AlignStats, AlignStep

# The tuning lives in mattex/shared_facts.json ("align"): the C++ aligner (runtime/cpp/align) reads it too
_T = FACTS["align"]
WORK_SIDE: int = _T["work_side"]  # features, ECC and the exposure fit run with the longer side at most this
MIN_INLIERS: int = _T["min_inliers"]
MIN_INLIER_RATIO: float = _T["min_inlier_ratio"]
MAX_REPROJECTION_PX: float = _T["max_reprojection_px"]  # median over inliers, at working resolution
MAX_ECC_CORRECTION_PX: float = _T["max_ecc_correction_px"]  # ECC may move a feature estimate's corners this far
JITTER_PX: float = _T["jitter_px"]  # an estimate this close to the prediction is noise: averaged with it
SUBJECT_ALPHA: float = _T["subject_alpha"]  # alpha above this is the subject, left out of every fit
EXPOSURE_SAMPLES: int = _T["exposure_samples"]  # background pixels the exposure fit samples, on a grid
ECC_FEATURE_SLACK_PX: float = _T["ecc_feature_slack_px"]  # ECC may raise the features' median residual this much
HOMOGRAPHY_GAIN_PX: float = _T["homography_gain_px"]  # a homography must fit this much better than a similarity
MIN_HOMOGRAPHY_SPREAD: float = _T["min_homography_spread"]  # inliers' hull / the frame below which: a similarity
TRACK_POINTS: int = _T["track_points"]  # plate corners followed frame to frame
TRACK_BACK_PX: float = _T["track_back_px"]  # a corner tracked back must land this close to where it started
GRID: tuple[int, int] = tuple(_T["grid"])  # rows, columns of the cells features are spread over
SEARCH_RADIUS: float = _T["search_radius"]  # of the diagonal: how far from the last good estimate a feature may be
ECC_SIDE: int = _T["ecc_side"]  # ECC refines at this longer side: a quarter of the work, still ~0.05 px
LARGE_MOTION_FRACTION: float = _T["large_motion_fraction"]  # of the diagonal: motion reported as large
FEATURES: int = _T["features"]  # ORB features kept per frame, spread over GRID's cells


def _cv2():
    require("align", "aligning the plate to each frame (`align`)")
    import cv2

    return cv2


class PlateAligner:
    """Brings `plate` (uint8 HxWx3 RGB) to each frame of the same size; see the module's text."""

    def __init__(
        self,
        plate: np.ndarray,
        large_motion_fraction: float = LARGE_MOTION_FRACTION,
        features: int = FEATURES,
        threads: int | None = None,
        in_order: bool = False,
    ) -> None:
        """`in_order`: the frames are one clip's, in order (a pipeline, whose first mattes come a
        few frames late): a frame without an alpha reuses the last frame's subject instead of
        finding it anew (which costs two estimates). `threads`: OpenCV's, for the process."""
        self.cv2 = _cv2()
        self.in_order, self.last_background = in_order, None
        if threads is not None:  # OpenCV's pool is the process's: `mattex run` keeps it to its decode thread
            self.cv2.setNumThreads(threads)
        plate = _check_rgb(plate, "the plate")
        self.size = plate.shape[:2]
        height, width = self.size
        self.scale = min(1.0, WORK_SIDE / max(height, width))
        self.work_size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))  # (w, h) for cv2
        self.large_motion_px = large_motion_fraction * float(np.hypot(height, width))
        self.features = features
        # many candidates (a low FAST threshold: dark scenes too), then the strongest per cell
        # ORB's 31-pixel patches leave a small frame's margins bare: smaller ones there
        patch = int(np.clip(min(self.work_size) // 6, 9, 31))
        self.orb = self.cv2.ORB_create(
            2 * features, nlevels=4, edgeThreshold=patch, patchSize=patch, fastThreshold=8
        )  # four levels: a handheld camera changes scale little
        self.matcher = self.cv2.BFMatcher(self.cv2.NORM_HAMMING)
        self.last_good = np.eye(3)  # full resolution
        self.gains, self.offsets = np.ones(3), np.zeros(3)  # the last frame's exposure
        self.history: list[np.ndarray] = []  # the last two outputs' corners, for the prediction
        self.stats = AlignStats()
        self.set_plate(plate)

    def set_plate(self, plate: np.ndarray) -> None:
        """A new plate (a background video's next frame): its features, keeping the motion so far."""
        plate = _check_rgb(plate, "the plate")
        if plate.shape[:2] != self.size:
            raise ConfigError(
                f"the plate is {plate.shape[1]}x{plate.shape[0]}, the first was {self.size[1]}x{self.size[0]}"
            )
        self.plate = plate
        self.plate_small = self._small(plate)
        self.plate_gray = self.cv2.cvtColor(self.plate_small, self.cv2.COLOR_RGB2GRAY)
        self.plate_points, self.plate_descriptors = self._features(self.plate_gray, None)
        corners = self.cv2.goodFeaturesToTrack(self.plate_gray, TRACK_POINTS, 0.01, 7, blockSize=7)
        self.track_points = None if corners is None else corners[:, 0].astype(np.float32)
        f = min(1.0, ECC_SIDE / max(self.plate_gray.shape))
        ecc_size = (max(1, round(self.plate_gray.shape[1] * f)), max(1, round(self.plate_gray.shape[0] * f)))
        self.plate_ecc = self.cv2.resize(self.plate_gray, ecc_size, interpolation=self.cv2.INTER_AREA).astype(
            np.float32
        )

    # -- one frame ---------------------------------------------------------------------------

    def align(self, frame: np.ndarray, alpha: np.ndarray | None = None) -> tuple[np.ndarray, AlignStep]:
        """The plate for `frame` and what was done. `alpha` (HxW, HxWx1 or 1xHxW, float in [0, 1]
        or uint8) is the latest matte known, usually the previous frame's; None on the first."""
        frame = _check_rgb(frame, "the frame")
        if frame.shape[:2] != self.size:
            raise ConfigError(
                f"the frame is {frame.shape[1]}x{frame.shape[0]}, the plate {self.size[1]}x{self.size[0]}"
            )
        small = self._small(frame)
        gray = self.cv2.cvtColor(small, self.cv2.COLOR_RGB2GRAY)
        if alpha is not None:
            background = self._background_from_alpha(alpha)
        elif self.in_order and self.last_background is not None:
            background = self.last_background
        else:  # the first frame: a first estimate over the whole frame says where the subject is
            rough, _ = self._estimate(gray, np.full(gray.shape, 255, np.uint8))
            background = self._background_from_disagreement(small, rough if rough is not None else self.last_good)
        estimate, inliers = self._track(gray, background) if self.stats.frames else (None, 0)
        if estimate is None:  # the first frame, or tracking lost: features matched anew, then ECC
            estimate, inliers = self._estimate(gray, background)
        fallback = estimate is None
        homography = self._smooth(self.last_good if fallback else estimate)
        if not fallback:
            self.last_good = homography
        gains, offsets = self._fit_exposure(small, background, homography)
        self.gains, self.offsets, self.last_background = gains, offsets, background
        out = self._render(frame, homography, gains, offsets, background)
        shift = plane.corner_shift(homography, self.size)
        step = AlignStep(
            homography, inliers, fallback, shift, tuple(gains), tuple(offsets), shift > self.large_motion_px
        )
        self.stats.add(step)
        return out, step

    def _small(self, image: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return image
        return self.cv2.resize(image, self.work_size, interpolation=self.cv2.INTER_AREA)

    def _to_work(self, homography: np.ndarray) -> np.ndarray:
        return plane.rescale(homography, self.scale)

    def _to_full(self, homography: np.ndarray) -> np.ndarray:
        return plane.rescale(homography, 1 / self.scale)

    def _dilation(self) -> np.ndarray:
        # the alpha is a few frames old in a pipeline and the subject moves: a generous margin
        radius = max(3, round(0.03 * float(np.hypot(*self.work_size))))
        return self.cv2.getStructuringElement(self.cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))  # separable: fast

    def _background_from_alpha(self, alpha: np.ndarray) -> np.ndarray:
        alpha = np.asarray(alpha)
        if alpha.ndim == 3:  # (H, W, 1) as images hold it, or (1, H, W) as the model gives it
            alpha = alpha[0] if alpha.shape[0] == 1 else alpha[..., 0]
        if alpha.shape != self.size:
            raise ConfigError(
                f"the alpha is {alpha.shape[1]}x{alpha.shape[0]}, the frame {self.size[1]}x{self.size[0]}"
            )
        limit = SUBJECT_ALPHA * (255 if alpha.dtype == np.uint8 else 1.0)
        subject = (alpha > limit).astype(np.uint8) * 255
        if self.scale != 1:
            subject = self.cv2.resize(subject, self.work_size, interpolation=self.cv2.INTER_NEAREST)
        # specks of a noisy matte are no subject: dilated, they would hide much of the background
        subject = self.cv2.morphologyEx(subject, self.cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        return 255 - self.cv2.dilate(subject, self._dilation())

    def _background_from_disagreement(self, small: np.ndarray, homography: np.ndarray) -> np.ndarray:
        """Where the plate, brought to the frame, disagrees with it (after an exposure fit over
        the whole frame) is the subject."""
        everywhere = np.full(small.shape[:2], 255, np.uint8)
        gains, offsets = self._fit_exposure(small, everywhere, homography)
        warped = self.cv2.warpPerspective(
            self.plate_small, self._to_work(homography), self.work_size, borderMode=self.cv2.BORDER_REPLICATE
        ).astype(np.float32)
        difference = np.abs(warped * gains + offsets - small).max(axis=2)
        difference = self.cv2.GaussianBlur(difference, (0, 0), 2.0)
        subject = (difference > 30).astype(np.uint8) * 255
        subject = self.cv2.morphologyEx(subject, self.cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))  # noise, edges
        return 255 - self.cv2.dilate(subject, self._dilation())

    def _estimate(self, gray: np.ndarray, background: np.ndarray) -> tuple[np.ndarray | None, int]:
        """A checked full-resolution homography from the background's features, or None."""
        if self.plate_descriptors is None or len(self.plate_points) < MIN_INLIERS:
            return None, 0
        points, descriptors = self._features(gray, background)
        if descriptors is None or len(points) < MIN_INLIERS:
            return None, 0
        frame_xy, plate_xy = self._match(points, descriptors, gray.shape)
        if len(frame_xy) < MIN_INLIERS:
            return None, 0
        homography, inlier, residual = self._fit(plate_xy, frame_xy, gray.shape)
        if homography is None:
            return None, int(inlier.sum())
        refined = self._refine(gray, background, homography)
        # ECC weighs every background pixel: where the alpha missed part of the subject it can
        # be pulled off; the features it must still agree with catch that
        if plane.residual(refined, plate_xy[inlier], frame_xy[inlier]) <= residual + ECC_FEATURE_SLACK_PX:
            homography = refined
        return self._to_full(homography), int(inlier.sum())

    def _fit(self, plate_xy: np.ndarray, frame_xy: np.ndarray, shape: tuple[int, int]):
        """A checked homography (working resolution) from correspondences, robustly: (homography
        or None, which are inliers, their median residual)."""
        cv2 = self.cv2
        homography, mask = cv2.findHomography(plate_xy, frame_xy, cv2.USAC_MAGSAC, 1.0, maxIters=2000, confidence=0.999)
        if homography is None:
            return None, np.zeros(len(plate_xy), bool), 0.0
        inlier = mask.ravel().astype(bool)
        # A handheld camera mostly rotates, scales and shifts the view: a similarity (4 degrees of
        # freedom) extrapolates to the corners more steadily than a homography (8), so it is taken
        # unless the homography explains the inliers clearly better, and always when the inliers
        # cover too little of the frame to pin a homography's perspective.
        similarity, similar = cv2.estimateAffinePartial2D(
            plate_xy, frame_xy, method=cv2.RANSAC, ransacReprojThreshold=1.0
        )
        if similarity is not None and inlier.sum() >= 4:
            similarity, similar = np.vstack([similarity, [0, 0, 1]]), similar.ravel().astype(bool)
            narrow = plane.spread(frame_xy[inlier], shape) < MIN_HOMOGRAPHY_SPREAD
            gain = plane.residual(similarity, plate_xy[inlier], frame_xy[inlier]) - plane.residual(
                homography, plate_xy[inlier], frame_xy[inlier]
            )
            if narrow or (gain < HOMOGRAPHY_GAIN_PX and similar.sum() >= 0.9 * inlier.sum()):
                homography, inlier = similarity, similar
        if (
            inlier.sum() < MIN_INLIERS
            or inlier.mean() < MIN_INLIER_RATIO
            or not plane.well_conditioned(homography, shape)
        ):
            return None, inlier, 0.0
        residual = plane.residual(homography, plate_xy[inlier], frame_xy[inlier])
        if residual > MAX_REPROJECTION_PX:
            return None, inlier, residual
        return homography, inlier, residual

    def _track(self, gray: np.ndarray, background: np.ndarray) -> tuple[np.ndarray | None, int]:
        """The plate's corners followed into the frame by pyramidal Lucas-Kanade from where the
        last good estimate puts them, each checked by tracking it back: sub-pixel, and several
        times cheaper than matching features and ECC. The plate is first given the last gains,
        so that a drifting exposure does not pull the flow."""
        cv2 = self.cv2
        if self.track_points is None:
            return None, 0
        height, width = gray.shape
        guess = plane.apply(self._to_work(self.last_good), self.track_points)
        x, y = np.round(guess[:, 0]).astype(int), np.round(guess[:, 1]).astype(int)
        keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        keep[keep] = background[y[keep], x[keep]] > 0
        if keep.sum() < MIN_INLIERS:
            return None, 0
        plate_xy, guess = self.track_points[keep], guess[keep]
        table = np.clip(np.arange(256)[:, None] * self.gains[None] + self.offsets[None] + 0.5, 0, 255).astype(np.uint8)
        plate_gray = cv2.cvtColor(cv2.LUT(self.plate_small, table[None]), cv2.COLOR_RGB2GRAY)
        options = dict(
            winSize=(21, 21), maxLevel=2, criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.01)
        )
        found, status, _ = cv2.calcOpticalFlowPyrLK(
            plate_gray, gray, plate_xy[:, None], guess[:, None].copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **options
        )
        back, back_status, _ = cv2.calcOpticalFlowPyrLK(
            gray, plate_gray, found, plate_xy[:, None].copy(), flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **options
        )
        found, back = found[:, 0], back[:, 0]
        good = (status.ravel() == 1) & (back_status.ravel() == 1)
        good &= np.linalg.norm(back - plate_xy, axis=1) < TRACK_BACK_PX
        if good.sum() < MIN_INLIERS:
            return None, 0
        homography, inlier, _ = self._fit(plate_xy[good], found[good], gray.shape)
        if homography is None:
            return None, int(inlier.sum())
        return self._to_full(homography), int(inlier.sum())

    def _features(self, gray: np.ndarray, mask: np.ndarray | None):
        """ORB features spread over the image: the strongest few in each cell of a grid, so that
        one busy patch does not take them all (a homography wants them over the whole frame)."""
        points = self.orb.detect(gray, mask)
        if not points:
            return [], None
        height, width = gray.shape
        cells = {}
        for point in sorted(points, key=lambda p: -p.response):
            cell = (int(point.pt[1] * GRID[0] / height), int(point.pt[0] * GRID[1] / width))
            cells.setdefault(cell, []).append(point)
        per_cell = max(1, self.features // (GRID[0] * GRID[1]))
        chosen = [p for found in cells.values() for p in found[:per_cell]]
        return self.orb.compute(gray, chosen)

    def _match(self, points, descriptors, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Each frame feature's best plate feature among those near where the last good estimate
        puts it: repeated structure (a lattice, tiles) defeats a ratio test over the whole
        frame, not a search near the prediction. Then Lowe's ratio test among those."""
        frame_xy = np.float32([p.pt for p in points])
        plate_all = np.float32([p.pt for p in self.plate_points])
        predicted = plane.apply(np.linalg.inv(self._to_work(self.last_good)), frame_xy)
        radius = SEARCH_RADIUS * float(np.hypot(*shape))
        dx = predicted[:, None, 0] - plate_all[None, :, 0]
        dy = predicted[:, None, 1] - plate_all[None, :, 1]
        near = (dx * dx + dy * dy < radius * radius).view(np.uint8)
        pairs = self.matcher.knnMatch(descriptors, self.plate_descriptors, k=2, mask=near)
        good = [
            p[0]
            for p in pairs
            if len(p) == 1 and p[0].distance < 64 or len(p) == 2 and p[0].distance < 0.9 * p[1].distance
        ]
        return (
            np.float32([frame_xy[m.queryIdx] for m in good]).reshape(-1, 2),
            np.float32([plate_all[m.trainIdx] for m in good]).reshape(-1, 2),
        )

    def _refine(self, gray: np.ndarray, background: np.ndarray, homography: np.ndarray) -> np.ndarray:
        """ECC on the background's pixels: sub-pixel accuracy from the features' estimate. ECC's
        correlation is blind to a gain and offset in brightness, so exposure does not pull it."""
        cv2 = self.cv2
        f = min(1.0, ECC_SIDE / max(gray.shape))
        warp = plane.rescale(homography, f)
        warp = (warp / warp[2, 2]).astype(np.float32)
        size = self.plate_ecc.shape[::-1]
        frame = (
            cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)
            if f < 1
            else gray.astype(np.float32)
        )
        mask = cv2.resize(background, size, interpolation=cv2.INTER_NEAREST) if f < 1 else background
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 8, 1e-3)  # it starts close
        try:
            _, refined = cv2.findTransformECC(self.plate_ecc, frame, warp, cv2.MOTION_HOMOGRAPHY, criteria, mask, 3)
        except cv2.error:  # did not converge: keep the features' estimate
            return homography
        refined = plane.rescale(refined.astype(np.float64), 1 / f)
        if plane.corner_distance(refined, homography, gray.shape) > MAX_ECC_CORRECTION_PX or not plane.well_conditioned(
            refined, gray.shape
        ):
            return homography
        return refined

    def _smooth(self, homography: np.ndarray) -> np.ndarray:
        """Average with the constant-velocity prediction only as far as the two agree within the
        estimate's noise (JITTER_PX): a real change of motion is taken as measured, without lag."""
        corners = plane.corners(homography, self.size)
        if self.history:
            prediction = 2 * self.history[-1] - self.history[-2] if len(self.history) == 2 else self.history[-1]
            distance = float(np.abs(corners - prediction).max())
            weight = 0.5 * np.exp(-((distance / JITTER_PX) ** 2))
            corners = (1 - weight) * corners + weight * prediction
        self.history = [*self.history[-1:], corners]
        return self.cv2.getPerspectiveTransform(
            plane.corners(np.eye(3), self.size).astype(np.float32), corners.astype(np.float32)
        ).astype(np.float64)

    def _fit_exposure(self, small: np.ndarray, background: np.ndarray, homography: np.ndarray):
        """Per-channel gain and offset, frame = gain * plate + offset, by Huber-weighted least
        squares over the background pixels the warped plate covers (clipped ones left out)."""
        cv2 = self.cv2
        # a sparse grid of pixels is plenty for six numbers, and keeps the fit cheap: the plate is
        # sampled where the homography takes each grid pixel back to
        step = max(1, int(np.sqrt(background.size / EXPOSURE_SAMPLES)))
        rows, columns = np.mgrid[0 : small.shape[0] : step, 0 : small.shape[1] : step]
        grid = np.stack([columns.ravel(), rows.ravel()], axis=1).astype(np.float32)
        source = plane.apply(np.linalg.inv(self._to_work(homography)), grid)
        height, width = self.plate_small.shape[:2]
        covered = (source[:, 0] >= 1) & (source[:, 0] <= width - 2) & (source[:, 1] >= 1) & (source[:, 1] <= height - 2)
        plate_values = cv2.remap(self.plate_small, source[:, None, :], None, cv2.INTER_LINEAR).reshape(-1, 3)
        frame_values = small[::step, ::step].reshape(-1, 3)
        use = (background[::step, ::step] > 0).ravel() & covered
        use &= (frame_values.min(axis=1) > 4) & (frame_values.max(axis=1) < 251)
        use &= (plate_values.min(axis=1) > 4) & (plate_values.max(axis=1) < 251)
        if use.sum() < 100:
            return np.ones(3), np.zeros(3)
        plate_values, frame_values = plate_values[use].astype(np.float64), frame_values[use].astype(np.float64)
        fits = [_robust_line(plate_values[:, c], frame_values[:, c]) for c in range(3)]
        return np.array([f[0] for f in fits]), np.array([f[1] for f in fits])

    def _render(self, frame: np.ndarray, homography: np.ndarray, gains, offsets, background: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        height, width = self.size
        # the plate's edge, moved, is a quadrilateral (a homography keeps lines straight): outside
        # it the warp replicates the plate's border, which stays only where the subject is
        warped = cv2.warpPerspective(self.plate, homography, (width, height), borderMode=cv2.BORDER_REPLICATE)
        table = np.clip(np.arange(256)[:, None] * gains[None] + offsets[None] + 0.5, 0, 255).astype(np.uint8)
        plate = cv2.LUT(warped, table[None])
        covered = plane.covered_by_plate(homography, self.size)
        if covered.all():
            return plate
        if self.scale != 1.0:
            background = cv2.resize(background, (width, height), interpolation=cv2.INTER_NEAREST)
        from_frame = (covered == 0) & (background > 0)  # the frame's own background reads as background
        plate[from_frame] = frame[from_frame]
        return plate


def _check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConfigError(f"{what} must be uint8 HxWx3 RGB, got {image.dtype} of shape {image.shape}")
    return np.ascontiguousarray(image)


def _robust_line(x: np.ndarray, y: np.ndarray, iterations: int = 4) -> tuple[float, float]:
    """y ~ gain * x + offset by Huber-weighted least squares. A plate channel with almost no
    spread (a plain wall) cannot tell a gain from an offset: a gain alone, the exposure's kind."""
    if x.std() < 3.0:
        gain = float(np.median(y) / max(np.median(x), 1.0))
        return float(np.clip(gain, 0.5, 2.0)), 0.0
    weights = np.ones_like(x)
    gain, offset = 1.0, 0.0
    for _ in range(iterations):  # weighted least squares in closed form, then Huber weights
        total = weights.sum()
        mean_x, mean_y = (weights * x).sum() / total, (weights * y).sum() / total
        dx = x - mean_x
        gain = float((weights * dx * (y - mean_y)).sum() / max((weights * dx * dx).sum(), 1e-9))
        offset = float(mean_y - gain * mean_x)
        residual = np.abs(y - gain * x - offset)
        k = 1.345 * (1.4826 * np.median(residual) + 1e-6)
        weights = np.minimum(1.0, k / np.maximum(residual, 1e-9))
    if not 0.5 <= gain <= 2.0:  # not an exposure change: leave the plate's levels alone
        return 1.0, 0.0
    return float(gain), float(offset)
