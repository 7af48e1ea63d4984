"""The C++ clean-plate aligner (runtime/cpp/align: mattex::align::PlateAligner, the GStreamer
element's `align`) held to Python's (mattex.runtime.align.PlateAligner) on the same frames with the
same alphas: handheld clips with a known truth (mattex.calibration.handheld, as
tests/runtime/test_align.py), run by both, frame by frame, each frame with the previous frame's
true alpha (uint8, the same array to both), through mattex_align_probe of the UBSan build.

Why the bounds are not all zero: Python runs the opencv-python wheel's OpenCV (4.10 here) and the
C++ port Debian 12's (4.6). On the clips below the two gave the same answer to the last bit
(measured: every inlier count, fallback and gain equal, corners within 3e-24 px, plates equal
byte for byte), so those are held to numerical noise: corners within 1e-6 px, gains within 1e-9,
offsets within 1e-7 levels, plates within 1 level at any pixel and 0.001 on average. Where the
two OpenCVs' USAC MAGSAC differ, they are not equal: on skimage's brick wall (a repeating texture,
half the matches wrong) 4.6 and 4.10 fit different homographies to the same 102 matches (58 and
52 inliers), so one frame takes the homography in C++ and the similarity in Python: 0.0035 px
apart at the corners, gains 1.7e-4 and offsets 0.018 levels apart, the plates 4 levels at most
and 0.011 on average. That clip is held to bounds a few times those
(test_where_the_opencvs_differ_the_plates_stay_close). The wheel's OpenCV 4.12 gave the same
figures; 5.1 (which needs numpy 2, which the serve extra's PyTriton refuses, so CI resolves
4.10) parts further on these clips, up to 0.03 px and 9 levels: past these bounds, as it should
be, since the C++ port would then no longer give Python's plates."""

import json
import shlex
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from mattex.calibration.handheld import camera_view, handheld_clip
from mattex.facts import FACTS
from mattex.runtime.align import PlateAligner
from mattex.runtime.homography import corner_distance
from mattex.runtime.matter import Matter
from mattex.runtime.pipeline import matte_media

SIZE = (288, 512)  # test_align.py's: the truth bounds below are its


def world(image: np.ndarray, size=SIZE, margin=(72, 96)) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return cv2.resize(image, (size[1] + margin[1], size[0] + margin[0]), interpolation=cv2.INTER_AREA)


def previous_alphas(clip) -> list:
    """Each frame's alpha: the previous frame's truth as uint8 (a PNG's levels), none on the first."""
    return [None] + [np.clip(a * 255 + 0.5, 0, 255).astype(np.uint8) for a in clip.alphas[:-1]]


def both(cpp_build, folder, plate, frames, alphas):
    """Python's steps and plates, and the probe's, for the same frames and alphas."""
    folder.mkdir()
    Image.fromarray(plate).save(folder / "plate.png")
    args = []
    for i, (frame, alpha) in enumerate(zip(frames, alphas)):
        Image.fromarray(frame).save(folder / f"{i}.png")
        if alpha is not None:
            Image.fromarray(alpha).save(folder / f"{i}-alpha.png")
        args.append(f"{folder}/{i}.png" + ("" if alpha is None else f":{folder}/{i}-alpha.png"))
    cpp_build.run("mattex_align_probe", "--threads", 1, folder / "plate.png", folder, *args)
    steps = [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]
    aligner = PlateAligner(plate)
    python = [aligner.align(frame, alpha) for frame, alpha in zip(frames, alphas)]
    return [s for _, s in python], [p for p, _ in python], steps, np.load(folder / "plates.npy")


def differences(py_steps, py_plates, steps, plates, size) -> dict:
    corners = [corner_distance(np.array(c["homography"]), p.homography, size) for p, c in zip(py_steps, steps)]
    plate_diff = [np.abs(p.astype(int) - c.astype(int)) for p, c in zip(py_plates, plates)]
    return {
        "corners": max(corners),
        "gains": max(np.abs(np.subtract(p.gains, c["gains"])).max() for p, c in zip(py_steps, steps)),
        "offsets": max(np.abs(np.subtract(p.offsets, c["offsets"])).max() for p, c in zip(py_steps, steps)),
        "plate_max": max(int(d.max()) for d in plate_diff),
        "plate_mean": max(float(d.mean()) for d in plate_diff),
        "inliers": [(p.inliers, c["inliers"]) for p, c in zip(py_steps, steps)],
    }


def textured(name: str):
    clip = handheld_clip(world(getattr(skimage.data, name)()), SIZE, frames=6, drift_px=12, seed=5)
    return clip, clip.plate, clip.frames, previous_alphas(clip), clip.homographies


def wall():
    image = np.full((SIZE[0] + 72, SIZE[1] + 96, 3), (196, 188, 176), np.uint8)
    clip = handheld_clip(image, SIZE, frames=5, drift_px=12, exposure=(0.12, 0.04, -0.12), seed=6)
    return clip, clip.plate, clip.frames, previous_alphas(clip), [np.eye(3)] * 5  # no features: the plate stays


def sudden():
    image = world(skimage.data.coffee())
    moves = [np.eye(3)] * 3 + [np.array([[1, 0, 3.0], [0, 1, -2.0], [0, 0, 1]])] * 3
    frames = [camera_view(image, move, SIZE) for move in moves]
    return None, camera_view(image, np.eye(3), SIZE), frames, [np.zeros(SIZE, np.uint8)] * 6, moves


def large_motion():
    image = cv2.resize(skimage.data.coffee(), (SIZE[1] + 200, SIZE[0] + 180), interpolation=cv2.INTER_AREA)
    clip = handheld_clip(image, SIZE, frames=6, drift_px=40, subject=False, seed=8)
    return clip, clip.plate, clip.frames, previous_alphas(clip), clip.homographies


CLIPS = {
    "coffee": lambda: textured("coffee"),
    "astronaut": lambda: textured("astronaut"),
    "plain wall": wall,
    "sudden move": sudden,
    "large motion": large_motion,
}
TRUTH_PX = {"coffee": 0.5, "astronaut": 0.5, "plain wall": 0.0, "sudden move": 0.1, "large motion": 0.5}


@pytest.mark.parametrize("name", CLIPS)
def test_the_cpp_aligner_gives_pythons_steps_and_plates(cpp_build, tmp_path, name):
    clip, plate, frames, alphas, truth = CLIPS[name]()
    py_steps, py_plates, steps, plates = both(cpp_build, tmp_path / "clip", plate, frames, alphas)
    assert len(steps) == len(frames) == len(plates)
    found = differences(py_steps, py_plates, steps, plates, SIZE)
    assert [c["fallback"] for c in steps] == [p.fallback for p in py_steps], found
    assert [c["large_motion"] for c in steps] == [p.large_motion for p in py_steps], found
    assert all(p == c for p, c in found["inliers"]), found
    assert found["corners"] < 1e-6 and found["gains"] < 1e-9 and found["offsets"] < 1e-7, found
    assert found["plate_max"] <= 1 and found["plate_mean"] < 1e-3, found
    assert max(abs(p.shift_px - c["shift_px"]) for p, c in zip(py_steps, steps)) < 1e-6
    # and both within the truth, as tests/runtime/test_align.py holds Python's
    for step, true in zip(steps, truth):
        error = corner_distance(np.array(step["homography"]), true, SIZE)
        assert error <= TRUTH_PX[name] + 1e-9, (name, error)
    if name == "plain wall":
        assert all(s["fallback"] for s in steps)  # no features: never fails, the plate stays
    elif name == "large motion":
        limit = 0.05 * np.hypot(*SIZE)
        assert [s["large_motion"] for s in steps] == [corner_distance(h, np.eye(3), SIZE) > limit for h in truth]
        assert any(s["large_motion"] for s in steps)
    else:
        assert not any(s["fallback"] for s in steps)
    if clip is not None and name != "plain wall":  # the exposure recovered, as test_align holds it
        assert np.abs(np.array([s["gains"] for s in steps]) - np.array(clip.gains)).max() < 0.01


def test_where_the_opencvs_differ_the_plates_stay_close(cpp_build, tmp_path):
    """skimage's brick wall: a repeating texture, where OpenCV 4.6's and 4.10's MAGSAC part (the
    module's docstring); the two aligners stay within a hundredth of a pixel and a level."""
    size = (144, 256)
    clip = handheld_clip(
        world(skimage.data.brick(), size), size, frames=6, drift_px=8, exposure=(0.1, 0.0, -0.1), seed=1
    )
    py_steps, py_plates, steps, plates = both(
        cpp_build, tmp_path / "brick", clip.plate, clip.frames, previous_alphas(clip)
    )
    found = differences(py_steps, py_plates, steps, plates, size)
    assert [c["fallback"] for c in steps] == [p.fallback for p in py_steps], found
    assert found["corners"] < 0.02 and found["gains"] < 1e-3 and found["offsets"] < 0.1, found
    assert found["plate_max"] <= 8 and found["plate_mean"] < 0.05, found
    for step, truth in zip(steps, clip.homographies):
        assert corner_distance(np.array(step["homography"]), truth, size) < 0.5


def test_the_cpp_aligner_refuses_as_python_does_and_reads_the_shared_tuning(cpp_build, tmp_path):
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "plate.png")
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "frame.png")
    out = cpp_build.run("mattex_align_probe", tmp_path / "plate.png", tmp_path, tmp_path / "frame.png", check=False)
    assert out.returncode == 2 and out.stderr.strip() == "ConfigError: the frame is 40x32, the plate 48x32"
    with pytest.raises(Exception, match="the frame is 40x32, the plate 48x32"):
        PlateAligner(np.zeros((32, 48, 3), np.uint8)).align(np.zeros((32, 40, 3), np.uint8))
    # the constants come from mattex/shared_facts.json, generated into the C++ header, none written twice
    header = (cpp_build.root / "generated" / "src" / "mattex_align_facts.hpp").read_text()
    for key, value in FACTS["align"].items():
        if key == "grid":
            assert f"kGridRows = {value[0]};" in header and f"kGridColumns = {value[1]};" in header
        elif key != "about":
            assert f"= {value!r};  // {key.upper()}" in header, key


# --- the element's align=true (runtime/cpp/gstreamer), against mattex run --align -----------------


def gst(cpp_build, tmp_path, *command: str) -> subprocess.CompletedProcess:
    """gst-launch-1.0 or mattex_gst_probe on the UBSan build's element (as test_gstreamer.py's Gst)."""
    if shutil.which("gst-launch-1.0") is None or not (cpp_build.root / "gstreamer" / "libgstmattex.so").is_file():
        pytest.fail("the element's tests need GStreamer: see tests/runtime/cpp/test_gstreamer.py", pytrace=False)
    env = cpp_build.env(
        GST_PLUGIN_PATH=str(cpp_build.root / "gstreamer"),
        GST_REGISTRY=str(tmp_path / "registry.bin"),
        MATTEX_CACHE=str(tmp_path / "cache"),
    )
    out = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env, timeout=120)
    for report in ("runtime error:", "CRITICAL"):
        assert report not in out.stdout + out.stderr, (out.stdout + out.stderr)[-3000:]
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out


def read_alphas(folder) -> np.ndarray:
    return np.array([np.asarray(Image.open(p)).astype(np.float64) for p in sorted(folder.glob("*.png"))])


def test_the_element_aligns_the_plate_as_mattex_run_does(cpp_build, cpp_models, tmp_path):
    """A handheld clip (the camera drifting 8 px, the exposure 12% per channel) as a PNG sequence
    through the element with align=true: its alphas are the element's steps done one by one in
    Python (PlateAligner with the previous frame's alpha, then Matter on OpenVINO) within a level,
    and as good as `mattex run --align`'s against the true alpha (whose alphas may differ where
    its decode thread ran ahead of the matte, which aligns a frame without the previous alpha);
    align=false is clearly worse. Measured: the element equal to the steps in Python at every
    pixel; mean |alpha - true| 14.01 levels (mattex run --align 14.01, 0.09 levels from the
    element's on average), 28.19 with the static plate."""
    size, model, frames = (144, 256), cpp_models["fp32"], 8
    image = world(skimage.data.astronaut(), size, margin=(64, 64))
    clip = handheld_clip(image, size, frames=frames, drift_px=8, exposure=(0.12, 0.0, -0.12), seed=3)
    (tmp_path / "src").mkdir()
    for i, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(tmp_path / "src" / f"{i:06d}.png")
    Image.fromarray(clip.plate).save(tmp_path / "plate.png")
    for align in ("true", "false"):
        (tmp_path / align).mkdir()
        gst(
            cpp_build,
            tmp_path,
            "gst-launch-1.0",
            "-q",
            *shlex.split(
                f"multifilesrc location={tmp_path}/src/%06d.png index=0 stop-index={frames - 1} "
                f"caps=image/png,framerate=1/1 ! pngdec ! mattex model={model} background={tmp_path}/plate.png "
                f"align={align} output=alpha ! pngenc ! multifilesink location={tmp_path}/{align}/%06d.png"
            ),
        )
    aligned, static = read_alphas(tmp_path / "true"), read_alphas(tmp_path / "false")
    # the element's steps in Python: the plate aligned with the previous frame's alpha, then matted
    matter = Matter.open(model, backend="openvino", cache_dir=tmp_path / "py-cache")
    aligner, alpha, steps = PlateAligner(clip.plate, threads=1, in_order=True), None, []
    for frame in clip.frames:
        plate, _ = aligner.align(frame, alpha)
        alpha = np.asarray(matter.matte_frames(frame[None], plate[None])["pha"])[0, 0]
        steps.append(np.floor(np.clip(alpha * np.float32(255), 0, 255) + np.float32(0.5)))
    assert aligned.shape == (frames, *size) and np.abs(aligned - np.array(steps)).max() <= 1
    matte_media(
        model,
        tmp_path / "src",
        tmp_path / "plate.png",
        tmp_path / "run",
        png=True,
        backend="openvino",
        cache_dir=tmp_path / "py-cache",
        outputs=["pha"],
        align=True,
    )
    truth = np.array(clip.alphas) * 255
    error = {
        name: float(np.abs(a - truth).mean())
        for name, a in (("element", aligned), ("static", static), ("mattex run", read_alphas(tmp_path / "run" / "pha")))
    }
    assert error["element"] <= error["mattex run"] + 0.5, error
    assert error["static"] > 1.5 * error["element"], error


def test_align_survives_capture_restart_and_flush(cpp_build, cpp_models, tmp_path):
    """align=true without a background: frames pass until capture-background gives the plate (the
    aligner is made then, and made again at each capture), a restart and a flushing seek start it
    again; every frame comes through, under UBSan."""
    element = f"mattex name=m model={cpp_models['fp32']} align=true"
    source = "videotestsrc num-buffers=6 pattern=ball ! video/x-raw,format=NV12,width=64,height=64"
    probe = cpp_build.tool("mattex_gst_probe")
    restarted = gst(cpp_build, tmp_path, probe, f"{source} ! {element} ! fakesink", "--capture-at", "1", "--restart")
    assert "frames 12" in restarted.stdout
    flushed = gst(
        cpp_build, tmp_path, probe, f"{source} ! {element} ! fakesink", "--capture-at", "0", "--flush-at", "2"
    )
    assert "flushed" in flushed.stdout and int(flushed.stdout.split("frames ")[1].split()[0]) >= 4


def test_align_in_an_element_built_without_opencv_is_an_error_naming_what_to_install(cpp_build, cpp_models, tmp_path):
    """The element as a build without OpenCV makes it (gstmattex_without_align, the same source
    without MATTEX_WITH_ALIGN): align=true is a pipeline error naming the package and the option,
    before any frame; align=false runs."""
    plugins = cpp_build.root / "tests" / "gstreamer-without-align"
    env = cpp_build.env(GST_PLUGIN_PATH=str(plugins), GST_REGISTRY=str(tmp_path / "registry.bin"))
    pipeline = "videotestsrc num-buffers=2 ! video/x-raw,width=64,height=64 ! mattex model={} align={} ! fakesink"
    runs = {
        align: subprocess.run(
            ["gst-launch-1.0", "-q", *shlex.split(pipeline.format(cpp_models["fp32"], align))],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        for align in ("true", "false")
    }
    refused = runs["true"].stdout + runs["true"].stderr
    assert runs["true"].returncode != 0
    assert "ExtraNotInstalledError: align=true needs the clean-plate aligner" in refused, refused
    assert "apt-get install libopencv-dev" in refused and "-DMATTEX_WITH_ALIGN=ON" in refused, refused
    assert runs["false"].returncode == 0, runs["false"].stderr[-2000:]
    assert "runtime error:" not in refused + runs["false"].stderr
