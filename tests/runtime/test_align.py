"""Plate alignment (runtime/align.py, `mattex run --align`) on handheld clips with a known truth
(calibration/handheld.py): the homography recovered to within half a pixel at the corners over
real photographs, the exposure's gains and offsets recovered, a featureless wall never failing
and never worse than the plate as captured, the figures through `mattex run`, and the extra
named when OpenCV is missing."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from mattex.calibration.handheld import handheld_clip
from mattex.cli.main import app
from mattex.runtime.align import PlateAligner, _corner_distance

runner = CliRunner()
SIZE = (288, 512)


def world(image: np.ndarray, size=SIZE) -> np.ndarray:
    return cv2.resize(image, (size[1] + 96, size[0] + 72), interpolation=cv2.INTER_AREA)


def align_clip(clip):
    """Each frame aligned with the previous frame's true alpha (a perfect matte): steps, plates."""
    aligner, steps, plates = PlateAligner(clip.plate), [], []
    for i, frame in enumerate(clip.frames):
        plate, step = aligner.align(frame, clip.alphas[i - 1] if i else None)
        steps.append(step)
        plates.append(plate)
    return aligner, steps, plates


@pytest.fixture(scope="module", params=["coffee", "astronaut"])
def textured(request):
    image = getattr(skimage.data, request.param)()
    clip = handheld_clip(world(image), SIZE, frames=8, drift_px=12, exposure=(0.14, -0.05, -0.13), seed=5)
    return clip, *align_clip(clip)


def test_the_homography_is_recovered_within_half_a_pixel_at_the_corners(textured):
    clip, aligner, steps, _ = textured
    errors = [_corner_distance(s.homography, h, SIZE) for s, h in zip(steps, clip.homographies)]
    shifts = [_corner_distance(h, np.eye(3), SIZE) for h in clip.homographies]
    assert max(shifts) > 8  # the camera did move: a static plate is off by this much
    assert max(errors) < 0.5, np.round(errors, 3)
    assert aligner.stats.fallbacks == 0 and all(s.inliers >= 20 for s in steps)


def test_exposure_gains_and_offsets_are_recovered(textured):
    clip, _, steps, plates = textured
    gains = np.array([s.gains for s in steps])
    offsets = np.array([s.offsets for s in steps])
    assert np.abs(gains - np.array(clip.gains)).max() < 0.01
    assert np.abs(offsets - np.array(clip.offsets)).max() < 2.0
    # the plate returned is the background the camera saw, where the subject is not
    last = -1
    background = clip.alphas[last] == 0
    error = np.abs(plates[last].astype(float) - clip.backgrounds[last])[background].mean()
    static = np.abs(clip.plate.astype(float) - clip.backgrounds[last])[background].mean()
    assert error < 2.5 < 10 < static, (error, static)


def test_a_featureless_wall_never_fails_and_is_no_worse_than_the_static_plate():
    wall = np.full((SIZE[0] + 72, SIZE[1] + 96, 3), (196, 188, 176), np.uint8)
    clip = handheld_clip(wall, SIZE, frames=8, drift_px=12, exposure=(0.12, 0.04, -0.12), seed=6)
    aligner, steps, plates = align_clip(clip)
    assert aligner.stats.fallbacks == len(clip.frames)  # no features: the last good estimate, identity
    assert all(np.array_equal(s.homography, np.eye(3)) for s in steps)
    for plate, alpha, truth in zip(plates, clip.alphas, clip.backgrounds):
        background = alpha == 0
        aligned = np.abs(plate.astype(float) - truth)[background].mean()
        static = np.abs(clip.plate.astype(float) - truth)[background].mean()
        assert aligned <= static + 0.5, (aligned, static)
    # and frames with nothing at all in them: black, white, one colour
    blank = PlateAligner(np.zeros((64, 96, 3), np.uint8))
    for value in (0, 255, 128):
        plate, step = blank.align(np.full((64, 96, 3), value, np.uint8), None)
        assert step.fallback and plate.shape == (64, 96, 3)


def test_align_through_mattex_run_reports_its_figures(small_file, tmp_path):
    size = (96, 128)  # small_file's size
    clip = handheld_clip(
        world(skimage.data.astronaut(), size), size, frames=6, drift_px=4, exposure=(0.12, 0.0, -0.12), seed=7
    )
    (tmp_path / "src").mkdir()
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(tmp_path / "src" / f"{i:02d}.png")
    Image.fromarray(clip.plate).save(tmp_path / "plate.png")
    args = ["run", str(small_file), str(tmp_path / "src"), str(tmp_path / "plate.png"), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--outputs", "pha", "--align", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    figures = summary["alignment"]
    assert figures["frames"] == 6 == figures["aligned"] + figures["fallbacks"]
    # which matte the aligner leaves out depends on how far decoding runs ahead: loose bounds
    true_shifts = [_corner_distance(h, np.eye(3), size) for h in clip.homographies]
    assert abs(figures["max_shift_px"] - max(true_shifts)) < 1.5, (figures, true_shifts)
    low, high = figures["gain_range"]
    assert abs(low - 0.88) < 0.03 and abs(high - 1.12) < 0.03, figures
    assert "align" in summary["ms_per_frame"]
    plain = runner.invoke(app, [*args[:-1], str(tmp_path / "plain"), "--outputs", "pha", "--json"])
    assert "alignment" not in json.loads(plain.output)  # only where asked for
    table = runner.invoke(app, [*args[:-1], str(tmp_path / "table"), "--outputs", "pha", "--align"])
    assert "aligned" in table.output and "exposure gain" in table.output


def test_align_without_opencv_names_the_extra(small_file, tmp_path):
    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(tmp_path / "frame.png")
    code = (
        "import sys; sys.modules['cv2'] = None\n"  # as if opencv-python-headless were not installed
        "from mattex.cli.main import main\n"
        f"sys.argv = ['mattex', 'run', {str(small_file)!r}, {str(tmp_path / 'frame.png')!r}, "
        f"{str(tmp_path / 'frame.png')!r}, '--out', {str(tmp_path / 'out')!r}, '--align']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "error: ExtraNotInstalledError:" in done.stderr and 'pip install "mattex[align]"' in done.stderr
    assert not (tmp_path / "out").exists()


def test_large_motion_is_followed_and_reported():
    """A camera that wanders 40 px (over 5% of the 587 px diagonal) is still followed, frame by
    frame, and the frames beyond 5% are counted: the plate wants recapturing."""
    image = cv2.resize(skimage.data.coffee(), (SIZE[1] + 200, SIZE[0] + 180), interpolation=cv2.INTER_AREA)
    clip = handheld_clip(image, SIZE, frames=10, drift_px=40, subject=False, seed=8)
    aligner, steps, _ = align_clip(clip)
    limit = 0.05 * np.hypot(*SIZE)
    shifts = [_corner_distance(h, np.eye(3), SIZE) for h in clip.homographies]
    assert aligner.stats.large_motion == sum(s > limit for s in shifts) > 0
    assert [s.large_motion for s in steps] == [s > limit for s in shifts]
    assert max(_corner_distance(s.homography, h, SIZE) for s, h in zip(steps, clip.homographies)) < 0.5
    assert aligner.stats.to_dict()["large_motion_frames"] == aligner.stats.large_motion
