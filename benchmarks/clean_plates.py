"""Clean plates for a handheld camera: the matte with the plate as captured, with the
reference's alignment, with mattex's `--align` and with the true alignment, side by side.

    python benchmarks/clean_plates.py --json results_clean_plates_cpu.json --pictures docs/images/clean-plates

Each scene is a clip with a known truth (calibration/handheld.py): a camera drifting by 10-14 px
with a little rotation and scale over a real photograph (scikit-image's bundled ones), exposure
drifting per channel by 12-15%, and a soft synthetic subject with a known alpha; a featureless
scene (a plain wall) too. mobilenetv2 with the demo weights, exported at 512x288, mattes each
frame against:
- static: the plate as captured;
- reference: BGMv2's `HomographicAlignment` restated (ORB over the whole frame, the best 15% of
  brute-force Hamming matches, a RANSAC homography, uncovered pixels from the frame), with the
  one fix today's OpenCV needs (`sorted(...)`: `match` returns a tuple, which has no `sort`);
- mattex: `PlateAligner` given the previous frame's matte, as `mattex run --align` runs it;
- true: the plate moved by the true homography and exposure (uncovered pixels from the true
  background): the floor any alignment can reach.
Reported per scene: the matte's mean |alpha - true alpha| in 0-255 levels, the alignment's mean
corner error in pixels against the true homography, each aligner's CPU ms per frame (its own
thread's time: the machine may be shared); then `mattex run` on the scene as a video with and
without `--align`, rounds interleaved (alternating which goes first): frames/s, the slowdown,
and the process's CPU time per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mattex.calibration.handheld import handheld_clip  # noqa: E402
from mattex.measure.machine import describe_machine  # noqa: E402
from mattex.runtime import Matter  # noqa: E402
from mattex.runtime.align import PlateAligner  # noqa: E402
from mattex.runtime.homography import corner_distance  # noqa: E402
from mattex.runtime.pipeline import matte_media  # noqa: E402

SIZE = (288, 512)  # height, width


def scenes() -> dict[str, dict]:
    """Photographs (scaled to leave a margin around the frame for the camera to move into),
    with their own camera paths and exposure drifts; and a plain wall."""
    import skimage.data

    def world(image: np.ndarray) -> np.ndarray:
        height, width = SIZE
        return cv2.resize(image, (width + 96, height + 72), interpolation=cv2.INTER_AREA)

    wall = np.full((SIZE[0] + 72, SIZE[1] + 96, 3), (196, 188, 176), np.uint8)
    return {
        "coffee": dict(world=world(skimage.data.coffee()), drift_px=10, exposure=(0.12, 0.02, -0.1), seed=1),
        "rocket": dict(world=world(skimage.data.rocket()), drift_px=12, exposure=(-0.13, 0.05, 0.14), seed=2),
        "astronaut": dict(world=world(skimage.data.astronaut()), drift_px=14, exposure=(0.15, -0.06, -0.13), seed=3),
        "plain wall": dict(world=wall, drift_px=12, exposure=(0.12, 0.04, -0.12), seed=4),
    }


class ReferenceAlignment:
    """BGMv2's HomographicAlignment (inference_utils.py), restated: ORB (OpenCV's defaults) on the
    frame and the plate, brute-force Hamming matches sorted by distance, the best 15%, a RANSAC
    homography from plate to frame, the plate warped by it and the pixels it leaves uncovered
    taken from the frame. A frame without descriptors raises, as the reference does."""

    def __init__(self) -> None:
        self.detector = cv2.ORB_create()
        self.matcher = cv2.DescriptorMatcher_create(cv2.DESCRIPTOR_MATCHER_BRUTEFORCE_HAMMING)

    def __call__(self, frame: np.ndarray, plate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        frame_points, frame_descriptors = self.detector.detectAndCompute(frame, None)
        plate_points, plate_descriptors = self.detector.detectAndCompute(plate, None)
        matches = sorted(self.matcher.match(plate_descriptors, frame_descriptors, None), key=lambda m: m.distance)
        matches = matches[: int(len(matches) * 0.15)]
        plate_xy = np.float32([plate_points[m.queryIdx].pt for m in matches])
        frame_xy = np.float32([frame_points[m.trainIdx].pt for m in matches])
        homography, _ = cv2.findHomography(plate_xy, frame_xy, cv2.RANSAC)
        height, width = frame.shape[:2]
        warped = cv2.warpPerspective(plate, homography, (width, height))
        covered = cv2.warpPerspective(np.ones((height, width)), homography, (width, height))
        warped[covered != 1] = frame[covered != 1]
        return warped, homography


def true_plate(clip, i: int) -> np.ndarray:
    height, width = SIZE
    warped = cv2.warpPerspective(clip.plate, clip.homographies[i], (width, height)).astype(np.float32)
    warped = np.clip(warped * clip.gains[i] + clip.offsets[i] + 0.5, 0, 255).astype(np.uint8)
    covered = cv2.warpPerspective(
        np.ones(SIZE, np.uint8), clip.homographies[i], (width, height), flags=cv2.INTER_NEAREST
    )
    warped[covered == 0] = clip.backgrounds[i][covered == 0]
    return warped


def alpha_of(matter: Matter, frame: np.ndarray, plate: np.ndarray) -> np.ndarray:
    pha = np.asarray(matter.matte_frames(frame[None], plate[None])["pha"][0, 0], np.float32)
    return np.round(np.clip(pha, 0, 1) * 255) / 255  # as mattex run writes it


def measure_scene(matter: Matter, clip) -> dict:
    methods = {"static": [], "reference": [], "mattex": [], "true": []}
    corner = {"reference": [], "mattex": []}
    seconds = {"reference": 0.0, "mattex": 0.0}  # CPU time of this thread (the machine is shared)
    failures = {"reference": 0}
    reference, aligner, alpha = ReferenceAlignment(), PlateAligner(clip.plate), None
    pictures = {}
    for i, frame in enumerate(clip.frames):
        plates = {"static": clip.plate, "true": true_plate(clip, i)}
        t = time.thread_time()
        try:
            plates["reference"], homography = reference(frame, clip.plate)
            corner["reference"].append(corner_distance(homography, clip.homographies[i], SIZE))
        except cv2.error:  # no features: the reference stops here (BGMv2 issue 83)
            failures["reference"] += 1
            plates["reference"] = None
        seconds["reference"] += time.thread_time() - t
        t = time.thread_time()
        plates["mattex"], step = aligner.align(frame, alpha)
        seconds["mattex"] += time.thread_time() - t
        corner["mattex"].append(corner_distance(step.homography, clip.homographies[i], SIZE))
        for name, plate in plates.items():
            if plate is None:
                continue
            pha = alpha_of(matter, frame, plate)
            methods[name].append(float(np.abs(pha - clip.alphas[i]).mean() * 255))
            if name == "mattex":
                alpha = pha
            if i == len(clip.frames) - 1:
                pictures[name] = pha
    frames = len(clip.frames)
    return {
        "matte_error": {k: round(statistics.mean(v), 2) if len(v) == frames else None for k, v in methods.items()},
        "corner_error_px": {k: round(statistics.mean(v), 3) if v else None for k, v in corner.items()},
        "corner_error_max_px": {k: round(max(v), 3) if v else None for k, v in corner.items()},
        "cpu_ms_per_frame": {k: round(1000 * v / frames, 2) for k, v in seconds.items()},
        "reference_failed_frames": failures["reference"],
        "alignment": aligner.stats.to_dict(),
        "_pictures": pictures,
    }


def run_speed(model: Path, clip, rounds: int, backend: str | None) -> dict:
    """`mattex run` on the scene as an H.264 clip, with and without --align, rounds interleaved."""
    from fractions import Fraction

    from PIL import Image

    from mattex.runtime.media import VideoSink

    options = {"backend": backend} if backend else {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        sink = VideoSink(folder / "clip.mp4", Fraction(24), SIZE)
        for frame in clip.frames:
            sink.write(frame)
        sink.close(keep=True)
        Image.fromarray(clip.plate).save(folder / "plate.png")
        fps, cpu = {"plain": [], "align": []}, {"plain": [], "align": []}
        summary = None
        for r in range(rounds):
            for name in ("plain", "align") if r % 2 == 0 else ("align", "plain"):
                used = _process_cpu_seconds()
                out = folder / f"out{r}{name}"
                result = matte_media(
                    model, folder / "clip.mp4", folder / "plate.png", out, align=name == "align", **options
                )
                cpu[name].append(1000 * (_process_cpu_seconds() - used) / result.stats.frames)
                fps[name].append(result.stats.fps)
                summary = result.to_dict() if name == "align" else summary
    plain, aligned = statistics.median(fps["plain"]), statistics.median(fps["align"])
    return {
        "fps": {"plain": round(plain, 2), "align": round(aligned, 2)},
        "fps_rounds": {k: [round(x, 2) for x in v] for k, v in fps.items()},
        "slowdown": round(plain / aligned, 3),
        "slowdown_per_round_median": round(statistics.median(p / a for p, a in zip(fps["plain"], fps["align"])), 3),
        "cpu_ms_per_frame": {k: round(statistics.median(v), 1) for k, v in cpu.items()},
        "ms_per_frame_align_stage": summary["ms_per_frame"].get("align"),
        "alignment": summary["alignment"],
    }


def _process_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def save_pictures(folder: Path, name: str, clip, pictures: dict) -> Path:
    """One picture per scene, its last frame: the plate and the frame above, the matte with the
    static plate and with mattex's aligned one below, each at half size and labelled."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    height, width = SIZE[0] // 2, SIZE[1] // 2
    tiles = [
        ("plate (captured)", clip.plate),
        ("frame (camera moved, exposure drifted)", clip.frames[-1]),
        ("matte, static plate", (pictures["static"] * 255 + 0.5).astype(np.uint8)),
        ("matte, --align", (pictures["mattex"] * 255 + 0.5).astype(np.uint8)),
    ]
    sheet = Image.new("RGB", (2 * width, 2 * height))
    for i, (label, image) in enumerate(tiles):
        tile = Image.fromarray(image).convert("RGB").resize((width, height), Image.BILINEAR)
        draw = ImageDraw.Draw(tile)
        draw.rectangle((0, 0, 6 * len(label) + 6, 13), fill=(0, 0, 0))
        draw.text((3, 1), label, fill=(255, 255, 0))
        sheet.paste(tile, ((i % 2) * width, (i // 2) * height))
    path = folder / f"clean-plates-{name.replace(' ', '-')}.png"
    sheet.save(path, optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the `mattex run` timing")
    parser.add_argument("--model", type=Path, help="an exported 512x288 file (default: mobilenetv2 demo weights)")
    parser.add_argument("--backend", default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--pictures", type=Path, help="write plate, frame and mattes (PNG) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model
        if model is None:
            from mattex.exporter.config import ExportConfig
            from mattex.exporter.export import export_onnx

            model = Path(folder) / "clean_plates.onnx"
            export_onnx(ExportConfig(height=SIZE[0], width=SIZE[1], sample_pixels=32000), model)
        matter = Matter.open(model, **({"backend": args.backend} if args.backend else {}))
        results = {"machine": describe_machine(), "size": list(SIZE), "frames": args.frames, "scenes": {}}
        for name, scene in scenes().items():
            clip = handheld_clip(scene.pop("world"), SIZE, args.frames, subject=True, **scene)
            measured = measure_scene(matter, clip)
            if args.pictures:
                save_pictures(args.pictures, name, clip, measured["_pictures"])
            del measured["_pictures"]
            measured["run"] = run_speed(model, clip, args.rounds, args.backend)
            results["scenes"][name] = measured
            print(name, json.dumps(measured), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
