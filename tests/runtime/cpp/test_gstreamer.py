"""The `mattex` GStreamer element (runtime/cpp/gstreamer) driven by GStreamer's own tools,
gst-launch-1.0 and gst-inspect-1.0, and by mattex_gst_probe for what they cannot do (an action
signal, the latency query, restarts). The element is the UBSan build's (tests/runtime/cpp/conftest.py):
every run is checked for sanitizer reports. Frames are 64x64 (the files' trace size) and few."""

import re
import shlex
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image

from helpers import engine_with_sidecar
from mattex.runtime.pipeline import matte_media

GST_PACKAGES = (
    "libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good"
)
SIZE = 64
FRAMES = 3
PROPERTIES = ("model", "background", "output", "composite", "backend", "threads", "align")


class Gst:
    """gst-launch-1.0, gst-inspect-1.0 and mattex_gst_probe, finding the build's element only."""

    def __init__(self, build, root, cache):
        self.build = build
        self.env = build.env(
            GST_PLUGIN_PATH=str(build.root / "gstreamer"),
            GST_REGISTRY=str(root / "registry.bin"),  # not the user's: the build's element, fresh
            MATTEX_CACHE=str(cache),
        )

    def _run(self, command: list, check: bool, timeout: float = 120) -> subprocess.CompletedProcess:
        out = subprocess.run(command, capture_output=True, text=True, errors="replace", env=self.env, timeout=timeout)
        for report in ("runtime error:", "AddressSanitizer", "CRITICAL"):
            assert report not in out.stderr + out.stdout, (out.stdout + out.stderr)[-3000:]
        assert out.returncode >= 0, f"killed by signal {-out.returncode}: {out.stderr[-3000:]}"  # no crash
        if check:
            assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        return out

    def launch(self, pipeline: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run(["gst-launch-1.0", "-q", *shlex.split(pipeline)], check)

    def inspect(self, *args: str) -> subprocess.CompletedProcess:
        return self._run(["gst-inspect-1.0", *args], check=True)

    def probe(self, pipeline: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._run([self.build.tool("mattex_gst_probe"), pipeline, *args], check)


@pytest.fixture(scope="module")
def gst(cpp_build, tmp_path_factory) -> Gst:
    missing = [tool for tool in ("gst-launch-1.0", "gst-inspect-1.0") if shutil.which(tool) is None]
    if missing or not (cpp_build.root / "gstreamer" / "libgstmattex.so").is_file():
        pytest.fail(
            f"the GStreamer element's tests need GStreamer ({', '.join(missing) or 'its development packages'} "
            f"missing): apt-get install {GST_PACKAGES} (.ci/run does), then rebuild",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp("gstreamer")
    return Gst(cpp_build, root, root / "cache")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A textured plate, frames with a subject moving over it, a new background."""
    root = tmp_path_factory.mktemp("gst-media")
    rng = np.random.default_rng(44)
    plate = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(plate).save(root / "bg.png")
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "new-bg.png")
    (root / "src").mkdir()
    for i in range(FRAMES):
        frame = plate.copy()
        frame[10 + 4 * i : 42 + 4 * i, 18:46] = (200, 60, 50)
        Image.fromarray(frame).save(root / "src" / f"{i:06d}.png")
    return root


def pngs(folder, first: int = 0, last: int = FRAMES - 1) -> str:
    """A PNG sequence as a pipeline's source, decoded to RGB."""
    return (
        f"multifilesrc location={folder}/%06d.png index={first} stop-index={last} caps=image/png,framerate=1/1 ! pngdec"
    )


def to_pngs(folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"pngenc ! multifilesink location={folder}/%06d.png"


def read(folder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)).astype(np.int16) for p in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def mattex_run(tmp_path_factory):
    """`mattex run --png`'s own code (runtime/pipeline.py), on OpenVINO as the element, with one
    model cache for the module's runs (the element's is gst.env's)."""
    cache = tmp_path_factory.mktemp("python-cache")

    def run(model, src, background, out, **options) -> None:
        matte_media(model, src, background, out, png=True, backend="openvino", cache_dir=cache, **options)

    return run


def assert_same_images(got: list, want: list, tolerance: int = 1) -> None:
    assert len(got) == len(want) > 0
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape, (i, g.shape, w.shape)
        assert int(np.abs(g - w).max()) <= tolerance, (i, int(np.abs(g - w).max()))


def test_the_element_and_its_properties_are_listed_installed_too(gst, cpp_build, tmp_path):
    out = gst.inspect("mattex").stdout
    for name in PROPERTIES:
        assert re.search(rf"^  {name} +:", out, re.M), name
    assert "capture-background" in out and "Element Actions" in out
    for caps in ("RGB", "RGBA", "BGR", "BGRx", "I420", "NV12", "GRAY8"):
        assert f"(string){caps}" in out
    for output in ("rgba", "alpha", "composite"):
        assert re.search(rf"\(\d\): {output} +- ", out), output
    # `cmake --install` puts it where GStreamer looks under a prefix: lib/gstreamer-1.0
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", cpp_build.root, "--prefix", prefix], check=True, capture_output=True)
    installed = prefix / "lib" / "gstreamer-1.0" / "libgstmattex.so"
    assert installed.is_file()
    env = {**gst.env, "GST_PLUGIN_PATH": str(installed.parent), "GST_REGISTRY": str(tmp_path / "registry.bin")}
    listed = subprocess.run(["gst-inspect-1.0", "mattex"], capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and f"Filename                 {installed}" in listed.stdout, listed.stderr


def test_a_png_sequence_gives_mattex_runs_mattes(gst, mattex_run, cpp_models, media, tmp_path):
    """rgba (fgr with its alpha), alpha and composite (over green and over an image) from one
    pipeline, against `mattex run --png` on the same files: fgr --rgba, pha and com."""
    file, out = cpp_models["fp32"], tmp_path / "gst"
    element = f"mattex model={file} background={media / 'bg.png'}"
    gst.launch(
        f"{pngs(media / 'src')} ! tee name=t "
        f"t. ! queue ! {element} output=rgba ! {to_pngs(out / 'rgba')} "
        f"t. ! queue ! {element} output=alpha ! {to_pngs(out / 'alpha')} "
        f"t. ! queue ! {element} output=composite ! {to_pngs(out / 'green')} "
        f"t. ! queue ! {element} output=composite composite={media / 'new-bg.png'} ! {to_pngs(out / 'image')}"
    )
    python = tmp_path / "python"
    mattex_run(file, media / "src", media / "bg.png", python / "a", outputs=["fgr", "pha", "com"], rgba_fgr=True)
    mattex_run(
        file, media / "src", media / "bg.png", python / "b", outputs=["com"], composite=str(media / "new-bg.png")
    )
    assert all(pha.std() > 20 for pha in read(python / "a" / "pha"))  # mattes, not a constant
    assert_same_images(read(out / "rgba"), read(python / "a" / "fgr"))
    assert_same_images(read(out / "alpha"), read(python / "a" / "pha"))
    assert_same_images(read(out / "green"), read(python / "a" / "com"))
    assert_same_images(read(out / "image"), read(python / "b" / "com"))


def test_every_input_format_is_converted_to_the_rgb_it_carries(gst, mattex_run, cpp_models, media, tmp_path):
    """BGR, BGRx, RGBA, I420 and NV12 in: the alpha equals mattex run's on the RGB frames the
    format carries (for I420 and NV12, what videoconvert gives back: chroma is subsampled)."""
    file, branches = cpp_models["fp32"], []
    formats = ("BGR", "BGRx", "RGBA", "I420", "NV12")
    for name in formats:
        branches.append(
            f"t. ! queue ! videoconvert ! video/x-raw,format={name} ! tee name={name} "
            f"{name}. ! queue ! mattex model={file} background={media / 'bg.png'} output=alpha ! "
            f"{to_pngs(tmp_path / name / 'alpha')} "
            f"{name}. ! queue ! videoconvert ! video/x-raw,format=RGB ! {to_pngs(tmp_path / name / 'rgb')}"
        )
    gst.launch(f"{pngs(media / 'src')} ! tee name=t " + " ".join(branches))
    original = read(media / "src")
    for name in formats:
        carried = read(tmp_path / name / "rgb")
        if name in ("BGR", "BGRx", "RGBA"):
            assert_same_images(carried, original, tolerance=0)  # lossless: the same frames
        mattex_run(file, tmp_path / name / "rgb", media / "bg.png", tmp_path / "py" / name, outputs=["pha"])
        assert_same_images(read(tmp_path / name / "alpha"), read(tmp_path / "py" / name / "pha"))


def test_rgba_through_compositor_over_a_new_background(gst, cpp_models, media, tmp_path):
    """GStreamer's compositor lays the element's RGBA over another stream: fgr x alpha + bg x
    (1 - alpha), within uint8 rounding."""
    backgrounds = tmp_path / "backgrounds"
    backgrounds.mkdir()
    for i in range(FRAMES):
        shutil.copy(media / "new-bg.png", backgrounds / f"{i:06d}.png")
    gst.launch(
        f"compositor name=c ! video/x-raw,format=RGBA ! {to_pngs(tmp_path / 'composited')} "
        f"{pngs(backgrounds)} ! videoconvert ! c.sink_0 "
        f"{pngs(media / 'src')} ! tee name=t "
        f"t. ! queue ! mattex model={cpp_models['fp32']} background={media / 'bg.png'} ! c.sink_1 "
    )
    gst.launch(
        f"{pngs(media / 'src')} ! mattex model={cpp_models['fp32']} background={media / 'bg.png'} ! "
        f"{to_pngs(tmp_path / 'rgba')}"
    )
    background = np.asarray(Image.open(media / "new-bg.png")).astype(np.float64)
    composited, rgba = read(tmp_path / "composited"), read(tmp_path / "rgba")
    assert len(composited) == len(rgba) == FRAMES
    for got, fg in zip(composited, rgba):
        alpha = fg[..., 3:] / 255.0
        assert 0.1 < alpha.mean() < 0.9  # both layers show
        expected = fg[..., :3] * alpha + background * (1 - alpha)
        assert np.abs(got[..., :3] - expected).max() <= 0.5 + 1e-6  # uint8 rounding
        assert (got[..., 3] == 255).all()


def test_capture_background_makes_the_next_frame_the_plate(gst, mattex_run, cpp_models, media, tmp_path):
    """Without a background the frames pass as all foreground; capture-background, emitted as the
    room alone reaches the element, makes it the plate: that frame and the next are matted as
    `mattex run` mattes them against the room."""
    sequence = tmp_path / "seq"
    sequence.mkdir()
    frames = [media / "src" / "000000.png", media / "bg.png", *sorted((media / "src").glob("*.png"))[1:]]
    for i, frame in enumerate(frames):
        shutil.copy(frame, sequence / f"{i:06d}.png")
    out = gst.probe(
        f"{pngs(sequence, last=len(frames) - 1)} ! mattex name=m model={cpp_models['fp32']} output=alpha ! "
        f"{to_pngs(tmp_path / 'alpha')}",
        "--capture-at",
        "1",
    )
    assert f"frames {len(frames)}" in out.stdout
    alphas = read(tmp_path / "alpha")
    assert (alphas[0] == 255).all()  # before the capture: no plate, all foreground
    mattex_run(cpp_models["fp32"], sequence, media / "bg.png", tmp_path / "python", outputs=["pha"])
    python = read(tmp_path / "python" / "pha")
    assert_same_images(alphas[1:], python[1:])
    assert alphas[1].mean() < alphas[2].mean()  # the plate itself is mostly background


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


LIVE_SECONDS = 10  # as the issue asks: 300 frames of a live 30 fps source


def test_a_live_source_keeps_memory_flat_and_latency_bounded(gst, cpp_models, tmp_path):
    """videotestsrc is-live=true at 30 fps through a leaky queue into a clock-synced sink: the
    latency query answers upstream's plus the inference time; GStreamer's latency tracer sees every
    frame through in bounded time; memory stays flat (sampled) and no GstBuffer or caps leaks
    (the leaks tracer)."""
    frames = 30 * LIVE_SECONDS
    pipeline = (
        f"videotestsrc is-live=true num-buffers={frames} pattern=ball ! "
        "video/x-raw,format=I420,width=128,height=128,framerate=30/1 ! queue leaky=downstream max-size-buffers=2 ! "
        f"mattex name=m model={cpp_models['fp32']} ! fakesink sync=true qos=true"
    )
    env = {**gst.env, "GST_TRACERS": "latency;leaks", "GST_DEBUG": "GST_TRACER:7,leaks:3"}
    process = subprocess.Popen(
        [gst.build.tool("mattex_gst_probe"), pipeline, "--capture-at", "0", "--latency"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    samples: list[tuple[float, int]] = []

    def sample():
        started = time.monotonic()
        while process.poll() is None:
            try:
                samples.append((time.monotonic() - started, _rss_kb(process.pid)))
            except (OSError, StopIteration):
                break
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, stderr = process.communicate(timeout=60)
    sampler.join()
    assert process.returncode == 0, (stdout + stderr)[-3000:]
    assert "runtime error:" not in stderr
    live, own, upstream = re.search(r"latency live (\d) min (\d+) upstream-min (\d+)", stdout).groups()
    assert live == "1" and int(upstream) >= 33_000_000 and 0 < int(own) - int(upstream) < 1_000_000_000
    passed = int(re.search(r"frames (\d+)", stdout).group(1))
    # Frames through: how many depends on the machine's speed (the leaky queue and QoS drop the
    # rest, which is the point), so only that frames flowed is asserted, never a share of them.
    assert passed >= LIVE_SECONDS * 2, stdout[-2000:]
    latencies = [int(t) for t in re.findall(r"latency, src-element-id=.*?time=\(guint64\)(\d+)", stderr)]
    assert len(latencies) >= LIVE_SECONDS * 2
    assert max(latencies[len(latencies) // 4 :]) < 500_000_000, max(latencies)  # no latency piling up
    assert not re.search(r"object-alive, type-name=\(string\)\w", stderr), stderr[-2000:]  # nothing left alive
    # The model opens and compiles while the pipeline starts, which takes longer on a loaded machine:
    # memory is held flat over the run's second half (leaked buffers the leaks tracer names above).
    settled = [rss for t, rss in samples if t > max(1.5, samples[-1][0] / 2)]
    assert len(settled) > 10
    assert settled[-1] - settled[0] < 3_000, samples  # kB: a leak of one 128x128 frame each would be 5 MB


def test_late_frames_are_dropped_not_matted(gst, cpp_models):
    """QoS: downstream takes 60 ms a frame of a live 30 fps source, so frames reach the sink late;
    the element drops the late ones before matting them (its QoS messages count them)."""
    frames = 45
    out = gst.probe(
        f"videotestsrc is-live=true num-buffers={frames} ! video/x-raw,width=64,height=64,framerate=30/1 ! "
        f"mattex name=m model={cpp_models['fp32']} ! identity sleep-time=60000 ! fakesink sync=true qos=true",
        "--capture-at",
        "0",
    )
    dropped = int(re.search(r"qos-dropped (\d+)", out.stdout).group(1))
    passed = int(re.search(r"frames (\d+)", out.stdout).group(1))
    assert dropped > 0 and passed + dropped == frames, out.stdout


def test_restart_and_flush_are_clean(gst, cpp_models):
    """EOS, then READY (the model closed) and PLAYING (opened again): every frame again; a flushing
    seek mid-stream (frame 2 held at the element until the seek releases it, so the stream cannot
    end first): the held frame is flushed, and the element mattes every frame after the seek."""
    source = "videotestsrc num-buffers=6 ! video/x-raw,format=NV12,width=64,height=64"
    restarted = gst.probe(
        f"{source} ! mattex name=m model={cpp_models['fp32']} ! fakesink", "--capture-at", "0", "--restart"
    )
    assert "frames 12" in restarted.stdout
    flushed = gst.probe(
        f"{source} ! mattex name=m model={cpp_models['fp32']} ! fakesink", "--capture-at", "0", "--flush-at", "2"
    )
    assert "flushed" in flushed.stdout, flushed.stdout
    frames = int(re.search(r"^frames (\d+)", flushed.stdout, re.M).group(1))
    after = int(re.search(r"^frames-after-flush (\d+)", flushed.stdout, re.M).group(1))
    assert after >= 1 and frames == 2 + after, flushed.stdout  # frames 0 and 1, then all after the seek


BAD_INPUTS = {
    "missing model": ("model={tmp}/absent.onnx", "", "ModelFileError: no such model file: {tmp}/absent.onnx"),
    "not a model": ("model={tmp}/garbage.onnx", "", "ModelFileError: {tmp}/garbage.onnx is not a"),
    "an engine where this build has no TensorRT": (
        "model={engine}",
        "",
        "BackendUnavailableError: this mattex C++ runtime was built without the tensorrt backend: "
        "configure runtime/cpp with -DMATTEX_WITH_TENSORRT=ON",
    ),
    "missing background": ("background={tmp}/absent.png", "", "MediaError: background {tmp}/absent.png: no such file"),
    "background not an image": ("background={model}", "", "MediaError: background {model}: not an image"),
    "background of another size": (
        "background={media}/bg.png",
        "videoscale ! video/x-raw,width=60,height=60 !",
        "ConfigError: background {media}/bg.png is 64x64, the frames are 60x60",
    ),
    "composite image missing": (
        "output=composite composite={tmp}/absent.png",
        "",
        "MediaError: composite image {tmp}/absent.png (not green or white): no such file",
    ),
    "composite image of another size": (
        "output=composite composite={media}/new-bg.png",
        "videoscale ! video/x-raw,width=60,height=60 !",
        "ConfigError: the composite image is 64x64, the frames are 60x60",
    ),
    "size the file cannot take": (
        "",
        "videoscale ! video/x-raw,width=62,height=62 !",
        "InputShapeError: src and bgr height and width must be divisible by 4, got 62x62 (caps 62x62 RGB refused",
    ),
    "unsupported caps": (
        "",
        "videoconvert ! video/x-raw,format=GRAY8 !",
        "m can't handle caps video/x-raw, format=(string)GRAY8",
    ),
    "threads over the maximum": ("threads=100000", "", "ConfigError: threads=100000: give a whole number of threads"),
}


# Refused at negotiation, in the streaming thread, so possibly before gst-launch-1.0 runs its main
# loop: gst-launch 1.22 quits that loop from its bus sync handler, and a quit before the loop runs
# is lost, leaving it waiting for good (GStreamer's own `multifilesrc ! pngdec ! video/x-raw,
# format=GRAY8 ! fakesink` hangs alike when its main loop starts late). These run under
# mattex_gst_probe, which takes errors from its bus watch, as applications do.
STREAMING_THREAD_CASES = {"background of another size", "composite image of another size", "size the file cannot take"}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_a_pipeline_error_naming_it(gst, cpp_models, media, tmp_path, case):
    option, before, message = BAD_INPUTS[case]
    names = {"tmp": tmp_path, "media": media, "model": cpp_models["fp32"], "engine": "{engine}"}
    if "{engine}" in option:  # a plan and the sidecar `mattex build` writes (no TensorRT reads it here)
        names["engine"] = engine_with_sidecar(tmp_path)
    option, message = option.format(**names), message.format(**names)
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    if not option.startswith("model="):
        option = f"model={cpp_models['fp32']} {option}"
    pipeline = f"{pngs(media / 'src')} ! {before} mattex name=m {option} ! fakesink"
    if case in STREAMING_THREAD_CASES:
        out = gst.probe(pipeline, check=False)
    else:
        out = gst.launch(pipeline, check=False)
    assert out.returncode != 0
    assert message in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]


LATE_LOOP = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
typedef struct _GMainLoop GMainLoop;
void g_main_loop_run(GMainLoop* loop) {  /* the application reaches its main loop 1 s late */
  void (*run)(GMainLoop*) = (void (*)(GMainLoop*))dlsym(RTLD_NEXT, "g_main_loop_run");
  sleep(1);
  run(loop);
}
"""


def test_an_error_at_negotiation_reaches_an_application_whose_loop_starts_late(gst, cpp_models, media, tmp_path):
    """The worst timing for a refusal at negotiation: posted from the streaming thread before the
    application's main loop runs (g_main_loop_run delayed by LD_PRELOAD). Taken from a bus watch,
    it still ends the run with the typed message."""
    source = tmp_path / "late_loop.c"
    source.write_text(LATE_LOOP)
    shim = tmp_path / "late_loop.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", shim, source, "-ldl"], check=True, capture_output=True)
    pipeline = (
        f"{pngs(media / 'src')} ! videoscale ! video/x-raw,width=60,height=60 ! "
        f"mattex name=m model={cpp_models['fp32']} background={media / 'bg.png'} ! fakesink"
    )
    out = subprocess.run(  # a lost error would wait for good: the timeout fails the test
        [gst.build.tool("mattex_gst_probe"), pipeline],
        capture_output=True,
        text=True,
        timeout=60,
        env={**gst.env, "LD_PRELOAD": str(shim)},
    )
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]
    assert f"error: ConfigError: background {media / 'bg.png'} is 64x64, the frames are 60x60" in out.stdout
