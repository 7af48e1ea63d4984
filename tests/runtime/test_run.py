"""`mattex run` end to end on a synthetic clip: videos with the source's frame count, frame rate
and size, PNG frames equal to Matter on the same decoded frame, images and folders in, clear
errors that leave nothing behind, and Ctrl-C leaving a playable video of the frames done."""

import json
import os
import signal
import sys

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mattex.calibration.synthetic import write_synthetic_video
from mattex.cli.main import app
from mattex.errors import ConfigError, MediaError
from mattex.exporter.config import ExportConfig
from mattex.exporter.export import export_onnx
from mattex.runtime import Matter
from mattex.runtime.media import open_source
from mattex.runtime.pipeline import matte_media

runner = CliRunner()
# About a second of video; batches of 4 end on a partial one (26 = 6 x 4 + 2).
H, W, FRAMES, FPS = 240, 320, 26, 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    write_synthetic_video(folder / "clip.mp4", folder / "bg.png", FRAMES, H, W, FPS)
    # The shipped demo weights, so the mattes are meaningful; k = 1,000 of 4,800 patches.
    export_onnx(ExportConfig(height=H, width=W, sample_pixels=16 * 1000), folder / "m.onnx")
    return folder


def video_facts(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        return decoded, stream.average_rate, (stream.height, stream.width), len(container.streams.audio)


def test_a_video_in_gives_videos_out_with_the_sources_frames_rate_and_size(clip, tmp_path):
    result = runner.invoke(
        app,
        [
            "run",
            str(clip / "m.onnx"),
            str(clip / "clip.mp4"),
            str(clip / "bg.png"),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["frames"] == FRAMES and not summary["interrupted"]
    assert set(summary["ms_per_frame"]) == {"decode", "matte", "encode"}
    for kind in ("com", "pha", "fgr"):
        assert video_facts(tmp_path / "out" / f"{kind}.mp4") == (FRAMES, FPS, (H, W), 0)
    assert sorted(os.listdir(tmp_path / "out")) == ["com.mp4", "fgr.mp4", "pha.mp4"]  # no leftovers


def test_png_frames_equal_matter_on_the_same_decoded_frames(clip, tmp_path):
    result = matte_media(
        clip / "m.onnx", clip / "clip.mp4", clip / "bg.png", tmp_path / "out", outputs=["pha", "fgr"], png=True, batch=4
    )
    assert result.stats.frames == FRAMES
    matter = Matter.open(clip / "m.onnx")
    background = np.asarray(Image.open(clip / "bg.png").convert("RGB"))
    for index, frame in enumerate(open_source(clip / "clip.mp4").frames()):  # every frame
        want = matter.matte_frames(frame[None], background[None])
        pha = np.asarray(Image.open(tmp_path / "out" / "pha" / f"{index:06d}.png")).astype(np.float32) / 255
        fgr = np.asarray(Image.open(tmp_path / "out" / "fgr" / f"{index:06d}.png")).astype(np.float32) / 255
        assert np.abs(pha - want["pha"][0, 0]).max() <= 1 / 255
        assert np.abs(fgr - want["fgr"][0].transpose(1, 2, 0)).max() <= 1 / 255
    assert len(os.listdir(tmp_path / "out" / "pha")) == FRAMES


def test_a_folder_of_images_and_a_single_image_work(clip, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(open_source(clip / "clip.mp4").frames()):
        if index in (3, 12, 20):
            Image.fromarray(frame).save(frames / f"shot_{index}.png")
    folder = matte_media(clip / "m.onnx", frames, clip / "bg.png", tmp_path / "a", outputs=["com", "pha"])
    assert folder.stats.frames == 3
    assert sorted(os.listdir(tmp_path / "a" / "com")) == ["shot_12.png", "shot_20.png", "shot_3.png"]
    single = runner.invoke(
        app,
        [
            "run",
            str(clip / "m.onnx"),
            str(frames / "shot_3.png"),
            str(clip / "bg.png"),
            "--out",
            str(tmp_path / "b"),
            "--outputs",
            "fgr",
            "--rgba",
        ],
    )
    assert single.exit_code == 0, single.output
    rgba = np.asarray(Image.open(tmp_path / "b" / "fgr" / "shot_3.png"))
    assert rgba.shape == (H, W, 4)
    pha = matte_media(clip / "m.onnx", frames / "shot_3.png", clip / "bg.png", tmp_path / "c", outputs=["pha"])
    assert pha.stats.frames == 1
    np.testing.assert_array_equal(rgba[..., 3], np.asarray(Image.open(tmp_path / "c" / "pha" / "shot_3.png")))


def test_the_composite_is_fgr_over_the_chosen_background(clip, tmp_path):
    image = tmp_path / "beach.png"
    Image.fromarray(np.full((60, 80, 3), (10, 20, 200), np.uint8)).save(image)
    matte_media(
        clip / "m.onnx",
        clip / "bg.png",
        clip / "bg.png",
        tmp_path / "out",
        outputs=["com", "pha"],
        composite=str(image),
    )
    # The background matted against itself: nothing in front, the composite is the new background.
    pha = np.asarray(Image.open(tmp_path / "out" / "pha" / "bg.png"))
    com = np.asarray(Image.open(tmp_path / "out" / "com" / "bg.png")).astype(int)
    clear = pha < 3
    assert clear.mean() > 0.9
    assert np.abs(com[clear] - (10, 20, 200)).max() <= 3


@pytest.mark.parametrize(
    "case",
    [
        "unreadable video",
        "empty folder",
        "background of another size",
        "missing background",
        "err without debug outputs",
        "out is a file",
    ],
)
def test_bad_inputs_give_clear_errors_and_leave_no_output(clip, tmp_path, case):
    src, bgr, out, extra = clip / "clip.mp4", clip / "bg.png", tmp_path / "out", []
    if case == "unreadable video":
        src = tmp_path / "broken.mp4"
        src.write_bytes(b"\x00\x00\x00\x18ftypmp42 but not a video at all")
        problem = "not a readable video"
    elif case == "empty folder":
        src = tmp_path / "empty"
        src.mkdir()
        problem = "holds no images"
    elif case == "background of another size":
        bgr = tmp_path / "small.png"
        Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(bgr)
        problem = "the background is 100x100 but the frames are 320x240"
    elif case == "missing background":
        bgr = tmp_path / "nope.png"
        problem = "no such background"
    elif case == "err without debug outputs":
        extra = ["--outputs", "com,err"]
        problem = "export it with --debug-outputs"
    else:
        out = tmp_path / "file"
        out.write_text("not a folder")
        problem = "is a file"
    result = runner.invoke(app, ["run", str(clip / "m.onnx"), str(src), str(bgr), "--out", str(out), *extra])
    assert result.exit_code == 2, result.output
    assert problem in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not out.is_dir() or os.listdir(out) == []


def test_resize_bgr_fits_a_background_of_another_size(clip, tmp_path):
    bgr = tmp_path / "big.png"
    Image.open(clip / "bg.png").resize((W * 2, H * 2)).save(bgr)
    assert (
        matte_media(
            clip / "m.onnx", clip / "bg.png", bgr, tmp_path / "out", outputs=["pha"], resize_bgr=True
        ).stats.frames
        == 1
    )


def test_err_and_ref_come_from_a_file_with_debug_outputs(clip, tmp_path):
    export_onnx(ExportConfig(height=H, width=W, sample_pixels=16 * 1000, debug_outputs=True), tmp_path / "d.onnx")
    matte_media(tmp_path / "d.onnx", clip / "bg.png", clip / "bg.png", tmp_path / "out", outputs=["err", "ref"])
    ref = np.asarray(Image.open(tmp_path / "out" / "ref" / "bg.png"))
    assert ref.shape == (H, W) and set(np.unique(ref)) <= {0, 255}
    assert np.asarray(Image.open(tmp_path / "out" / "err" / "bg.png")).shape == (H, W)


def test_a_failure_midway_leaves_no_output(clip, tmp_path):
    class Failing:
        output_names = ["pha", "fgr"]

        def __init__(self):
            self.calls = 0

        def matte_frames(self, src, bgr):
            self.calls += 1
            if self.calls == 5:
                raise MediaError("the GPU caught fire")
            return {"pha": np.zeros((len(src), 1, H, W), np.float32), "fgr": np.zeros((len(src), 3, H, W), np.float32)}

    from mattex.runtime.frames import FrameImages
    from mattex.runtime.media import Background, VideoSink
    from mattex.runtime.pipeline import Pipeline

    source = open_source(clip / "clip.mp4")
    sinks = {"pha": VideoSink(tmp_path / "pha.mp4", source.info.fps, source.info.size)}
    pipeline = Pipeline(
        Failing(),
        source.frames(),
        Background(clip / "bg.png", (H, W), FRAMES, False).frames(),
        FrameImages(("pha",)),
        sinks,
        lambda i: str(i),
    )
    with pytest.raises(MediaError, match="caught fire"):
        pipeline.run()
    assert os.listdir(tmp_path) == []


# `mattex run` as its console script runs it, in a process of its own, with a hook on the
# pipeline's own progress report that sends the process a real signal (to the main thread, as a
# terminal's Ctrl-C or a container stop's SIGTERM arrives) once 10 frames are done: no clock, no
# file size, no race. A process started from a background job inherits SIGINT ignored, and Python
# then keeps it ignored: the snippets restore the handler a terminal's foreground process has.
INTERRUPTED_RUN = """
import signal, sys, threading
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's foreground process has it
from mattex.cli.main import main
from mattex.runtime.pipeline import Pipeline

frames, signum = int(sys.argv[1]), int(sys.argv[2])
real_init = Pipeline.__init__

def init(self, *args, progress=lambda n: None, **kwargs):
    done = [0]

    def report(n):
        progress(n)
        done[0] += n
        if done[0] == frames:
            signal.pthread_kill(threading.main_thread().ident, signum)

    real_init(self, *args, progress=report, **kwargs)

Pipeline.__init__ = init
sys.argv = ["mattex", *sys.argv[3:]]
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interruption_midway_leaves_a_playable_video_of_the_frames_done(clip, tmp_path, signum):
    import subprocess

    long_clip = tmp_path / "long.mp4"
    write_synthetic_video(long_clip, tmp_path / "bg.png", 60, H, W, FPS)
    out = tmp_path / "out"
    command = ["run", str(clip / "m.onnx"), str(long_clip), str(tmp_path / "bg.png"), "--out", str(out), "--json"]
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_RUN, "10", str(int(signum)), *command],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["interrupted"] and 10 <= summary["frames"] < 60
    assert sorted(os.listdir(out)) == ["com.mp4", "fgr.mp4", "pha.mp4"]  # no partial file left
    frames = {video_facts(out / f"{kind}.mp4")[0] for kind in ("com", "pha", "fgr")}
    assert frames == {summary["frames"]}  # every frame done kept, the rest dropped
    for kind in ("com", "pha", "fgr"):
        _, rate, size, _ = video_facts(out / f"{kind}.mp4")
        assert rate == FPS and size == (H, W)


def test_an_interrupted_export_leaves_nothing_behind(tmp_path):
    """Ctrl-C once the file is written under its temporary name, before the rename: no file, no
    temporary file, exit 130 (the export runs in a process of its own, as a user runs it)."""
    import subprocess

    code = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's foreground process has it
import mattex.exporter.export as export_module
from mattex.cli.main import main

real_save = export_module.onnx.save

def save_then_interrupt(model, path, *args, **kwargs):
    real_save(model, path, *args, **kwargs)  # the temporary file is complete...
    signal.raise_signal(signal.SIGINT)  # ...and the rename has not happened

export_module.onnx.save = save_then_interrupt
sys.argv = ["mattex", *sys.argv[1:]]
main()
"""
    args = [
        "export",
        "--height",
        "64",
        "--width",
        "64",
        "--sample-pixels",
        "1600",
        "--no-engine",
        "-o",
        str(tmp_path / "m.onnx"),
    ]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "interrupted" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_audio_is_copied_into_the_composite(clip, tmp_path):
    with_audio = tmp_path / "talk.mp4"
    with av.open(str(with_audio), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        frames = list(open_source(clip / "clip.mp4").frames())[:12]
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        samples = 48000 * len(frames) // FPS
        tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)[None]
        for start in range(0, samples, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            for packet in audio.encode(chunk):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode():
                container.mux(packet)
    matte_media(clip / "m.onnx", with_audio, clip / "bg.png", tmp_path / "out")
    assert video_facts(tmp_path / "out" / "com.mp4")[3] == 1
    assert video_facts(tmp_path / "out" / "pha.mp4")[3] == 0


def test_synth_video_refuses_nonsense_and_writes_the_clip(tmp_path):
    result = runner.invoke(
        app,
        [
            "data",
            "synth-video",
            "--out",
            str(tmp_path / "c.mp4"),
            "--background",
            str(tmp_path / "b.png"),
            "--frames",
            "0",
        ],
    )
    assert result.exit_code == 2 and "--frames" in result.output and "greater than or equal to 1" in result.output
    assert not (tmp_path / "c.mp4").exists()
    with pytest.raises(ConfigError):
        write_synthetic_video(tmp_path / "c.mp4", tmp_path / "b.png", 4, 8, 8)


def test_run_opens_the_automatic_backend_and_says_which(clip, tmp_path):
    """`mattex run` asks ONNX Runtime's idle threads to sleep, which is no reason to leave the
    automatic choice: an fp32 file runs on OpenVINO where it is installed (the faster on the CPU,
    docs/benchmarks.md), and the summary names the backend; --backend still picks."""
    pytest.importorskip("openvino")
    args = ["run", str(clip / "m.onnx"), str(clip / "clip.mp4"), str(clip / "bg.png"), "--outputs", "pha", "--json"]
    automatic = runner.invoke(app, [*args, "--out", str(tmp_path / "auto")])
    assert automatic.exit_code == 0, automatic.output
    assert json.loads(automatic.output)["backend"] == "openvino"
    chosen = runner.invoke(app, [*args, "--out", str(tmp_path / "ort"), "--backend", "onnxruntime"])
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.output)["backend"] == "onnxruntime"


@pytest.mark.parametrize("suffix", [".mov", ".mkv", ".webm"])
def test_run_reads_mov_mkv_and_webm_sources(clip, tmp_path, suffix):
    """The containers the docs name, read as the mp4 is (webm: VP9)."""
    source = write_synthetic_video(tmp_path / f"clip{suffix}", tmp_path / "bg.png", 3, H, W, FPS)
    args = ["run", str(clip / "m.onnx"), str(source), str(tmp_path / "bg.png"), "--outputs", "pha", "--json"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["frames"] == 3
    assert video_facts(tmp_path / "out" / "pha.mp4")[0] == 3


def test_run_pads_a_size_off_the_multiple_of_4_crops_back_and_takes_a_background_video(clip, tmp_path):
    """238x318 frames (the model needs multiples of 4) come back 238x318; the background is a
    video of as many frames; com on white is white where alpha is 0."""
    from fractions import Fraction

    from mattex.runtime.media import VideoSink

    h, w, frames = H - 2, W - 2, 3
    write_synthetic_video(tmp_path / "clip.mp4", tmp_path / "bg.png", frames, h, w, FPS)
    room = np.asarray(Image.open(tmp_path / "bg.png").convert("RGB"))
    background = VideoSink(tmp_path / "bg.mp4", Fraction(FPS), (h, w))
    for _ in range(frames):
        background.write(room)
    background.close(keep=True)
    out = tmp_path / "out"
    args = [str(clip / "m.onnx"), str(tmp_path / "clip.mp4"), str(tmp_path / "bg.mp4"), "--out", str(out)]
    result = runner.invoke(app, ["run", *args, "--outputs", "com,pha", "--composite", "white", "--png", "--json"])
    assert result.exit_code == 0, result.output
    [pha_file] = sorted((out / "pha").glob("*.png"))[:1]
    pha = np.asarray(Image.open(pha_file))
    com = np.asarray(Image.open(out / "com" / pha_file.name).convert("RGB"))
    assert pha.shape == (h, w) and com.shape == (h, w, 3)
    assert len(list((out / "com").glob("*.png"))) == frames
    assert (com[pha == 0] >= 250).all() and (pha == 0).any()
