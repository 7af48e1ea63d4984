"""The C++ examples against `mattex run` (the Python pipeline, same file, same inputs):
matte_frame writes the same PNGs byte for byte; matte_video's composite is the same video within
the encoder's rounding."""

import numpy as np
import pytest
from PIL import Image

from mattex.calibration.synthetic import write_synthetic_video
from mattex.runtime.pipeline import matte_media

HEIGHT, WIDTH, FRAMES = 62, 90, 10  # neither side a multiple of 4: both pad and crop


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    write_synthetic_video(root / "clip.mp4", root / "bg.png", frames=FRAMES, height=HEIGHT, width=WIDTH)
    return root / "clip.mp4", root / "bg.png"


def decoded(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24").astype(np.int16) for frame in container.decode(video=0)]


def test_matte_frame_writes_what_mattex_run_writes(cpp_build, cpp_models, clip, tmp_path):
    video, background = clip
    frame = tmp_path / "frame.png"
    Image.fromarray(decoded(video)[3].astype(np.uint8)).save(frame)
    env = {"MATTEX_CACHE": str(tmp_path / "cache")}
    out = cpp_build.run("matte_frame", cpp_models["fp32"], frame, background, tmp_path / "cpp", env=env)
    assert f"matted {WIDTH}x{HEIGHT} with openvino (fp32)" in out.stdout
    python_options = {"backend": "openvino", "cache_dir": tmp_path / "cache"}
    matte_media(cpp_models["fp32"], frame, background, tmp_path / "python", **python_options)
    for kind in ("pha", "fgr", "com"):
        cpp = np.asarray(Image.open(tmp_path / "cpp" / f"{kind}.png"))
        python = np.asarray(Image.open(tmp_path / "python" / kind / "frame.png"))
        np.testing.assert_array_equal(cpp, python, err_msg=kind)
    assert sorted(p.name for p in (tmp_path / "cpp").iterdir()) == ["com.png", "fgr.png", "pha.png"]  # no temporaries


def test_matte_video_writes_mattex_runs_composite(cpp_build, cpp_models, clip, tmp_path):
    video, background = clip
    env = {"MATTEX_CACHE": str(tmp_path / "cache")}
    out = cpp_build.run("matte_video", cpp_models["frames"], video, background, tmp_path / "com.mp4", 4, env=env)
    assert f"matted {FRAMES} frames with openvino" in out.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "com.mp4"]  # the temporary was renamed
    matte_media(
        cpp_models["frames"], video, background, tmp_path / "python", outputs=["com"], batch=4,
        backend="openvino", cache_dir=tmp_path / "cache",
    )  # fmt: skip
    cpp, python = decoded(tmp_path / "com.mp4"), decoded(tmp_path / "python" / "com.mp4")
    assert len(cpp) == len(python) == FRAMES and cpp[0].shape == (HEIGHT, WIDTH, 3)
    difference = np.abs(np.stack(cpp) - np.stack(python))
    # The mattes are identical (test_cpp_parity.py); what differs is RGB -> YUV conversion and
    # x264's rounding: a few levels at most, on a handful of pixels.
    assert difference.mean() < 0.05 and difference.max() <= 8, (difference.mean(), difference.max())


def test_examples_refuse_bad_inputs_with_a_message_and_leave_nothing(cpp_build, cpp_models, clip, tmp_path):
    video, background = clip
    small = tmp_path / "small.png"
    Image.new("RGB", (32, 32)).save(small)
    out = cpp_build.run("matte_frame", cpp_models["fp32"], small, background, tmp_path / "out", check=False)
    assert out.returncode == 2 and "the frame is 32x32 but the background is 90x62" in out.stderr
    out = cpp_build.run("matte_video", tmp_path / "missing.onnx", video, background, tmp_path / "c.mp4", check=False)
    assert out.returncode == 1 and "ModelFileError: no such model file" in out.stderr
    out = cpp_build.run("matte_video", cpp_models["fp32"], background, small, tmp_path / "c.mp4", check=False)
    assert out.returncode == 2 and "the background is 32x32" in out.stderr
    missing_video = tmp_path / "none.mp4"
    out = cpp_build.run("matte_video", cpp_models["fp32"], missing_video, background, tmp_path / "c.mp4", check=False)
    assert out.returncode == 1 and "cannot open" in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.png"]


def test_matte_video_stops_on_sigterm_keeping_a_whole_file(cpp_build, cpp_models, tmp_path):
    """A container stop: SIGTERM while matte_video waits on its input (a pipe we hold open) ends
    it with the stop status (130) and a finished com.mp4, no temporary left. Deterministic: the
    signal is sent once the output's temporary exists (the handler is installed before it), and
    the input ends only after the signal."""
    import os
    import signal
    import subprocess
    import time

    fifo = tmp_path / "clip.y4m"
    os.mkfifo(fifo)
    background = tmp_path / "bg.png"
    Image.new("RGB", (WIDTH, HEIGHT), (40, 90, 160)).save(background)
    out = tmp_path / "com.mp4"
    process = subprocess.Popen(
        [cpp_build.tool("matte_video"), cpp_models["fp32"], fifo, background, out, "2"],
        env=cpp_build.env(MATTEX_CACHE=str(tmp_path / "cache")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with open(fifo, "wb") as pipe:  # y4m streams through a pipe (mp4 needs to seek)
            pipe.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F24:1 Ip A1:1 C444\n".encode())
            rng = np.random.default_rng(0)
            for _ in range(6):
                pipe.write(b"FRAME\n" + rng.integers(0, 256, 3 * HEIGHT * WIDTH, dtype=np.uint8).tobytes())
            pipe.flush()
            partial = tmp_path / "com.mp4.partial.mp4"
            deadline = time.monotonic() + 60
            while not partial.exists():
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, (stdout, stderr)
    assert stdout.startswith("stopped: matted ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bg.png", "cache", "clip.y4m", "com.mp4"]
    frames = int(stdout.split()[2])
    assert len(decoded(out)) == frames
